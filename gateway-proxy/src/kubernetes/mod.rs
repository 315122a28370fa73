//! Kubernetes mode: everything that talks to the API server, behind one [`Source`].
//!
//! - [`watch`]: one watch per kind, scoped to what the served Gateways need, publishing the
//!   complete object set on the same channel as the file source.
//! - [`status_writer`]: writes the control loop's statuses back onto Gateways, routes and
//!   BackendTLSPolicies, only what is ours and only when it changed.
//! - [`leader`]: a Lease (the elector is `gantry_lease`); only its holder writes status, every
//!   replica serves traffic.
//! - [`serving`]: each replica reports on its Pod what it serves; the leader decides from the
//!   fleet's reports whether a Gateway is `Programmed`.
//! - [`metrics`]: relists, watch errors, status writes and leadership.
//! - [`acme`]: ACME in Kubernetes mode (the leader orders; state in a Secret every replica
//!   watches; certificates written as the listeners' Secrets).
//!
//! Nothing outside this module has a Kubernetes client.

pub mod acme;
pub mod leader;
pub mod metrics;
pub mod serving;
pub mod status_writer;
pub mod watch;

use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch as channel;

use self::leader::{Elector, LeaseConfig};
use self::metrics::KubeMetrics;
use self::serving::FleetConfig;
use self::serving::verdict::{Fleet, Gate};
use self::status_writer::StatusWriter;
use self::watch::{Namespaced, Scope};
use crate::source::{Source, SourceError, SourceLink};
use gantry_translate::store::ObjectKey;
use gantry_translate::translate::{AddressAssignment, TranslateOptions};

/// How long shutdown waits to hand the Lease back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which Gateways a proxy serves, from `--gateway`, `--gateway-class` and `--watch-namespace`.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "give either --gateway or --gateway-class, not both (both only with --watch-namespace)"
    )]
    Both,
    #[error(
        "--watch-namespace needs --gateway-class: the GatewayClass cannot be read with a Role, so \
         the class served is given on the command line"
    )]
    NoClass,
    #[error("--gateway {0} is outside --watch-namespace {1}")]
    OutsideNamespace(String, String),
}

impl Scope {
    pub fn from_flags(
        gateways: &[ObjectKey],
        gateway_class: Option<&str>,
    ) -> Result<Self, ScopeError> {
        Ok(match (gateway_class, gateways) {
            (Some(_), [_, ..]) => return Err(ScopeError::Both),
            (Some(class), []) => Scope::Class(class.to_owned()),
            (None, []) => Scope::All,
            (None, gateways) => Scope::Gateways(gateways.to_vec()),
        })
    }

    /// The scope and, with `--watch-namespace`, the namespace and class a namespace-scoped
    /// proxy serves: `--gateway-class` is then required (it names the class, which cannot be
    /// read), and `--gateway`s, when given, narrow it to those Gateways of the namespace.
    pub fn from_flags_in(
        gateways: &[ObjectKey],
        gateway_class: Option<&str>,
        watch_namespace: Option<&str>,
    ) -> Result<(Self, Option<Namespaced>), ScopeError> {
        let Some(namespace) = watch_namespace else {
            return Ok((Self::from_flags(gateways, gateway_class)?, None));
        };
        let class = gateway_class.ok_or(ScopeError::NoClass)?;
        if let Some(outside) = gateways.iter().find(|k| k.namespace != namespace) {
            return Err(ScopeError::OutsideNamespace(
                format!("{}/{}", outside.namespace, outside.name),
                namespace.to_owned(),
            ));
        }
        let scope = match gateways {
            [] => Scope::Class(class.to_owned()),
            keys => Scope::Gateways(keys.to_vec()),
        };
        Ok((
            scope,
            Some(Namespaced {
                namespace: namespace.to_owned(),
                class: class.to_owned(),
            }),
        ))
    }

    /// The Lease this fleet's replicas elect their status writer with (the operator renders it
    /// with the fleet, under the same name).
    pub fn lease_name(&self) -> String {
        leader::lease_name(&self.lease_subject())
    }

    /// What the Lease of this fleet is named after.
    fn lease_subject(&self) -> String {
        match self {
            Scope::Class(class) => class.clone(),
            Scope::Gateways(keys) => gantry_lease::gateways_subject(
                keys.iter().map(|k| (k.namespace.as_str(), k.name.as_str())),
            ),
            Scope::All => "all".to_owned(),
        }
    }
}

/// Kubernetes mode's source: the watches, the status writer and the Lease of one proxy.
#[derive(Clone)]
pub struct KubeSource {
    client: ::kube::Client,
    scope: Scope,
    namespaced: Option<Namespaced>,
    lease: LeaseConfig,
    fleet: Option<FleetConfig>,
    metrics: KubeMetrics,
    /// Whether this replica holds the Lease, for what else only the leader does (ACME).
    leading: std::sync::Arc<channel::Sender<bool>>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("scope", &self.scope)
            .field("namespaced", &self.namespaced)
            .field("lease", &self.lease)
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

impl KubeSource {
    /// A source for `scope`, holding a Lease in `POD_NAMESPACE` (the client's default
    /// namespace otherwise) as `POD_NAME` (a random name otherwise).
    pub fn new(client: ::kube::Client, scope: Scope) -> Self {
        let namespace = std::env::var("POD_NAMESPACE")
            .unwrap_or_else(|_| client.default_namespace().to_owned());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("gantry-proxy-{}", uuid::Uuid::new_v4()));
        let lease = LeaseConfig::new(namespace, scope.lease_name(), identity);
        Self {
            client,
            scope,
            namespaced: None,
            lease,
            fleet: None,
            metrics: KubeMetrics::default(),
            leading: std::sync::Arc::new(channel::channel(false).0),
        }
    }

