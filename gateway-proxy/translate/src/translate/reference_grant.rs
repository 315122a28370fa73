//! ReferenceGrant: whether a cross-namespace reference is allowed by its target namespace.

use crate::store::{ObjectKey, Store};

/// The referring object's group, kind and namespace.
pub struct From<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// The referenced object.
pub struct To<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// ReferenceGrant: a reference into another namespace is valid only if a ReferenceGrant *in
/// the target namespace* has a `from` entry naming the referrer's group, kind and namespace,
/// and a `to` entry naming the target's group and kind and either no name or the target's
/// name. Same-namespace references need no grant.
pub fn permits(store: &Store, from: &From<'_>, to: &To<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    store
        .reference_grants
        .iter()
        .filter(|(key, _)| key.namespace == to.namespace)
        .any(|(_, grant)| {
            let from_ok = grant.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            });
            let to_ok = grant.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to.name)
            });
            from_ok && to_ok
        })
}

/// Whether a Gateway in `gateway_namespace` may reference the core object (group `""`) of
/// `kind` at `target`: a certificate Secret, a CA ConfigMap, a backend client certificate.
pub fn gateway_permits(
    store: &Store,
    gateway_namespace: &str,
    kind: &str,
    target: &ObjectKey,
) -> bool {
    listener_owner_permits(store, "Gateway", gateway_namespace, kind, target)
}

/// Whether a Gateway or a ListenerSet (`owner_kind`, both of the Gateway API group) in
/// `owner_namespace` may reference the core object of `kind` at `target`. GEP-1713: a
/// ReferenceGrant to a Gateway "MUST NOT be inherited by child ListenerSets", nor one to a
/// ListenerSet grant anything to the Gateway's listeners; each is judged as its own kind.
pub fn listener_owner_permits(
    store: &Store,
    owner_kind: &str,
    owner_namespace: &str,
    kind: &str,
    target: &ObjectKey,
) -> bool {
    permits(
        store,
        &From {
            group: gantry_crds::GATEWAY_GROUP,
            kind: owner_kind,
            namespace: owner_namespace,
        },
        &To {
            group: "",
            kind,
            namespace: &target.namespace,
            name: &target.name,
        },
    )
}
