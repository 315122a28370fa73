//! ACME storage: the account credentials, each in-progress order's URL and key (a restart
//! mid-order resumes that order instead of placing another), and pending challenge answers (so
//! that another proxy sharing the store answers a token it did not create).
//!
//! In standalone mode it is the storage directory (`--acme-dir`), which also holds each
//! issued certificate's key and chain; every file is 0600, written to a temporary name then
//! renamed, so a reader never sees half a file. In Kubernetes mode it is a [`SharedState`]
//! (one Secret of the fleet, see `kubernetes::acme`), and issued certificates are the
//! listeners' own Secrets.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct StoredCertificate {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("StoredCertificate").finish_non_exhaustive()
    }
}

/// ACME state kept in the cluster instead of a directory (Kubernetes mode): a map of short
/// keys (`[-._a-zA-Z0-9]+`) to text, readable by every replica and written by the one that
/// orders. Reads come from memory (the data path asks it for challenge answers); a write
/// returns once the state holds it.
pub trait SharedState: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Sets (`Some`) or removes (`None`) every entry of `writes` at once.
    fn set(&self, writes: Vec<(String, Option<String>)>) -> BoxFuture<'_, io::Result<()>>;
}

/// Where the account, orders in progress and challenge answers are kept: the storage
/// directory (`--acme-dir`), or the cluster ([`SharedState`]), where issued certificates
/// are the listeners' own Secrets rather than part of this store.
#[derive(Clone)]
pub struct AcmeStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Dir(PathBuf),
    Shared(Arc<dyn SharedState>),
}

impl std::fmt::Debug for AcmeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Dir(dir) => f.debug_tuple("AcmeStore::Dir").field(dir).finish(),
            Backend::Shared(_) => f.write_str("AcmeStore::Shared"),
        }
    }
}

