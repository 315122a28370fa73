//! A real OpenID provider for tests: node-oidc-provider (npm `oidc-provider`, installed in
//! `e2e/oidc-provider/` by `.ci/install` with `npm ci`) run with Node.js on a free port, and a
//! cookie jar that follows redirects as a browser does.
//!
//! The provider (`e2e/oidc-provider/provider.mjs`) knows two confidential clients with the
//! secret [`CLIENT_SECRET`]: `gantry` (access tokens live 1 h) and `gantry-short` (20 s). Its
//! login and consent interactions finish at once for the account [`ACCOUNT`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::harness::{Reply, client, send};
use crate::ports::free_port;

/// The secret of both clients.
pub const CLIENT_SECRET: &str = "e2e-client-secret";
/// The account every login ends in (`sub` of the ID tokens).
pub const ACCOUNT: &str = "alice";

/// A running provider; killed on drop.
pub struct OidcProvider {
    pub port: u16,
    /// The issuer's host: `127.0.0.1`, or a name under `.invalid` (see [`OidcProvider::start_as`]).
    host: String,
    child: Child,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../oidc-provider")
}

impl OidcProvider {
    /// Starts the provider, which accepts `redirect_uris`, and waits until its discovery
    /// document answers.
    pub async fn start(redirect_uris: &[&str]) -> Self {
        Self::start_as("127.0.0.1", redirect_uris).await
    }

    /// Starts the provider with the issuer `http://<host>:<port>`. A `host` under `.invalid`
    /// resolves nowhere: only what is told to connect elsewhere reaches it (a proxy through a
    /// Service backendRef, and [`CookieJar`], which sends such requests to 127.0.0.1).
    pub async fn start_as(host: &str, redirect_uris: &[&str]) -> Self {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the npm package oidc-provider is not installed: run `.ci/install` (npm ci in {})",
            dir.display()
        );
        let port = free_port();
        let child = Command::new("node")
            .current_dir(&dir)
            .env("OIDC_ISSUER_HOST", host)
            .arg("provider.mjs")
            .arg(port.to_string())
            .args(redirect_uris)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning node (Debian packages nodejs and npm)");
        let provider = Self {
            port,
            host: host.to_owned(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let discovery = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
        loop {
            if let Ok(reply) = crate::harness::get(&discovery).await
                && reply.status == 200
            {
                return provider;
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID provider did not answer {discovery} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://<host>:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Where it listens: `127.0.0.1:<port>`.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Cookies by name, as a browser keeps them for one host (every test server is on
/// 127.0.0.1, and browsers do not separate cookies by port). Paths are not kept: every cookie
/// goes with every request.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    cookies: BTreeMap<String, String>,
}

impl CookieJar {
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// The names of the cookies held.
    pub fn names(&self) -> Vec<String> {
        self.cookies.keys().cloned().collect()
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub fn remove(&mut self, name: &str) {
        self.cookies.remove(name);
    }

    /// Takes every `Set-Cookie` of a response: an empty value or `Max-Age=0` deletes.
    pub fn store(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(http::header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let mut attributes = v.split(';').map(str::trim);
            let Some((name, value)) = attributes.next().and_then(|c| c.split_once('=')) else {
                continue;
            };
            let expired = attributes.any(|a| {
                a.eq_ignore_ascii_case("max-age=0")
                    || a.to_ascii_lowercase()
                        .starts_with("expires=thu, 01 jan 1970")
            });
            if value.is_empty() || expired {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// `Cookie` header value.
    pub fn header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// One GET with the jar's cookies and `Accept: text/html` (a browser), keeping the
    /// cookies it sets.
    pub async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let cookie = self.header();
        let mut all = vec![("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
        if let Some(c) = &cookie {
            all.push(("cookie", c));
        }
        all.extend_from_slice(headers);
        // A host under `.invalid` is an OpenID provider started with `start_as`: connect to
        // 127.0.0.1 with that Host.
        let authority = url
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        let host = authority.split(':').next().unwrap_or("");
        let target = if host.ends_with(".invalid") {
            all.push(("host", authority));
            url.replacen(host, "127.0.0.1", 1)
        } else {
            url.to_owned()
        };
        let reply = send(client(), Method::GET, &target, &all, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        self.store(&reply.headers);
        reply
    }

    /// GETs `url` and follows redirects (at most 20) as a browser does; returns the final
    /// answer and every URL visited, `url` first.
    pub async fn browse(&mut self, url: &str) -> (Reply, Vec<String>) {
        let mut visited = vec![url.to_owned()];
        let mut current = url.to_owned();
        for _ in 0..20 {
            let reply = self.get(&current, &[]).await;
            if !reply.status.is_redirection() {
                return (reply, visited);
            }
            let location = reply
                .header("location")
                .unwrap_or_else(|| panic!("{} from {current} has no Location", reply.status));
            current = resolve(&current, location);
            visited.push(current.clone());
        }
        panic!("more than 20 redirects: {visited:?}")
    }
}

/// `location` resolved against `base` (absolute URLs as they are; paths on `base`'s origin).
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}{location}", &base[..origin_end])
}

/// The value of query parameter `name` of `url` (not decoded).
pub fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    url.split_once('?')?.1.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}