    /// ACME for this fleet: its state Secret (watched from now on), leadership, and the
    /// writes of certificates and Events.
    pub fn acme_cluster(&self) -> std::sync::Arc<dyn crate::acme_manager::Cluster> {
        let state =
            acme::KubeState::start(self.client.clone(), &self.lease.namespace, &self.lease.name);
        std::sync::Arc::new(acme::KubeAcme::new(
            self.client.clone(),
            state,
            self.leading.subscribe(),
            self.lease.identity.clone(),
        ))
    }

    /// The fleet this replica belongs to: it reports what it serves on its Pod and, while it
    /// leads, decides `Programmed` from the fleet's reports (`--fleet`).
    pub fn with_fleet(mut self, fleet: Option<FleetConfig>) -> Self {
        self.fleet = fleet;
        self
    }

    /// The namespace and Pod name this replica runs as (`POD_NAMESPACE`, `POD_NAME`).
    pub fn lease(&self) -> &LeaseConfig {
        &self.lease
    }

    /// Watches only `namespaced.namespace` and serves `namespaced.class` without reading it
    /// (`--watch-namespace`).
    pub fn in_namespace(mut self, namespaced: Option<Namespaced>) -> Self {
        self.namespaced = namespaced;
        self
    }

    /// Connects with the in-cluster configuration or `KUBECONFIG`.
    pub async fn connect(scope: Scope) -> Result<Self, ::kube::Error> {
        Ok(Self::new(::kube::Client::try_default().await?, scope))
    }

    /// Holds this Lease instead (tests: short durations).
    pub fn with_lease(mut self, lease: LeaseConfig) -> Self {
        self.lease = lease;
        self
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Source for KubeSource {
    fn translate_options(&self) -> TranslateOptions {
        TranslateOptions {
            gateways: match &self.scope {
                Scope::Gateways(keys) => Some(keys.clone()),
                _ => None,
            },
            namespace_labels: self.namespaced.is_none(),
            // The operator resolves parametersRef and owns `InvalidParameters`.
            parameters_refs: false,
            // A Gateway's own fleet gets its spec.addresses on its Service (the operator puts
            // them there); the Service of a fleet serving several Gateways is all of theirs.
            addresses: match &self.scope {
                Scope::Gateways(keys) if keys.len() == 1 => AddressAssignment::Any,
                _ => AddressAssignment::Shared,
            },
            ..TranslateOptions::default()
        }
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    async fn run(self, mut link: SourceLink) -> Result<(), SourceError> {
        let controller_name = self.translate_options().controller_name;
        let lease_id = format!("{}/{}", self.lease.namespace, self.lease.name);
        let (leading_tx, leading_rx) = channel::channel(false);
        let mut elector = Elector::new(self.client.clone(), self.lease.clone());
        let election = tokio::spawn(leader::run(
            Elector::new(self.client.clone(), self.lease),
            leading_tx,
        ));
        let shared_leading = self.leading.clone();
        let leadership = tokio::spawn(count_leadership(
            leading_rx.clone(),
            self.metrics.clone(),
            lease_id,
            self.leading.clone(),
        ));
        let configured = match &self.scope {
            Scope::Gateways(keys) => keys.clone(),
            _ => Vec::new(),
        };
        let mut writer = StatusWriter::new(self.client.clone(), controller_name, configured)
            .with_metrics(self.metrics.clone());
        let mut serving = Vec::new();
        if let Some(fleet) = self.fleet {
            if let Some(pod) = fleet.pod.clone() {
                serving.push(tokio::spawn(serving::publish::run(
                    self.client.clone(),
                    pod,
                    link.statuses.clone(),
                )));
            }
            let (fleet_tx, fleet_rx) = channel::channel(std::sync::Arc::new(Fleet::default()));
            serving.push(tokio::spawn(serving::fleet::run(
                self.client.clone(),
                fleet.namespace,
                fleet.name,
                leading_rx.clone(),
                fleet_tx,
            )));
            writer = writer.with_fleet(
                Gate::new(fleet.policy, serving::report::OWN_VERSION),
                fleet_rx,
            );
        }
        let status = tokio::spawn(status_writer::run(
            writer,
            link.statuses,
            link.updates.subscribe(),
            leading_rx,
        ));
        let outcome: Result<(), SourceError> = tokio::select! {
            result = watch::run_in(self.client, self.scope, self.namespaced, link.updates, link.metrics, self.metrics) => match result {
                Ok(()) => Err("the Kubernetes source stopped".into()),
                Err(error) => Err(error.into()),
            },
            _ = link.shutdown.wait_for(|draining| *draining) => Ok(()),
        };
        election.abort();
        status.abort();
        leadership.abort();
        shared_leading.send_replace(false);
        for task in serving {
            task.abort();
        }
        // Hand the Lease over so another replica writes status at once; bounded, so an
        // unreachable API server cannot hold up draining.
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "Lease not released; another replica takes over when it expires");
            }
            Err(_) => {
                tracing::warn!(
                    "Lease release timed out; another replica takes over when it expires"
                )
            }
        }
        outcome
    }
}

/// Keeps `gantry_kube_leader`, and what else follows leadership, in step with the election.
async fn count_leadership(
    mut leading: channel::Receiver<bool>,
    metrics: KubeMetrics,
    lease: String,
    shared: std::sync::Arc<channel::Sender<bool>>,
) {
    loop {
        let now = *leading.borrow_and_update();
        metrics.leading(&lease, now);
        shared.send_if_modified(|held| std::mem::replace(held, now) != now);
        if leading.changed().await.is_err() {
            shared.send_replace(false);
            return;
        }
    }
}