/// One stored item, named in both backends.
enum Entry<'a> {
    Account,
    OrderUrl(&'a str),
    OrderKey(&'a str),
    Http01(&'a str),
    TlsAlpn01(&'a str),
}

impl Entry<'_> {
    /// The file under the storage directory.
    fn path(&self, dir: &Path) -> PathBuf {
        match self {
            Entry::Account => dir.join("account.json"),
            Entry::OrderUrl(host) => Base(dir.join("orders").join(file_name(host))).with("url"),
            Entry::OrderKey(host) => Base(dir.join("orders").join(file_name(host))).with("key"),
            Entry::Http01(token) => dir.join("challenges").join(token),
            // A token has no dot, so these files never meet HTTP-01's.
            Entry::TlsAlpn01(host) => {
                Base(dir.join("challenges").join(file_name(host))).with("tls-alpn-01")
            }
        }
    }

    /// The key in a [`SharedState`].
    fn key(&self) -> String {
        match self {
            Entry::Account => "account.json".to_owned(),
            Entry::OrderUrl(host) => format!("order.{}.url", file_name(host)),
            Entry::OrderKey(host) => format!("order.{}.key", file_name(host)),
            Entry::Http01(token) => format!("http-01.{token}"),
            Entry::TlsAlpn01(host) => format!("tls-alpn-01.{}", file_name(host)),
        }
    }
}

impl AcmeStore {
    /// Opens (creating, mode 0700) the directory.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        for sub in ["", "certificates", "orders", "challenges"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            backend: Backend::Dir(dir),
        })
    }

    /// A store kept in the cluster.
    pub fn shared(state: Arc<dyn SharedState>) -> Self {
        Self {
            backend: Backend::Shared(state),
        }
    }

    /// The storage directory, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Dir(dir) => Some(dir),
            Backend::Shared(_) => None,
        }
    }

    fn get(&self, entry: &Entry<'_>) -> io::Result<Option<String>> {
        match &self.backend {
            Backend::Dir(dir) => read(&entry.path(dir)),
            Backend::Shared(state) => Ok(state.get(&entry.key())),
        }
    }

    /// Applies `writes` in order (the directory) or at once (the cluster).
    async fn set(&self, writes: &[(Entry<'_>, Option<&str>)]) -> io::Result<()> {
        match &self.backend {
            Backend::Dir(dir) => {
                for (entry, value) in writes {
                    match value {
                        Some(text) => write_private(&entry.path(dir), text)?,
                        None => remove(&entry.path(dir))?,
                    }
                }
                Ok(())
            }
            Backend::Shared(state) => {
                let writes = writes
                    .iter()
                    .map(|(entry, value)| (entry.key(), value.map(str::to_owned)))
                    .collect();
                state.set(writes).await
            }
        }
    }

    /// The account credentials (instant-acme's JSON), if an account was created.
    pub fn account(&self) -> io::Result<Option<String>> {
        self.get(&Entry::Account)
    }

    pub async fn save_account(&self, json: &str) -> io::Result<()> {
        self.set(&[(Entry::Account, Some(json))]).await
    }

    /// The issued certificate for `hostname` (the directory only: in the cluster the
    /// certificate is its listener's Secret).
    pub fn certificate(&self, hostname: &str) -> io::Result<Option<StoredCertificate>> {
        let Backend::Dir(dir) = &self.backend else {
            return Ok(None);
        };
        let base = Base(dir.join("certificates").join(file_name(hostname)));
        let chain = read(&base.with("crt"))?;
        let key = read(&base.with("key"))?;
        Ok(chain
            .zip(key)
            .map(|(chain_pem, key_pem)| StoredCertificate { chain_pem, key_pem }))
    }

    /// Stores an issued certificate (key first: a chain is never there without its key). In
    /// the cluster nothing: the manager writes the listener's Secret.
    pub fn save_certificate(&self, hostname: &str, cert: &StoredCertificate) -> io::Result<()> {
        let Backend::Dir(dir) = &self.backend else {
            return Ok(());
        };
        let base = Base(dir.join("certificates").join(file_name(hostname)));
        write_private(&base.with("key"), &cert.key_pem)?;
        write_private(&base.with("crt"), &cert.chain_pem)
    }

    /// The URL and private key of the order in progress for `hostname`.
    pub fn pending_order(&self, hostname: &str) -> io::Result<Option<(String, String)>> {
        let url = self.get(&Entry::OrderUrl(hostname))?;
        let key = self.get(&Entry::OrderKey(hostname))?;
        Ok(url.zip(key))
    }

    /// Stores an order in progress (its key first: a URL is never there without its key).
    pub async fn save_pending_order(
        &self,
        hostname: &str,
        url: &str,
        key_pem: &str,
    ) -> io::Result<()> {
        self.set(&[
            (Entry::OrderKey(hostname), Some(key_pem)),
            (Entry::OrderUrl(hostname), Some(url)),
        ])
        .await
    }

    pub async fn clear_pending_order(&self, hostname: &str) -> io::Result<()> {
        self.set(&[
            (Entry::OrderUrl(hostname), None),
            (Entry::OrderKey(hostname), None),
        ])
        .await
    }

    /// The HTTP-01 key authorization for `token`, if this or another process sharing the
    /// store published one.
    pub fn http01(&self, token: &str) -> io::Result<Option<String>> {
        if !is_token(token) {
            return Ok(None);
        }
        self.get(&Entry::Http01(token))
    }

    pub async fn save_http01(&self, token: &str, key_authorization: &str) -> io::Result<()> {
        if !is_token(token) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ACME token is not base64url",
            ));
        }
        self.set(&[(Entry::Http01(token), Some(key_authorization))])
            .await
    }

    pub async fn remove_http01(&self, token: &str) -> io::Result<()> {
        if !is_token(token) {
            return Ok(());
        }
        self.set(&[(Entry::Http01(token), None)]).await
    }

    /// SHA-256 of the TLS-ALPN-01 key authorization pending for `hostname`, if this or
    /// another process sharing the store published one.
    pub fn tls_alpn01(&self, hostname: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(text) = self.get(&Entry::TlsAlpn01(hostname))? else {
            return Ok(None);
        };
        Ok(hex_decode(text.trim()))
    }

    pub async fn save_tls_alpn01(&self, hostname: &str, key_auth_sha256: &[u8]) -> io::Result<()> {
        let hex: String = key_auth_sha256.iter().map(|b| format!("{b:02x}")).collect();
        self.set(&[(Entry::TlsAlpn01(hostname), Some(&hex))]).await
    }

    pub async fn remove_tls_alpn01(&self, hostname: &str) -> io::Result<()> {
        self.set(&[(Entry::TlsAlpn01(hostname), None)]).await
    }

    /// Waits for, then holds, the right to order a certificate for `hostname` among the
    /// processes sharing the directory (an advisory lock on `orders/<host>.lock`, released
    /// when the file is dropped, or when the process dies). Blocking: call it off the
    /// runtime's workers. In the cluster there is nothing to take (`None`): only the fleet's
    /// leader orders.
    pub fn lock_orders(&self, hostname: &str) -> io::Result<Option<fs::File>> {
        let Backend::Dir(dir) = &self.backend else {
            return Ok(None);
        };
        let path = Base(dir.join("orders").join(file_name(hostname))).with("lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        file.lock()?;
        Ok(Some(file))
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A file's path without its extension; unlike `Path::with_extension`, a hostname's last
/// label is kept (`a.example.com` → `a.example.com.crt`).
struct Base(PathBuf);

impl Base {
    fn with(&self, extension: &str) -> PathBuf {
        let mut name = self.0.clone().into_os_string();
        name.push(".");
        name.push(extension);
        PathBuf::from(name)
    }
}

/// RFC 8555 §8.3: a token is base64url (so it is also a safe file name).
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A file name for a hostname (`*.example.com` → `_wildcard.example.com`).
fn file_name(hostname: &str) -> String {
    hostname
        .replace('*', "_wildcard")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `text` to `path` with mode 0600 (temporary file, then rename).
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let tmp = Base(path.to_path_buf()).with(&format!("tmp{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_0600_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("gantry-acme-store-{}", std::process::id()));
        let store = AcmeStore::open(&dir).expect("open");
        let cert = StoredCertificate {
            chain_pem: "chain".into(),
            key_pem: "key".into(),
        };
        store
            .save_certificate("*.example.com", &cert)
            .expect("save");
        let back = store
            .certificate("*.example.com")
            .expect("read")
            .expect("some");
        assert_eq!(back.chain_pem, "chain");
        let key = dir.join("certificates/_wildcard.example.com.key");
        assert!(dir.join("certificates/_wildcard.example.com.crt").exists());
        let mode = fs::metadata(key).expect("key file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(store.save_http01("../etc", "x").await.is_err());
        store
            .save_tls_alpn01("a.example.com", &[0, 1, 254, 255])
            .await
            .expect("save");
        assert_eq!(
            store.tls_alpn01("a.example.com").expect("read"),
            Some(vec![0, 1, 254, 255])
        );
        // A hostname's file is never an HTTP-01 token's.
        assert_eq!(
            store.http01("a.example.com.tls-alpn-01").expect("read"),
            None
        );
        store
            .remove_tls_alpn01("a.example.com")
            .await
            .expect("remove");
        assert_eq!(store.tls_alpn01("a.example.com").expect("read"), None);
        assert_eq!(store.http01("../etc").expect("read"), None);
        fs::remove_dir_all(dir).expect("cleanup");
    }
}
