//! Translator goldens: `testdata/translate/<case>.in.yaml` → `<case>.out.json`.
//!
//! Each case is parsed with the YAML source, translated with the default options (or those
//! in a leading `# options:` comment), and compared with the committed output. Set
//! `GANTRY_UPDATE_GOLDENS=1` to rewrite the outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_translate::store::ObjectKey;
use gantry_translate::store::load::load_store;
use gantry_translate::translate::{CacheStats, TranslateOptions, Translator, translate};
use pretty_assertions::assert_eq;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/translate exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    cases.sort();
    cases
}

/// `# options: gateways=ns/a,ns/b controller=example.com/x` on the first line.
fn options(text: &str) -> TranslateOptions {
    let mut options = TranslateOptions::default();
    let Some(line) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# options:"))
    else {
        return options;
    };
    for item in line.split_whitespace() {
        match item.split_once('=') {
            Some(("gateways", list)) => {
                options.gateways = Some(
                    list.split(',')
                        .map(|g| ObjectKey::parse(g).expect("NS/NAME"))
                        .collect(),
                );
            }
            Some(("controller", name)) => options.controller_name = name.to_owned(),
            _ => panic!("unknown option {item}"),
        }
    }
    options
}

#[test]
fn translate_goldens() {
    let update = std::env::var("GANTRY_UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(!cases.is_empty(), "no golden cases found");
    for input in cases {
        let name = input
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replace(".in.yaml", "");
        let text = std::fs::read_to_string(&input).expect("readable input");
        let (store, warnings) = load_store([(format!("{name}.in.yaml"), &text)])
            .unwrap_or_else(|errors| panic!("{name}: input does not load: {errors:#?}"));
        assert!(warnings.is_empty(), "{name}: warnings: {warnings:#?}");
        let translation = translate(&store, &options(&text));
        let actual = serde_json::to_string_pretty(&serde_json::json!({
            "ir": translation.ir,
            "statuses": translation.statuses,
        }))
        .expect("serialisable")
            + "\n";
        let output = input.with_file_name(format!("{name}.out.json"));
        if update {
            std::fs::write(&output, &actual).expect("writable output");
            continue;
        }
        let expected = std::fs::read_to_string(&output).unwrap_or_default();
        assert_eq!(
            expected, actual,
            "golden {name} differs (GANTRY_UPDATE_GOLDENS=1 rewrites it)"
        );
    }
}

/// Every case translates the same through a [`Translator`] that already translated it (every
/// route's rules reused from its cache) as from scratch.
#[test]
fn a_warm_translator_gives_every_golden_output() {
    for input in cases() {
        let text = std::fs::read_to_string(&input).expect("readable input");
        let name = input.display().to_string();
        let (store, _) = load_store([(name.clone(), &text)]).expect("input loads");
        let options = options(&text);
        let cold = translate(&store, &options);
        let routes = store.http_routes.len()
            + store.grpc_routes.len()
            + store.tls_routes.len()
            + store.tcp_routes.len()
            + store.udp_routes.len();
        let mut translator = Translator::new(options);
        assert_eq!(
            translator.translate(&Arc::new(store.clone())),
            cold,
            "{name}"
        );
        assert_eq!(
            translator.stats(),
            CacheStats {
                translated: routes,
                reused: 0
            },
            "{name}"
        );
        // The same objects again, read anew (new allocations, equal content).
        let (again, _) = load_store([(name.clone(), &text)]).expect("input loads");
        assert_eq!(translator.translate(&Arc::new(again)), cold, "{name}");
        assert_eq!(
            translator.stats(),
            CacheStats {
                translated: 0,
                reused: routes
            },
            "{name}"
        );
    }
}
