//! Drives the real `gantry-proxy` binary: writes its config directory, starts it, waits for
//! `/readyz`, and talks to it over real sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Path of the `gantry-proxy` binary, so the tests always exercise the current code.
///
/// `cargo test --workspace` builds it already (the proxy package has integration tests), with
/// the workspace's feature set; that binary is used when it is newer than every proxy source.
/// Otherwise (e.g. `cargo test -p gantry-e2e` after an edit) it is built here once.
pub fn proxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Test binaries live in target/<profile>/deps; the proxy in target/<profile>.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let bin = profile_dir.join("gantry-proxy");
        if !is_fresh(&bin) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "gantry-proxy",
                    "--bin",
                    "gantry-proxy",
                ])
                .status()
                .expect("running cargo build for gantry-proxy");
            assert!(status.success(), "cargo build -p gantry-proxy failed");
        }
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// True when `bin` exists and is newer than every source file it is built from.
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sources = [
        "gateway-proxy/src",
        "gateway-proxy/Cargo.toml",
        "crds/src",
        "Cargo.lock",
    ];
    sources
        .iter()
        .all(|s| newest(&root.join(s)).is_some_and(|newest| newest <= built))
}

fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    let mut latest = meta.modified().ok()?;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        latest = latest.max(newest(&entry.path())?);
    }
    Some(latest)
}

pub use crate::ports::free_port;

/// A running proxy process; killed on drop.
pub struct Proxy {
    pub child: Child,
    pub admin: SocketAddr,
    pub config_dir: tempdir::TempDir,
    log_path: PathBuf,
}

/// A temporary directory removed on drop (no extra crate needed).
pub mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    /// Clones share the directory, removed when the last is dropped (proxies serving one
    /// config directory).
    #[derive(Clone)]
    pub struct TempDir(Arc<Removed>);

    struct Removed(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> Self {
            let dir = unique_path(prefix);
            std::fs::create_dir_all(&dir).expect("creating temp dir");
            Self(Arc::new(Removed(dir)))
        }

        pub fn path(&self) -> &Path {
            &self.0.0
        }
    }

    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A path under the temporary directory no other call returns.
    pub fn unique_path(prefix: &str) -> PathBuf {
        std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), uuid_like()))
    }

    fn uuid_like() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{nanos:x}{}", N.fetch_add(1, Ordering::Relaxed))
    }
}

impl Proxy {
    /// Writes `files` (name → YAML) into a fresh config directory and starts the proxy on it.
    /// Does not wait for readiness.
    pub fn start(files: &[(&str, &str)], extra_args: &[&str]) -> Self {
        Self::start_with_env(files, extra_args, &[])
    }

    /// Like [`Proxy::start`], with extra environment variables for the proxy process.
    pub fn start_with_env(
        files: &[(&str, &str)],
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let config_dir = tempdir::TempDir::new("gantry-e2e");
        for (name, text) in files {
            write_file(config_dir.path(), name, text);
        }
        Self::spawn(config_dir, extra_args, env)
    }

    /// Starts another proxy on `config_dir` (one another proxy serves: a fleet); give it a
    /// `--port-offset` of its own so that its listeners do not collide with the other's.
    pub fn start_in(config_dir: &tempdir::TempDir, extra_args: &[&str]) -> Self {
        Self::spawn(config_dir.clone(), extra_args, &[])
    }

    /// Starts the binary on `config_dir`. Unless `extra_args` sets them, the drain delay is 0
    /// (SIGTERM stops accepting at once) and the drain timeout 10 s.
    fn spawn(config_dir: tempdir::TempDir, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("socket address");
        let log_path = tempdir::unique_path("gantry-e2e-proxy").with_extension("log");
        let log = std::fs::File::create(&log_path).expect("creating the proxy log");
        let default = |flag: &'static str, value: &'static str| -> Vec<&str> {
            if extra_args.contains(&flag) {
                Vec::new()
            } else {
                vec![flag, value]
            }
        };
        // `GANTRY_E2E_WORKER_THREADS=N` runs every proxy with `--worker-threads N` (unless the
        // test sets it), e.g. 1 to run the suite on the current-thread runtime.
        let workers = std::env::var("GANTRY_E2E_WORKER_THREADS")
            .ok()
            .filter(|_| !extra_args.contains(&"--worker-threads"))
            .map(|n| vec![String::from("--worker-threads"), n])
            .unwrap_or_default();
        let child = Command::new(proxy_bin())
            .arg("run")
            .arg("--config-dir")
            .arg(config_dir.path())
            .args(["--bind-address", "127.0.0.1"])
            .args(["--admin-addr", &admin.to_string()])
            .args(default("--drain-timeout", "10"))
            .args(default("--drain-delay", "0s"))
            .args(extra_args)
            .args(&workers)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning gantry-proxy");
        Self {
            child,
            admin,
            config_dir,
            log_path,
        }
    }

