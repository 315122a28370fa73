//! HTTPRoute match precedence: the order route entries are tried in.

use std::cmp::{Ordering, Reverse};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::grpc_matches::GrpcMatchRank;
use super::grpc_precedence;
use crate::ir::{PathMatchIr, RouteEntryIr};

/// A route entry with what its order depends on beyond the entry itself.
#[derive(Clone, Debug)]
pub struct Ranked {
    pub entry: RouteEntryIr,
    /// The route's `metadata.creationTimestamp`.
    pub created: Option<Time>,
    /// Index of the match within its rule.
    pub match_index: usize,
    /// For a GRPCRoute entry: what GRPCRoute precedence needs beyond the entry.
    pub grpc: Option<GrpcMatchRank>,
}

/// HTTPRouteRule `matches`: "precedence must be given to the match having: "Exact" path
/// match; "Prefix" path match with largest number of characters; Method match; Largest
/// number of header matches; Largest number of query param matches." Then "the oldest Route
/// based on creation timestamp", then "alphabetical order by {namespace}/{name}", then "the
/// FIRST matching rule (in list order)".
///
/// Implementation-specific choices:
/// * "The precedence of RegularExpression path matches are implementation-specific": here
///   they rank after Exact and before PathPrefix (longer patterns first), so a regex is not
///   shadowed by a broad prefix such as `/`.
/// * A route without a creation timestamp counts as newer than any route with one.
/// * Within a rule, matches keep their list order.
///
/// GRPCRoute entries follow GRPCRoute precedence ([`grpc_precedence::key`]). The two kinds
/// never share a virtual host (a GRPCRoute and an HTTPRoute whose hostnames intersect on a
/// listener are not both accepted there), so their relative order only keeps the sort total.
pub fn compare(a: &Ranked, b: &Ranked) -> Ordering {
    match (&a.grpc, &b.grpc) {
        (None, None) => key(a).cmp(&key(b)),
        (Some(ra), Some(rb)) => grpc_precedence::key(a, ra).cmp(&grpc_precedence::key(b, rb)),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
    }
}

type Key<'a> = (
    (u8, Reverse<usize>),
    bool,
    Reverse<usize>,
    Reverse<usize>,
    (bool, Option<&'a Time>),
    (&'a str, &'a str),
    usize,
    usize,
);

fn key(r: &Ranked) -> Key<'_> {
    let m = &r.entry.matches;
    let path = match &m.path {
        PathMatchIr::Exact(v) => (0, Reverse(v.len())),
        PathMatchIr::RegularExpression(v) => (1, Reverse(v.len())),
        PathMatchIr::Prefix(v) => (2, Reverse(v.len())),
    };
    (
        path,
        m.method.is_none(),
        Reverse(m.headers.len()),
        Reverse(m.query_params.len()),
        (r.created.is_none(), r.created.as_ref()),
        (
            r.entry.route.namespace.as_str(),
            r.entry.route.name.as_str(),
        ),
        r.entry.rule_index,
        r.match_index,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ir::{HttpMatchIr, HttpRuleIr, RouteRef, ValueMatchIr, ValueMatchKind};

    fn ranked(
        name: &str,
        path: PathMatchIr,
        method: bool,
        headers: usize,
        created: Option<i64>,
    ) -> Ranked {
        let value = |i: usize| ValueMatchIr {
            name: format!("h{i}"),
            kind: ValueMatchKind::Exact,
            value: String::new(),
        };
        Ranked {
            entry: RouteEntryIr {
                route: std::sync::Arc::new(RouteRef {
                    kind: "HTTPRoute".into(),
                    namespace: "default".to_owned(),
                    name: name.to_owned(),
                }),
                rule_index: 0,
                match_index: 0,
                matches: Arc::new(HttpMatchIr {
                    path,
                    headers: (0..headers).map(value).collect(),
                    query_params: Vec::new(),
                    method: method.then(|| "GET".to_owned()),
                }),
                rule: Arc::new(HttpRuleIr::default()),
                security: None,
                rate_limit: None,
            },
            created: created
                .map(|s| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap_or_default())),
            match_index: 0,
            grpc: None,
        }
    }

    #[test]
    fn ordering() {
        let prefix = |v: &str| PathMatchIr::Prefix(v.to_owned());
        let mut v = vec![
            ranked("a-root", prefix("/"), false, 0, None),
            ranked("b-newer", prefix("/api"), false, 0, Some(200)),
            ranked("c-older", prefix("/api"), false, 0, Some(100)),
            ranked("d-headers", prefix("/api"), false, 2, None),
            ranked("e-method", prefix("/api"), true, 0, None),
            ranked(
                "f-exact",
                PathMatchIr::Exact("/".to_owned()),
                false,
                0,
                None,
            ),
            ranked("g-long", prefix("/api/v1"), false, 0, None),
            ranked(
                "h-regex",
                PathMatchIr::RegularExpression("/x.*".to_owned()),
                false,
                0,
                None,
            ),
            ranked("i-untimed", prefix("/api"), false, 0, None),
        ];
        v.sort_by(compare);
        let names: Vec<&str> = v.iter().map(|r| r.entry.route.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "f-exact",
                "h-regex",
                "g-long",
                "e-method",
                "d-headers",
                "c-older",
                "b-newer",
                "i-untimed",
                "a-root"
            ]
        );
    }
}
