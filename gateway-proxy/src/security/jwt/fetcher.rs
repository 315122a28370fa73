//! Fetches and caches remote JWKS documents: one background task per distinct URL (and cache
//! duration), shared by every compiled policy that names it and kept across configuration
//! swaps, so a reload never forgets the keys.
//!
//! The JWKS is fetched from the URL's host, or through the ready endpoints of a backendRef's
//! cluster, which each published snapshot hands over ([`update_endpoints`]).
//!
//! The task fetches at once, then every cache duration (while it has never succeeded, after
//! 1 s, doubling up to 30 s; a snapshot giving its backendRef endpoints wakes it). A token whose `kid` the cached set does not know wakes it at once, at most once
//! per [`FORCED_REFETCH_INTERVAL`], and the request waits (up to [`FETCH_TIMEOUT`]) for that
//! fetch: a key rotation costs no failed request. A failed fetch keeps the last good set.
//! Requests read the set with one `ArcSwap` load; nothing here takes a lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{Notify, watch};

use gantry_translate::ir::ClusterIr;

use super::keys::KeySet;

/// At most one fetch forced by an unknown `kid` per this interval, per URL.
pub const FORCED_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// A fetch (connect, TLS, response) taking longer fails.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry interval until the first fetch succeeds, doubled after each failure up to
/// [`MAX_FIRST_FETCH_RETRY`].
const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);
const MAX_FIRST_FETCH_RETRY: Duration = Duration::from_secs(30);
/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The keys of one JWKS URL. Dropping the last handle ends its task.
#[derive(Debug)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    uri: http::Uri,
    refresh: Duration,
    /// The cluster (a Service port) fetched through, when the policy names a backendRef.
    cluster: Option<String>,
    /// Its ready endpoints (`ip:port`), from the snapshot in use ([`update_endpoints`]).
    endpoints: ArcSwap<Vec<String>>,
    keys: ArcSwapOption<KeySet>,
    /// Bumped when a fetch ends (success or failure).
    fetched: watch::Sender<u64>,
    wake: Notify,
    fetching: AtomicBool,
    closed: AtomicBool,
    started: AtomicBool,
    /// Milliseconds since `epoch` of the last forced fetch, plus one (0: never).
    last_forced: AtomicU64,
    epoch: Instant,
}

type Registry = HashMap<(String, u64, Option<String>), Weak<RemoteJwks>>;

/// Every live [`RemoteJwks`], by URL, cache duration and cluster.
static REGISTRY: LazyLock<ArcSwap<Registry>> = LazyLock::new(Default::default);

impl RemoteJwks {
    /// The shared handle for `uri`, started when a Tokio runtime is running (otherwise on
    /// first use).
    pub fn get(uri: &str, refresh: Duration, cluster: Option<&str>) -> Arc<Self> {
        let key = (
            uri.to_owned(),
            refresh.as_millis() as u64,
            cluster.map(str::to_owned),
        );
        if let Some(found) = REGISTRY.load().get(&key).and_then(Weak::upgrade) {
            found.ensure_started();
            return found;
        }
        let fresh = Arc::new(Self::new(uri, refresh, cluster));
        let mut chosen = fresh.clone();
        REGISTRY.rcu(|registry| {
            let mut next: Registry = registry
                .iter()
                .filter(|(_, w)| w.strong_count() > 0)
                .map(|(k, w)| (k.clone(), w.clone()))
                .collect();
            match next.get(&key).and_then(Weak::upgrade) {
                Some(existing) => chosen = existing,
                None => {
                    chosen = fresh.clone();
                    next.insert(key.clone(), Arc::downgrade(&fresh));
                }
            }
            next
        });
        chosen.ensure_started();
        chosen
    }

    fn new(uri: &str, refresh: Duration, cluster: Option<&str>) -> Self {
        let (fetched, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                uri: uri.parse().unwrap_or_default(),
                refresh: refresh.max(Duration::from_secs(1)),
                cluster: cluster.map(str::to_owned),
                // A handle made between snapshots (an `oidc` provider discovered on a request)
                // starts from the endpoints the last snapshot gave its cluster.
                endpoints: ArcSwap::new(cluster.map(cluster_endpoints).unwrap_or_default()),
                keys: ArcSwapOption::empty(),
                fetched,
                wake: Notify::new(),
                fetching: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                started: AtomicBool::new(false),
                last_forced: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// Starts the task if it is not running and a runtime is there to run it.
    pub fn ensure_started(&self) {
        if self.inner.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .inner
            .started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            runtime.spawn(run(self.inner.clone()));
        }
    }

    /// Waits (at most `limit`) for the first fetch to end when no key set was fetched yet,
    /// as a newly created handle has none.
    pub async fn first_fetch(&self, limit: Duration) {
        self.ensure_started();
        let mut fetched = self.inner.fetched.subscribe();
        if self.inner.keys.load().is_some() {
            return;
        }
        let _ = tokio::time::timeout(limit, fetched.changed()).await;
    }

    /// The last good key set, if any fetch succeeded yet.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.inner.keys.load_full()
    }

