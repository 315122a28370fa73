//! The proxy's modules depend on each other one way: each may use only the modules below it
//! in [`LAYERS`]. A `crate::` path to a module above fails this test, naming the file.

use std::path::Path;

/// The proxy crate's top-level modules, lowest first. Data flows source → control loop
/// (translate, in the `gantry-translate` crate) → compile (`routing`, over `filters` and
/// `upstream`) → snapshot → serve; `serve` and `cli` wire a process together.
const LAYERS: &[&str] = &[
    "telemetry",
    "clock",
    "workers",
    "upstream",
    "filters",
    "security",
    "rate_limit",
    "acme",
    "routing",
    "server",
    "source",
    "acme_manager",
    "kubernetes",
    "control",
    "admin",
    "serve",
    "validate",
    "explain",
    "cli",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    Some(first.trim_end_matches(".rs").to_owned())
}

/// Every `crate::name` in `text`, ignoring comments.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `gantry_crate::` and the like
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = rank(&module) else {
            violations.push(format!(
                "{}: module `{module}` is not in LAYERS; add it where it belongs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable source file");
        for used in crate_paths(&text) {
            checked += 1;
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(other) if other < own => {}
                Some(_) => violations.push(format!(
                    "{}: `{module}` uses `crate::{used}`, a layer above it",
                    file.display()
                )),
                None => violations.push(format!(
                    "{}: `crate::{used}` is not a known module",
                    file.display()
                )),
            }
        }
    }
    assert!(
        checked > 50,
        "found only {checked} crate paths; is src/ read?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_path() {
    assert_eq!(
        crate_paths("use crate::control::View; // crate::cli\nlet x = gantry_crate::y;"),
        ["control"]
    );
}
