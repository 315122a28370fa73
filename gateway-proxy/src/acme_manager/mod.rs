//! The ACME manager: a stage between the source and the control loop that gives listeners
//! the certificates they name but nobody created.
//!
//! For every source update it asks the translator's [`wanted_certificates`] which
//! `certificateRefs` Secrets of served HTTPS listeners are missing. A certificate already in
//! the storage directory (`--acme-dir`) is added to the update as the `kubernetes.io/tls`
//! Secret the listener names, so the listener serves it as any other; one that is not yet
//! there is ordered in the background, and meanwhile the update carries an
//! [`AcmeCertificate`] so the listener's `ResolvedRefs` says the certificate is being
//! ordered (or why the last order failed). When an order finishes, the latest update is sent
//! again with the new Secret: the listener serves from its next handshake on, and connections
//! already open are untouched. Renewal is the same, ahead of expiry, with the old certificate
//! served until the new one exists.
//!
//! One order per Secret at a time; after a failure the next waits ([`schedule::backoff`]).
//!
//! In Kubernetes mode ([`Cluster`]) the state is the fleet's (account, orders in progress and
//! challenge answers in one Secret every replica watches), only the fleet's leader orders, and
//! an issued certificate is written as the listener's own Secret, which every replica then
//! serves through its watch; the leader renews it in place, and publishes an Event on the
//! Gateways for each issuance and failure.

mod certificate;
pub mod cluster;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::time::Instant;

use self::certificate::{Current, current, current_in_secret, unix, validity};
pub use self::cluster::{CertificateEvent, Cluster};
use crate::acme::schedule;
use crate::acme::{
    AcmeClient, AcmeConfig, AcmeError, AcmeOptions, AcmeStore, ChallengeKind, Challenges, Issued,
};
use crate::source::SourceUpdate;
use crate::telemetry::acme::AcmeMetrics;
use gantry_translate::store::{AcmeCertificate, ObjectKey, Store};
use gantry_translate::translate::TranslateOptions;
use gantry_translate::translate::acme::wanted_certificates;

/// The least wait after a `rateLimited` answer, which comes without a usable Retry-After.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(15 * 60);

pub use gantry_translate::translate::acme::ISSUER_ANNOTATION;

/// How long the leader serves the Secret it wrote before its own watch shows it; a Secret
/// still missing after that was deleted, and is ordered again.
const WRITTEN_GRACE: Duration = Duration::from_secs(60);

/// A finished order.
struct Finished {
    secret: ObjectKey,
    hostname: String,
    result: Result<Issued, AcmeError>,
}

/// One managed certificate Secret.
struct Managed {
    hostname: String,
    current: Option<Current>,
    ordering: bool,
    failures: u32,
    /// No order before this, after a failure.
    not_before: Option<Instant>,
    last_error: Option<String>,
    /// The Gateways whose listeners name the Secret.
    gateways: Vec<ObjectKey>,
    /// When this replica last wrote the Secret (Kubernetes mode).
    written: Option<Instant>,
    /// The order in progress replaces a certificate (decided when it starts: in Kubernetes
    /// mode the written Secret may come back through the watch before the order's end).
    renewal: bool,
    /// The Secret is the user's, served until the first certificate replaces it (a listener
    /// opted in): the write takes its fields over.
    placeholder: bool,
}

impl Managed {
    /// An order should start now.
    fn due(&self, now: SystemTime, instant: Instant) -> bool {
        if self.ordering || self.not_before.is_some_and(|t| instant < t) {
            return false;
        }
        match &self.current {
            None => true,
            Some(current) => now >= current.renew_at,
        }
    }

    /// When [`Managed::due`] may next become true.
    fn wake_at(&self, now: SystemTime, instant: Instant) -> Option<Instant> {
        if self.ordering {
            return None;
        }
        let renew = self
            .current
            .as_ref()
            .map(|c| instant + c.renew_at.duration_since(now).unwrap_or(Duration::ZERO));
        match (renew, self.not_before) {
            (Some(r), Some(n)) => Some(r.max(n)),
            (Some(r), None) => Some(r),
            (None, n) => n,
        }
    }
}

/// The manager; run by [`Manager::run`] as its own task.
pub struct Manager {
    options: AcmeOptions,
    translate: TranslateOptions,
    store: AcmeStore,
    challenges: Challenges,
    client: Arc<OnceCell<AcmeClient>>,
    certificates: HashMap<ObjectKey, Managed>,
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: mpsc::UnboundedReceiver<Finished>,
    metrics: AcmeMetrics,
    cluster: Option<Arc<dyn Cluster>>,
    /// Whether this replica orders (always in standalone mode).
    leading: Option<watch::Receiver<bool>>,
}