    /// Called when the cached set cannot verify a token's `kid`: forces a fetch unless one
    /// was forced within [`FORCED_REFETCH_INTERVAL`], and waits for the fetch in progress, if
    /// any. Before the first successful fetch it only waits for the one in progress. True
    /// when a fetch ended meanwhile.
    pub async fn refetch_for_unknown_key(&self) -> bool {
        self.ensure_started();
        let inner = &self.inner;
        let mut fetched = inner.fetched.subscribe();
        if inner.keys.load().is_none() {
            // Never fetched yet: the task is at it (and retries every second); wait for the
            // fetch in progress, but spend no forced fetch, which a rotation may soon need.
            if !inner.fetching.load(Ordering::Acquire) {
                return false;
            }
            return tokio::time::timeout(FETCH_TIMEOUT, fetched.changed())
                .await
                .is_ok_and(|r| r.is_ok());
        }
        let now = inner.epoch.elapsed().as_millis() as u64 + 1;
        let last = inner.last_forced.load(Ordering::Acquire);
        let forced = (last == 0
            || now.saturating_sub(last) >= FORCED_REFETCH_INTERVAL.as_millis() as u64)
            && inner
                .last_forced
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if forced {
            inner.wake.notify_one();
        } else if !inner.fetching.load(Ordering::Acquire) {
            return false;
        }
        tokio::time::timeout(FETCH_TIMEOUT, fetched.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Clusters something else than a JWKS is fetched through (an `oidc` provider's
/// `backendRefs`), registered when its policy compiles, with their ready endpoints from the
/// snapshot in use. Names are never removed: they are few, one per configured backendRef.
static WANTED: LazyLock<ArcSwap<BTreeMap<String, Arc<Vec<String>>>>> =
    LazyLock::new(Default::default);

/// Registers `cluster` so that [`update_endpoints`] keeps its endpoints for
/// [`cluster_endpoints`].
pub fn want_cluster(cluster: &str) {
    if WANTED.load().contains_key(cluster) {
        return;
    }
    WANTED.rcu(|wanted| {
        let mut next = BTreeMap::clone(wanted);
        next.entry(cluster.to_owned()).or_default();
        next
    });
}

/// The ready endpoints (`ip:port`) of a cluster registered with [`want_cluster`], from the
/// last published snapshot.
pub fn cluster_endpoints(cluster: &str) -> Arc<Vec<String>> {
    WANTED.load().get(cluster).cloned().unwrap_or_default()
}

/// Gives every live [`RemoteJwks`] fetched through a cluster that cluster's endpoints in
/// `clusters` (the snapshot being published); one that has no keys yet fetches at once.
pub fn update_endpoints(clusters: &BTreeMap<String, ClusterIr>) {
    if !WANTED.load().is_empty() {
        WANTED.rcu(|wanted| {
            wanted
                .keys()
                .map(|name| {
                    let endpoints = clusters
                        .get(name)
                        .map(|c| c.endpoints.clone())
                        .unwrap_or_default();
                    (name.clone(), Arc::new(endpoints))
                })
                .collect::<BTreeMap<_, _>>()
        });
    }
    for remote in REGISTRY.load().values().filter_map(Weak::upgrade) {
        let inner = &remote.inner;
        let Some(cluster) = &inner.cluster else {
            continue;
        };
        let endpoints = clusters
            .get(cluster)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default();
        if **inner.endpoints.load() != endpoints {
            let reachable = !endpoints.is_empty();
            inner.endpoints.store(Arc::new(endpoints));
            if reachable && inner.keys.load().is_none() {
                inner.wake.notify_one();
            }
        }
    }
}

impl Drop for RemoteJwks {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

async fn run(inner: Arc<Inner>) {
    let uri = inner.uri.to_string();
    let mut retry = FIRST_FETCH_RETRY;
    while !inner.closed.load(Ordering::Acquire) {
        inner.fetching.store(true, Ordering::Release);
        let endpoints = inner.cluster.as_ref().map(|_| inner.endpoints.load_full());
        let result = tokio::time::timeout(FETCH_TIMEOUT, fetch(&inner.uri, endpoints.as_deref()))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
            .and_then(|body| KeySet::parse(&body));
        match result {
            Ok(set) => {
                tracing::debug!(%uri, keys = set.len(), "JWKS fetched");
                inner.keys.store(Some(Arc::new(set)));
            }
            Err(error) => {
                tracing::warn!(%uri, %error, "JWKS fetch failed; the last good keys stay in use");
            }
        }
        inner.fetching.store(false, Ordering::Release);
        inner.fetched.send_modify(|n| *n += 1);
        let wait = if inner.keys.load().is_some() {
            inner.refresh
        } else {
            let wait = retry;
            retry = (retry * 2).min(MAX_FIRST_FETCH_RETRY);
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = inner.wake.notified() => {}
        }
    }
}

/// GETs `uri` (HTTP/1.1, `https` verified against the system roots) and returns the body of
/// a 200 answer. With `endpoints` (a backendRef's), the first of them that accepts a
/// connection is used instead of the URL's host.
async fn fetch(uri: &http::Uri, endpoints: Option<&Vec<String>>) -> Result<Bytes, String> {
    let (status, body) = call(uri, endpoints, None, &[]).await?;
    if status != http::StatusCode::OK {
        return Err(format!("answered {status}"));
    }
    Ok(body)
}

/// Sends one request to `uri` (HTTP/1.1, `https` verified against the system roots): a GET,
/// or with `form` a POST of that `application/x-www-form-urlencoded` body; `headers` are
/// added. Returns the status and the body (at most 1 MiB), whatever the status. With
/// `endpoints` (a backendRef's), the first of them that accepts a connection is used instead
/// of the URL's host. Nothing of the request or the answer is logged.
pub(crate) async fn call(
    uri: &http::Uri,
    endpoints: Option<&Vec<String>>,
    form: Option<String>,
    headers: &[(http::HeaderName, http::HeaderValue)],
) -> Result<(http::StatusCode, Bytes), String> {
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host_name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = match endpoints {
        None => tokio::net::TcpStream::connect((host_name.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?,
        Some(endpoints) => {
            let mut last = "the backendRef has no ready endpoint".to_owned();
            let mut connected = None;
            for endpoint in endpoints {
                match tokio::net::TcpStream::connect(endpoint.as_str()).await {
                    Ok(s) => {
                        connected = Some(s);
                        break;
                    }
                    Err(e) => last = format!("cannot connect to endpoint {endpoint}: {e}"),
                }
            }
            connected.ok_or(last)?
        }
    };
    let _ = tcp.set_nodelay(true);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
    let method = if form.is_some() {
        http::Method::POST
    } else {
        http::Method::GET
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "gantry-proxy");
    if form.is_some() {
        builder = builder.header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    }
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(form.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    if https {
        let roots = crate::upstream::tls::root_store(&gantry_translate::ir::TrustIr::System)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(host_name)
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port} failed: {e}"))?;
        send(hyper_util::rt::TokioIo::new(tls), request).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request).await
    }
}

async fn send<T>(
    io: T,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map(|b| (status, b.to_bytes()))
        .map_err(|e| format!("reading the body failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_testkit::jwks::{JwksServer, SigningKey};

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn an_unknown_kid_forces_one_fetch_per_interval() {
        let (old, new) = (SigningKey::generate("old"), SigningKey::generate("new"));
        let server = JwksServer::spawn(&[&old]).await;
        let remote = RemoteJwks::get(&server.url(), Duration::from_secs(300), None);
        until("the first fetch", || remote.keys().is_some()).await;
        assert_eq!(server.fetches(), 1);
        assert!(
            Arc::ptr_eq(
                &remote,
                &RemoteJwks::get(&server.url(), Duration::from_secs(300), None)
            ),
            "one handle per URL"
        );

        server.set_keys(&[&new]);
        assert!(remote.refetch_for_unknown_key().await);
        assert!(remote.keys().is_some_and(|k| k.contains_kid("new")));
        assert_eq!(server.fetches(), 2);

        // Within the interval: no fetch, no wait.
        let started = Instant::now();
        assert!(!remote.refetch_for_unknown_key().await);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_last_good_keys() {
        let key = SigningKey::generate("k");
        let server = JwksServer::spawn(&[&key]).await;
        let remote = RemoteJwks::get(&server.url(), Duration::from_secs(1), None);
        until("the first fetch", || remote.keys().is_some()).await;
        server.set_failing(true);
        let before = server.fetches();
        until("a refresh", || server.fetches() > before + 1).await;
        assert!(remote.keys().is_some_and(|k| k.contains_kid("k")));

        // Never fetched: no keys, and a waiting request gets its answer (401) at once.
        let down = RemoteJwks::get("http://127.0.0.1:9/jwks", Duration::from_secs(300), None);
        let started = Instant::now();
        let _ = down.refetch_for_unknown_key().await;
        assert!(down.keys().is_none());
        assert!(started.elapsed() < FETCH_TIMEOUT + Duration::from_secs(1));
    }
}
