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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::time::Instant;

use crate::acme::schedule;
use crate::acme::{
    AcmeClient, AcmeConfig, AcmeError, AcmeOptions, AcmeStore, ChallengeKind, Challenges, Issued,
    StoredCertificate,
};
use crate::source::SourceUpdate;
use crate::telemetry::acme::AcmeMetrics;
use gantry_translate::store::{AcmeCertificate, ObjectKey, Store};
use gantry_translate::translate::TranslateOptions;
use gantry_translate::translate::acme::wanted_certificates;

/// The least wait after a `rateLimited` answer, which comes without a usable Retry-After.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(15 * 60);

/// The annotation on a Secret the manager made, naming the ACME directory it came from.
pub const ISSUER_ANNOTATION: &str = "gantry.dev/acme-directory";

/// A finished order.
struct Finished {
    secret: ObjectKey,
    hostname: String,
    result: Result<Issued, AcmeError>,
}

/// The certificate a Secret is served from.
struct Current {
    secret: Arc<Secret>,
    not_after: SystemTime,
    renew_at: SystemTime,
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
}

impl Manager {
    /// Opens the storage directory. `challenges` are the answers the data plane serves.
    pub fn new(
        options: AcmeOptions,
        translate: TranslateOptions,
        challenges: Challenges,
        metrics: AcmeMetrics,
    ) -> std::io::Result<Self> {
        let store = AcmeStore::open(&options.dir)?;
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
        })
    }

    /// The challenge answers to give the data plane, sharing the storage directory so that a
    /// token another process published is answered too.
    pub fn challenges_for(dir: &std::path::Path) -> std::io::Result<Challenges> {
        Ok(Challenges::new(Some(AcmeStore::open(dir)?)))
    }

    /// Follows `input` (the source) and publishes on `output` (the control loop) until the
    /// source goes away.
    pub async fn run(
        mut self,
        mut input: watch::Receiver<Option<SourceUpdate>>,
        output: watch::Sender<Option<SourceUpdate>>,
    ) {
        let mut latest: Option<SourceUpdate> = None;
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
            for (key, managed) in &mut self.certificates {
                if managed.due(now, instant) {
                    managed.ordering = true;
                    start.push((key.clone(), managed.hostname.clone()));
                }
            }
            for (key, hostname) in start {
                self.start_order(key, hostname);
            }
            return update.clone();
        };
        let wanted = wanted_certificates(store, &self.translate);
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
            if managed.due(now, instant) {
                managed.ordering = true;
                start.push((key.clone(), hostname.clone()));
            }
            match &managed.current {
                Some(current) => {
                    next.secrets.insert(key, current.secret.clone());
                }
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
                issued
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
        match current {
            Ok(current) => {
                tracing::info!(
                    secret,
                    hostname = managed.hostname,
                    "ACME certificate in use"
                );
                self.metrics.order_finished(true);
                self.metrics
                    .set_expiry(&secret, &managed.hostname, unix(current.not_after));
                managed.current = Some(current);
                managed.failures = 0;
                managed.not_before = None;
                managed.last_error = None;
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
            }
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
    }
}

/// The Secret for a certificate, and when to renew it.
fn current(
    secret: &ObjectKey,
    certificate: &StoredCertificate,
    options: &AcmeOptions,
) -> Result<Current, String> {
    let (not_before, not_after) = validity(&certificate.chain_pem)?;
    let data = BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(certificate.chain_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(certificate.key_pem.clone().into_bytes()),
        ),
    ]);
    let object = Secret {
        metadata: ObjectMeta {
            name: Some(secret.name.clone()),
            namespace: Some(secret.namespace.clone()),
            annotations: Some(BTreeMap::from([(
                ISSUER_ANNOTATION.to_owned(),
                options.config.directory.clone(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    Ok(Current {
        secret: Arc::new(object),
        not_after,
        renew_at: schedule::renew_at(not_before, not_after, options.renew_before),
    })
}

/// The validity period of the first certificate of a PEM chain.
fn validity(chain_pem: &str) -> Result<(SystemTime, SystemTime), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("the chain holds no certificate")?
        .map_err(|e| format!("the chain is not PEM: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0).unsigned_abs());
    let validity = parsed.validity();
    Ok((
        at(validity.not_before.timestamp()),
        at(validity.not_after.timestamp()),
    ))
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
