//! Watch event to first 200 in Kubernetes mode: `gantry-proxy run --kubernetes` serves N
//! HTTPRoutes from the in-process API server ([`gantry_testkit::apiserver`]); new routes are created
//! through the API server one at a time, and each is timed from its creation (the moment the
//! server sends the watch event) to the first 200 for that route.
//!
//! The proxy runs as it does in a cluster: it holds the Lease and writes every route's status,
//! and each status write comes back to it as a watch event. Measuring starts once the status of
//! every loaded route is written; after each sample, the next waits until the new route's
//! status is written too, so every sample starts from a settled proxy.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::config::{host, path};
use super::probe;
use super::process::{Proc, free_port};
use super::proxy::Setup;
use super::results::{KubePropagation, StageTime};
use gantry_testkit::apiserver::ApiServer;
use gantry_testkit::apiserver::objects::{self, GW_API};

/// The Gateway every route attaches to.
const GATEWAY: &str = "bench";
/// Index of the first route created while measuring (after the loaded ones).
const NEW: usize = 1_000_000;
/// How long each wait may take: loading, a sample, a status write.
const TIMEOUT: Duration = Duration::from_secs(300);

/// A proxy in Kubernetes mode with `routes` routes loaded, and the API server it watches.
struct KubeProxy {
    server: ApiServer,
    port: u16,
    admin: u16,
    proc: Proc,
    dir: std::path::PathBuf,
    /// Keeps the API server's tasks running.
    _runtime: tokio::runtime::Runtime,
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stages of `gantry_config_stage_duration_seconds`, in pipeline order.
const STAGES: [&str; 4] = ["source", "translate", "compile", "status"];

/// Starts the proxy on `routes` routes and adds `samples` new ones, one at a time.
pub fn measure(setup: &Setup, routes: usize, samples: usize) -> anyhow::Result<KubePropagation> {
    let mut proxy = KubeProxy::start(setup, routes)?;
    let mut result = KubePropagation {
        routes,
        samples_ms: Vec::with_capacity(samples),
        stages: Vec::new(),
    };
    let before = stage_totals(proxy.admin)?;
    for k in 0..samples {
        let i = NEW + k;
        let started = Instant::now();
        proxy.server.apply("httproutes", route(i));
        let took = probe::wait_for_200(
            proxy.port,
            &host(i),
            &path(i),
            started,
            TIMEOUT,
            Duration::from_micros(500),
            || proxy.proc.check_alive(),
        )
        .with_context(|| format!("new route {i} at {routes} routes"))?;
        result.samples_ms.push(took.as_secs_f64() * 1e3);
        proxy.wait_for_statuses(1 + routes + k + 1)?;
    }
    let after = stage_totals(proxy.admin)?;
    result.stages = STAGES
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(stage, ((sum0, n0), (sum1, n1)))| {
            let count = n1.saturating_sub(*n0);
            StageTime {
                stage: (*stage).to_owned(),
                count,
                mean_ms: if count == 0 {
                    0.0
                } else {
                    (sum1 - sum0) * 1e3 / count as f64
                },
            }
        })
        .collect();
    Ok(result)
}

/// `(sum in seconds, count)` of each stage in [`STAGES`], from the proxy's `/metrics`.
fn stage_totals(admin: u16) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = probe::get_body(admin, "/metrics")?;
    let value = |series: &str, stage: &str| -> f64 {
        let prefix = format!("gantry_config_stage_duration_seconds_{series}{{stage=\"{stage}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(STAGES
        .iter()
        .map(|stage| (value("sum", stage), value("count", stage) as u64))
        .collect())
}

impl KubeProxy {
    fn start(setup: &Setup, routes: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let server = runtime.block_on(ApiServer::start());
        let port = free_port()?;
        seed(&server, port, setup.backend, routes);
        let dir =
            std::env::temp_dir().join(format!("gantry-bench-{}-kube-{routes}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = server.kubeconfig(&dir);
        let admin = free_port()?;
        let started = Instant::now();
        let proc = Proc::spawn(
            "gantry-proxy --kubernetes",
            Command::new(setup.bins.join("gantry-proxy"))
                .args(["run", "--kubernetes", "--gateway"])
                .arg(format!("default/{GATEWAY}"))
                .args(["--no-access-log", "--log-level", "warn"])
                .args(["--bind-address", "127.0.0.1"])
                .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
                .args(["--worker-threads", &setup.workers.to_string()])
                .env("KUBECONFIG", &kubeconfig)
                .env("POD_NAME", "bench-0")
                .env("POD_NAMESPACE", "default"),
            Some(&dir.join("proxy.log")),
        )?;
        let mut proxy = Self {
            server,
            port,
            admin,
            proc,
            dir,
            _runtime: runtime,
        };
        let last = routes - 1;
        probe::wait_for_200(
            port,
            &host(last),
            &path(last),
            started,
            TIMEOUT,
            Duration::from_millis(2),
            || proxy.proc.check_alive(),
        )
        .context("the proxy in Kubernetes mode never served its last route")?;
        // The Gateway and every route.
        proxy.wait_for_statuses(1 + routes)?;
        Ok(proxy)
    }

    /// Waits until `objects` Gateway and route statuses carry an entry of the proxy.
    fn wait_for_statuses(&mut self, objects: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let written = self.server.count("gateways", has_status)
                + self.server.count("httproutes", has_status);
            if written >= objects {
                return Ok(());
            }
            self.proc.check_alive()?;
            if started.elapsed() > TIMEOUT {
                bail!("only {written} of {objects} statuses written within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn has_status(object: &Value) -> bool {
    let status = &object["status"];
    status["parents"]
        .as_array()
        .or_else(|| status["listeners"].as_array())
        .is_some_and(|entries| !entries.is_empty())
}

/// The cluster: class `gantry`, Gateway `default/bench` on `port`, Service `backend` with an
/// endpoint at `backend`, and `routes` HTTPRoutes.
fn seed(server: &ApiServer, port: u16, backend: SocketAddr, routes: usize) {
    server.apply("namespaces", objects::namespace("default"));
    server.apply("gatewayclasses", objects::gateway_class("gantry"));
    server.apply(
        "gateways",
        objects::gateway("default", GATEWAY, "gantry", port),
    );
    server.apply("services", objects::service("default", "backend", 80));
    server.apply(
        "endpointslices",
        objects::endpoint_slice(
            "default",
            "backend",
            &backend.ip().to_string(),
            backend.port(),
        ),
    );
    for i in 0..routes {
        server.apply("httproutes", route(i));
    }
}

/// Route `i`: its own hostname and path prefix, to the backend (the same routes the file
/// benchmarks load).
fn route(i: usize) -> Value {
    json!({"apiVersion": GW_API, "kind": "HTTPRoute",
           "metadata": {"name": format!("route-{i}"), "namespace": "default"},
           "spec": {"parentRefs": [{"name": GATEWAY}],
                    "hostnames": [host(i)],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path(i)}}],
                               "backendRefs": [{"name": "backend", "port": 80}]}]}})
}
