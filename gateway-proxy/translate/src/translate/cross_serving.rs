//! Cross serving: an HTTPRoute and a GRPCRoute whose hostnames intersect on one listener are
//! not both served there.
//!
//! GRPCRoute `spec.hostnames`: "If a Route (A) of type HTTPRoute or GRPCRoute is attached to a
//! Listener and that listener already has another Route (B) of the other type attached and the
//! intersection of the hostnames of A and B is non-empty, then the implementation MUST accept
//! exactly one of these two routes, determined by the following criteria, in order:
//!
//! * The oldest Route based on creation timestamp.
//! * The Route appearing first in alphabetical order by "{namespace}/{name}".
//!
//! The rejected Route MUST raise an 'Accepted' condition with a status of 'False' in the
//! corresponding RouteParentStatus."
//!
//! The spec names no reason for that condition; Gantry uses `HostnameConflict`, the word the
//! spec uses for listeners whose hostnames collide, with a message naming the route that won.
//!
//! Routes are considered oldest first and each is served unless a route of the other kind
//! already served on the listener shares a hostname with it, so of any two conflicting routes
//! exactly one is served whenever the older one is. The hostnames compared are those the route
//! serves on that listener (its own intersected with the listener's).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::Problem;
use super::gateway::GatewayState;
use super::hostname;
use super::http_route::invalid_hostnames;
use super::parent_ref::{self, Attachment, RouteInfo, RouteResource};
use crate::store::{ObjectKey, Store};

/// The Accepted reason of a route that lost to a route of the other kind.
pub const REASON_HOSTNAME_CONFLICT: &str = "HostnameConflict";

/// A route served on one listener.
#[derive(Clone, Debug)]
pub struct Claim {
    pub kind: &'static str,
    pub key: ObjectKey,
    pub created: Option<Time>,
    /// The hostnames the route serves on the listener.
    pub hostnames: Vec<String>,
}

/// Listener `(gateway, index)` → the routes served there.
pub type Claims = BTreeMap<(ObjectKey, usize), Vec<Claim>>;

