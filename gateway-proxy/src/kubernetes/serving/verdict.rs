//! The leader's verdict on one Gateway from its fleet's reports: whether enough ready replicas
//! serve its current generation (`Programmed`), and which versions they run
//! (`gantry.dev/ProxyVersions`). Pure: the fleet and the time come in as values.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report::{ServingReport, Skew, skew};
use gantry_translate::status::{Condition, ObjectStatus, StatusBody};

/// The Gateway condition listing the versions the ready replicas run.
pub const PROXY_VERSIONS: &str = "gantry.dev/ProxyVersions";
const PROGRAMMED: &str = "Programmed";

/// One Pod of the fleet, as the leader sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    pub name: String,
    /// Pod condition `Ready=True` and not terminating.
    pub ready: bool,
    pub report: Option<Arc<ServingReport>>,
}

/// The fleet's Pods and how many replicas its Deployment wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    /// Every Pod has been listed at least once since this replica started leading.
    pub synced: bool,
    /// Why the Pods could not be listed, while they cannot be (`synced` is false).
    pub error: Option<String>,
    /// The Pods that are not terminating.
    pub replicas: Vec<Replica>,
    /// The Deployment's `spec.replicas` (an HPA changes it); `None` when it cannot be read.
    pub desired: Option<i32>,
}

/// How many replicas must serve a generation, and how long that may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `--programmed-min-replicas`; all desired replicas when unset.
    pub min_replicas: Option<u32>,
    /// `--programmed-timeout`: `Pending` turns into `NoResources` after it.
    pub timeout: Duration,
}

/// What the fleet's ready replicas serve of one Gateway.
#[derive(Debug, PartialEq)]
pub struct Tally {
    pub generation: i64,
    pub required: usize,
    pub ready: usize,
    /// Ready replicas of a supported version serving `generation`.
    pub serving: usize,
    /// Ready replicas of a supported version serving another generation, by generation.
    pub other: BTreeMap<i64, usize>,
    /// Ready replicas reporting nothing for this Gateway.
    pub silent: usize,
    /// Ready replicas whose version is not supported next to the leader's: never counted.
    pub unsupported: usize,
    /// Versions of the ready replicas that report, with their counts.
    pub versions: BTreeMap<String, usize>,
    pub skew: Skew,
}

impl Tally {
    pub fn of(fleet: &Fleet, gateway: &str, generation: i64, own: &str, policy: &Policy) -> Self {
        let desired = fleet
            .desired
            .and_then(|d| usize::try_from(d).ok())
            .unwrap_or(fleet.replicas.len());
        let required = policy
            .min_replicas
            .map_or(desired, |m| m as usize)
            // A fleet scaled to nothing serves nothing.
            .max(1);
        let mut tally = Tally {
            generation,
            required,
            ready: 0,
            serving: 0,
            other: BTreeMap::new(),
            silent: 0,
            unsupported: 0,
            versions: BTreeMap::new(),
            skew: Skew::Same,
        };
        for replica in fleet.replicas.iter().filter(|r| r.ready) {
            tally.ready += 1;
            let Some(report) = &replica.report else {
                tally.silent += 1;
                continue;
            };
            *tally.versions.entry(report.version.clone()).or_default() += 1;
            let skew = skew(own, &report.version);
            tally.skew = tally.skew.max(skew);
            if skew == Skew::Unsupported {
                tally.unsupported += 1;
                continue;
            }
            match report.gateways.get(gateway) {
                Some(g) if *g == generation => tally.serving += 1,
                Some(g) => *tally.other.entry(*g).or_default() += 1,
                None => tally.silent += 1,
            }
        }
        tally
    }

    pub fn enough(&self) -> bool {
        self.serving >= self.required
    }

