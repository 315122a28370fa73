//! Endpoint choice for a cluster a BackendConfigPolicy governs (`LoadBalancerIr`): round
//! robin and least request with optional slow start, random, and Maglev consistent hashing.
//! A cluster without a policy does not have a [`Balancer`]: it keeps its plain round robin.
//!
//! Every algorithm chooses among the endpoints a [`Choosable`] allows, so which endpoints may
//! take traffic now (health) is decided apart from how one is chosen.

mod hash_key;
mod maglev;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;

pub use hash_key::RequestKey;
use maglev::Maglev;

use super::in_flight::Slot;
use gantry_translate::ir::{ConsistentHashIr, HashKeyIr, LoadBalancerIr};

/// A new endpoint's weight at the start of its slow start window; it grows linearly to 1 at
/// the window's end (Envoy's default minimum weight is also 10%).
const SLOW_START_MIN_WEIGHT: f64 = 0.1;

/// Random draws before a draw falls back to a scan (when few endpoints may be chosen).
const DRAWS: usize = 8;

/// Which endpoints may take traffic now, by index: endpoint health (see `upstream::health`),
/// read by a [`Choosable`] without a lock.
pub trait Availability: Sync {
    /// Whether endpoint `index` may take traffic now.
    fn available(&self, index: usize) -> bool;
}

/// Which endpoints of a cluster may be chosen now, by index.
#[derive(Clone, Copy)]
pub struct Choosable<'a> {
    count: usize,
    allowed: Allowed<'a>,
}

#[derive(Clone, Copy)]
enum Allowed<'a> {
    All,
    Listed(&'a [bool]),
    By(&'a dyn Availability),
}

impl std::fmt::Debug for Choosable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let allowed: Vec<usize> = (0..self.count).filter(|&i| self.allows(i)).collect();
        f.debug_struct("Choosable")
            .field("count", &self.count)
            .field("allowed", &allowed)
            .finish()
    }
}

impl<'a> Choosable<'a> {
    /// Every one of `count` endpoints.
    pub fn all(count: usize) -> Self {
        Self {
            count,
            allowed: Allowed::All,
        }
    }

    /// None at all (every choice is `None`).
    pub fn none() -> Self {
        Self::all(0)
    }

    /// The endpoints whose entry in `allowed` is `true`.
    pub fn only(allowed: &'a [bool]) -> Self {
        Self {
            count: allowed.len(),
            allowed: Allowed::Listed(allowed),
        }
    }

    /// The endpoints of `count` that `availability` says are available.
    pub fn available(count: usize, availability: &'a dyn Availability) -> Self {
        Self {
            count,
            allowed: Allowed::By(availability),
        }
    }

    /// Whether endpoint `i` may be chosen.
    pub fn allows(&self, i: usize) -> bool {
        i < self.count
            && match self.allowed {
                Allowed::All => true,
                Allowed::Listed(allowed) => allowed.get(i).copied().unwrap_or(false),
                Allowed::By(availability) => availability.available(i),
            }
    }

    /// The first allowed endpoint from `start` on, wrapping around.
    pub fn scan(&self, start: usize) -> Option<usize> {
        (0..self.count)
            .map(|offset| (start + offset) % self.count)
            .find(|&i| self.allows(i))
    }
}

/// What a balancer keeps per endpoint, carried from one configuration to the next by address.
#[derive(Debug)]
struct EndpointState {
    /// Requests (connections, for TCP and TLS routes) in flight from this replica.
    in_flight: Arc<AtomicU32>,
    /// When the endpoint joined the cluster; `None` for an endpoint present from the start
    /// (the proxy's first configuration, or the cluster's first appearance).
    added: Option<Instant>,
}

#[derive(Debug)]
enum Algorithm {
    RoundRobin,
    Random,
    LeastRequest,
    ConsistentHash { key: HashKeyIr, table: Arc<Maglev> },
}

/// The endpoint a balancer chose.
#[derive(Debug)]
pub struct Choice {
    /// Index into the cluster's endpoints.
    pub index: usize,
    /// The endpoint's in-flight count, held (least request only).
    pub slot: Option<Slot>,
    /// A `Set-Cookie` for the response (a consistent hash on a cookie the request lacked).
    pub set_cookie: Option<HeaderValue>,
}

