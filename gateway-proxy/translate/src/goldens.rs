//! Translator golden cases as text: naming, the `# options:` header, loading and the output's form.
//!
//! A case `<name>` is a pair of files in `testdata/translate/`: `<name>.in.yaml`, the objects,
//! and `<name>.out.json`, what translating them gives. The golden tests of this crate and the
//! data plane's differential tests read the files and hand the text to these functions, which
//! do no IO, so every harness reads the cases the same way.

use crate::store::ObjectKey;
use crate::store::Store;
use crate::store::load::{LoadError, load_store};
use crate::store::yaml::ParseIssue;
use crate::translate::{TranslateOptions, Translation};

/// The end of an input file's name.
pub const INPUT_SUFFIX: &str = ".in.yaml";
/// The end of an expected output file's name.
pub const OUTPUT_SUFFIX: &str = ".out.json";

/// Why a case's input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error(
        "{case}: unknown option {item:?} in the `# options:` line (known: gateways=NS/NAME,..., controller=NAME)"
    )]
    UnknownOption { case: String, item: String },
    #[error("{case}: gateway {value:?} in the `# options:` line is not NS/NAME")]
    BadGateway { case: String, value: String },
    #[error("{case}: the input does not load: {errors:?}")]
    Load {
        case: String,
        errors: Vec<LoadError>,
    },
    #[error(
        "{case}: the input loads with warnings; a golden input must load cleanly: {warnings:?}"
    )]
    Warnings {
        case: String,
        warnings: Vec<ParseIssue>,
    },
}

/// The cases found among a directory's file names, and the expected outputs without an input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Names of the cases that have an input, sorted.
    pub cases: Vec<String>,
    /// Names of `.out.json` files with no `.in.yaml` beside them, sorted.
    pub orphans: Vec<String>,
}

/// Sorts file names into cases and orphan outputs; other files are ignored.
pub fn listing(file_names: impl IntoIterator<Item = String>) -> Listing {
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for name in file_names {
        if let Some(case) = name.strip_suffix(INPUT_SUFFIX) {
            inputs.push(case.to_owned());
        } else if let Some(case) = name.strip_suffix(OUTPUT_SUFFIX) {
            outputs.push(case.to_owned());
        }
    }
    inputs.sort();
    outputs.sort();
    let orphans = outputs
        .into_iter()
        .filter(|o| inputs.binary_search(o).is_err())
        .collect();
    Listing {
        cases: inputs,
        orphans,
    }
}

/// The options of a case: the defaults, or those of a first line
/// `# options: gateways=ns/a,ns/b controller=example.com/x`.
pub fn options(case: &str, text: &str) -> Result<TranslateOptions, CaseError> {
    let mut options = TranslateOptions::default();
    let Some(line) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# options:"))
    else {
        return Ok(options);
    };
    for item in line.split_whitespace() {
        match item.split_once('=') {
            Some(("gateways", list)) => {
                let gateways = list
                    .split(',')
                    .map(|g| {
                        ObjectKey::parse(g).ok_or_else(|| CaseError::BadGateway {
                            case: case.to_owned(),
                            value: g.to_owned(),
                        })
                    })
                    .collect::<Result<_, _>>()?;
                options.gateways = Some(gateways);
            }
            Some(("controller", name)) => name.clone_into(&mut options.controller_name),
            _ => {
                return Err(CaseError::UnknownOption {
                    case: case.to_owned(),
                    item: item.to_owned(),
                });
            }
        }
    }
    Ok(options)
}

/// The store of a case's input, which must load without errors or warnings.
pub fn load(case: &str, text: &str) -> Result<Store, CaseError> {
    let (store, warnings) =
        load_store([(format!("{case}{INPUT_SUFFIX}"), text)]).map_err(|errors| {
            CaseError::Load {
                case: case.to_owned(),
                errors,
            }
        })?;
    if !warnings.is_empty() {
        return Err(CaseError::Warnings {
            case: case.to_owned(),
            warnings,
        });
    }
    Ok(store)
}

/// A translation as a golden output file holds it: the IR and the statuses, pretty JSON with
/// a final newline.
pub fn render(translation: &Translation) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "ir": translation.ir,
        "statuses": translation.statuses,
    }))?;
    Ok(json + "\n")
}

/// The first line where `expected` and `actual` differ, numbered from 1, with both versions:
/// enough to find a difference in a long output. `None` when they are equal.
pub fn first_difference(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    let mut number = 1;
    loop {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => number += 1,
            (e, a) => {
                return Some(format!(
                    "line {number}: expected {:?}, got {:?}",
                    e.unwrap_or("<end>"),
                    a.unwrap_or("<end>")
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_pairs_inputs_and_outputs_and_names_orphan_outputs() {
        let files = [
            "b.out.json",
            "a.in.yaml",
            "a.out.json",
            "b-gone.out.json",
            "README.md",
            "c.in.yaml",
        ]
        .map(str::to_owned);
        assert_eq!(
            listing(files),
            Listing {
                cases: vec!["a".into(), "c".into()],
                orphans: vec!["b".into(), "b-gone".into()],
            }
        );
    }

    #[test]
    fn options_come_from_the_first_line_only() {
        let options = options(
            "x",
            "# options: gateways=ns/a,b controller=example.com/x\nkind: Gateway\n",
        )
        .unwrap();
        assert_eq!(
            options.gateways,
            Some(vec![
                ObjectKey::new("ns", "a"),
                ObjectKey::new("default", "b")
            ])
        );
        assert_eq!(options.controller_name, "example.com/x");
        let default = super::options("x", "# a comment\n# options: controller=y\n").unwrap();
        assert_eq!(default.controller_name, gantry_crds::CONTROLLER_NAME);
        assert!(matches!(
            super::options("x", "# options: colour=blue\n"),
            Err(CaseError::UnknownOption { .. })
        ));
    }

    #[test]
    fn the_first_difference_names_its_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(
            first_difference("a\nb\nc\n", "a\nx\nc\n").as_deref(),
            Some(r#"line 2: expected "b", got "x""#)
        );
        assert_eq!(
            first_difference("a\n", "a\nb\n").as_deref(),
            Some(r#"line 2: expected "<end>", got "b""#)
        );
    }
}
