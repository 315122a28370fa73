//! Differential test of snapshot compilation over every ordered pair of translator golden cases.
//!
//! The data plane compiles each new IR with the snapshot in use as `previous`, reusing its
//! port tables, virtual host tables, TLS server configurations and upstream TLS clients where
//! their IR did not change. For each pair (A, B) of the cases in
//! `translate/testdata/translate/` (A possibly B), compiling B's IR after A's must give a
//! snapshot equal to compiling B's IR from nothing, compared with [`Snapshot::describe`] (every
//! routing decision), or fail with the same error.
//!
//! Each case's IR is its translation from scratch with its own `# options:` header: the
//! snapshot compiler has no options, so every pair is run.
//!
//! The data plane is also walked from A to B one kind of object at a time
//! (`gantry_translate::goldens::walk`, the store steps the translator's differential test
//! takes, each translated from scratch with B's options): each step's IR is compiled after the
//! snapshot of the step before and compared with the IR compiled from nothing. Golden cases
//! rarely share a listener whose TLS settings differ, or a cluster whose backend TLS differs;
//! the walk's steps (B's Gateways with A's Secrets, B's BackendTLSPolicies with A's ConfigMaps)
//! do, which is where the reuse checks of TLS configurations and upstream clients are needed.
//!
//! One test per A (`snapshot_after::<A>`), each running A against every B and reporting the
//! failing pairs together (the first 20, by name).

#[path = "../translate/tests/pairs/mod.rs"]
mod pairs;

use std::path::Path;
use std::sync::Arc;

use gantry_proxy::routing::Snapshot;
use gantry_proxy::telemetry::Metrics;
use gantry_translate::goldens;
use gantry_translate::ir::Ir;
use gantry_translate::store::Store;
use gantry_translate::translate::{TranslateOptions, translate};
use libtest_mimic::Failed;
use pairs::report;

/// Longest part of a differing line shown in a failure.
const SHOWN_CHARACTERS: usize = 400;

/// A case's objects, IR and its snapshot compiled from nothing.
struct Case {
    name: String,
    store: Store,
    options: TranslateOptions,
    ir: Arc<Ir>,
    /// [`Snapshot::describe`], or the compile error.
    cold: Result<String, String>,
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("translate/testdata/translate");
    let metrics = Metrics::new();
    let cases = pairs::read(&dir).map(|cases| {
        cases
            .into_iter()
            .map(|golden| Case::new(golden, &metrics))
            .collect()
    });
    pairs::run(cases, "snapshot_after", |c: &Case| &c.name, snapshot_after)
}

impl Case {
    /// A case translated from scratch, and its IR compiled from nothing.
    fn new(golden: pairs::Golden, metrics: &Metrics) -> Self {
        let ir = Arc::new(translate(&golden.store, &golden.options).ir);
        let cold = compile(&ir, metrics, None).map(|s| s.describe());
        Self {
            name: golden.name,
            store: golden.store,
            options: golden.options,
            ir,
            cold,
        }
    }
}

/// `ir` compiled after `previous`, from a copy of the IR (as the runtime hands the data plane
/// a newly translated IR), or the compile error.
fn compile(ir: &Ir, metrics: &Metrics, previous: Option<&Snapshot>) -> Result<Snapshot, String> {
    let version = previous.map_or(1, |p| p.version + 1);
    Snapshot::compile(Arc::new(ir.clone()), version, metrics, previous).map_err(|e| e.to_string())
}

/// Compiling each case B after case `a` gives B's snapshot from nothing.
fn snapshot_after(cases: &[Case], a: usize) -> Result<(), Failed> {
    let first = &cases[a];
    let metrics = Metrics::new();
    let previous = match compile(&first.ir, &metrics, None) {
        Ok(snapshot) => snapshot,
        // Nothing to compile after: the data plane keeps its previous snapshot, so this case
        // is never `previous`. Its own failure is reported by the pairs where it is B.
        Err(_) => return Ok(()),
    };
    let mut failures = Vec::new();
    for second in cases {
        let warm = compile(&second.ir, &metrics, Some(&previous)).map(|s| s.describe());
        let pair = format!("{} then {}", first.name, second.name);
        if let Some(difference) = difference(&second.cold, &warm) {
            failures.push(format!("{pair}: {difference}"));
        }

        // The snapshot in use: a step whose IR does not compile leaves it in place.
        let mut in_use = compile(&first.ir, &metrics, None).ok();
        for step in goldens::walk(&first.store, &second.store) {
            let ir = translate(&step.store, &second.options).ir;
            let cold = compile(&ir, &metrics, None);
            let warm = compile(&ir, &metrics, in_use.as_ref());
            let described = (
                cold.as_ref().map(Snapshot::describe).map_err(Clone::clone),
                warm.as_ref().map(Snapshot::describe).map_err(Clone::clone),
            );
            if let Some(difference) = difference(&described.0, &described.1) {
                failures.push(format!(
                    "{pair}, one kind at a time, after taking {} from {}: {difference}",
                    step.taken, second.name
                ));
                // Later steps start from a snapshot already known to be wrong.
                break;
            }
            if let Ok(snapshot) = warm {
                in_use = Some(snapshot);
            }
        }
    }
    report(&first.name, cases.len(), &failures)
}

/// How the snapshot compiled after another differs from the one compiled from nothing.
fn difference(cold: &Result<String, String>, warm: &Result<String, String>) -> Option<String> {
    match (cold, warm) {
        (Ok(cold), Ok(warm)) => goldens::first_difference(cold, warm).map(|line| {
            format!(
                "the snapshot differs from one compiled from nothing at {}",
                shorten(&line)
            )
        }),
        (Err(cold), Err(warm)) if cold == warm => None,
        (cold, warm) => Some(format!(
            "compiled from nothing: {}; compiled after: {}",
            outcome(cold),
            outcome(warm)
        )),
    }
}

fn outcome(result: &Result<String, String>) -> String {
    match result {
        Ok(_) => "a snapshot".to_owned(),
        Err(e) => format!("error {e}"),
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARACTERS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}
