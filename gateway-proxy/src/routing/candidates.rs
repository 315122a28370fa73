//! Every route entry of a listener tried against one request, for `gantry-proxy explain`.
//!
//! The data plane's lookup ([`super::PortTable::lookup`]) stops at the first entry that
//! matches, and narrows the entries by the hostname and path indexes first. To say why every
//! other entry lost, [`ListenerTable::trials`] tries them all with the same pieces: the
//! listener's hostname index orders the virtual hosts, and each entry's compiled
//! [`super::RequestMatcher`] says which of its conditions fail ([`super::RequestMatcher::mismatches`],
//! the predicates `matches` uses). Nothing on the request path calls it.

use super::matcher::{Mismatch, RequestView};
use super::table::{ListenerTable, RouteEntry};

/// One route entry tried against a request.
#[derive(Debug)]
pub struct Trial<'t> {
    /// Index of the entry's virtual host in the listener (the IR's order).
    pub virtual_host: usize,
    /// The virtual host's place among those whose hostname matches the request's host, most
    /// specific first (the order the data plane tries them in); `None` when its hostname does
    /// not match the host, so the entry was never a candidate.
    pub hostname_rank: Option<usize>,
    /// Index of the entry in its virtual host: the IR's precedence order.
    pub position: usize,
    pub entry: &'t RouteEntry,
    /// The entry's conditions the request does not meet; empty when it matches.
    pub mismatches: Vec<Mismatch>,
}

impl Trial<'_> {
    /// Whether the data plane could choose it: its hostname matches and so does its match.
    pub fn holds(&self) -> bool {
        self.hostname_rank.is_some() && self.mismatches.is_empty()
    }
}

impl ListenerTable {
    /// Every entry of every virtual host of the listener, in the IR's order, tried against a
    /// request for `host` (normalised).
    pub fn trials(&self, host: &str, request: &RequestView<'_>) -> Vec<Trial<'_>> {
        let ranks: Vec<usize> = self.index.lookup_all(host).collect();
        let mut trials = Vec::new();
        for (v, vhost) in self.virtual_hosts.iter().enumerate() {
            let hostname_rank = ranks.iter().position(|&r| r == v);
            for (position, entry) in vhost.entries.iter().enumerate() {
                trials.push(Trial {
                    virtual_host: v,
                    hostname_rank,
                    position,
                    entry,
                    mismatches: entry.matcher.mismatches(request),
                });
            }
        }
        trials
    }
}

/// The entry the data plane picks from `trials`: of those that hold, the first in the most
/// specific virtual host. [`super::PortTable::lookup`] must agree (`explain`'s differential
/// test checks it over the route-matching corpus).
pub fn winner<'a, 't>(trials: &'a [Trial<'t>]) -> Option<&'a Trial<'t>> {
    trials
        .iter()
        .filter(|t| t.holds())
        .min_by_key(|t| (t.hostname_rank, t.position))
}
