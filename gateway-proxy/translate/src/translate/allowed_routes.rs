//! Listener `allowedRoutes.namespaces`: which namespaces may attach routes (Same, All, Selector).

use std::collections::BTreeMap;

use gantry_crds::gateway::gateways::{
    GatewayListenersAllowedRoutesNamespaces, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewayListenersAllowedRoutesNamespacesSelector,
};

use crate::store::Store;

/// Which namespaces a listener admits routes from.
#[derive(Clone, Debug, PartialEq)]
pub enum AllowedNamespaces {
    /// Only the Gateway's namespace (the default).
    Same,
    All,
    /// Namespaces whose labels match. A Namespace missing from the store has no labels.
    Selector(GatewayListenersAllowedRoutesNamespacesSelector),
    /// `from: Selector` without a selector: nothing is selected.
    Nothing,
    /// `from: Selector` where Namespace labels cannot be read (a proxy watching one namespace
    /// with Roles only): nothing is selected, and the route's condition says why.
    LabelsUnreadable,
}

impl AllowedNamespaces {
    pub fn from_spec(spec: Option<&GatewayListenersAllowedRoutesNamespaces>) -> Self {
        let Some(spec) = spec else { return Self::Same };
        match spec.from {
            None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => Self::Same,
            Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => Self::All,
            Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
                spec.selector.clone().map_or(Self::Nothing, Self::Selector)
            }
        }
    }

    /// Namespace labels cannot be read: a selector admits nothing.
    pub fn labels_unreadable(&mut self) {
        if let Self::Selector(_) = self {
            *self = Self::LabelsUnreadable;
        }
    }

    /// Whether a route in `route_ns` may attach to a listener of a Gateway in `gateway_ns`.
    pub fn allows(&self, gateway_ns: &str, route_ns: &str, store: &Store) -> bool {
        match self {
            Self::Same => gateway_ns == route_ns,
            Self::All => true,
            Self::Nothing | Self::LabelsUnreadable => false,
            Self::Selector(selector) => {
                let empty = BTreeMap::new();
                let labels = store
                    .namespaces
                    .get(route_ns)
                    .and_then(|ns| ns.metadata.labels.as_ref())
                    .unwrap_or(&empty);
                selector_matches(selector, labels)
            }
        }
    }
}

/// Kubernetes label-selector semantics: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold; an empty selector matches everything. An
/// unknown operator matches nothing.
fn selector_matches(
    selector: &GatewayListenersAllowedRoutesNamespacesSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_crds::gateway::gateways::GatewayListenersAllowedRoutesNamespacesSelectorMatchExpressions as Expr;

    #[test]
    fn without_namespace_labels_a_selector_admits_nothing_and_same_and_all_are_kept() {
        let store = Store::default();
        let everything = GatewayListenersAllowedRoutesNamespacesSelector {
            match_expressions: None,
            match_labels: None,
        };
        let mut selector = AllowedNamespaces::Selector(everything);
        assert!(selector.allows("apps", "apps", &store), "an empty selector");
        selector.labels_unreadable();
        assert_eq!(selector, AllowedNamespaces::LabelsUnreadable);
        assert!(!selector.allows("apps", "apps", &store));
        for mut kept in [AllowedNamespaces::Same, AllowedNamespaces::All] {
            kept.labels_unreadable();
            assert!(kept.allows("apps", "apps", &store), "{kept:?}");
        }
    }

    #[test]
    fn label_selector() {
        let labels: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())]
            .into_iter()
            .collect();
        let expr = |key: &str, op: &str, values: &[&str]| Expr {
            key: key.to_owned(),
            operator: op.to_owned(),
            values: Some(values.iter().map(|s| (*s).to_owned()).collect()),
        };
        let sel = |e: Vec<Expr>| GatewayListenersAllowedRoutesNamespacesSelector {
            match_expressions: Some(e),
            match_labels: None,
        };
        assert!(selector_matches(
            &sel(vec![expr("env", "In", &["prod", "qa"])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(vec![expr("env", "NotIn", &["prod"])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(vec![expr("team", "NotIn", &["a"])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(vec![expr("env", "Exists", &[])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(vec![expr("team", "DoesNotExist", &[])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(vec![expr("env", "Bogus", &[])]),
            &labels
        ));
        assert!(selector_matches(&sel(vec![]), &labels));
    }
}
