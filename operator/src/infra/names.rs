//! Names and labels of the objects that make up a fleet, kept within Kubernetes' length limits.

use std::collections::BTreeMap;

/// GEP-1762: label carrying the Gateway's name on generated resources.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// GEP-1762: label carrying the GatewayClass's name on generated resources.
pub const GATEWAY_CLASS_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// Selector label: the fleet a pod belongs to. Never changes for a fleet.
pub const FLEET_LABEL: &str = "gantry.dev/fleet";
/// Namespace of the Gateway a Certificate was issued for (label values cannot hold `ns/name`).
pub const GATEWAY_NAMESPACE_LABEL: &str = "gantry.dev/gateway-namespace";
/// Namespace of the fleet a RoleBinding in another namespace grants to.
pub const FLEET_NAMESPACE_LABEL: &str = "gantry.dev/fleet-namespace";
/// On the RoleBindings that grant a fleet reads in one namespace: `secrets` or `configmaps`.
/// The operator finds (and prunes) them by this label.
pub const GRANT_LABEL: &str = "gantry.dev/grant";
/// Standard "managed by" label; the operator's watches select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "gantry-operator";
/// On Gateways with a dedicated fleet: the operator removes the fleet in order (pods first,
/// then what they use) before the Gateway goes.
pub const FLEET_FINALIZER: &str = "gantry.dev/fleet-teardown";
/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "gantry-operator";

/// Longest name for objects whose names must be DNS-1123 labels (Services) or label values.
pub const MAX_NAME: usize = 63;

/// `name` itself when it fits in `max` characters, else a prefix plus a stable hash of the whole,
/// so that two long names never collide and the result is still a valid DNS-1123 label.
pub fn bounded(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = format!("{:08x}", fnv1a(name) as u32);
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix = name[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

/// A label value: at most 63 characters (see [`bounded`]).
pub fn label_value(value: &str) -> String {
    bounded(value, MAX_NAME)
}

/// Name of a dedicated fleet: `<gateway>-<class>` as GEP-1762 suggests, bounded to 63.
pub fn dedicated_fleet(gateway: &str, class: &str) -> String {
    bounded(&format!("{gateway}-{class}"), MAX_NAME)
}

/// Name of the shared fleet of a GatewayClass.
pub fn shared_fleet(class: &str) -> String {
    bounded(&format!("{class}-shared"), MAX_NAME)
}

/// The Lease a dedicated fleet's replicas elect their status writer with: the proxy names it
/// after the Gateway it serves (`--gateway NS/NAME`).
pub fn dedicated_lease(namespace: &str, gateway: &str) -> String {
    gantry_lease::lease_name(&gantry_lease::gateways_subject([(namespace, gateway)]))
}

/// The Lease of a class's shared fleet: the proxy names it after the class
/// (`--gateway-class NAME`).
pub fn shared_lease(class: &str) -> String {
    gantry_lease::lease_name(class)
}

/// Name of the per-class ClusterRoleBinding granting the class's fleets their cluster-wide
/// reads.
pub fn class_cluster_role_binding(class: &str) -> String {
    bounded(&format!("gantry-proxy-{class}"), MAX_NAME)
}

/// Name of the RoleBinding in a fleet's namespace granting it Leases.
pub fn leader_election_binding(fleet: &str) -> String {
    bounded(&format!("{fleet}-leader-election"), MAX_NAME)
}

/// Name of the RoleBinding in a fleet's namespace granting it the `<prefix>` Role
/// (namespace-scoped installs only; cluster-wide ones use the class's ClusterRoleBinding).
pub fn fleet_reads_binding(fleet: &str) -> String {
    bounded(&format!("{fleet}-gateway-api"), MAX_NAME)
}

/// Name of the RoleBinding granting the fleet `fleet_namespace/fleet` reads of `grant`
/// (`secrets` or `configmaps`) in another (or its own) namespace: unique per fleet there.
pub fn reference_binding(fleet_namespace: &str, fleet: &str, grant: &str) -> String {
    bounded(
        &format!("gantry-proxy-{fleet_namespace}-{fleet}-{grant}"),
        MAX_NAME,
    )
}

/// Name of the cert-manager Certificate issuing `secret` for `gateway`. cert-manager copies the
/// Certificate's name into label values of the objects it creates, so it stays well below 63.
pub fn certificate(gateway: &str, secret: &str) -> String {
    bounded(&format!("{gateway}-{secret}"), 52)
}

/// Selector labels of a fleet.
pub fn selector(fleet: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(FLEET_LABEL.to_string(), label_value(fleet))])
}

/// 64-bit FNV-1a: stable across releases and platforms, unlike `std`'s hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(dedicated_fleet("web", "gantry"), "web-gantry");
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let a = dedicated_fleet(&"a".repeat(80), "gantry");
        let b = dedicated_fleet(&format!("{}b", "a".repeat(79)), "gantry");
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert!(a.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()));
    }
}