impl Manager {
    /// Opens the storage directory, or uses the cluster's state. `challenges` are the
    /// answers the data plane serves ([`Manager::challenges`]).
    pub fn new(
        options: AcmeOptions,
        translate: TranslateOptions,
        challenges: Challenges,
        metrics: AcmeMetrics,
        cluster: Option<Arc<dyn Cluster>>,
    ) -> std::io::Result<Self> {
        let store = store(&options, cluster.as_ref())?;
        let leading = cluster.as_ref().map(|c| c.leading());
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Ok(Self {
            options,
            translate,
            store,
            challenges,
            client: Arc::new(OnceCell::new()),
            certificates: HashMap::new(),
            finished_tx,
            finished_rx,
            metrics,
            cluster,
            leading,
        })
    }

    /// The challenge answers to give the data plane, sharing the store so that a token
    /// another process (another replica) published is answered too.
    pub fn challenges(
        options: &AcmeOptions,
        cluster: Option<&Arc<dyn Cluster>>,
    ) -> std::io::Result<Challenges> {
        Ok(Challenges::new(Some(store(options, cluster)?)))
    }

    /// This replica may order now.
    fn orders(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| *l.borrow())
    }

    /// Follows `input` (the source) and publishes on `output` (the control loop) until the
    /// source goes away.
    pub async fn run(
        mut self,
        mut input: watch::Receiver<Option<SourceUpdate>>,
        output: watch::Sender<Option<SourceUpdate>>,
    ) {
        let mut latest: Option<SourceUpdate> = None;
        let mut leading = self.leading.clone();
        loop {
            let wake = self.wake_at();
            tokio::select! {
                changed = input.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    latest = input.borrow_and_update().clone();
                }
                Some(finished) = self.finished_rx.recv() => self.finished(finished),
                // Leadership changed: a new leader orders what is due.
                Ok(()) = leadership_changed(&mut leading) => {}
                () = sleep_until(wake) => {}
            }
            if let Some(update) = &latest {
                output.send_replace(Some(self.augment(update)));
            }
        }
    }

    /// The earliest time an order may be due.
    fn wake_at(&self) -> Option<Instant> {
        let (now, instant) = (SystemTime::now(), Instant::now());
        self.certificates
            .values()
            .filter_map(|m| m.wake_at(now, instant))
            .min()
    }

    /// `update` with the managed certificates added and due orders started.
    fn augment(&mut self, update: &SourceUpdate) -> SourceUpdate {
        let SourceUpdate::Objects { store, warnings } = update else {
            // The source's input is invalid and the last good configuration serves: its
            // certificates are still renewed (and used with the next valid input).
            let (now, instant) = (SystemTime::now(), Instant::now());
            let mut start = Vec::new();
            let orders = self.orders();
            for (key, managed) in &mut self.certificates {
                if orders && managed.due(now, instant) {
                    managed.ordering = true;
                    managed.renewal = managed.current.is_some();
                    start.push((key.clone(), managed.hostname.clone()));
                }
            }
            for (key, hostname) in start {
                self.start_order(key, hostname);
            }
            return update.clone();
        };
        let mut wanted = wanted_certificates(store, &self.translate);
        if self.cluster.is_none() {
            // Standalone: a Secret in the files is the user's, whatever it says.
            wanted.retain(|_, w| !w.issued);
        }
        // A Secret no longer wanted (created by someone, or its listener gone) is forgotten;
        // its files stay for a later listener of the same hostname.
        let metrics = &self.metrics;
        self.certificates.retain(|key, managed| {
            let keep = wanted
                .get(key)
                .is_some_and(|w| w.hostname.as_deref() == Some(managed.hostname.as_str()));
            if !keep {
                metrics.remove_expiry(&key.to_string(), &managed.hostname);
            }
            keep
        });
        if wanted.is_empty() {
            return update.clone();
        }
        let mut next = Store::clone(store);
        let (now, instant) = (SystemTime::now(), Instant::now());
        let mut start = Vec::new();
        let orders = self.orders();
        for (key, want) in wanted {
            let hostname = match (want.hostname, want.problem) {
                (Some(hostname), None) => hostname,
                (hostname, problem) => {
                    next.acme_certificates.insert(
                        key,
                        AcmeCertificate {
                            hostname: hostname.unwrap_or_default(),
                            failed: true,
                            message: problem.unwrap_or_default(),
                            needs_tls_port: false,
                        },
                    );
                    continue;
                }
            };
            let managed = self
                .certificates
                .entry(key.clone())
                .or_insert_with(|| load(&self.store, &key, &hostname, &self.options, metrics));
            managed.gateways = want.gateways;
            managed.placeholder = want.placeholder;
            // Kubernetes mode: the Secret in the cluster is the certificate.
            if self.cluster.is_some() {
                refresh_from_cluster(managed, store, &key, want.issued, &self.options, metrics);
            }
            if orders && managed.due(now, instant) {
                managed.ordering = true;
                managed.renewal = managed.current.is_some();
                start.push((key.clone(), hostname.clone()));
            }
            match &managed.current {
                // Already in the store when the cluster has it.
                Some(_) if want.issued => {}
                Some(current) => {
                    next.secrets.insert(key, current.secret.clone());
                }
                // The user's Secret serves until the first certificate.
                None if want.placeholder => {}
                None => {
                    let message = pending_message(managed, &self.options.config);
                    next.acme_certificates.insert(
                        key,
                        AcmeCertificate {
                            hostname,
                            failed: managed.last_error.is_some(),
                            message,
                            needs_tls_port: self.options.config.challenge
                                == ChallengeKind::TlsAlpn01,
                        },
                    );
                }
            }
        }
        for (key, hostname) in start {
            self.start_order(key, hostname);
        }
        SourceUpdate::Objects {
            store: Arc::new(next),
            warnings: warnings.clone(),
        }
    }

    fn start_order(&self, secret: ObjectKey, hostname: String) {
        let (client, options, store, challenges) = (
            self.client.clone(),
            self.options.config.clone(),
            self.store.clone(),
            self.challenges.clone(),
        );
        let finished = self.finished_tx.clone();
        let renew_before = self.options.renew_before;
        let cluster = self.cluster.clone();
        let acme_options = self.options.clone();
        let take_over = self
            .certificates
            .get(&secret)
            .is_some_and(|m| m.placeholder);
        tokio::spawn(async move {
            let result = async {
                // One order per hostname among the processes sharing the directory: wait for
                // the right to order, then use what another process obtained meanwhile.
                let lock = {
                    let (store, hostname) = (store.clone(), hostname.clone());
                    tokio::task::spawn_blocking(move || store.lock_orders(&hostname))
                        .await
                        .map_err(|e| AcmeError::new(format!("ACME storage lock: {e}")))?
                        .map_err(|e| AcmeError::new(format!("ACME storage lock: {e}")))?
                };
                if let Ok(Some(stored)) = store.certificate(&hostname)
                    && validity(&stored.chain_pem).is_ok_and(|(from, to)| {
                        SystemTime::now() < schedule::renew_at(from, to, renew_before)
                    })
                {
                    tracing::info!(hostname, "another process sharing the ACME directory obtained the certificate");
                    return Ok(stored);
                }
                tracing::info!(%secret, hostname, directory = %options.directory, "ordering an ACME certificate");
                let client = client
                    .get_or_try_init(|| AcmeClient::connect(options, store, challenges))
                    .await?;
                let issued = client.issue(&hostname).await;
                drop(lock);
                let issued = issued?;
                if let Some(cluster) = &cluster {
                    // The listener's Secret, which every replica serves through its watch.
                    let object = current(&secret, &issued, &acme_options)
                        .map_err(AcmeError::new)?
                        .secret;
                    cluster
                        .write_secret(Secret::clone(&object), take_over)
                        .await
                        .map_err(|e| {
                            AcmeError::new(format!(
                                "the certificate for {hostname} was issued but the Secret \
                                 {secret} could not be written: {e}"
                            ))
                        })?;
                }
                Ok(issued)
            }
            .await;
            let _ = finished.send(Finished {
                secret,
                hostname,
                result,
            });
        });
    }

    fn finished(&mut self, finished: Finished) {
        let Some(managed) = self.certificates.get_mut(&finished.secret) else {
            return;
        };
        if managed.hostname != finished.hostname {
            return;
        }
        managed.ordering = false;
        let current = finished.result.and_then(|issued| {
            current(&finished.secret, &issued, &self.options).map_err(|e| AcmeError {
                message: e,
                rate_limited: false,
            })
        });
        let secret = finished.secret.to_string();
        let event = match current {
            Ok(current) => {
                tracing::info!(
                    secret,
                    hostname = managed.hostname,
                    "ACME certificate in use"
                );
                self.metrics.order_finished(true);
                self.metrics
                    .set_expiry(&secret, &managed.hostname, unix(current.not_after));
                let renewed = managed.renewal;
                let until = humantime::format_rfc3339_seconds(current.not_after);
                managed.current = Some(current);
                managed.written = Some(Instant::now());
                managed.failures = 0;
                managed.not_before = None;
                managed.last_error = None;
                CertificateEvent {
                    gateways: managed.gateways.clone(),
                    warning: false,
                    reason: if renewed {
                        "CertificateRenewed"
                    } else {
                        "CertificateIssued"
                    },
                    note: format!(
                        "{} a certificate for {} from {} into Secret {secret}, valid until {until}",
                        if renewed { "Renewed" } else { "Issued" },
                        managed.hostname,
                        self.options.config.directory
                    ),
                }
            }
            Err(error) => {
                self.metrics.order_finished(false);
                managed.failures += 1;
                let wait = schedule::backoff(
                    managed.failures,
                    error.rate_limited.then_some(RATE_LIMITED_WAIT),
                );
                tracing::warn!(secret, hostname = managed.hostname, error = %error.message, ?wait, "ACME order failed; trying again later");
                managed.not_before = Some(Instant::now() + wait);
                managed.last_error = Some(format!(
                    "{} (next attempt in {})",
                    error.message,
                    humantime::format_duration(Duration::from_secs(wait.as_secs()))
                ));
                CertificateEvent {
                    gateways: managed.gateways.clone(),
                    warning: true,
                    reason: "CertificateFailed",
                    note: format!(
                        "The ACME order for {} (Secret {secret}) from {} failed: {}",
                        managed.hostname,
                        self.options.config.directory,
                        managed.last_error.as_deref().unwrap_or_default()
                    ),
                }
            }
        };
        if let Some(cluster) = &self.cluster {
            let cluster = cluster.clone();
            tokio::spawn(async move { cluster.publish(event).await });
        }
    }
}

