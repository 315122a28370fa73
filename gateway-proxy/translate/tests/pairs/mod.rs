//! What the differential tests over ordered pairs of golden cases share: reading the cases, one
//! test per first case of the pairs, and the report of the pairs that failed.
//!
//! Used by this crate's `differential.rs` and, through `#[path]`, by the proxy's
//! `snapshot_differential.rs` and `kube_status_differential.rs`.

#![allow(dead_code)] // not every harness uses every item

use std::path::Path;
use std::sync::Arc;

use gantry_translate::goldens::{self, INPUT_SUFFIX};
use gantry_translate::store::Store;
use gantry_translate::translate::TranslateOptions;
use libtest_mimic::{Arguments, Failed, Trial};

/// Failing pairs reported by name per test; the rest are counted.
pub const REPORTED_FAILURES: usize = 20;

/// One golden case: its objects and its `# options:`.
pub struct Golden {
    pub name: String,
    pub store: Store,
    pub options: TranslateOptions,
}

/// Every case of `dir` (`<name>.in.yaml`), sorted by name; an error when there is none or one
/// does not load cleanly.
pub fn read(dir: &Path) -> Result<Vec<Golden>, String> {
    let names = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let listing = goldens::listing(names);
    if listing.cases.is_empty() {
        return Err(format!("no {INPUT_SUFFIX} case in {}", dir.display()));
    }
    listing
        .cases
        .into_iter()
        .map(|name| {
            let path = dir.join(format!("{name}{INPUT_SUFFIX}"));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(Golden {
                options: goldens::options(&name, &text).map_err(|e| e.to_string())?,
                store: goldens::load(&name, &text).map_err(|e| e.to_string())?,
                name,
            })
        })
        .collect()
}

/// Runs `after(cases, a)` as one test per case A, named `<prefix>::<A's name>`, and exits with
/// libtest's verdict. Cases that could not be read are one failing test, `golden_cases`.
pub fn run<C: Send + Sync + 'static>(
    cases: Result<Vec<C>, String>,
    prefix: &str,
    name: fn(&C) -> &str,
    after: fn(&[C], usize) -> Result<(), Failed>,
) -> ! {
    let arguments = Arguments::from_args();
    let trials = match cases {
        Ok(cases) => {
            let cases = Arc::new(cases);
            (0..cases.len())
                .map(|a| {
                    let cases = cases.clone();
                    let test = format!("{prefix}::{}", name(&cases[a]));
                    Trial::test(test, move || after(&cases, a))
                })
                .collect()
        }
        Err(message) => vec![Trial::test("golden_cases", move || Err(message.into()))],
    };
    libtest_mimic::run(&arguments, trials).exit()
}

/// Ok when no pair failed; else the first [`REPORTED_FAILURES`] failing pairs and the count.
pub fn report(first: &str, pairs: usize, failures: &[String]) -> Result<(), Failed> {
    if failures.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "{} of {pairs} pairs starting with {first} differ from a computation from scratch:\n",
        failures.len()
    );
    for failure in failures.iter().take(REPORTED_FAILURES) {
        message.push_str("  ");
        message.push_str(failure);
        message.push('\n');
    }
    if failures.len() > REPORTED_FAILURES {
        message.push_str(&format!(
            "  ... and {} more\n",
            failures.len() - REPORTED_FAILURES
        ));
    }
    Err(message.into())
}
