//! Translator golden cases as text: naming, the `# options:` header, loading, the output's form, walks between cases.
//!
//! A case `<name>` is a pair of files in `testdata/translate/`: `<name>.in.yaml`, the objects,
//! and `<name>.out.json`, what translating them gives. The golden tests of this crate and the
//! data plane's differential tests read the files and hand the text to these functions, which
//! do no IO, so every harness reads the cases the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::status::ObjectStatus;
use crate::status::stamp::stamp;
use crate::store::load::{LoadError, ParseCache};
use crate::store::yaml::ParseIssue;
use crate::store::{ObjectKey, Store, Translated};
use crate::translate::{TranslateOptions, Translation};

/// The end of an input file's name.
pub const INPUT_SUFFIX: &str = ".in.yaml";
/// The end of an expected output file's name.
pub const OUTPUT_SUFFIX: &str = ".out.json";

/// Why a case's input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error(
        "{case}: unknown option {item:?} in the `# options:` line (known: gateways=NS/NAME,..., controller=NAME)"
    )]
    UnknownOption { case: String, item: String },
    #[error("{case}: gateway {value:?} in the `# options:` line is not NS/NAME")]
    BadGateway { case: String, value: String },
    #[error("{case}: the input does not load: {errors:?}")]
    Load {
        case: String,
        errors: Vec<LoadError>,
    },
    #[error(
        "{case}: the input loads with warnings; a golden input must load cleanly: {warnings:?}"
    )]
    Warnings {
        case: String,
        warnings: Vec<ParseIssue>,
    },
}

/// The cases found among a directory's file names, and the expected outputs without an input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Names of the cases that have an input, sorted.
    pub cases: Vec<String>,
    /// Names of `.out.json` files with no `.in.yaml` beside them, sorted.
    pub orphans: Vec<String>,
}

/// Sorts file names into cases and orphan outputs; other files are ignored.
pub fn listing(file_names: impl IntoIterator<Item = String>) -> Listing {
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for name in file_names {
        if let Some(case) = name.strip_suffix(INPUT_SUFFIX) {
            inputs.push(case.to_owned());
        } else if let Some(case) = name.strip_suffix(OUTPUT_SUFFIX) {
            outputs.push(case.to_owned());
        }
    }
    inputs.sort();
    outputs.sort();
    let orphans = outputs
        .into_iter()
        .filter(|o| inputs.binary_search(o).is_err())
        .collect();
    Listing {
        cases: inputs,
        orphans,
    }
}

/// The options of a case: the defaults, or those of a first line
/// `# options: gateways=ns/a,ns/b controller=example.com/x`.
pub fn options(case: &str, text: &str) -> Result<TranslateOptions, CaseError> {
    let mut options = TranslateOptions::default();
    let Some(line) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# options:"))
    else {
        return Ok(options);
    };
    for item in line.split_whitespace() {
        match item.split_once('=') {
            Some(("gateways", list)) => {
                let gateways = list
                    .split(',')
                    .map(|g| {
                        ObjectKey::parse(g).ok_or_else(|| CaseError::BadGateway {
                            case: case.to_owned(),
                            value: g.to_owned(),
                        })
                    })
                    .collect::<Result<_, _>>()?;
                options.gateways = Some(gateways);
            }
            Some(("controller", name)) => name.clone_into(&mut options.controller_name),
            _ => {
                return Err(CaseError::UnknownOption {
                    case: case.to_owned(),
                    item: item.to_owned(),
                });
            }
        }
    }
    Ok(options)
}

/// The store of a case's input, which must load without errors or warnings. The CRDs'
/// validation does not apply: cases also cover objects an API server with older CRDs admits.
pub fn load(case: &str, text: &str) -> Result<Store, CaseError> {
    let (store, warnings) = ParseCache::without_crd_validation()
        .load([(format!("{case}{INPUT_SUFFIX}"), text)])
        .map_err(|errors| CaseError::Load {
            case: case.to_owned(),
            errors,
        })?;
    if !warnings.is_empty() {
        return Err(CaseError::Warnings {
            case: case.to_owned(),
            warnings,
        });
    }
    Ok(Arc::unwrap_or_clone(store))
}