    /// "2 of 3 ready replicas serve generation 7 (1 serves 6); 3 required".
    pub fn message(&self) -> String {
        // The verb agrees with the count: "1 serves", "2 serve".
        let verb =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut notes: Vec<String> = self
            .other
            .iter()
            .rev()
            .map(|(g, n)| format!("{} {g}", verb(*n, "serves", "serve")))
            .collect();
        if self.silent > 0 {
            notes.push(verb(self.silent, "reports nothing", "report nothing"));
        }
        if self.unsupported > 0 {
            notes.push(verb(
                self.unsupported,
                "runs an unsupported version",
                "run an unsupported version",
            ));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        format!(
            "{} of {} ready replicas serve generation {}{notes}; {} required",
            self.serving, self.ready, self.generation, self.required
        )
    }

    /// "0.1.0 ×2, 0.0.9 ×1": most common first.
    pub fn versions_text(&self) -> String {
        let mut versions: Vec<(&String, &usize)> = self.versions.iter().collect();
        versions.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let text: Vec<String> = versions.iter().map(|(v, n)| format!("{v} ×{n}")).collect();
        if text.is_empty() {
            "no ready replica reports a version".to_owned()
        } else {
            text.join(", ")
        }
    }
}

/// Turns the translation's Gateway statuses into what the fleet makes true, remembering since
/// when each Gateway has been waiting for its replicas.
#[derive(Debug)]
pub struct Gate {
    pub policy: Policy,
    own: String,
    /// Gateway → (the generation waited for, since when).
    waiting: HashMap<String, (i64, Instant)>,
}

impl Gate {
    pub fn new(policy: Policy, own: &str) -> Self {
        Self {
            policy,
            own: own.to_owned(),
            waiting: HashMap::new(),
        }
    }

