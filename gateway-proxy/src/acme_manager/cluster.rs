//! What the manager needs from Kubernetes mode, implemented by `crate::kubernetes::acme`: the
//! fleet's shared ACME state, whether this replica is the one that orders, and writing what it
//! obtains back to the cluster. Standalone mode has none of this.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use tokio::sync::watch;

use crate::acme::SharedState;
use gantry_translate::store::ObjectKey;

/// An Event about a certificate, on each Gateway whose listeners name its Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateEvent {
    pub gateways: Vec<ObjectKey>,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// `CertificateIssued`, `CertificateRenewed` or `CertificateFailed`.
    pub reason: &'static str,
    pub note: String,
}

/// The cluster side of ACME in Kubernetes mode.
pub trait Cluster: Send + Sync + std::fmt::Debug + 'static {
    /// The account, orders in progress and challenge answers, shared by the fleet.
    fn state(&self) -> Arc<dyn SharedState>;
    /// True while this replica is the fleet's leader: only the leader orders.
    fn leading(&self) -> watch::Receiver<bool>;
    /// Writes an issued certificate's Secret; the error says why it could not be written.
    /// `take_over`: the Secret is a placeholder whose listener opted in, and its fields become
    /// ours even though someone else wrote them.
    fn write_secret(&self, secret: Secret, take_over: bool) -> BoxFuture<'_, Result<(), String>>;
    /// Publishes `event` (a failure to publish is only logged).
    fn publish(&self, event: CertificateEvent) -> BoxFuture<'_, ()>;
}