/// What a listener waiting for its certificate says.
fn pending_message(managed: &Managed, config: &AcmeConfig) -> String {
    let challenge = match config.challenge {
        ChallengeKind::Http01 => "HTTP-01 on the Gateway's HTTP listeners",
        ChallengeKind::TlsAlpn01 => "TLS-ALPN-01 on this listener's port",
    };
    match &managed.last_error {
        Some(error) => format!(
            "the ACME order for {} from {} failed: {error}",
            managed.hostname, config.directory
        ),
        None => format!(
            "the certificate for {} is being ordered from {} ({challenge}); the listener \
             serves once it is issued",
            managed.hostname, config.directory
        ),
    }
}

/// The managed state of a Secret, with the certificate stored for `hostname` when there is
/// a usable one.
fn load(
    store: &AcmeStore,
    secret: &ObjectKey,
    hostname: &str,
    options: &AcmeOptions,
    metrics: &AcmeMetrics,
) -> Managed {
    let current = match store.certificate(hostname) {
        Ok(Some(stored)) => match current(secret, &stored, options) {
            Ok(current) if current.not_after > SystemTime::now() => {
                tracing::info!(%secret, hostname, "using the stored ACME certificate");
                metrics.set_expiry(&secret.to_string(), hostname, unix(current.not_after));
                Some(current)
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%secret, hostname, %error, "ignoring an unreadable stored ACME certificate");
                None
            }
        },
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%secret, hostname, %error, "cannot read the ACME storage");
            None
        }
    };
    Managed {
        hostname: hostname.to_owned(),
        current,
        ordering: false,
        failures: 0,
        not_before: None,
        last_error: None,
        gateways: Vec::new(),
        written: None,
        renewal: false,
        placeholder: false,
    }
}

