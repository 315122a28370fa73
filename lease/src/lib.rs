//! Leader election over a `coordination.k8s.io/v1` Lease, shared by the proxy (one replica of a
//! fleet writes status) and the operator (one replica runs the controllers).
//!
//! The holder renews every [`LeaseConfig::renew_every`]; another replica takes over once the
//! Lease has not been renewed for [`LeaseConfig::duration`], measured on its own clock from the
//! moment it last saw the record change (as client-go does, so clock skew does not matter).
//! A holder that cannot renew within the duration (or the shorter renew deadline,
//! [`Elector::with_renew_deadline`]) steps down on its own. [`Elector::release`] hands the
//! Lease back on shutdown, so another replica takes over at its next try.

use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, PostParams};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::instrument;

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (`POD_NAME`).
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// 15 s leases renewed every 5 s.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// The Lease name for a fleet: `gantry-proxy-<what it serves>`, a valid object name.
pub fn lease_name(serves: &str) -> String {
    let mut name: String = format!("gantry-proxy-{serves}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// The subject [`lease_name`] names a fleet's Lease after when it serves these Gateways
/// (`namespace`, `name`): `<namespace>.<name>`, joined by dots. The proxy holds it, the operator
/// deletes it with the fleet.
pub fn gateways_subject<'a>(gateways: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    gateways
        .into_iter()
        .map(|(namespace, name)| format!("{namespace}.{name}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Why one attempt to acquire or renew failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: Box<::kube::Error>,
    },
}

/// Holds or watches for the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The last record seen (holder, renewTime) and when, on our clock.
    observed: Option<(String, Option<MicroTime>, Instant)>,
    /// When this replica last renewed successfully.
    renewed: Option<Instant>,
    /// How long after its last successful renewal a holder that cannot renew still leads
    /// (at most the duration).
    renew_deadline: Duration,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            renew_deadline: config.duration,
            config,
            observed: None,
            renewed: None,
        }
    }

    /// Steps down once renewals have failed for `deadline` (capped at the lease duration), so a
    /// holder stops acting before another replica may take over (client-go's `RenewDeadline`).
    pub fn with_renew_deadline(mut self, deadline: Duration) -> Self {
        self.renew_deadline = deadline.min(self.config.duration);
        self
    }

    /// The Lease this elector holds or watches for.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One round: acquire, renew or observe. Returns whether this replica leads now.
    #[instrument(skip(self), fields(lease = %self.config.name, identity = %self.config.identity))]
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let now = Instant::now();
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => self.won(now),
                Err(::kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(self.error(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = (holder.clone(), spec.renew_time.clone());
        if self
            .observed
            .as_ref()
            .is_none_or(|(h, r, _)| (h, r) != (&record.0, &record.1))
        {
            self.observed = Some((record.0, record.1, now));
        }
        let ours = holder == self.config.identity;
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.duration, Duration::from_secs);
        let expired = holder.is_empty()
            || self
                .observed
                .as_ref()
                .is_some_and(|(_, _, seen)| now.duration_since(*seen) >= duration);
        if !ours && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(if ours {
            self.spec(transitions, spec.acquire_time)
        } else {
            tracing::info!(previous = %holder, "taking over the expired Lease");
            self.spec(transitions + 1, None)
        });
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => self.won(now),
            Err(::kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Hands the Lease back (on shutdown) so another replica takes over at once.
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        lease.spec = Some(spec);
        self.renewed = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Whether a failed renewal still leaves this replica within its last lease.
    pub fn still_holds(&self) -> bool {
        self.renewed
            .is_some_and(|at| at.elapsed() < self.renew_deadline)
    }

    fn won(&mut self, at: Instant) -> Result<bool, LeaseError> {
        self.renewed = Some(at);
        self.observed = None;
        Ok(true)
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: i32::try_from(self.config.duration.as_secs()).ok(),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn error(&self, source: ::kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source: Box::new(source),
        }
    }
}

/// Runs the election until `leading` has no receiver, publishing whether this replica leads.
pub async fn run(mut elector: Elector, leading: watch::Sender<bool>) {
    loop {
        let leads = match elector.try_acquire_or_renew().await {
            Ok(leads) => leads,
            Err(error) => {
                let holds = elector.still_holds();
                tracing::warn!(%error, still_leading = holds, "Lease not renewed");
                holds
            }
        };
        let was = leading.send_replace(leads);
        if was != leads {
            tracing::info!(leading = leads, "leadership changed");
        }
        if leading.is_closed() {
            return;
        }
        // A leader renews on schedule; a follower checks as often, to notice expiry in time.
        tokio::time::sleep(elector.config.renew_every).await;
    }
}