    /// `statuses` with each Gateway's `Programmed` decided by the fleet and a
    /// `gantry.dev/ProxyVersions` condition added; the next time a verdict changes by itself
    /// (a `Pending` that times out), if any.
    pub fn apply(
        &mut self,
        statuses: &[ObjectStatus],
        fleet: &Fleet,
        now: Instant,
    ) -> (Vec<ObjectStatus>, Option<Instant>) {
        let mut out = statuses.to_vec();
        let mut next = None;
        let mut seen = Vec::new();
        for object in &mut out {
            if object.kind != "Gateway" {
                continue;
            }
            let StatusBody::Gateway(status) = &mut object.status else {
                continue;
            };
            let key = format!("{}/{}", object.namespace, object.name);
            let Some(programmed) = status.conditions.iter().position(|c| c.type_ == PROGRAMMED)
            else {
                continue;
            };
            let generation = status.conditions[programmed].observed_generation;
            if let (false, Some(error)) = (fleet.synced, &fleet.error) {
                let condition = &mut status.conditions[programmed];
                if condition.status == "True" {
                    condition.status = "False".into();
                    condition.reason = "Pending".into();
                    condition.message = format!(
                        "the fleet's Pods cannot be read, so whether its replicas serve \
                         generation {generation} is unknown: {error} (the proxies' \
                         leader-election Role grants pods get, list, watch and patch in their \
                         namespace)"
                    )
                    .into();
                }
                continue;
            }
            let tally = Tally::of(fleet, &key, generation, &self.own, &self.policy);
            status
                .conditions
                .push(versions_condition(&tally, &status.conditions[programmed]));
            seen.push(key.clone());
            let condition = &mut status.conditions[programmed];
            // The translation's own reasons (Invalid, AddressNotAssigned, ...) win.
            if condition.status != "True" {
                self.waiting.remove(&key);
                continue;
            }
            if tally.enough() {
                self.waiting.remove(&key);
                condition.message = format!("{}: {}", condition.message, tally.message()).into();
                continue;
            }
            let since = match self.waiting.get(&key) {
                Some((g, since)) if *g == generation => *since,
                _ => {
                    self.waiting.insert(key.clone(), (generation, now));
                    now
                }
            };
            let deadline = since + self.policy.timeout;
            // Gateway API: Programmed=False with `Pending` while the data plane is being
            // configured, `NoResources` when there are not enough resources to serve it.
            let reason = if now >= deadline {
                "NoResources"
            } else {
                next = Some(next.map_or(deadline, |n: Instant| n.min(deadline)));
                "Pending"
            };
            condition.status = "False".into();
            condition.reason = reason.into();
            condition.message = tally.message().into();
        }
        self.waiting.retain(|key, _| seen.contains(key));
        (out, next)
    }
}

fn versions_condition(tally: &Tally, programmed: &Condition) -> Condition {
    let reason = match tally.skew {
        Skew::Same => "Consistent",
        Skew::Supported => "Skewed",
        Skew::Unsupported => "UnsupportedSkew",
    };
    Condition {
        type_: PROXY_VERSIONS.into(),
        status: "True".into(),
        reason: reason.into(),
        message: tally.versions_text().into(),
        observed_generation: programmed.observed_generation,
        last_transition_time: programmed.last_transition_time.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn replica(name: &str, ready: bool, version: &str, generation: Option<i64>) -> Replica {
        Replica {
            name: name.into(),
            ready,
            report: Some(Arc::new(ServingReport {
                version: version.into(),
                gateways: generation
                    .map(|g| BTreeMap::from([("ns/gw".to_owned(), g)]))
                    .unwrap_or_default(),
            })),
        }
    }

    fn all() -> Policy {
        Policy {
            min_replicas: None,
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn every_desired_replica_must_serve_the_generation() {
        let fleet = Fleet {
            synced: true,
            error: None,
            replicas: vec![
                replica("a", true, "0.1.0", Some(7)),
                replica("b", true, "0.1.0", Some(7)),
                replica("c", true, "0.1.0", Some(6)),
                replica("d", false, "0.1.0", Some(7)),
            ],
            desired: Some(3),
        };
        let tally = Tally::of(&fleet, "ns/gw", 7, "0.1.0", &all());
        assert!(!tally.enough());
        assert_eq!(
            tally.message(),
            "2 of 3 ready replicas serve generation 7 (1 serves 6); 3 required"
        );
        let one = Policy {
            min_replicas: Some(2),
            ..all()
        };
        assert!(Tally::of(&fleet, "ns/gw", 7, "0.1.0", &one).enough());
    }

    #[test]
    fn replicas_too_far_apart_are_not_counted() {
        let fleet = Fleet {
            synced: true,
            error: None,
            replicas: vec![
                replica("a", true, "0.1.0", Some(7)),
                replica("b", true, "0.0.9", Some(7)),
                replica("c", true, "0.3.0", Some(7)),
            ],
            desired: Some(2),
        };
        let tally = Tally::of(&fleet, "ns/gw", 7, "0.1.0", &all());
        assert_eq!(tally.serving, 2);
        assert_eq!(tally.skew, Skew::Unsupported);
        assert_eq!(tally.versions_text(), "0.0.9 ×1, 0.1.0 ×1, 0.3.0 ×1");
    }

    fn gateway(status: &'static str, reason: &'static str) -> ObjectStatus {
        ObjectStatus {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "Gateway".into(),
            namespace: "ns".into(),
            name: "gw".into(),
            status: StatusBody::Gateway(Box::new(gantry_translate::status::GatewayStatus {
                addresses: Vec::new(),
                attached_listener_sets: None,
                conditions: vec![Condition {
                    type_: PROGRAMMED.into(),
                    status: status.into(),
                    reason: reason.into(),
                    message: "from the translation".into(),
                    observed_generation: 7,
                    last_transition_time: Default::default(),
                }],
                listeners: Vec::new(),
            })),
        }
    }

    fn programmed(statuses: &[ObjectStatus]) -> (String, String, String) {
        let StatusBody::Gateway(status) = &statuses[0].status else {
            panic!("not a Gateway");
        };
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == PROGRAMMED)
            .unwrap();
        (
            c.status.to_string(),
            c.reason.to_string(),
            c.message.to_string(),
        )
    }

    #[test]
    fn pending_turns_into_no_resources_at_the_timeout_and_the_translation_wins() {
        let fleet = Fleet {
            synced: true,
            error: None,
            replicas: vec![replica("a", true, "0.1.0", Some(6))],
            desired: Some(1),
        };
        let mut gate = Gate::new(all(), "0.1.0");
        let start = Instant::now();
        let (out, next) = gate.apply(&[gateway("True", "Programmed")], &fleet, start);
        assert_eq!(programmed(&out).1, "Pending");
        assert_eq!(next, Some(start + Duration::from_secs(60)));
        // Still the same generation waited for: the clock runs from the first verdict.
        let later = start + Duration::from_secs(61);
        let (out, next) = gate.apply(&[gateway("True", "Programmed")], &fleet, later);
        assert_eq!(programmed(&out).1, "NoResources");
        assert_eq!(next, None);
        // The translation's own False reasons are kept as they are.
        let (out, _) = gate.apply(&[gateway("False", "Invalid")], &fleet, later);
        assert_eq!(
            programmed(&out),
            (
                "False".into(),
                "Invalid".into(),
                "from the translation".into()
            )
        );
    }
}
