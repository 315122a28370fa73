//! The `--acme-*` flags of `gantry-proxy run`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;

use super::AcmeOptions;
use super::client::{AcmeConfig, ChallengeKind};
use super::key::KeyType;
use super::schedule::DEFAULT_RENEW_BEFORE;

/// `--acme-challenge`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeArg {
    /// On the Gateway's HTTP listeners (port 80 for a public CA).
    #[value(name = "http-01")]
    Http01,
    /// On the HTTPS listener's own port (443 for a public CA).
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
}

/// `--acme-key-type`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTypeArg {
    /// ECDSA P-256 with SHA-256.
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048 with SHA-256, for clients without ECDSA.
    #[value(name = "rsa-2048")]
    Rsa2048,
}

/// Automatic certificates for HTTPS listeners.
#[derive(clap::Args, Clone, Debug)]
pub struct AcmeArgs {
    /// Obtain the certificate of every HTTPS listener whose certificateRefs Secret does not
    /// exist from this ACME (RFC 8555) directory, for example
    /// https://acme-v02.api.letsencrypt.org/directory. Standalone mode needs --acme-dir; in
    /// Kubernetes mode the fleet's leader orders and keeps its state in a Secret.
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Where the account, certificates and orders in progress are kept (created 0700, files
    /// 0600); keep it across restarts, and share it between replicas so any answers any
    /// HTTP-01 challenge. Standalone mode only.
    #[arg(long, value_name = "DIR", requires = "acme_directory")]
    pub acme_dir: Option<PathBuf>,
    /// Contact address of the ACME account.
    #[arg(long, value_name = "ADDRESS", requires = "acme_directory")]
    pub acme_email: Option<String>,
    /// Trust this CA (PEM) for the directory's HTTPS instead of the system's roots (a
    /// private CA, or a test server).
    #[arg(long, value_name = "FILE", requires = "acme_directory")]
    pub acme_ca_file: Option<PathBuf>,
    /// External Account Binding key id, for CAs that require one.
    #[arg(long, value_name = "KID", requires_all = ["acme_directory", "acme_eab_hmac_file"])]
    pub acme_eab_kid: Option<String>,
    /// A file holding the External Account Binding HMAC key, base64url as the CA gives it.
    #[arg(long, value_name = "FILE", requires = "acme_eab_kid")]
    pub acme_eab_hmac_file: Option<PathBuf>,
    /// How the CA validates a hostname.
    #[arg(long, value_enum, default_value = "http-01")]
    pub acme_challenge: ChallengeArg,
    /// The algorithm of new certificate keys; an order already in progress keeps its key.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub acme_key_type: KeyTypeArg,
    /// Renew this long before expiry (at two thirds of the lifetime for certificates shorter
    /// than three times this).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub acme_renew_before: Duration,
}

impl AcmeArgs {
    /// The issuer, when `--acme-directory` is given.
    pub fn options(&self) -> anyhow::Result<Option<AcmeOptions>> {
        let Some(directory) = &self.acme_directory else {
            return Ok(None);
        };
        let eab = match (&self.acme_eab_kid, &self.acme_eab_hmac_file) {
            (Some(kid), Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading --acme-eab-hmac-file {}", file.display()))?;
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text.trim().trim_end_matches('='))
                    .context("--acme-eab-hmac-file: not base64url")?;
                Some((kid.clone(), key))
            }
            _ => None,
        };
        Ok(Some(AcmeOptions {
            config: AcmeConfig {
                directory: directory.clone(),
                email: self.acme_email.clone(),
                ca_file: self.acme_ca_file.clone(),
                eab,
                challenge: match self.acme_challenge {
                    ChallengeArg::Http01 => ChallengeKind::Http01,
                    ChallengeArg::TlsAlpn01 => ChallengeKind::TlsAlpn01,
                },
                key_type: match self.acme_key_type {
                    KeyTypeArg::EcdsaP256 => KeyType::EcdsaP256,
                    KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
                },
            },
            dir: self.acme_dir.clone(),
            renew_before: if self.acme_renew_before.is_zero() {
                DEFAULT_RENEW_BEFORE
            } else {
                self.acme_renew_before
            },
        }))
    }
}
