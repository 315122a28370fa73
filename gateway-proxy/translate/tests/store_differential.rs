//! The shortcuts taken before translation, proven against a cold computation over every golden:
//! the file source's `ParseCache` (a re-read parses only changed files) and `Store::difference`
//! (the control loop skips translation on `Nothing` and only refreshes endpoints on
//! `EndpointSlices`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_translate::goldens;
use gantry_translate::store::load::ParseCache;
use gantry_translate::store::{Difference, Store};
use gantry_translate::translate::{TranslateOptions, Translation, refresh_endpoints, translate};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

struct Case {
    name: String,
    text: String,
    options: TranslateOptions,
    store: Store,
    translation: Translation,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/translate exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() > 10,
        "golden cases missing in {}",
        dir.display()
    );
    inputs
        .into_iter()
        .map(|input| {
            let name = input
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .replace(".in.yaml", "");
            let text = std::fs::read_to_string(&input).expect("readable input");
            let (store, _) = ParseCache::without_crd_validation()
                .load([("config.yaml", &text)])
                .unwrap_or_else(|e| panic!("{name} does not load: {e:?}"));
            let options = goldens::options(&name, &text).unwrap_or_else(|e| panic!("{e}"));
            let translation = translate(&store, &options);
            Case {
                name,
                text,
                options,
                store: Arc::unwrap_or_clone(store),
                translation,
            }
        })
        .collect()
}

/// A file no golden touches, kept in every load: its parse is reused every time.
const KEPT: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kept-by-the-cache\n";

