//! `gantry-proxy explain --config-dir DIR 'METHOD URL'`: which listener, route, rule, filters,
//! policies and backends a request gets from a configuration directory, what the proxy
//! answers itself if anything, and why every other candidate route did not answer.
//!
//! It never serves and never contacts a backend, and it has no routing logic of its own:
//! the directory is read by `source::files`, translated by `gantry_translate` and compiled
//! into a routing [`Snapshot`] as `run --config-dir` does; the request goes through the
//! pipeline's own checks (`server::request_checks::prepare`), the TLS listener selection
//! (`routing::tls`), the port table's lookup and the rule's filters. The "why not" of the
//! other entries comes from `routing::Trial`s, which apply the matcher's own predicates to
//! every entry; the answer is the lookup's.

mod attachment;
mod candidates;
mod live;
mod report;
mod request;
mod rule;
mod text;
mod walk;

use std::path::Path;
use std::sync::Arc;

use crate::routing::Snapshot;
use crate::source::files;
use crate::telemetry::Metrics;
use gantry_translate::store::ObjectKey;
use gantry_translate::store::load::ParseCache;
use gantry_translate::translate::{TranslateOptions, translate};

pub use live::explain_live;
pub use report::{
    Answerer, BackendSummary, Candidate, Explanation, FilterSummary, ListenerSummary, Outcome,
    PolicySummary, RequestSummary, RouteSummary, UpstreamRequest, Why,
};
pub use request::{Query, RequestError};
pub use text::Output;
pub use walk::{Loaded, explain_loaded};

/// Why nothing could be explained: the exit status 2 of the command.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("reading {dir}: {error}")]
    Read { dir: String, error: String },
    #[error("the configuration would not load:\n{0}")]
    Load(String),
    #[error("the configuration would not be applied: {0}")]
    Compile(String),
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Explains `query` against `dir` loaded as `run --config-dir DIR` with `options` would.
pub fn explain(
    dir: &Path,
    options: &TranslateOptions,
    query: &Query,
    gateway: Option<&ObjectKey>,
) -> Result<Explanation, ExplainError> {
    let contents = files::read_dir(dir).map_err(|error| ExplainError::Read {
        dir: dir.display().to_string(),
        error: error.to_string(),
    })?;
    if !contents.errors.is_empty() {
        let errors: Vec<String> = contents.errors.iter().map(ToString::to_string).collect();
        return Err(ExplainError::Load(errors.join("\n")));
    }
    let (store, _warnings) = ParseCache::default()
        .load(contents.files)
        .map_err(|errors| {
            ExplainError::Load(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    let translation = translate(&store, options);
    // A snapshot may start background work (health probes): compile and walk inside a
    // runtime that ends here.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| ExplainError::Compile(error.to_string()))?;
    runtime.block_on(async {
        let snapshot =
            Snapshot::compile(Arc::new(translation.ir.clone()), 1, &Metrics::new(), None)
                .map_err(|error| ExplainError::Compile(error.to_string()))?;
        let loaded = Loaded {
            store: &store,
            translation: &translation,
            snapshot: &snapshot,
        };
        Ok(explain_loaded(&loaded, query, gateway)?)
    })
}

impl Explanation {
    /// Whether a route answers (a backend, or the route's own filter) for some share of
    /// requests: the command's exit status 0; otherwise 1.
    pub fn routed(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| o.by != Answerer::Proxy && o.share > 0.0)
    }
}
