//! Why each other route entry on the listener did not answer: its hostname, its match, or
//! the spec's precedence, from the routing layer's [`Trial`]s.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use gantry_translate::ir::{ListenerIr, PathMatchIr, RouteEntryIr};
use gantry_translate::store::{ObjectKey, Store};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::report::{Candidate, Why};
use crate::routing::Trial;

/// HTTPRouteSpec `hostnames`: "precedence must be given to rules from the HTTPRoute with the
/// largest number of: Characters in a matching non-wildcard hostname. Characters in a
/// matching hostname."
const HOSTNAME_RULE: &str = "Gateway API HTTPRoute hostnames: the most specific matching \
                             hostname is tried first, then less specific ones";
/// HTTPRouteRule `matches`.
const HTTP_RULE: &str = "Gateway API HTTPRoute rule precedence: Exact path, then the longest \
                         PathPrefix, then a method match, then the most header matches, then \
                         the most query parameter matches, then the oldest route, then \
                         {namespace}/{name} in alphabetical order, then rule order";
/// GRPCRouteRule `matches`.
const GRPC_RULE: &str = "Gateway API GRPCRoute rule precedence: the most characters in a \
                         matching service, then in a matching method, then the most header \
                         matches, then the oldest route, then {namespace}/{name} in \
                         alphabetical order, then rule order";

/// One entry per route rule match of the listener except the answering one, each with its
/// most telling reason: it matched but lost on precedence, else its hostname matched but its
/// match did not, else its hostname did not match.
pub fn entries(
    trials: &[Trial<'_>],
    winner: Option<&Trial<'_>>,
    listener: &ListenerIr,
    host: &str,
    store: &Store,
) -> Vec<Candidate> {
    let ir = |t: &Trial<'_>| -> Option<&RouteEntryIr> {
        listener
            .virtual_hosts
            .get(t.virtual_host)?
            .routes
            .get(t.position)
    };
    let hostname = |t: &Trial<'_>| {
        listener
            .virtual_hosts
            .get(t.virtual_host)
            .map(|v| v.hostname.clone())
    };
    let id = |t: &Trial<'_>| {
        (
            t.entry.route_kind.to_string(),
            t.entry.route.to_string(),
            t.entry.rule_index,
            t.entry.match_index,
        )
    };
    let won = winner.map(id);
    // The best trial of each entry: holding, then hostname matching, then the rest; among
    // equals the most specific hostname.
    let mut best: BTreeMap<(String, String, usize, usize), &Trial<'_>> = BTreeMap::new();
    let score = |t: &Trial<'_>| {
        (
            !t.holds(),
            t.hostname_rank.is_none(),
            t.hostname_rank,
            t.position,
        )
    };
    for trial in trials {
        let key = id(trial);
        if Some(&key) == won.as_ref() {
            continue;
        }
        best.entry(key)
            .and_modify(|b| {
                if score(trial) < score(b) {
                    *b = trial;
                }
            })
            .or_insert(trial);
    }
    let mut out: Vec<(&Trial<'_>, Candidate)> = best
        .into_values()
        .map(|t| {
            let (reason, message) = if t.holds() {
                (
                    Why::Precedence,
                    match winner {
                        Some(w) => precedence(t, w, ir(t), ir(w), listener, store),
                        None => "it matches".to_owned(),
                    },
                )
            } else if t.hostname_rank.is_some() {
                let failed: Vec<String> = t.mismatches.iter().map(ToString::to_string).collect();
                (Why::Match, failed.join("; "))
            } else {
                (
                    Why::Hostname,
                    format!(
                        "its hostname on this listener, {}, does not match {host}",
                        hostname(t).unwrap_or_default()
                    ),
                )
            };
            let (namespace, name) = t
                .entry
                .route
                .split_once('/')
                .map(|(n, r)| (n.to_owned(), r.to_owned()))
                .unwrap_or_default();
            (
                t,
                Candidate {
                    kind: t.entry.route_kind.to_string(),
                    namespace,
                    name,
                    rule: Some(t.entry.rule_index),
                    match_index: Some(t.entry.match_index),
                    matched: Some(t.entry.matcher.to_string()),
                    hostname: hostname(t),
                    reason,
                    message,
                },
            )
        })
        .collect();
    // Closest to winning first, then by route, rule and match.
    out.sort_by(|(a, ca), (b, cb)| {
        let key = |t: &Trial<'_>, c: &Candidate| {
            (
                !t.holds(),
                t.hostname_rank.is_none(),
                t.hostname_rank,
                (c.namespace.clone(), c.name.clone(), c.rule, c.match_index),
            )
        };
        key(a, ca).cmp(&key(b, cb))
    });
    out.into_iter().map(|(_, c)| c).collect()
}

