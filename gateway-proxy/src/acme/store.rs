//! The ACME storage directory (`--acme-dir`): the account credentials, each certificate's key
//! and chain, each in-progress order's URL and key (a restart mid-order resumes that order
//! instead of placing another), and pending HTTP-01 answers (so that another proxy sharing the
//! directory answers a token it did not create). Every file is 0600, written to a temporary
//! name then renamed, so a reader never sees half a file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// The storage directory.
#[derive(Debug, Clone)]
pub struct AcmeStore {
    dir: PathBuf,
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
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The account credentials (instant-acme's JSON), if an account was created.
    pub fn account(&self) -> io::Result<Option<String>> {
        read(&self.dir.join("account.json"))
    }

    pub fn save_account(&self, json: &str) -> io::Result<()> {
        write_private(&self.dir.join("account.json"), json)
    }

    /// The issued certificate for `hostname`.
    pub fn certificate(&self, hostname: &str) -> io::Result<Option<StoredCertificate>> {
        let base = Base(self.dir.join("certificates").join(file_name(hostname)));
        let chain = read(&base.with("crt"))?;
        let key = read(&base.with("key"))?;
        Ok(chain
            .zip(key)
            .map(|(chain_pem, key_pem)| StoredCertificate { chain_pem, key_pem }))
    }

    /// Stores an issued certificate (key first: a chain is never there without its key).
    pub fn save_certificate(&self, hostname: &str, cert: &StoredCertificate) -> io::Result<()> {
        let base = Base(self.dir.join("certificates").join(file_name(hostname)));
        write_private(&base.with("key"), &cert.key_pem)?;
        write_private(&base.with("crt"), &cert.chain_pem)
    }

    /// The URL and private key of the order in progress for `hostname`.
    pub fn pending_order(&self, hostname: &str) -> io::Result<Option<(String, String)>> {
        let base = Base(self.dir.join("orders").join(file_name(hostname)));
        let url = read(&base.with("url"))?;
        let key = read(&base.with("key"))?;
        Ok(url.zip(key))
    }

    pub fn save_pending_order(&self, hostname: &str, url: &str, key_pem: &str) -> io::Result<()> {
        let base = Base(self.dir.join("orders").join(file_name(hostname)));
        write_private(&base.with("key"), key_pem)?;
        write_private(&base.with("url"), url)
    }

    pub fn clear_pending_order(&self, hostname: &str) -> io::Result<()> {
        let base = Base(self.dir.join("orders").join(file_name(hostname)));
        remove(&base.with("url"))?;
        remove(&base.with("key"))
    }

    /// The HTTP-01 key authorization for `token`, if this or another process sharing the
    /// directory published one.
    pub fn http01(&self, token: &str) -> io::Result<Option<String>> {
        if !is_token(token) {
            return Ok(None);
        }
        read(&self.dir.join("challenges").join(token))
    }

    pub fn save_http01(&self, token: &str, key_authorization: &str) -> io::Result<()> {
        if !is_token(token) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ACME token is not base64url",
            ));
        }
        write_private(&self.dir.join("challenges").join(token), key_authorization)
    }

    pub fn remove_http01(&self, token: &str) -> io::Result<()> {
        if !is_token(token) {
            return Ok(());
        }
        remove(&self.dir.join("challenges").join(token))
    }

    /// SHA-256 of the TLS-ALPN-01 key authorization pending for `hostname`, if this or
    /// another process sharing the directory published one. (A token has no dot, so these
    /// files never meet HTTP-01's.)
    pub fn tls_alpn01(&self, hostname: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(text) = read(&self.tls_alpn01_path(hostname))? else {
            return Ok(None);
        };
        Ok(hex_decode(text.trim()))
    }

    pub fn save_tls_alpn01(&self, hostname: &str, key_auth_sha256: &[u8]) -> io::Result<()> {
        let hex: String = key_auth_sha256.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&self.tls_alpn01_path(hostname), &hex)
    }

    pub fn remove_tls_alpn01(&self, hostname: &str) -> io::Result<()> {
        remove(&self.tls_alpn01_path(hostname))
    }

    fn tls_alpn01_path(&self, hostname: &str) -> PathBuf {
        Base(self.dir.join("challenges").join(file_name(hostname))).with("tls-alpn-01")
    }

    /// Waits for, then holds, the right to order a certificate for `hostname` among the
    /// processes sharing the directory (an advisory lock on `orders/<host>.lock`, released
    /// when the file is dropped, or when the process dies). Blocking: call it off the
    /// runtime's workers.
    pub fn lock_orders(&self, hostname: &str) -> io::Result<fs::File> {
        let path = Base(self.dir.join("orders").join(file_name(hostname))).with("lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        file.lock()?;
        Ok(file)
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

    #[test]
    fn files_are_0600_and_round_trip() {
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
        assert!(store.save_http01("../etc", "x").is_err());
        store
            .save_tls_alpn01("a.example.com", &[0, 1, 254, 255])
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
        store.remove_tls_alpn01("a.example.com").expect("remove");
        assert_eq!(store.tls_alpn01("a.example.com").expect("read"), None);
        assert_eq!(store.http01("../etc").expect("read"), None);
        fs::remove_dir_all(dir).expect("cleanup");
    }
}
