//! What one replica serves, as it reports it on its own Pod: the `gantry.dev/serving`
//! annotation. This format is a contract between replicas of different versions (the leader
//! reads every replica's report), so fields are only ever added.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use gantry_translate::status::{ObjectStatus, StatusBody};

/// The Pod annotation a replica reports what it serves in.
pub const ANNOTATION: &str = "gantry.dev/serving";

/// The build version of this binary.
pub const OWN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `{"version":"0.1.0","gateways":{"ns/name":7}}`: the replica's build version and, per
/// Gateway it serves, the `metadata.generation` its applied configuration was translated from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingReport {
    pub version: String,
    #[serde(default)]
    pub gateways: BTreeMap<String, i64>,
}

impl ServingReport {
    /// The report of this binary for the statuses of the configuration it applied: each
    /// Gateway's generation is the `observedGeneration` of its `Programmed` condition (the
    /// generation the translation read).
    pub fn of(statuses: &[ObjectStatus]) -> Self {
        let gateways = statuses
            .iter()
            .filter(|o| o.kind == "Gateway")
            .filter_map(|o| match &o.status {
                StatusBody::Gateway(status) => status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Programmed")
                    .map(|c| (format!("{}/{}", o.namespace, o.name), c.observed_generation)),
                _ => None,
            })
            .collect();
        Self {
            version: OWN_VERSION.to_owned(),
            gateways,
        }
    }

    /// The report in a Pod's annotation; `None` when absent or unreadable (a replica that
    /// reports nothing serves nothing as far as the leader knows).
    pub fn parse(text: &str) -> Option<Arc<Self>> {
        serde_json::from_str(text).ok().map(Arc::new)
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// How far a replica's version is from the leader's (`docs/upgrades.md`: one minor version
/// either way is supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skew {
    Same,
    /// Another version within one minor version.
    Supported,
    /// Another major version, more than one minor version apart, or not a version at all.
    Unsupported,
}

/// The skew of `version` relative to `own`, by major and minor version.
pub fn skew(own: &str, version: &str) -> Skew {
    if own == version {
        return Skew::Same;
    }
    match (major_minor(own), major_minor(version)) {
        (Some((a, x)), Some((b, y))) if a == b && x.abs_diff(y) <= 1 => Skew::Supported,
        _ => Skew::Unsupported,
    }
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_annotation_round_trips_and_tolerates_new_fields() {
        let report = ServingReport {
            version: "0.1.0".into(),
            gateways: BTreeMap::from([("ns/gw".into(), 7)]),
        };
        let text = report.to_annotation();
        assert_eq!(text, r#"{"version":"0.1.0","gateways":{"ns/gw":7}}"#);
        assert_eq!(*ServingReport::parse(&text).unwrap(), report);
        let newer = r#"{"version":"0.2.0","gateways":{"ns/gw":8},"more":true}"#;
        assert_eq!(ServingReport::parse(newer).unwrap().gateways["ns/gw"], 8);
        assert!(ServingReport::parse("not json").is_none());
    }

    #[test]
    fn one_minor_version_either_way_is_supported() {
        assert_eq!(skew("0.1.0", "0.1.0"), Skew::Same);
        assert_eq!(skew("0.1.0", "0.1.3"), Skew::Supported);
        assert_eq!(skew("0.1.0", "0.0.9"), Skew::Supported);
        assert_eq!(skew("0.1.0", "0.2.0"), Skew::Supported);
        assert_eq!(skew("0.1.0", "0.3.0"), Skew::Unsupported);
        assert_eq!(skew("1.4.0", "0.4.0"), Skew::Unsupported);
        assert_eq!(skew("0.1.0", "garbage"), Skew::Unsupported);
    }
}