/// A compiled load balancer.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    /// Per endpoint, in the cluster's order; empty unless least request or slow start needs it.
    states: Vec<EndpointState>,
    slow_start: Option<Duration>,
    /// The end of the last slow start window running at compile time; `None` when no endpoint
    /// is warming up.
    warm_until: Option<Instant>,
    /// The round-robin cursor.
    next: AtomicUsize,
}

impl Balancer {
    /// Compiles `ir` for endpoints named `names` (addresses, in the cluster's order). What
    /// `previous` (the same cluster's balancer before a reload) knew of an endpoint is kept:
    /// its requests in flight and when it joined. `previous_names` are the endpoints the
    /// cluster had before (with or without a balancer); `None`: the cluster is new.
    pub fn compile(
        ir: &LoadBalancerIr,
        names: &[String],
        previous: Option<&Balancer>,
        previous_names: Option<&[String]>,
        now: Instant,
    ) -> Self {
        let (algorithm, slow_start) = match ir {
            LoadBalancerIr::RoundRobin {
                slow_start_window_ms,
            } => (Algorithm::RoundRobin, *slow_start_window_ms),
            LoadBalancerIr::Random => (Algorithm::Random, None),
            LoadBalancerIr::LeastRequest {
                slow_start_window_ms,
                ..
            } => (Algorithm::LeastRequest, *slow_start_window_ms),
            LoadBalancerIr::ConsistentHash(ConsistentHashIr { key, table_size }) => {
                let table = previous
                    .and_then(|p| match &p.algorithm {
                        Algorithm::ConsistentHash { table, .. } => Some(table),
                        _ => None,
                    })
                    .filter(|t| t.is_built_from(names, *table_size))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Maglev::build(names, *table_size)));
                let key = key.clone();
                (Algorithm::ConsistentHash { key, table }, None)
            }
        };
        let slow_start = slow_start.filter(|ms| *ms > 0).map(Duration::from_millis);
        let needs_states = slow_start.is_some() || matches!(algorithm, Algorithm::LeastRequest);
        let mut states = Vec::new();
        if needs_states {
            let old: HashMap<&str, &EndpointState> = previous
                .zip(previous_names)
                .filter(|(p, _)| !p.states.is_empty())
                .map(|(p, names)| names.iter().map(String::as_str).zip(&p.states).collect())
                .unwrap_or_default();
            states = names
                .iter()
                .map(|name| match old.get(name.as_str()) {
                    Some(state) => EndpointState {
                        in_flight: state.in_flight.clone(),
                        added: state.added,
                    },
                    None => EndpointState {
                        in_flight: Arc::default(),
                        added: previous_names
                            .filter(|before| !before.contains(name))
                            .map(|_| now),
                    },
                })
                .collect();
        }
        let warm_until = slow_start.and_then(|window| {
            states
                .iter()
                .filter_map(|s| s.added)
                .max()
                .map(|added| added + window)
                .filter(|end| *end > now)
        });
        Self {
            algorithm,
            states,
            slow_start,
            warm_until,
            next: AtomicUsize::new(0),
        }
    }

    /// Chooses an endpoint for `request` among those `choosable` allows.
    pub fn choose(&self, choosable: Choosable<'_>, request: &RequestKey<'_>) -> Option<Choice> {
        let now = self.warm_until.map(|_| Instant::now());
        let mut set_cookie = None;
        let index = match &self.algorithm {
            Algorithm::RoundRobin => self.round_robin(choosable, now),
            Algorithm::Random => self.draw(choosable, now),
            Algorithm::LeastRequest => self.least_request(choosable, now),
            Algorithm::ConsistentHash { key, table } => {
                match hash_key::hash(key, request) {
                    Some(hash) => table.lookup(hash, |i| choosable.allows(i)),
                    None => match hash_key::new_cookie(key) {
                        Some((hash, cookie)) => {
                            set_cookie = Some(cookie);
                            table.lookup(hash, |i| choosable.allows(i))
                        }
                        // No key and no cookie to set: an endpoint at random.
                        None => self.draw(choosable, now),
                    },
                }
            }
        }?;
        Some(Choice {
            index,
            slot: self.slot(index),
            set_cookie,
        })
    }

    /// For a retry: an endpoint the algorithm chooses that `tried` does not hold, else the
    /// next allowed one in order that it does not hold (a consistent hash would choose the
    /// same endpoint again).
    pub fn choose_other(
        &self,
        choosable: Choosable<'_>,
        tried: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let now = self.warm_until.map(|_| Instant::now());
        let chosen = match &self.algorithm {
            Algorithm::RoundRobin => self.round_robin(choosable, now),
            Algorithm::Random => self.draw(choosable, now),
            Algorithm::LeastRequest => self.least_request(choosable, now),
            Algorithm::ConsistentHash { .. } => None,
        };
        if let Some(i) = chosen.filter(|&i| !tried(i)) {
            return Some(i);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..choosable.count)
            .map(|offset| (start + offset) % choosable.count)
            .find(|&i| choosable.allows(i) && !tried(i))
            .or_else(|| choosable.scan(start))
    }

    /// The in-flight count of endpoint `index`, taken, when the algorithm uses it.
    pub fn slot(&self, index: usize) -> Option<Slot> {
        match self.algorithm {
            Algorithm::LeastRequest => self.states.get(index).map(|s| Slot::take(&s.in_flight)),
            _ => None,
        }
    }

    /// The weight of endpoint `index` now: 1, or less while it warms up.
    fn weight(&self, index: usize, now: Option<Instant>) -> f64 {
        let (Some(now), Some(window)) = (now, self.slow_start) else {
            return 1.0;
        };
        match self.states.get(index).and_then(|s| s.added) {
            Some(added) => {
                let ramp =
                    now.saturating_duration_since(added).as_secs_f64() / window.as_secs_f64();
                ramp.clamp(SLOW_START_MIN_WEIGHT, 1.0)
            }
            None => 1.0,
        }
    }

    /// Whether endpoint `index` takes a turn offered to it: always, or, while it warms up,
    /// with a probability of its weight.
    fn accepts(&self, index: usize, now: Option<Instant>) -> bool {
        let weight = self.weight(index, now);
        weight >= 1.0 || fastrand::f64() < weight
    }

    /// The next endpoint in turn; one warming up takes its turn with the probability of its
    /// weight, and a turn it leaves goes to an endpoint drawn at random (so the turns it
    /// leaves spread over the others instead of all going to its neighbour).
    fn round_robin(&self, choosable: Choosable<'_>, now: Option<Instant>) -> Option<usize> {
        if choosable.count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = choosable.scan(start % choosable.count)?;
        if self.accepts(i, now) {
            Some(i)
        } else {
            self.draw(choosable, now)
        }
    }

    /// An endpoint at random, each taking its turn with a probability of its weight.
    fn draw(&self, choosable: Choosable<'_>, now: Option<Instant>) -> Option<usize> {
        if choosable.count == 0 {
            return None;
        }
        for _ in 0..DRAWS {
            let i = fastrand::usize(..choosable.count);
            if choosable.allows(i) && self.accepts(i, now) {
                return Some(i);
            }
        }
        choosable.scan(fastrand::usize(..choosable.count))
    }

    /// Power of two choices: of two endpoints drawn, the one with fewer requests in flight;
    /// a tie goes to the first.
    fn least_request(&self, choosable: Choosable<'_>, now: Option<Instant>) -> Option<usize> {
        let first = self.draw(choosable, now)?;
        let mut second = self.draw(choosable, now)?;
        if second == first && choosable.count > 1 {
            second = self.draw(choosable, now)?;
        }
        let load = |i: usize| {
            self.states
                .get(i)
                .map_or(0, |s| s.in_flight.load(Ordering::Relaxed))
        };
        Some(if load(second) < load(first) {
            second
        } else {
            first
        })
    }
}

#[cfg(test)]
mod tests;