    /// Starts the proxy and waits until `/readyz` answers 200.
    pub async fn start_ready(files: &[(&str, &str)], extra_args: &[&str]) -> Self {
        let proxy = Self::start(files, extra_args);
        proxy.wait_ready().await;
        proxy
    }

    /// Calls `check` every `every` until it gives `Ok`; fails the test once `within` has
    /// passed, with the last `Err` (why not yet) and the proxy's log.
    pub async fn eventually<T, Fut>(
        &self,
        within: Duration,
        every: Duration,
        mut check: impl FnMut() -> Fut,
    ) -> T
    where
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + within;
        loop {
            match check().await {
                Ok(value) => return value,
                Err(why) => assert!(
                    Instant::now() < deadline,
                    "{why} (after {within:?}); log:\n{}",
                    self.log()
                ),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Polls `/readyz` until 200 (10 s at most).
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.admin);
        self.eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                match get(&url).await {
                    Ok(r) if r.status == StatusCode::OK => Ok(()),
                    _ => Err("proxy not ready".to_owned()),
                }
            },
        )
        .await;
    }

    /// Replaces (or adds) one config file.
    pub fn write(&self, name: &str, text: &str) {
        write_file(self.config_dir.path(), name, text);
    }

    /// Removes one config file.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.config_dir.path().join(name)).expect("removing config file");
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        self.admin_json("/status").await
    }

    /// `GET /config` as JSON.
    pub async fn config(&self) -> serde_json::Value {
        self.admin_json("/config").await
    }

    /// The config version in use.
    pub async fn version(&self) -> u64 {
        self.config().await["version"].as_u64().unwrap_or(0)
    }

    /// Waits until the config version exceeds `than` (10 s at most).
    pub async fn wait_version_above(&self, than: u64) -> u64 {
        self.eventually(
            Duration::from_secs(10),
            Duration::from_millis(10),
            || async {
                let v = self.version().await;
                if v > than {
                    Ok(v)
                } else {
                    Err(format!("config version stayed at {v}"))
                }
            },
        )
        .await
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = get(&format!("http://{}{path}", self.admin))
            .await
            .expect("admin request");
        serde_json::from_slice(&r.body).expect("admin JSON")
    }

    /// The value of one series of `/metrics` (`name` or `name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let reply = get(&format!("http://{}/metrics", self.admin))
            .await
            .expect("GET /metrics");
        reply
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls `/metrics` until `series` equals `want` (10 s at most).
    pub async fn wait_metric(&self, series: &str, want: f64) {
        self.eventually(
            Duration::from_secs(10),
            Duration::from_millis(25),
            || async {
                let value = self.metric(series).await;
                if value == want {
                    Ok(())
                } else {
                    Err(format!("{series} stayed at {value}, expected {want}"))
                }
            },
        )
        .await;
    }

    /// What the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

