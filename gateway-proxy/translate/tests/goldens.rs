//! Translator goldens: `testdata/translate/<case>.in.yaml` → `<case>.out.json`, one test per case.
//!
//! Each case is loaded and translated with the default options (or those of a leading
//! `# options:` comment: see `gantry_translate::goldens`) and compared with the committed
//! output (`golden::<case>`). Each case is also translated by a [`Translator`] that already
//! translated it, which must give the same output while reusing every route
//! (`warm_translator::<case>`). An expected output with no input beside it fails as
//! `orphan::<case>`. Set `GANTRY_UPDATE_GOLDENS=1` to rewrite the outputs.
//!
//! A `harness = false` target (libtest-mimic), so `cargo test` lists and filters cases by name
//! and reports every failing case, not only the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_translate::goldens::{self, INPUT_SUFFIX, OUTPUT_SUFFIX};
use gantry_translate::translate::{CacheStats, Translation, Translator, translate};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let arguments = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let update = std::env::var("GANTRY_UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    libtest_mimic::run(&arguments, trials(&dir, update)).exit();
}

fn trials(dir: &Path, update: bool) -> Vec<Trial> {
    let names = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        Err(e) => {
            let message = format!("cannot read {}: {e}", dir.display());
            return vec![Trial::test("golden_directory", move || Err(message.into()))];
        }
    };
    let listing = goldens::listing(names);
    if listing.cases.is_empty() {
        let message = format!("no {INPUT_SUFFIX} case in {}", dir.display());
        return vec![Trial::test("golden_directory", move || Err(message.into()))];
    }
    let mut trials = Vec::new();
    for case in &listing.cases {
        let (c, d) = (case.clone(), dir.to_owned());
        trials.push(Trial::test(format!("golden::{case}"), move || {
            golden(&d, &c, update)
        }));
    }
    for case in &listing.cases {
        let (c, d) = (case.clone(), dir.to_owned());
        trials.push(Trial::test(format!("warm_translator::{case}"), move || {
            warm_translator(&d, &c)
        }));
    }
    for orphan in listing.orphans {
        trials.push(Trial::test(format!("orphan::{orphan}"), move || {
            Err(format!(
                "{orphan}{OUTPUT_SUFFIX} has no {orphan}{INPUT_SUFFIX} beside it: delete it, or \
                 restore its input"
            )
            .into())
        }));
    }
    trials
}

fn input(dir: &Path, case: &str) -> Result<String, Failed> {
    let path: PathBuf = dir.join(format!("{case}{INPUT_SUFFIX}"));
    std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// The case translated from scratch matches its committed output (or rewrites it).
fn golden(dir: &Path, case: &str, update: bool) -> Result<(), Failed> {
    let text = input(dir, case)?;
    let options = goldens::options(case, &text)?;
    let store = goldens::load(case, &text)?;
    let actual = goldens::render(&translate(&store, &options))?;
    let output = dir.join(format!("{case}{OUTPUT_SUFFIX}"));
    if update {
        std::fs::write(&output, &actual)
            .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&output).unwrap_or_default();
    match goldens::first_difference(&expected, &actual) {
        None => Ok(()),
        Some(difference) => Err(format!(
            "golden {case} differs at {difference} (GANTRY_UPDATE_GOLDENS=1 rewrites it)\n{}",
            pretty_assertions::StrComparison::new(&expected, &actual)
        )
        .into()),
    }
}

/// The case translates the same through a [`Translator`] that already translated it (every
/// route's rules reused from its cache) as from scratch.
fn warm_translator(dir: &Path, case: &str) -> Result<(), Failed> {
    let text = input(dir, case)?;
    let options = goldens::options(case, &text)?;
    let store = goldens::load(case, &text)?;
    let cold = translate(&store, &options);
    let routes = store.http_routes.len()
        + store.grpc_routes.len()
        + store.tls_routes.len()
        + store.tcp_routes.len()
        + store.udp_routes.len();
    let mut translator = Translator::new(options);
    let check = |step: &str, warm: &Translation, stats: CacheStats, expected: CacheStats| {
        same_as_scratch(case, step, &cold, warm)?;
        if stats != expected {
            return Err(Failed::from(format!(
                "{case}, {step}: {stats:?}, expected {expected:?}"
            )));
        }
        Ok(())
    };
    let first = translator.translate(&Arc::new(store.clone()));
    check(
        "first translation",
        &first,
        translator.stats(),
        CacheStats {
            translated: routes,
            reused: 0,
        },
    )?;
    // The same objects again, read anew (new allocations, equal content).
    let again = goldens::load(case, &text)?;
    let second = translator.translate(&Arc::new(again));
    check(
        "second translation",
        &second,
        translator.stats(),
        CacheStats {
            translated: 0,
            reused: routes,
        },
    )?;
    // Stamped, as the proxy does (which stamps the statuses the cache shares): the next
    // translation, stamped, is what a translation from scratch, stamped, gives.
    let in_use = goldens::stamped(&second, &[], "T1").statuses;
    let third = translator.translate(&Arc::new(goldens::load(case, &text)?));
    same_as_scratch(
        case,
        "third translation, stamped",
        &goldens::stamped(&cold, &in_use, "T2"),
        &goldens::stamped(&third, &in_use, "T2"),
    )
}

/// `Ok` when `warm` is `cold`, else where they first differ in the golden output's JSON.
fn same_as_scratch(
    case: &str,
    step: &str,
    cold: &Translation,
    warm: &Translation,
) -> Result<(), Failed> {
    if warm == cold {
        return Ok(());
    }
    let difference = goldens::first_difference(
        &goldens::render(cold).unwrap_or_default(),
        &goldens::render(warm).unwrap_or_default(),
    );
    Err(Failed::from(format!(
        "{case}, {step}: the translator's output differs from a translation from scratch at {}",
        difference.unwrap_or_else(|| "a field JSON does not show".to_owned())
    )))
}
