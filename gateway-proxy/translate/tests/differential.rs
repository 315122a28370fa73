//! Differential test of the incremental translator over every ordered pair of golden cases.
//!
//! For each pair (A, B) of `testdata/translate/` cases, A and B possibly the same case, a
//! [`Translator`] that translated A's store then translates B's store, and the result (IR and
//! statuses) must be exactly what [`translate`] gives for B from scratch. Whatever the route
//! cache keeps from A, reuses or drops, only B may show in the output.
//!
//! A translator is also walked from A to B one kind of object at a time (`goldens::walk`: B's
//! HTTPRoutes replacing A's, ..., then B's Services, ...), each step compared with a
//! translation of that step's store from scratch. Golden cases rarely share routes, so the
//! direct pair alone seldom keeps a route while what it reads changes; the walk does at every
//! step after the routes, which is where each invalidation rule of the route cache is needed.
//!
//! Where a step differs from the one before only in EndpointSlices (or in nothing the translator
//! reads), the runtime skips the translator: it refreshes the endpoints of the IR in use
//! ([`refresh_endpoints`]) and keeps the statuses. That shortcut is checked against the
//! translation from scratch too, before the translator is given the step.
//!
//! The walk runs the translator as the proxy does: each translation's statuses are stamped
//! against those in use, which stamps the route statuses the cache shares in place, so
//! replayed routes carry their times. Its steps are therefore compared stamped: the IR
//! exactly, and the statuses once both are stamped against those in use before the step.
//!
//! Options: the translator's options are fixed for its life, so both translations of a pair, and
//! every step of its walk, use B's options (B's `# options:` header, or the defaults). A is then translated with options it
//! was not written for, which is still a translation the cache must not leak into B's.
//!
//! One test per A (`translator_after::<A>`), each running A against every B and reporting the
//! failing pairs together (the first 20, by name).

mod pairs;

use std::path::Path;
use std::sync::Arc;

use gantry_translate::goldens;
use gantry_translate::store::{Difference, Store};
use gantry_translate::translate::{
    TranslateOptions, Translation, Translator, refresh_endpoints, translate,
};
use libtest_mimic::Failed;
use pairs::report;

/// A case ready to translate, with its translation from scratch.
struct Case {
    name: String,
    store: Arc<Store>,
    options: TranslateOptions,
    cold: Translation,
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let cases = pairs::read(&dir).map(|cases| cases.into_iter().map(Case::new).collect());
    pairs::run(
        cases,
        "translator_after",
        |c: &Case| &c.name,
        translator_after,
    )
}

impl Case {
    /// A case with its translation from scratch.
    fn new(golden: pairs::Golden) -> Self {
        let cold = translate(&golden.store, &golden.options);
        Self {
            name: golden.name,
            store: Arc::new(golden.store),
            options: golden.options,
            cold,
        }
    }
}

/// A translator that translated case `a` then translates each case B gives B's output.
fn translator_after(cases: &[Case], a: usize) -> Result<(), Failed> {
    let first = &cases[a];
    let mut failures = Vec::new();
    for second in cases {
        let pair = format!("{} then {}", first.name, second.name);
        let mut translator = Translator::new(second.options.clone());
        translator.translate(&first.store);
        let warm = translator.translate(&second.store);
        if warm != second.cold {
            failures.push(format!("{pair}: {}", difference(&second.cold, &warm)));
        }

        let mut translator = Translator::new(second.options.clone());
        // The translation in use, its statuses stamped as the proxy stamps them.
        let mut in_use = goldens::stamped(&translator.translate(&first.store), &[], "T0");
        let mut previous = first.store.clone();
        for (n, step) in goldens::walk(&first.store, &second.store)
            .into_iter()
            .enumerate()
        {
            let store = Arc::new(step.store);
            let at = format!(
                "{pair}, one kind at a time, after taking {} from {}",
                step.taken, second.name
            );
            // Every translation compared stamped against the statuses in use, a new time per
            // step.
            let now = format!("T{}", n + 1);
            let cold =
                goldens::stamped(&translate(&store, &second.options), &in_use.statuses, &now);
            // The runtime's shortcuts, taken when the store differs only in what the
            // translator does not read, or only in EndpointSlices.
            let shortcut = match previous.difference(&store) {
                Difference::Nothing => Some(("the translation kept", in_use.clone())),
                Difference::EndpointSlices => Some((
                    "the endpoints refreshed",
                    Translation {
                        ir: refresh_endpoints(&store, &in_use.ir),
                        statuses: in_use.statuses.clone(),
                    },
                )),
                Difference::Objects => None,
            };
            if let Some((how, kept)) = shortcut {
                let kept = goldens::stamped(&kept, &in_use.statuses, &now);
                if kept != cold {
                    failures.push(format!("{at}, with {how}: {}", difference(&cold, &kept)));
                    break;
                }
            }
            let warm = goldens::stamped(&translator.translate(&store), &in_use.statuses, &now);
            if warm != cold {
                failures.push(format!("{at}: {}", difference(&cold, &warm)));
                // Later steps start from a translator already known to be wrong.
                break;
            }
            in_use = warm;
            previous = store;
        }
    }
    report(&first.name, cases.len(), &failures)
}

/// Where `warm` differs from `cold`, in the golden output's JSON.
fn difference(cold: &Translation, warm: &Translation) -> String {
    let part = if cold.ir != warm.ir { "IR" } else { "statuses" };
    let rendered = (goldens::render(cold), goldens::render(warm));
    match rendered {
        (Ok(cold), Ok(warm)) => match goldens::first_difference(&cold, &warm) {
            Some(line) => format!("{part} differ from a translation from scratch at {line}"),
            None => format!(
                "{part} differ from a translation from scratch in a field JSON does not show"
            ),
        },
        _ => format!("{part} differ from a translation from scratch (not serialisable)"),
    }
}
