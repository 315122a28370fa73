//! Bytes → the standalone YAML loader → the translator → the snapshot compiler: none may
//! panic, and translation is deterministic.
#![no_main]

use std::sync::Arc;

use gantry_proxy::routing::Snapshot;
use gantry_proxy::telemetry::Metrics;
use gantry_translate::store::load::load_store;
use gantry_translate::translate::{TranslateOptions, translate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((store, _warnings)) = load_store([("fuzz.yaml", text)]) else {
        return;
    };
    let options = TranslateOptions::default();
    let translation = translate(&store, &options);
    assert_eq!(translation, translate(&store, &options), "translation is deterministic");
    // Compile errors (a regex the IR carries) are reported, never a panic.
    let _ = Snapshot::compile(Arc::new(translation.ir), 1, &Metrics::new(), None);
});