fn write_file(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("creating config subdir");
    }
    // Write then rename, as editors and ConfigMap volumes do, so the proxy never reads half a
    // file.
    let tmp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
    std::fs::write(&tmp, text).expect("writing config file");
    std::fs::rename(&tmp, &path).expect("renaming config file");
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as the echo backend's JSON.
    pub fn echo(&self) -> crate::echo::Echo {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an echo answer ({e}): {} {}", self.status, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The shared plain-HTTP client of [`get`] and [`send`].
pub fn client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// Sends one HTTP/2 (prior knowledge) request over a new connection to `addr`; `url`'s
/// authority becomes `:authority`, so it need not resolve.
pub async fn h2_get(addr: SocketAddr, url: &str) -> anyhow::Result<Reply> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let req = Request::builder().uri(url).body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET url`.
pub async fn get(url: &str) -> Result<Reply, hyper_util::client::legacy::Error> {
    send(client(), Method::GET, url, &[], Bytes::new()).await
}

/// `GET url` with a Host header and extra headers.
pub async fn get_host(
    url: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, hyper_util::client::legacy::Error> {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    send(client(), Method::GET, url, &all, Bytes::new()).await
}

/// Sends one request with any client, reading the whole response.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Reply, hyper_util::client::legacy::Error> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).expect("valid request");
    let resp = client.request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// YAML for a Service with one port and the EndpointSlice that points it at `backends`.
pub fn service_yaml(namespace: &str, name: &str, port: u16, backends: &[SocketAddr]) -> String {
    service_yaml_with(namespace, name, port, backends, None)
}

/// Like [`service_yaml`], with an `appProtocol` on the port.
pub fn service_yaml_with(
    namespace: &str,
    name: &str,
    port: u16,
    backends: &[SocketAddr],
    app_protocol: Option<&str>,
) -> String {
    let target = backends.first().map(|a| a.port()).unwrap_or(port);
    let app = app_protocol
        .map(|p| format!("\n      appProtocol: {p}"))
        .unwrap_or_default();
    let mut endpoints = String::new();
    for b in backends {
        endpoints.push_str(&format!(
            "  - addresses: [\"{}\"]\n    conditions: {{ready: true}}\n",
            b.ip()
        ));
    }
    if endpoints.is_empty() {
        endpoints.push_str("  []\n");
    }
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ports:
    - name: http
      port: {port}
      targetPort: {target}{app}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports:
  - name: http
    port: {target}
endpoints:
{endpoints}"#
    )
}

/// A GatewayClass for Gantry and a Gateway with one HTTP listener on `port` accepting routes
/// from all namespaces.
pub fn gateway_yaml(name: &str, port: u16) -> String {
    gateway_with_listeners_yaml(
        name,
        &format!(
            r#"    - name: http
      port: {port}
      protocol: HTTP
      allowedRoutes:
        namespaces: {{from: All}}
"#
        ),
    )
}

/// An HTTPRoute `default/{name}` on the Gateway `gw`, matching the path prefix `path`, to the
/// echo Service `echo` port 8080 (what [`echo_backends`] serves), ending with `---`.
pub fn echo_route_yaml(name: &str, path: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n\
         \x20   - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n\
         \x20     backendRefs: [{{name: echo, port: 8080}}]\n---\n"
    )
}

/// A GatewayClass for Gantry and a Gateway `default/{name}` with `listeners`: YAML list items
/// indented by four spaces (`    - name: ...`).
pub fn gateway_with_listeners_yaml(name: &str, listeners: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gantry}}
spec:
  controllerName: gantry.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: gantry
  listeners:
{listeners}"#
    )
}

/// Starts one in-process echo backend per `(namespace, name)` on an ephemeral port and returns
/// YAML for a matching Service (port 8080) + EndpointSlice per backend, plus the addresses.
pub async fn echo_backends(backends: &[(&str, &str)]) -> (String, Vec<SocketAddr>) {
    let mut yaml = String::new();
    let mut addrs = Vec::new();
    for (namespace, name) in backends {
        let identity = crate::echo::EchoIdentity {
            name: (*name).to_owned(),
            namespace: (*namespace).to_owned(),
            plain: false,
        };
        let (addr, _task) = crate::echo::spawn("127.0.0.1:0".parse().expect("addr"), identity)
            .await
            .expect("starting echo backend");
        yaml.push_str("---\n");
        yaml.push_str(&service_yaml(namespace, name, 8080, &[addr]));
        addrs.push(addr);
    }
    (yaml, addrs)
}

/// Namespace objects, so label selectors have something to select.
pub fn namespace_yaml(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{}}}\n",
        labels.join(", ")
    )
}

/// `POST url` with headers and a text body.
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, hyper_util::client::legacy::Error> {
    send(
        client(),
        Method::POST,
        url,
        headers,
        Bytes::copy_from_slice(body.as_bytes()),
    )
    .await
}

/// A proxy serving one Gateway (`gw`, one HTTP listener accepting routes from all namespaces),
/// echo backends as Services on port 8080, and `routes`.
pub struct Served {
    pub proxy: Proxy,
    /// `http://127.0.0.1:PORT` of the Gateway's listener.
    pub base: String,
    /// The echo backends' own addresses, in the order given.
    pub backends: Vec<SocketAddr>,
}

/// Starts echo backends and a ready proxy serving `routes` in front of them.
pub async fn serve_routes(backends: &[(&str, &str)], routes: &str) -> Served {
    let (services, addrs) = echo_backends(backends).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("routes.yaml", routes),
        ],
        &[],
    )
    .await;
    Served {
        proxy,
        base: format!("http://127.0.0.1:{port}"),
        backends: addrs,
    }
}
