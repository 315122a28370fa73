//! A Gateway's requested addresses (`spec.addresses`) judged against what the serving process
//! can give it.
//!
//! Gateway API (`GatewaySpec.addresses`, `GatewayConditionReason`):
//! - `UnsupportedAddress` (Accepted=False): "one or more of the addresses specified in
//!   spec.addresses is of a type the implementation does not support";
//! - `AddressNotUsable` (Programmed=False): "the address is invalid or already in use";
//! - `AddressNotAssigned` (Programmed=False): the requested address could not be assigned; and
//!   for an empty value, "If an implementation does not support an empty value, they MUST set
//!   the "Programmed" condition in status to False with a reason of "AddressNotAssigned"."
//!
//! Gantry supports `IPAddress` (the default type) only. Which values it can assign depends on
//! the process ([`AddressAssignment`]); that the Service of a dedicated fleet really got the
//! address is the operator's to see (its `status.addresses`), not the translator's.

use std::net::IpAddr;

use gantry_crds::gateway::gateways::Gateway;

use super::conditions::{self as c, Problem};

/// The type `spec.addresses[].type` defaults to.
const IP_ADDRESS: &str = "IPAddress";

/// Which requested IP addresses the process serving the Gateway can assign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AddressAssignment {
    /// Any: the operator puts them on the Service of the Gateway's own fleet, or a standalone
    /// proxy listens on every local address.
    #[default]
    Any,
    /// Only this one: a standalone proxy bound to one address (`--bind-address`).
    Only(IpAddr),
    /// None: the Gateways share a fleet and its Service (a GatewayClass-wide proxy), so no
    /// Gateway gets an address of its own.
    Shared,
}

/// What `spec.addresses` does to the Gateway's conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressProblems {
    /// `Accepted=False UnsupportedAddress`: the Gateway is refused.
    pub refusal: Option<Problem>,
    /// `Programmed=False AddressNotUsable` or `AddressNotAssigned`: listeners still serve on
    /// the addresses the Gateway does have.
    pub not_programmed: Option<Problem>,
}