/// One cache walks through every golden (forwards, backwards, each twice in a row), the golden
/// in a file that changes each step, either under one name, under a new name each step (the
/// old file forgotten), or split into a file per document (so that a step re-parses only the
/// documents that differ and patches the last store with them), beside a file that never
/// changes. Every third step of the split walk also adds a file that defines one of the
/// golden's objects again, so that load fails, and the next starts from scratch. Each step's
/// store (or errors) equals a cold load of the same files, object for object.
#[test]
fn a_warm_parse_cache_loads_what_a_cold_load_does() {
    let cases = cases();
    let order: Vec<&Case> = cases
        .iter()
        .chain(cases.iter().rev())
        .flat_map(|c| [c, c])
        .collect();
    let mut failures = Vec::new();
    let mut same_name = ParseCache::without_crd_validation();
    let mut new_names = ParseCache::without_crd_validation();
    let mut split = ParseCache::without_crd_validation();
    let mut previous = "start";
    let mut patched = 0;
    for (step, case) in order.iter().enumerate() {
        let moved = format!("step-{}.yaml", step % 3);
        let documents = documents(&case.text);
        let mut per_document: Vec<(String, &str)> = documents
            .iter()
            .enumerate()
            .map(|(i, text)| (format!("doc-{i:03}.yaml"), *text))
            .collect();
        if step % 3 == 2
            && let Some(first) = documents.iter().find(|d| d.contains("kind:"))
        {
            per_document.push(("zz-duplicate.yaml".to_owned(), first));
        }
        let walks: [Walk<'_, '_>; 3] = [
            (
                "same file",
                &mut same_name,
                vec![("config.yaml".to_owned(), case.text.as_str())],
            ),
            (
                "renamed file",
                &mut new_names,
                vec![(moved.clone(), case.text.as_str())],
            ),
            ("a file per document", &mut split, per_document),
        ];
        for (how, cache, mut files) in walks {
            files.push(("kept.yaml".to_owned(), KEPT));
            let cold = ParseCache::without_crd_validation().load(files.iter().cloned());
            let warm = cache.load(files.iter().cloned());
            let same = match (&warm, &cold) {
                (Ok((warm, warm_warnings)), Ok((cold, cold_warnings))) => {
                    same_objects(warm, cold) && warm_warnings == cold_warnings
                }
                (Err(warm), Err(cold)) => warm == cold,
                _ => false,
            };
            if !same {
                failures.push(format!(
                    "{previous} → {} ({how}): warm {} cold {}",
                    case.name,
                    if warm.is_ok() { "loads" } else { "fails" },
                    if cold.is_ok() { "loads" } else { "fails" }
                ));
            }
            if how == "a file per document" && warm.is_ok() && cache.changed() {
                patched += 1;
            }
        }
        previous = &case.name;
    }
    assert!(
        failures.is_empty(),
        "{} steps load differently warm and cold:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert!(patched > cases.len(), "only {patched} loads changed files");
}

/// How one cache is walked: its name, the cache, and this step's files.
type Walk<'c, 't> = (&'static str, &'c mut ParseCache, Vec<(String, &'t str)>);

/// The documents of a golden's text, each with its leading `---` line if any.
fn documents(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = text.match_indices("\n---").map(|(i, _)| i + 1).collect();
    starts.insert(0, 0);
    starts
        .iter()
        .zip(starts.iter().skip(1).chain(std::iter::once(&text.len())))
        .map(|(&a, &b)| &text[a..b])
        .filter(|d| !d.trim().is_empty())
        .collect()
}

/// Every object of every kind the same in both stores, under the same keys.
fn same_objects(a: &Store, b: &Store) -> bool {
    macro_rules! all_same {
        ($($field:ident),* $(,)?) => { true $(&& a.$field == b.$field)* };
    }
    all_same!(
        namespaces,
        gateway_classes,
        gateways,
        listener_sets,
        gateway_parameters,
        http_transforms,
        http_compositions,
        http_routes,
        grpc_routes,
        tls_routes,
        tcp_routes,
        udp_routes,
        reference_grants,
        backend_tls_policies,
        backend_traffic_policies,
        backend_config_policies,
        security_policies,
        rate_limit_policies,
        consumers,
        services,
        endpoint_slices,
        secrets,
        config_maps,
        acme_certificates,
    )
}

/// Whenever `Store::difference` lets the control loop skip translation (`Nothing`) or only
/// refresh endpoints (`EndpointSlices`), the result equals a full translation of the new store.
/// Checked over every ordered pair of goldens, and over variants of each golden that change
/// only what `difference` says it may skip: versions and statuses, or EndpointSlices.
#[test]
fn the_control_loop_shortcuts_equal_a_full_translation() {
    let cases = cases();
    let mut failures = Vec::new();
    let mut shortcuts = [0usize; 2];
    let mut check = |from: &Case, label: &str, to: &Store, to_translation: &Translation| match from
        .store
        .difference(to)
    {
        Difference::Objects => {}
        Difference::Nothing => {
            shortcuts[0] += 1;
            if from.translation != *to_translation {
                failures.push(format!("{label}: `Nothing`, yet the translation differs"));
            }
        }
        Difference::EndpointSlices => {
            shortcuts[1] += 1;
            let refreshed = refresh_endpoints(to, &from.translation.ir);
            if refreshed != to_translation.ir {
                failures.push(format!(
                        "{label}: `EndpointSlices`, yet refreshed endpoints differ from a full translation"
                    ));
            }
            if from.translation.statuses != to_translation.statuses {
                failures.push(format!(
                    "{label}: `EndpointSlices`, yet the statuses differ"
                ));
            }
        }
    };
    for a in &cases {
        for b in &cases {
            if a.options == b.options {
                check(
                    a,
                    &format!("{} → {}", a.name, b.name),
                    &b.store,
                    &b.translation,
                );
            }
        }
        for (variant, store) in variants(&a.store) {
            let translation = translate(&store, &a.options);
            check(a, &format!("{} → {variant}", a.name), &store, &translation);
        }
    }
    assert!(
        failures.is_empty(),
        "{} shortcuts disagree with a full translation:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    // The variants exist to reach both shortcuts; make sure they still do.
    assert!(
        shortcuts[0] >= cases.len() && shortcuts[1] >= 10,
        "shortcuts taken: {shortcuts:?}"
    );
}

/// Changes of `store` that `difference` should classify as `Nothing` or `EndpointSlices`.
fn variants(store: &Store) -> Vec<(&'static str, Store)> {
    let mut out = Vec::new();

    let mut versions = store.clone();
    bump_versions(&mut versions);
    out.push(("new resourceVersions and route statuses", versions));

    // Changes that must be translated: were `difference` to skip them, the check fails.
    if !store.services.is_empty() {
        let mut ports = store.clone();
        for service in ports.services.values_mut() {
            let spec = Arc::make_mut(service)
                .spec
                .get_or_insert_with(Default::default);
            for port in spec.ports.iter_mut().flatten() {
                port.port += 1;
            }
        }
        out.push(("every Service port renumbered", ports));
    }
    if !store.namespaces.is_empty() {
        let mut labels = store.clone();
        for namespace in labels.namespaces.values_mut() {
            Arc::make_mut(namespace).metadata.labels = None;
        }
        out.push(("Namespace labels removed", labels));
    }

    if !store.endpoint_slices.is_empty() {
        let mut not_ready = store.clone();
        for slice in not_ready.endpoint_slices.values_mut() {
            for endpoint in &mut Arc::make_mut(slice).endpoints {
                endpoint.conditions = Some(EndpointConditions {
                    ready: Some(false),
                    ..EndpointConditions::default()
                });
            }
        }
        out.push(("every endpoint not ready", not_ready));

        let mut more = store.clone();
        for slice in more.endpoint_slices.values_mut() {
            let slice = Arc::make_mut(slice);
            let address = if slice.address_type == "IPv6" {
                "fd00::99"
            } else {
                "10.255.0.99"
            };
            slice.endpoints.push(Endpoint {
                addresses: vec![address.to_owned()],
                ..Endpoint::default()
            });
        }
        out.push(("one more endpoint per slice", more));

        let mut none = store.clone();
        none.endpoint_slices.clear();
        out.push(("no EndpointSlices", none));
    }
    out
}

fn bump_versions(store: &mut Store) {
    fn bump(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
        meta.resource_version = Some("4242".to_owned());
    }
    for o in store.gateway_classes.values_mut() {
        bump(&mut Arc::make_mut(o).metadata);
    }
    for o in store.gateways.values_mut() {
        bump(&mut Arc::make_mut(o).metadata);
    }
    for o in store.http_routes.values_mut() {
        let route = Arc::make_mut(o);
        bump(&mut route.metadata);
        route.status = Some(Default::default());
    }
    for o in store.grpc_routes.values_mut() {
        bump(&mut Arc::make_mut(o).metadata);
    }
    for o in store.services.values_mut() {
        bump(&mut Arc::make_mut(o).metadata);
    }
    for o in store.endpoint_slices.values_mut() {
        bump(&mut Arc::make_mut(o).metadata);
    }
}
