//! Leader election for the operator: of several replicas, only the holder of a
//! `coordination.k8s.io/v1` Lease runs the controllers, so only one writes.
//!
//! The elector is `gantry_lease`, the one the proxy's status writer uses. A standby runs no
//! watch and no reconcile; it is ready (`/readyz`) and says `gantry_operator_leader 0`. When it
//! wins the Lease it starts the controllers, which list what they watch and reconcile every
//! object once. A leader that loses the Lease (another holder, or renewals failing for the
//! renew deadline, which is shorter than the lease duration) cancels its controllers at once,
//! before anyone else may take over, and [`lead`] returns [`Ended::Lost`]; the binary then
//! exits, and Kubernetes restarts it as a standby. On shutdown the leader cancels its
//! controllers and releases the Lease, so a standby takes over at its next try (the retry
//! period) instead of after the lease duration.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gantry_lease::{Elector, LeaseConfig};
use kube::Client;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How long shutdown waits to hand the Lease back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Lease the operator's replicas compete for and how it is held.
#[derive(Clone, Debug)]
pub struct Election {
    /// Namespace, name, this replica's identity, lease duration and retry period
    /// (`renew_every`: the holder renews and a standby tries that often).
    pub lease: LeaseConfig,
    /// A holder whose renewals have failed this long stops its controllers (below the lease
    /// duration, so it has stopped before a standby may take over).
    pub renew_deadline: Duration,
}

impl Election {
    /// `gantry-operator` in `namespace`, held as `identity`: 15 s leases, a 10 s renew deadline,
    /// tries every 2 s (client-go's defaults).
    pub fn new(namespace: String, identity: String) -> Self {
        Self {
            lease: LeaseConfig {
                namespace,
                name: "gantry-operator".to_string(),
                identity,
                duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(2),
            },
            renew_deadline: Duration::from_secs(10),
        }
    }
}

/// Why [`lead`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for (or the controllers stopped on their own); the Lease was released
    /// if held.
    Shutdown,
    /// The Lease was lost while leading; the controllers were cancelled.
    Lost,
}

/// Waits for the Lease, then runs `controllers` while it is held.
///
/// Returns once `shutdown` completes (releasing the Lease if held) or the Lease is lost. Either
/// way the controllers' future has been dropped before it returns: nothing more is written.
pub async fn lead<F, Fut>(
    client: Client,
    election: Election,
    metrics: Arc<Metrics>,
    controllers: F,
    shutdown: impl Future<Output = ()>,
) -> Ended
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let lease = format!("{}/{}", election.lease.namespace, election.lease.name);
    let elector = Elector::new(client.clone(), election.lease.clone())
        .with_renew_deadline(election.renew_deadline);
    let (leading_tx, mut leading) = watch::channel(false);
    let campaign = tokio::spawn(gantry_lease::run(elector, leading_tx));
    metrics.leading(false);
    tokio::pin!(shutdown);

    tracing::info!(%lease, identity = %election.lease.identity, "standing by for the Lease");
    let won = tokio::select! {
        won = leading.wait_for(|leads| *leads) => won.is_ok(),
        () = &mut shutdown => false,
    };
    let ended = if won {
        tracing::info!(%lease, "leading: controllers starting");
        metrics.leading(true);
        let mut running = tokio::spawn(controllers());
        let ended = tokio::select! {
            _ = leading.wait_for(|leads| !*leads) => Ended::Lost,
            () = &mut shutdown => Ended::Shutdown,
            _ = &mut running => Ended::Shutdown,
        };
        // Stop writing before anything else: the controllers' future is dropped here.
        running.abort();
        let _ = running.await;
        metrics.leading(false);
        ended
    } else {
        Ended::Shutdown
    };
    campaign.abort();
    let _ = campaign.await;
    match ended {
        Ended::Lost => tracing::error!(%lease, "lost the Lease: controllers stopped"),
        Ended::Shutdown => release(client, &election.lease).await,
    }
    ended
}

/// Hands the Lease back if this replica holds it; bounded, so an unreachable API server cannot
/// hold up shutdown (the Lease then expires).
async fn release(client: Client, lease: &LeaseConfig) {
    let mut elector = Elector::new(client, lease.clone());
    match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
        Ok(Ok(())) => tracing::info!("Lease released"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "Lease not released; a standby takes over when it expires");
        }
        Err(_) => tracing::warn!("Lease release timed out; a standby takes over when it expires"),
    }
}