/// Kubernetes mode: the certificate is the Secret in the cluster when an ACME client wrote
/// it; the one this replica wrote is kept a while until its watch shows it; otherwise there
/// is none (never created, or deleted: ordered again).
fn refresh_from_cluster(
    managed: &mut Managed,
    store: &Store,
    key: &ObjectKey,
    issued: bool,
    options: &AcmeOptions,
    metrics: &AcmeMetrics,
) {
    let in_cluster = store.secrets.get(key).filter(|_| issued);
    // The same Secret as last time (most updates change something else): nothing to parse.
    if let (Some(secret), Some(current)) = (in_cluster, &managed.current)
        && Arc::ptr_eq(secret, &current.secret)
    {
        return;
    }
    match in_cluster {
        Some(secret) => match current_in_secret(secret, options) {
            Ok(current) => {
                metrics.set_expiry(&key.to_string(), &managed.hostname, unix(current.not_after));
                managed.current = Some(current);
            }
            Err(error) => {
                tracing::warn!(secret = %key, %error, "the ACME certificate's Secret is unusable; ordering a new one");
                managed.current = None;
            }
        },
        None => {
            let recent = managed
                .written
                .is_some_and(|at| at.elapsed() < WRITTEN_GRACE);
            if !recent {
                managed.current = None;
            }
        }
    }
}

/// Opens the storage directory, or the cluster's shared state.
fn store(options: &AcmeOptions, cluster: Option<&Arc<dyn Cluster>>) -> std::io::Result<AcmeStore> {
    match (cluster, &options.dir) {
        (Some(cluster), _) => Ok(AcmeStore::shared(cluster.state())),
        (None, Some(dir)) => AcmeStore::open(dir),
        (None, None) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no ACME storage: --acme-dir is required in standalone mode",
        )),
    }
}

/// Resolves when leadership changes; never without an election.
async fn leadership_changed(
    leading: &mut Option<watch::Receiver<bool>>,
) -> Result<(), watch::error::RecvError> {
    match leading {
        Some(leading) => leading.changed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