/// Routes not served on a listener and why: `(gateway, listener index, kind, route)` → problem.
pub type Exclusions = BTreeMap<(ObjectKey, usize, &'static str, ObjectKey), Problem>;

/// The exclusions the cross-serving rule makes among the HTTPRoutes and GRPCRoutes of
/// `store`. Without GRPCRoutes there is nothing to compare, and no work is done.
pub fn exclusions(store: &Store, gateways: &BTreeMap<ObjectKey, GatewayState>) -> Exclusions {
    if store.grpc_routes.is_empty() {
        return Exclusions::new();
    }
    let mut claims = Claims::new();
    add_claims(&mut claims, store, gateways, &store.http_routes, |r| {
        r.spec.hostnames.as_deref()
    });
    add_claims(&mut claims, store, gateways, &store.grpc_routes, |r| {
        r.spec.hostnames.as_deref()
    });
    rejections(&claims)
}

/// Every listener each route attaches to and would be served on, with the hostnames it
/// serves there. Routes with invalid hostnames are not served anywhere and claim nothing.
fn add_claims<R: RouteResource>(
    claims: &mut Claims,
    store: &Store,
    gateways: &BTreeMap<ObjectKey, GatewayState>,
    routes: &BTreeMap<ObjectKey, Arc<R>>,
    hostnames: impl Fn(&R) -> Option<&[String]>,
) {
    for (key, route) in routes {
        let hostnames = hostnames(route).unwrap_or_default();
        if invalid_hostnames(hostnames).is_some() {
            continue;
        }
        let info = RouteInfo {
            kind: R::KIND,
            namespace: &key.namespace,
            hostnames,
        };
        for parent in route.parent_refs() {
            let Attachment::Attached {
                gateway,
                served,
                problem: None,
                ..
            } = parent_ref::attach(store, gateways, &info, &parent)
            else {
                continue;
            };
            for index in served {
                let Some(listener) = gateways.get(&gateway).and_then(|g| g.listeners.get(index))
                else {
                    continue;
                };
                let list = claims.entry((gateway.clone(), index)).or_default();
                if list.iter().any(|c| c.kind == R::KIND && &c.key == key) {
                    continue;
                }
                list.push(Claim {
                    kind: R::KIND,
                    key: key.clone(),
                    created: route.meta().creation_timestamp.clone(),
                    hostnames: hostname::intersect(listener.hostname.as_deref(), hostnames),
                });
            }
        }
    }
}

/// For every listener, the routes not served there and why.
fn rejections(claims: &Claims) -> Exclusions {
    let mut out = BTreeMap::new();
    for ((gateway, listener), list) in claims {
        let mut order: Vec<&Claim> = list.iter().collect();
        order.sort_by(|a, b| {
            (a.created.is_none(), a.created.as_ref(), &a.key, a.kind).cmp(&(
                b.created.is_none(),
                b.created.as_ref(),
                &b.key,
                b.kind,
            ))
        });
        let mut served: Vec<&Claim> = Vec::new();
        for claim in order {
            let winner = served
                .iter()
                .find(|s| s.kind != claim.kind && intersects(&s.hostnames, &claim.hostnames));
            match winner {
                Some(w) => {
                    out.insert(
                        (gateway.clone(), *listener, claim.kind, claim.key.clone()),
                        Problem::new(
                            REASON_HOSTNAME_CONFLICT,
                            format!(
                                "{} {} shares a hostname with {} {} on a listener of Gateway {gateway}, and {} {} is older (or, as old, sorts first by namespace/name), so only it is served there; give the HTTPRoute and the GRPCRoute distinct hostnames",
                                claim.kind, claim.key, w.kind, w.key, w.kind, w.key
                            ),
                        ),
                    );
                }
                None => served.push(claim),
            }
        }
    }
    out
}

/// Whether some host matches a hostname of both lists.
fn intersects(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| hostname::covers(x, y) || hostname::covers(y, x))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(kind: &'static str, name: &str, created: Option<i64>, hosts: &[&str]) -> Claim {
        Claim {
            kind,
            key: ObjectKey::new("default", name),
            created: created
                .map(|s| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap_or_default())),
            hostnames: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    fn rejected(list: Vec<Claim>) -> Vec<String> {
        let claims: Claims = [((ObjectKey::new("default", "gw"), 0), list)]
            .into_iter()
            .collect();
        rejections(&claims)
            .keys()
            .map(|(_, _, kind, key)| format!("{kind} {}", key.name))
            .collect()
    }

    #[test]
    fn oldest_wins_then_alphabetical() {
        assert_eq!(
            rejected(vec![
                claim("HTTPRoute", "web", Some(200), &["a.example.com"]),
                claim("GRPCRoute", "rpc", Some(100), &["*.example.com"]),
            ]),
            ["HTTPRoute web"]
        );
        assert_eq!(
            rejected(vec![
                claim("HTTPRoute", "a-web", Some(100), &["*"]),
                claim("GRPCRoute", "b-rpc", Some(100), &["a.example.com"]),
            ]),
            ["GRPCRoute b-rpc"]
        );
    }

    #[test]
    fn disjoint_hostnames_and_same_kind_do_not_conflict() {
        assert!(
            rejected(vec![
                claim("HTTPRoute", "web", None, &["web.example.com"]),
                claim("GRPCRoute", "rpc", None, &["rpc.example.com"]),
                claim("HTTPRoute", "web2", None, &["rpc.example.com"]),
            ])
            .len()
                == 1
        );
        assert!(
            rejected(vec![
                claim("HTTPRoute", "a", None, &["*"]),
                claim("HTTPRoute", "b", None, &["*"]),
            ])
            .is_empty()
        );
    }

    #[test]
    fn a_rejected_route_does_not_reject_others() {
        // web (oldest) beats rpc; rpc lost, so it does not knock out web2.
        assert_eq!(
            rejected(vec![
                claim("HTTPRoute", "web", Some(1), &["a.example.com"]),
                claim(
                    "GRPCRoute",
                    "rpc",
                    Some(2),
                    &["a.example.com", "b.example.com"]
                ),
                claim("HTTPRoute", "web2", Some(3), &["b.example.com"]),
            ]),
            ["GRPCRoute rpc"]
        );
    }
}
