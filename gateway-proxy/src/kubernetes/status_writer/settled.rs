//! What the writer knows to be in place, per object version, so that unchanged objects are
//! neither compared with the live status nor sent again.

use std::collections::HashMap;

use serde_json::Value;

use super::entries::{Entries, Entry, Kind, Served, same_wish};
use gantry_translate::store::ObjectKey;

/// A status known to be in place for one version of an object: the resourceVersion read and
/// the status wanted (without times). Until the store shows another version, the same wish is
/// neither compared nor sent again, so a lagging store causes no repeated writes and an
/// unchanged object costs one lookup.
#[derive(Debug)]
pub(super) struct Settled<W> {
    pub version: String,
    pub wish: W,
}

impl<W> Settled<W> {
    /// `wish`, settled at the live object's resourceVersion.
    pub(super) fn at(live: &Value, wish: W) -> Self {
        let version = live["metadata"]["resourceVersion"].as_str().unwrap_or("");
        Self {
            version: version.to_owned(),
            wish,
        }
    }
}

/// A settled route or policy, with the last reconcile round that found it still ours to write.
#[derive(Debug)]
struct Marked {
    settled: Settled<Vec<Entry>>,
    round: u64,
}

/// Everything settled. Lookups borrow the store's keys, so checking an unchanged object
/// allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Gateways' wishes as JSON without times (there are few Gateways).
    gateways: HashMap<ObjectKey, Settled<Value>>,
    /// ListenerSets' wishes, the same way.
    listener_sets: HashMap<ObjectKey, Settled<Value>>,
    /// Routes and policies, one table per [`Kind`].
    entries: [HashMap<ObjectKey, Marked>; Kind::ALL.len()],
    /// The current reconcile round (see [`Ledger::start_round`]).
    round: u64,
}

impl Ledger {
    /// Whether `wish` is settled for this version of the Gateway.
    pub(super) fn gateway_settled(
        &self,
        key: &ObjectKey,
        version: Option<&str>,
        wish: &Value,
    ) -> bool {
        version.is_some_and(|version| {
            self.gateways
                .get(key)
                .is_some_and(|s| s.version == version && s.wish == *wish)
        })
    }

    pub(super) fn settle_gateway(&mut self, key: &ObjectKey, settled: Settled<Value>) {
        self.gateways.insert(key.clone(), settled);
    }

    /// Whether `wish` is settled for this version of the ListenerSet.
    pub(super) fn listener_set_settled(
        &self,
        key: &ObjectKey,
        version: Option<&str>,
        wish: &Value,
    ) -> bool {
        version.is_some_and(|version| {
            self.listener_sets
                .get(key)
                .is_some_and(|s| s.version == version && s.wish == *wish)
        })
    }

    pub(super) fn settle_listener_set(&mut self, key: &ObjectKey, settled: Settled<Value>) {
        self.listener_sets.insert(key.clone(), settled);
    }

    /// Forgets ListenerSets that have no status of ours any more.
    pub(super) fn retain_listener_sets(&mut self, keep: impl Fn(&ObjectKey) -> bool) {
        self.listener_sets.retain(|key, _| keep(key));
    }

    /// Forgets Gateways this proxy no longer serves.
    pub(super) fn retain_gateways(&mut self, served: &Served) {
        self.gateways.retain(|key, _| served.contains_key(key));
    }

    /// Starts a round: the routes and policies not checked with [`Ledger::entries_settled`]
    /// before [`Ledger::forget_unchecked`] are no longer ours to write, and are forgotten.
    pub(super) fn start_round(&mut self) {
        self.round += 1;
    }

    /// Whether `wish` is settled for this version of the object; either way, the object stays
    /// remembered this round.
    pub(super) fn entries_settled(
        &mut self,
        kind: Kind,
        key: &ObjectKey,
        version: Option<&str>,
        wish: Entries<'_>,
    ) -> bool {
        let Some(marked) = self.entries[kind.index()].get_mut(key) else {
            return false;
        };
        marked.round = self.round;
        version
            .is_some_and(|v| marked.settled.version == v && same_wish(&marked.settled.wish, wish))
    }

    /// Forgets one route or policy: gone, or no longer ours to write.
    pub(super) fn forget(&mut self, kind: Kind, key: &ObjectKey) {
        self.entries[kind.index()].remove(key);
    }

    /// Forgets the routes and policies not checked this round.
    pub(super) fn forget_unchecked(&mut self) {
        let round = self.round;
        for table in &mut self.entries {
            table.retain(|_, marked| marked.round == round);
        }
    }

    pub(super) fn settle_entries(
        &mut self,
        kind: Kind,
        key: ObjectKey,
        settled: Settled<Vec<Entry>>,
    ) {
        let round = self.round;
        self.entries[kind.index()].insert(key, Marked { settled, round });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn live(version: &str) -> Value {
        json!({ "metadata": { "resourceVersion": version } })
    }

    #[test]
    fn a_wish_is_settled_only_for_the_version_it_was_settled_at() {
        let mut ledger = Ledger::default();
        let key = ObjectKey::new("default", "r1");
        ledger.start_round();
        ledger.settle_entries(
            Kind::HttpRoute,
            key.clone(),
            Settled::at(&live("7"), Vec::new()),
        );
        let settled = |ledger: &mut Ledger, kind, version| {
            ledger.entries_settled(kind, &key, version, Entries::NONE)
        };
        assert!(settled(&mut ledger, Kind::HttpRoute, Some("7")));
        assert!(!settled(&mut ledger, Kind::HttpRoute, Some("8")));
        assert!(!settled(&mut ledger, Kind::HttpRoute, None));
        assert!(!settled(&mut ledger, Kind::GrpcRoute, Some("7")));
    }

    #[test]
    fn objects_not_checked_in_a_round_are_forgotten() {
        let mut ledger = Ledger::default();
        let (kept, dropped) = (
            ObjectKey::new("ns", "kept"),
            ObjectKey::new("ns", "dropped"),
        );
        ledger.start_round();
        for key in [&kept, &dropped] {
            ledger.settle_entries(
                Kind::TcpRoute,
                key.clone(),
                Settled::at(&live("1"), Vec::new()),
            );
        }
        ledger.start_round();
        // A version mismatch still counts as checked: the object is still ours to write.
        assert!(!ledger.entries_settled(Kind::TcpRoute, &kept, Some("2"), Entries::NONE));
        ledger.forget_unchecked();
        ledger.start_round();
        assert!(ledger.entries_settled(Kind::TcpRoute, &kept, Some("1"), Entries::NONE));
        assert!(!ledger.entries_settled(Kind::TcpRoute, &dropped, Some("1"), Entries::NONE));
    }
}
