//! The result of a validation, as text for people or JSON for tools.

use std::fmt::Write as _;

use serde::Serialize;

use super::findings::{Finding, Severity};

/// How `validate` prints its report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One line per finding, then a summary line.
    #[default]
    Text,
    /// One JSON object: `errors`, `warnings` and `findings[]`.
    Json,
}

/// Every finding, errors first, each group in the order found (file order for the loader,
/// kind, namespace and name for conditions).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn from_findings(mut findings: Vec<Finding>) -> Self {
        findings.sort_by_key(|f| f.severity);
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        Self {
            errors,
            warnings: findings.len() - errors,
            findings,
        }
    }

    /// Whether the configuration would be served as written.
    pub fn ok(&self) -> bool {
        self.errors == 0
    }

    pub fn render(&self, output: Output) -> String {
        match output {
            Output::Json => {
                let mut text = serde_json::to_string_pretty(self)
                    .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
                text.push('\n');
                text
            }
            Output::Text => self.text(),
        }
    }

    fn text(&self) -> String {
        let mut text = String::new();
        for finding in &self.findings {
            let severity = match finding.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = write!(text, "{severity}: ");
            if let Some(origin) = &finding.origin {
                let _ = write!(text, "{origin}: ");
            }
            if let Some(object) = &finding.object {
                let _ = match object.namespace.as_str() {
                    "" => write!(text, "{} {}", object.kind, object.name),
                    ns => write!(text, "{} {ns}/{}", object.kind, object.name),
                };
                if let Some(scope) = &finding.scope {
                    let _ = write!(text, " ({scope})");
                }
                text.push_str(": ");
            }
            if let Some(condition) = &finding.condition {
                let _ = write!(
                    text,
                    "{}={} {}: ",
                    condition.type_, condition.status, condition.reason
                );
            }
            text.push_str(&finding.message);
            text.push('\n');
        }
        let _ = writeln!(
            text,
            "{} error{}, {} warning{}",
            self.errors,
            if self.errors == 1 { "" } else { "s" },
            self.warnings,
            if self.warnings == 1 { "" } else { "s" },
        );
        text
    }
}