/// Judges every requested address; the first unsupported type refuses the Gateway.
pub fn judge(gateway: &Gateway, assignment: &AddressAssignment) -> AddressProblems {
    let mut problems = AddressProblems::default();
    let mut unusable = Vec::new();
    let mut unassigned = Vec::new();
    for (index, address) in gateway.spec.addresses.iter().flatten().enumerate() {
        let type_ = address.r#type.as_deref().unwrap_or(IP_ADDRESS);
        if type_ != IP_ADDRESS {
            problems.refusal.get_or_insert_with(|| {
                Problem::new(
                    c::REASON_UNSUPPORTED_ADDRESS,
                    format!(
                        "spec.addresses[{index}] has type {type_}; Gantry assigns IPAddress addresses only"
                    ),
                )
            });
            continue;
        }
        let value = address.value.as_deref().unwrap_or_default();
        if value.is_empty() {
            // An empty value asks for any address of the type: the fleet's Service (or the
            // standalone bind address) gives one, except where Gateways share a Service.
            if *assignment == AddressAssignment::Shared {
                unassigned.push(format!("spec.addresses[{index}] (any IPAddress)"));
            }
            continue;
        }
        let Ok(ip) = value.parse::<IpAddr>() else {
            unusable.push(format!(
                "spec.addresses[{index}] {value:?} is not an IP address"
            ));
            continue;
        };
        match assignment {
            AddressAssignment::Any => {}
            AddressAssignment::Only(bound) if *bound == ip => {}
            AddressAssignment::Only(bound) => unassigned.push(format!(
                "spec.addresses[{index}] {ip} (this proxy listens on {bound}; start it with --bind-address {ip} or 0.0.0.0)"
            )),
            AddressAssignment::Shared => unassigned.push(format!("spec.addresses[{index}] {ip}")),
        }
    }
    problems.not_programmed = if !unusable.is_empty() {
        Some(Problem::new(
            c::REASON_ADDRESS_NOT_USABLE,
            format!("{}; use IPv4 or IPv6 addresses", unusable.join("; ")),
        ))
    } else if unassigned.is_empty() {
        None
    } else if *assignment == AddressAssignment::Shared {
        Some(Problem::new(
            c::REASON_ADDRESS_NOT_ASSIGNED,
            format!(
                "{} cannot be assigned: this Gateway is served by its GatewayClass's shared fleet, whose Service is every Gateway's; use the Dedicated topology for addresses of its own",
                unassigned.join(", ")
            ),
        ))
    } else {
        Some(Problem::new(
            c::REASON_ADDRESS_NOT_ASSIGNED,
            format!("{} cannot be assigned", unassigned.join("; ")),
        ))
    };
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_crds::gateway::gateways::GatewayAddresses;

    fn gateway(addresses: &[(Option<&str>, Option<&str>)]) -> Gateway {
        let mut gw: Gateway = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {"gatewayClassName": "gantry", "listeners": []}
        }))
        .expect("gateway");
        gw.spec.addresses = Some(
            addresses
                .iter()
                .map(|(t, v)| GatewayAddresses {
                    r#type: t.map(str::to_owned),
                    value: v.map(str::to_owned),
                })
                .collect(),
        );
        gw
    }

    #[test]
    fn ip_addresses_are_assigned_anywhere_but_on_a_shared_fleet() {
        let gw = gateway(&[
            (None, Some("10.0.0.7")),
            (Some("IPAddress"), Some("fd00::7")),
        ]);
        assert_eq!(
            judge(&gw, &AddressAssignment::Any),
            AddressProblems::default()
        );
        let shared = judge(&gw, &AddressAssignment::Shared);
        assert_eq!(shared.refusal, None);
        let problem = shared.not_programmed.expect("not assigned");
        assert_eq!(problem.reason, "AddressNotAssigned");
        assert!(
            problem
                .message
                .contains("spec.addresses[0] 10.0.0.7, spec.addresses[1] fd00::7")
        );
        assert!(problem.message.contains("Dedicated topology"));
    }

    #[test]
    fn a_standalone_proxy_assigns_only_its_bind_address() {
        let gw = gateway(&[(None, Some("127.0.0.1")), (None, Some("10.0.0.7"))]);
        let only = AddressAssignment::Only("127.0.0.1".parse().expect("ip"));
        let problem = judge(&gw, &only).not_programmed.expect("not assigned");
        assert_eq!(problem.reason, "AddressNotAssigned");
        assert!(
            problem
                .message
                .starts_with("spec.addresses[1] 10.0.0.7 (this proxy listens on 127.0.0.1")
        );
    }

    #[test]
    fn an_empty_value_asks_for_any_address() {
        let gw = gateway(&[(Some("IPAddress"), None)]);
        assert_eq!(
            judge(&gw, &AddressAssignment::Any),
            AddressProblems::default()
        );
        assert_eq!(
            judge(&gw, &AddressAssignment::Shared)
                .not_programmed
                .map(|p| p.reason),
            Some("AddressNotAssigned")
        );
    }

    #[test]
    fn other_types_refuse_the_gateway_and_bad_values_are_not_usable() {
        let gw = gateway(&[
            (Some("Hostname"), Some("gw.example.com")),
            (None, Some("10.0.0.300")),
        ]);
        let problems = judge(&gw, &AddressAssignment::Any);
        let refusal = problems.refusal.expect("refused");
        assert_eq!(refusal.reason, "UnsupportedAddress");
        assert!(
            refusal
                .message
                .contains("spec.addresses[0] has type Hostname")
        );
        let unusable = problems.not_programmed.expect("not usable");
        assert_eq!(unusable.reason, "AddressNotUsable");
        assert!(
            unusable
                .message
                .contains("\"10.0.0.300\" is not an IP address")
        );
    }
}
