//! An ACME account and its orders (RFC 8555, through the `instant-acme` crate): the account is
//! created once and its credentials kept in the store; an order's URL and key are stored
//! before its challenges are answered, so a restart mid-order resumes that order; the CSR is
//! made here (rcgen) so the key type is ours to choose.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};

use super::challenges::Challenges;
use super::key::{self, KeyType};
use super::store::{AcmeStore, StoredCertificate};

/// RFC 8555 §6.7: the CA refuses for now because of a rate limit.
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

/// Which challenge the listeners answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeKind {
    /// RFC 8555 §8.3, on the Gateway's HTTP listeners (port 80 for a public CA).
    #[default]
    Http01,
    /// RFC 8737, on the HTTPS listener itself (port 443 for a public CA).
    TlsAlpn01,
}

/// Where and how to order certificates.
#[derive(Debug, Clone, Default)]
pub struct AcmeConfig {
    /// The CA's directory URL.
    pub directory: String,
    /// A contact address for the account (`mailto:` is added).
    pub email: Option<String>,
    /// PEM of a CA to trust for the directory's HTTPS (a private or test CA), instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// External Account Binding: key id and the HMAC key (raw bytes).
    pub eab: Option<(String, Vec<u8>)>,
    pub challenge: ChallengeKind,
    /// The algorithm of new certificate keys (a stored order keeps the key it was placed
    /// with, whatever its type).
    pub key_type: KeyType,
}

/// Why an order did not give a certificate: the CA's own words when it gave any.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AcmeError {
    pub message: String,
    /// The CA answered `rateLimited`: wait longer before trying again.
    pub rate_limited: bool,
}

impl AcmeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            rate_limited: false,
        }
    }
}

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> Self {
        let rate_limited = matches!(&e, instant_acme::Error::Api(p)
            if p.r#type.as_deref() == Some(RATE_LIMITED));
        Self {
            message: e.to_string(),
            rate_limited,
        }
    }
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> AcmeError + '_ {
    move |e| AcmeError::new(format!("ACME storage: {what}: {e}"))
}

/// An issued certificate: chain and key PEM.
pub type Issued = StoredCertificate;

/// An ACME account ready to order.
#[derive(Clone)]
pub struct AcmeClient {
    account: Account,
    store: AcmeStore,
    challenges: Challenges,
    config: Arc<AcmeConfig>,
}