/// `translation` with its statuses stamped at `now` against `in_use`, as the proxy stamps the
/// statuses of each translation. A route status fresh from the translator is stamped in place
/// (see [`stamp`]), so `translation`'s own, and a translator cache sharing it, get the times
/// too, as in the proxy.
pub fn stamped(translation: &Translation, in_use: &[ObjectStatus], now: &str) -> Translation {
    let mut statuses = translation.statuses.clone();
    stamp(in_use, &mut statuses, now);
    Translation {
        ir: translation.ir.clone(),
        statuses,
    }
}

/// A translation as a golden output file holds it: the IR and the statuses, pretty JSON with
/// a final newline.
pub fn render(translation: &Translation) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "ir": translation.ir,
        "statuses": translation.statuses,
    }))?;
    Ok(json + "\n")
}

/// One step of a [`walk`]: the store after taking one more kind of object from the target.
#[derive(Clone, Debug)]
pub struct Step {
    /// The [`Store`] field taken, e.g. `services`.
    pub taken: &'static str,
    pub store: Store,
}

/// Replaces one kind of object of a store with another store's; false when both hold the same.
type Take = fn(&mut Store, &Store) -> bool;

/// `[(field, take)]` for fields of [`Store`].
macro_rules! kinds {
    ($($field:ident),* $(,)?) => {
        [$((stringify!($field), (|to: &mut Store, from: &Store| -> bool {
            if same(&to.$field, &from.$field) {
                return false;
            }
            to.$field.clone_from(&from.$field);
            true
        }) as Take)),*]
    };
}

/// Every kind of object of a [`Store`], in the order [`walk`] takes them: routes first, so that
/// every later step changes what unchanged routes read; Namespaces last, since their labels
/// matter to attachments only once the target's Gateways (their listeners' selectors) are there.
const KINDS: [(&str, Take); 20] = kinds![
    http_routes,
    grpc_routes,
    tls_routes,
    tcp_routes,
    udp_routes,
    gateway_classes,
    gateways,
    listener_sets,
    gateway_parameters,
    http_transforms,
    http_compositions,
    services,
    endpoint_slices,
    reference_grants,
    backend_tls_policies,
    backend_traffic_policies,
    backend_config_policies,
    secrets,
    config_maps,
    namespaces,
];

/// The stores between `from` and `to` when `to`'s objects replace `from`'s one kind at a time
/// (the order of `KINDS`), skipping kinds both hold the same of. The last step, if any, holds
/// `to`'s objects. Incremental paths (the translator's route cache, the data plane's reuse of
/// compiled tables) are checked at each step: golden cases rarely share routes, so going from
/// one case to another directly seldom keeps a route while what it reads changes, and every
/// step of a walk after the routes does.
pub fn walk(from: &Store, to: &Store) -> Vec<Step> {
    let mut store = from.clone();
    let mut steps = Vec::new();
    for (taken, take) in KINDS {
        if take(&mut store, to) {
            steps.push(Step {
                taken,
                store: store.clone(),
            });
        }
    }
    steps
}

/// Same keys, and each object equal as the translator reads it.
fn same<K: Ord, T: Translated>(a: &BTreeMap<K, Arc<T>>, b: &BTreeMap<K, Arc<T>>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && (Arc::ptr_eq(va, vb) || va.same_input(vb)))
}

/// Characters of a long differing line shown before the first differing character.
const CONTEXT_BEFORE: usize = 40;
/// Characters of a long differing line shown from the first differing character.
const CONTEXT_AFTER: usize = 120;

