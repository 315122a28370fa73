//! The supported-features list (`gantry_translate::features`) against what the translator and
//! the tests actually do: every golden a feature names translates with the feature accepted
//! (no "not supported" condition anywhere), every test it names exists, and
//! `docs/conformance.md` is the list as rendered. `GANTRY_UPDATE_DOCS=1` rewrites the document.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gantry_translate::features::{FEATURES, OPTIONAL_KINDS, conformance_markdown, supported};
use gantry_translate::goldens;
use gantry_translate::translate::translate;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn names_are_unique_and_kinds_known() {
    let mut seen = BTreeSet::new();
    for f in FEATURES {
        assert!(seen.insert(f.name), "{} listed twice", f.name);
        for kind in f.kinds {
            assert!(
                OPTIONAL_KINDS.iter().any(|k| k.kind == *kind),
                "{}: kind {kind} is not in OPTIONAL_KINDS, so its versions are never discovered",
                f.name
            );
        }
        assert!(
            !f.goldens.is_empty() && !f.tests.is_empty(),
            "{} names no golden or no test that proves it",
            f.name
        );
    }
}

#[test]
fn every_golden_named_translates_without_an_unsupported_condition() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    for f in FEATURES {
        for case in f.goldens {
            let path = dir.join(format!("{case}{}", goldens::INPUT_SUFFIX));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: golden {case}: {e}", f.name));
            let store = goldens::load(case, &text).unwrap();
            let options = goldens::options(case, &text).unwrap();
            let translation = translate(&store, &options);
            let rendered: serde_json::Value =
                serde_json::from_str(&goldens::render(&translation).unwrap()).unwrap();
            let mut conditions = Vec::new();
            collect_conditions(&rendered["statuses"], &mut conditions);
            let mut accepted = false;
            for c in conditions {
                let message = c["message"].as_str().unwrap_or_default();
                assert!(
                    !message.contains("not supported"),
                    "{}: golden {case}: {message}",
                    f.name
                );
                accepted |= c["type"] == "Accepted" && c["status"] == "True";
            }
            assert!(accepted, "{}: golden {case} accepts nothing", f.name);
        }
    }
}

/// Every object in any `conditions` array below `value`.
fn collect_conditions<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("conditions", serde_json::Value::Array(items)) => out.extend(items),
                    _ => collect_conditions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_conditions(v, out)),
        _ => {}
    }
}

#[test]
fn every_test_named_exists() {
    for f in FEATURES {
        for (path, name) in f.tests() {
            let text = std::fs::read_to_string(repo().join(path))
                .unwrap_or_else(|e| panic!("{}: {path}: {e}", f.name));
            if let Some(name) = name {
                assert!(
                    text.contains(&format!("fn {name}(")),
                    "{}: {path} has no test {name}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn a_missing_kind_withdraws_its_features() {
    let all = supported(|_| true);
    assert_eq!(all.len(), FEATURES.len());
    assert!(all.is_sorted(), "supportedFeatures must be sorted by name");
    let without_tcp = supported(|kind| kind != "TCPRoute");
    assert!(all.contains(&"TCPRoute") && !without_tcp.contains(&"TCPRoute"));
    assert!(without_tcp.contains(&"HTTPRoute"));
}

#[test]
fn conformance_document_is_current() {
    let path = repo().join("docs/conformance.md");
    let wanted = conformance_markdown();
    if std::env::var("GANTRY_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &wanted).unwrap();
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == wanted,
        "docs/conformance.md is out of date; run GANTRY_UPDATE_DOCS=1 cargo test -p gantry-translate --test features"
    );
}