/// Why `loser`, which matches too, comes after `winner`: the first criterion of the spec's
/// order that tells them apart.
fn precedence(
    loser: &Trial<'_>,
    winner: &Trial<'_>,
    loser_ir: Option<&RouteEntryIr>,
    winner_ir: Option<&RouteEntryIr>,
    listener: &ListenerIr,
    store: &Store,
) -> String {
    if loser.hostname_rank != winner.hostname_rank {
        let name = |t: &Trial<'_>| {
            listener
                .virtual_hosts
                .get(t.virtual_host)
                .map_or("", |v| v.hostname.as_str())
                .to_owned()
        };
        return format!(
            "the answering entry's hostname {} is more specific than {} ({HOSTNAME_RULE})",
            name(winner),
            name(loser)
        );
    }
    let (Some(l), Some(w)) = (loser_ir, winner_ir) else {
        return format!("the answering entry comes first ({HTTP_RULE})");
    };
    let grpc = l.route.kind == "GRPCRoute";
    let rule = if grpc { GRPC_RULE } else { HTTP_RULE };
    let because = |why: String| format!("{why} ({rule})");
    if !grpc {
        let (lk, wk) = (path_rank(&l.matches.path), path_rank(&w.matches.path));
        if lk.0 != wk.0 {
            return because(format!(
                "its path match is {}; the answering entry's {} path match comes first",
                path_kind(&l.matches.path),
                path_kind(&w.matches.path)
            ));
        }
        if lk.1 != wk.1 {
            return because(format!(
                "the answering path match is longer ({} characters against {})",
                wk.1, lk.1
            ));
        }
        if l.matches.method.is_some() != w.matches.method.is_some() {
            return because("a match with a method comes before one without".to_owned());
        }
    } else if l.matches.path != w.matches.path {
        return because(
            "the answering match names a longer service or method (characters in a matching \
             service, then method)"
                .to_owned(),
        );
    }
    if l.matches.headers.len() != w.matches.headers.len() {
        return because(format!(
            "the answering match has more header matches ({} against {})",
            w.matches.headers.len(),
            l.matches.headers.len()
        ));
    }
    if !grpc && l.matches.query_params.len() != w.matches.query_params.len() {
        return because(format!(
            "the answering match has more query parameter matches ({} against {})",
            w.matches.query_params.len(),
            l.matches.query_params.len()
        ));
    }
    if l.route != w.route {
        let (lc, wc) = (created(store, l), created(store, w));
        if lc != wc {
            let show = |t: &Option<Time>| {
                t.as_ref().map_or("no creation timestamp".to_owned(), |t| {
                    format!("created {}", t.0)
                })
            };
            // A route without a timestamp counts as newer than any with one.
            if order_created(&wc, &lc) == Ordering::Less {
                return because(format!(
                    "the answering route is older ({} against {})",
                    show(&wc),
                    show(&lc)
                ));
            }
        }
        return because(format!(
            "{}/{} comes before {}/{} alphabetically",
            w.route.namespace, w.route.name, l.route.namespace, l.route.name
        ));
    }
    if l.rule_index != w.rule_index {
        return because(format!(
            "rule {} of the same route comes before rule {}",
            w.rule_index, l.rule_index
        ));
    }
    because(format!(
        "match {} of the same rule comes before match {}",
        w.match_index, l.match_index
    ))
}

/// The order the translator uses (`precedence::key`): a timestamp before none, older first.
fn order_created(a: &Option<Time>, b: &Option<Time>) -> Ordering {
    (a.is_none(), a.as_ref().map(|t| t.0)).cmp(&(b.is_none(), b.as_ref().map(|t| t.0)))
}

fn created(store: &Store, entry: &RouteEntryIr) -> Option<Time> {
    let key = ObjectKey::new(entry.route.namespace.as_str(), entry.route.name.as_str());
    let meta = match &*entry.route.kind {
        "GRPCRoute" => store.grpc_routes.get(&key).map(|r| &r.metadata),
        _ => store.http_routes.get(&key).map(|r| &r.metadata),
    };
    meta.and_then(|m| m.creation_timestamp.clone())
}

/// Exact, then RegularExpression (Gantry's choice, the spec leaves it to implementations),
/// then PathPrefix; within a kind, longer first.
fn path_rank(path: &PathMatchIr) -> (u8, usize) {
    match path {
        PathMatchIr::Exact(v) => (0, v.len()),
        PathMatchIr::RegularExpression(v) => (1, v.len()),
        PathMatchIr::Prefix(v) => (2, v.len()),
    }
}

fn path_kind(path: &PathMatchIr) -> &'static str {
    match path {
        PathMatchIr::Exact(_) => "Exact",
        PathMatchIr::RegularExpression(_) => "RegularExpression",
        PathMatchIr::Prefix(_) => "PathPrefix",
    }
}