impl AcmeClient {
    /// Loads the account stored in `store`, or creates one (and stores its credentials).
    pub async fn connect(
        config: AcmeConfig,
        store: AcmeStore,
        challenges: Challenges,
    ) -> Result<Self, AcmeError> {
        let builder = || match &config.ca_file {
            Some(file) => Account::builder_with_root(file),
            None => Account::builder(),
        };
        let stored = store.account().map_err(io_error("reading the account"))?;
        let account = match stored {
            Some(json) => {
                let credentials: AccountCredentials = serde_json::from_str(&json)
                    .map_err(|e| AcmeError::new(format!("ACME storage: account.json: {e}")))?;
                builder()?.from_credentials(credentials).await?
            }
            None => {
                let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let eab = config
                    .eab
                    .as_ref()
                    .map(|(kid, hmac)| ExternalAccountKey::new(kid.clone(), hmac));
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        config.directory.clone(),
                        eab.as_ref(),
                    )
                    .await?;
                let json = serde_json::to_string(&credentials)
                    .map_err(|e| AcmeError::new(format!("ACME account credentials: {e}")))?;
                store
                    .save_account(&json)
                    .await
                    .map_err(io_error("writing the account"))?;
                account
            }
        };
        Ok(Self {
            account,
            store,
            challenges,
            config: Arc::new(config),
        })
    }

    pub fn store(&self) -> &AcmeStore {
        &self.store
    }

    /// Orders (or resumes the stored order for) a certificate for `hostname`, answers its
    /// challenge, finalizes and stores the result. Returns the issued certificate.
    pub async fn issue(&self, hostname: &str) -> Result<Issued, AcmeError> {
        if hostname.starts_with("*.") {
            // RFC 8555 §8.3 / RFC 8737 §3: wildcard names are validated only by DNS-01.
            return Err(AcmeError::new(format!(
                "{hostname}: a wildcard certificate needs the DNS-01 challenge, which Gantry \
                 does not answer; use cert-manager or a hostname without a wildcard"
            )));
        }
        let (mut order, key_pem) = self.order_for(hostname).await?;
        let result = self.complete(&mut order, hostname, &key_pem).await;
        if let Err(e) = &result {
            // A finished (failed) order is not resumed; a transient error keeps it. The CA is
            // asked once more: the error may have come before the order's state said so.
            let _ = order.refresh().await;
            if failed(&mut order) {
                let _ = self.store.clear_pending_order(hostname).await;
            }
            tracing::warn!(hostname, error = %e, "ACME order failed");
        }
        result
    }

    /// The stored order for `hostname` when the CA still knows it, else a new one (stored
    /// with its key before anything else happens).
    async fn order_for(&self, hostname: &str) -> Result<(Order, String), AcmeError> {
        let pending = self
            .store
            .pending_order(hostname)
            .map_err(io_error("reading the pending order"))?;
        if let Some((url, key_pem)) = pending {
            match self.account.order(url).await {
                Ok(mut order) => {
                    if !failed(&mut order) {
                        tracing::info!(hostname, "resuming the stored ACME order");
                        return Ok((order, key_pem));
                    }
                    let _ = self.store.clear_pending_order(hostname).await;
                }
                Err(_) => {
                    let _ = self.store.clear_pending_order(hostname).await;
                }
            }
        }
        let identifiers = [Identifier::Dns(hostname.to_owned())];
        let order = self.account.new_order(&NewOrder::new(&identifiers)).await?;
        let key_type = self.config.key_type;
        let key_pem = tokio::task::spawn_blocking(move || key::generate(key_type))
            .await
            .map_err(|e| AcmeError::new(format!("generating the certificate key: {e}")))?
            .map_err(AcmeError::new)?
            .serialize_pem();
        self.store
            .save_pending_order(hostname, order.url(), &key_pem)
            .await
            .map_err(io_error("writing the pending order"))?;
        tracing::info!(hostname, key_type = key_type.name(), "placed an ACME order");
        Ok((order, key_pem))
    }

    async fn complete(
        &self,
        order: &mut Order,
        hostname: &str,
        key_pem: &str,
    ) -> Result<Issued, AcmeError> {
        let mut published = Vec::new();
        if matches!(order.state().status, OrderStatus::Pending) {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization?;
                if !matches!(authorization.status, AuthorizationStatus::Pending) {
                    continue;
                }
                let kind = match self.config.challenge {
                    ChallengeKind::Http01 => ChallengeType::Http01,
                    ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
                };
                let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
                    AcmeError::new(format!(
                        "the CA offers no {kind:?} challenge for {hostname}"
                    ))
                })?;
                let key_authorization = challenge.key_authorization();
                match kind {
                    ChallengeType::Http01 => {
                        self.challenges
                            .add_http01(&challenge.token, key_authorization.as_str())
                            .await
                            .map_err(io_error("writing the challenge"))?;
                        published.push(Published::Http01(challenge.token.clone()));
                    }
                    _ => {
                        self.challenges
                            .add_tls_alpn01(hostname, key_authorization.digest().as_ref())
                            .await
                            .map_err(AcmeError::new)?;
                        published.push(Published::TlsAlpn01(hostname.to_owned()));
                    }
                }
                challenge.set_ready().await?;
            }
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retries).await;
        for p in published {
            match p {
                Published::Http01(token) => self.challenges.remove_http01(&token).await,
                Published::TlsAlpn01(host) => self.challenges.remove_tls_alpn01(&host).await,
            }
        }
        let status = status?;
        if matches!(status, OrderStatus::Invalid) {
            return Err(AcmeError::new(self.failure(order, hostname).await));
        }
        if matches!(status, OrderStatus::Ready) {
            let key = key::load(key_pem)
                .map_err(|e| AcmeError::new(format!("ACME storage: orders/{hostname}.key: {e}")))?;
            let csr = key::csr(hostname, &key).map_err(AcmeError::new)?;
            order.finalize_csr(&csr).await?;
        }
        let chain_pem = order.poll_certificate(&retries).await?;
        let issued = Issued {
            chain_pem,
            key_pem: key_pem.to_owned(),
        };
        self.store
            .save_certificate(hostname, &issued)
            .map_err(io_error("writing the certificate"))?;
        self.store
            .clear_pending_order(hostname)
            .await
            .map_err(io_error("removing the finished order"))?;
        tracing::info!(hostname, "ACME certificate issued");
        Ok(issued)
    }

    /// The CA's reason for an invalid order: the order's error, else the failed challenge's.
    async fn failure(&self, order: &mut Order, hostname: &str) -> String {
        if let Some(problem) = &order.state().error {
            return format!("{hostname}: {problem}");
        }
        let mut authorizations = order.authorizations();
        while let Some(Ok(authorization)) = authorizations.next().await {
            for challenge in &authorization.challenges {
                if let Some(problem) = &challenge.error {
                    return format!("{hostname}: {problem}");
                }
            }
        }
        format!("{hostname}: the CA marked the order invalid")
    }
}

enum Published {
    Http01(String),
    TlsAlpn01(String),
}

/// Whether the CA says `order` failed: it is `invalid`, or it carries an error (RFC 8555
/// §7.1.3, "the error that occurred while processing the order"). The CA may report the error
/// before the status turns `invalid`, and `poll_ready` stops at the first.
fn failed(order: &mut Order) -> bool {
    let state = order.state();
    matches!(state.status, OrderStatus::Invalid) || state.error.is_some()
}