/// The first line where `expected` and `actual` differ, numbered from 1, with both versions:
/// enough to find a difference in a long output. A long line is shown around its first
/// differing character (its column, from 1). `None` when they are equal.
pub fn first_difference(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    let mut number = 1;
    loop {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => number += 1,
            (Some(e), Some(a)) if e.chars().count().max(a.chars().count()) > CONTEXT_AFTER => {
                let column = e.chars().zip(a.chars()).take_while(|(x, y)| x == y).count();
                let start = column.saturating_sub(CONTEXT_BEFORE);
                let excerpt = |line: &str| {
                    let shown: String = line
                        .chars()
                        .skip(start)
                        .take(CONTEXT_BEFORE + CONTEXT_AFTER)
                        .collect();
                    let more = line.chars().count() > start + CONTEXT_BEFORE + CONTEXT_AFTER;
                    format!(
                        "{}{shown}{}",
                        if start > 0 { "..." } else { "" },
                        if more { "..." } else { "" }
                    )
                };
                return Some(format!(
                    "line {number}, column {}: expected {:?}, got {:?}",
                    column + 1,
                    excerpt(e),
                    excerpt(a)
                ));
            }
            (e, a) => {
                return Some(format!(
                    "line {number}: expected {:?}, got {:?}",
                    e.unwrap_or("<end>"),
                    a.unwrap_or("<end>")
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_pairs_inputs_and_outputs_and_names_orphan_outputs() {
        let files = [
            "b.out.json",
            "a.in.yaml",
            "a.out.json",
            "b-gone.out.json",
            "README.md",
            "c.in.yaml",
        ]
        .map(str::to_owned);
        assert_eq!(
            listing(files),
            Listing {
                cases: vec!["a".into(), "c".into()],
                orphans: vec!["b".into(), "b-gone".into()],
            }
        );
    }

    #[test]
    fn options_come_from_the_first_line_only() {
        let options = options(
            "x",
            "# options: gateways=ns/a,b controller=example.com/x\nkind: Gateway\n",
        )
        .unwrap();
        assert_eq!(
            options.gateways,
            Some(vec![
                ObjectKey::new("ns", "a"),
                ObjectKey::new("default", "b")
            ])
        );
        assert_eq!(options.controller_name, "example.com/x");
        let default = super::options("x", "# a comment\n# options: controller=y\n").unwrap();
        assert_eq!(default.controller_name, gantry_crds::CONTROLLER_NAME);
        assert!(matches!(
            super::options("x", "# options: colour=blue\n"),
            Err(CaseError::UnknownOption { .. })
        ));
    }

    #[test]
    fn a_walk_takes_the_kinds_that_differ_routes_first_and_ends_at_the_target() {
        let from = load(
            "from",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\n",
        )
        .unwrap();
        let to = load(
            "to",
            "apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: default}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {name: r, namespace: default}\nspec: {}\n",
        )
        .unwrap();
        let steps = walk(&from, &to);
        let taken: Vec<_> = steps.iter().map(|s| s.taken).collect();
        assert_eq!(taken, ["http_routes", "services"]);
        assert_eq!(steps[0].store.services.len(), 1);
        assert!(
            steps[0]
                .store
                .services
                .contains_key(&ObjectKey::new("default", "a"))
        );
        assert!(
            steps[1]
                .store
                .services
                .contains_key(&ObjectKey::new("default", "b"))
        );
        assert!(walk(&to, &to).is_empty());
    }

    #[test]
    fn the_first_difference_names_its_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(
            first_difference("a\nb\nc\n", "a\nx\nc\n").as_deref(),
            Some(r#"line 2: expected "b", got "x""#)
        );
        assert_eq!(
            first_difference("a\n", "a\nb\n").as_deref(),
            Some(r#"line 2: expected "<end>", got "b""#)
        );
        let long = |c: char| format!("{}{c}{}\n", "x".repeat(100), "y".repeat(200));
        assert_eq!(
            first_difference(&long('a'), &long('b')),
            Some(format!(
                "line 1, column 101: expected \"...{}a{}...\", got \"...{}b{}...\"",
                "x".repeat(40),
                "y".repeat(119),
                "x".repeat(40),
                "y".repeat(119)
            ))
        );
    }
}
