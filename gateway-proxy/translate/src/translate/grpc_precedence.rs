//! GRPCRoute match precedence: the order the entries of GRPCRoutes are tried in.

use std::cmp::Reverse;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::grpc_matches::GrpcMatchRank;
use super::precedence::Ranked;

/// GRPCRouteRule `matches`: "Proxy or Load Balancer routing configuration generated from
/// GRPCRoutes MUST prioritize rules based on the following criteria, continuing on ties.
/// Merging MUST not be done between GRPCRoutes and HTTPRoutes. Precedence MUST be given to
/// the rule with the largest number of:
///
/// * Characters in a matching non-wildcard hostname.
/// * Characters in a matching hostname.
/// * Characters in a matching service.
/// * Characters in a matching method.
/// * Header matches.
///
/// If ties still exist across multiple Routes, matching precedence MUST be determined in
/// order of the following criteria, continuing on ties:
///
/// * The oldest Route based on creation timestamp.
/// * The Route appearing first in alphabetical order by "{namespace}/{name}".
///
/// If ties still exist within the Route that has been given precedence, matching precedence
/// MUST be granted to the first matching rule meeting the above criteria."
///
/// Hostnames are ordered by the virtual hosts (see `assemble`); this key orders the entries
/// of one virtual host. Implementation-specific choices:
/// * The characters of a service or method are those of the value as written, for Exact and
///   RegularExpression matches alike.
/// * A route without a creation timestamp counts as newer than any route with one.
/// * Within a rule, matches keep their list order.
pub fn key<'a>(r: &'a Ranked, rank: &GrpcMatchRank) -> Key<'a> {
    (
        Reverse(rank.service_chars),
        Reverse(rank.method_chars),
        Reverse(r.entry.matches.headers.len()),
        (r.created.is_none(), r.created.as_ref()),
        (
            r.entry.route.namespace.as_str(),
            r.entry.route.name.as_str(),
        ),
        r.entry.rule_index,
        r.match_index,
    )
}

pub type Key<'a> = (
    Reverse<usize>,
    Reverse<usize>,
    Reverse<usize>,
    (bool, Option<&'a Time>),
    (&'a str, &'a str),
    usize,
    usize,
);
