//! `gantry-proxy validate DIR`: what `run --config-dir DIR` would make of a directory, without
//! serving it. For GitOps pipelines: every problem is listed with the file and line of the
//! object it belongs to, and the exit status says whether any is an error.
//!
//! The same code as the running proxy does the work: the directory is read and parsed by
//! `source::files`, translated by `gantry_translate`, and the result compiled into a routing
//! snapshot (which is where, for example, an unusable certificate would be refused). Nothing is
//! bound and no backend is contacted.

mod findings;
mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::routing::Snapshot;
use crate::source::files;
use crate::telemetry::Metrics;
use gantry_translate::store::ObjectKey;
use gantry_translate::store::load::ParseCache;
use gantry_translate::store::yaml::parse_documents_with;
use gantry_translate::translate::{TranslateOptions, translate};

pub use findings::{Finding, Severity};
pub use report::{Output, Report};

/// Validates `dir` as `run --config-dir DIR` with `options` would load it.
pub fn validate(dir: &Path, options: &TranslateOptions) -> Report {
    let contents = match files::read_dir(dir) {
        Ok(contents) => contents,
        Err(error) => {
            return Report::from_findings(vec![Finding::source(
                Severity::Error,
                format!("reading {}: {error}", dir.display()),
            )]);
        }
    };
    let mut found: Vec<Finding> = contents
        .errors
        .iter()
        .map(|error| Finding::source(Severity::Error, error.to_string()))
        .collect();
    // Where each object was written, for the findings about it.
    let origins = origins(&contents.files);
    let (store, warnings) = match ParseCache::default().load(contents.files) {
        Ok(loaded) => loaded,
        Err(errors) => {
            found.extend(
                errors
                    .iter()
                    .map(|error| Finding::source(Severity::Error, error.to_string())),
            );
            return Report::from_findings(found);
        }
    };
    found.extend(
        warnings
            .iter()
            .map(|warning| Finding::source(Severity::Warning, warning.to_string())),
    );
    let translation = translate(&store, options);
    for object in &translation.statuses {
        let origin = origins
            .get(&(
                object.kind.to_string(),
                object_key(&object.namespace, &object.name),
            ))
            .cloned();
        found.extend(findings::of_object(object, origin));
    }
    // A route no served Gateway accepts a parentRef of gets no status at all (the spec leaves
    // parents of other controllers alone), so the usual mistake, a parentRef naming the wrong
    // Gateway, would otherwise go unmentioned.
    let with_status: HashSet<(&str, &str, &str)> = translation
        .statuses
        .iter()
        .map(|o| (&*o.kind, o.namespace.as_str(), o.name.as_str()))
        .collect();
    let routes = [
        ("HTTPRoute", keys(&store.http_routes)),
        ("GRPCRoute", keys(&store.grpc_routes)),
        ("TLSRoute", keys(&store.tls_routes)),
        ("TCPRoute", keys(&store.tcp_routes)),
        ("UDPRoute", keys(&store.udp_routes)),
    ];
    for (kind, keys) in routes {
        for key in keys {
            if with_status.contains(&(kind, key.namespace.as_str(), key.name.as_str())) {
                continue;
            }
            let origin = origins
                .get(&(kind.to_owned(), object_key(&key.namespace, &key.name)))
                .cloned();
            found.push(findings::unattached_route(kind, key, origin));
        }
    }
    // The data plane's own checks, on what the translator produced. A snapshot may start
    // background work (health probes), so it is compiled inside a runtime that ends here.
    let compiled = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
        .and_then(|runtime| {
            runtime.block_on(async {
                Snapshot::compile(Arc::new(translation.ir), 1, &Metrics::new(), None)
                    .map(drop)
                    .map_err(|error| error.to_string())
            })
        });
    if let Err(error) = compiled {
        found.push(Finding::source(
            Severity::Error,
            format!("the configuration would not be applied: {error}"),
        ));
    }
    Report::from_findings(found)
}

/// `(kind, key)` → `file:line` of every object in `files`, keyed as `ObjectStatus` names
/// objects (`namespace/name`, or `name` for cluster-scoped kinds).
fn origins(files: &[(String, String)]) -> HashMap<(String, String), String> {
    let mut origins = HashMap::new();
    for (path, text) in files {
        // Types only: this pass is for locations; the load above reports every problem.
        let (parsed, _) = parse_documents_with(
            text,
            path,
            gantry_translate::store::yaml::CrdValidation::Off,
        );
        for object in parsed {
            origins
                .entry((object.object.kind().to_owned(), object.object.key_string()))
                .or_insert(object.origin);
        }
    }
    origins
}

fn keys<T>(objects: &BTreeMap<ObjectKey, T>) -> Vec<&ObjectKey> {
    objects.keys().collect()
}

fn object_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    }
}
