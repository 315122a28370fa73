//! Everything one run of the suite measured, as plain data (also written as `results.json`).

use super::process::Memory;
use super::proxy::Kind;
use super::wrk::LoadResult;

/// The whole run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Results {
    pub machine: Machine,
    pub settings: Settings,
    /// Load runs straight to the backend, one set per route count (measured in the same
    /// round as the proxies, so drift affects both alike).
    pub direct: Vec<LoadRun>,
    pub proxies: Vec<ProxyAtScale>,
    pub propagation: Vec<Propagation>,
    pub churn: Option<Churn>,
    /// Kubernetes mode: from a route's creation in the API server (its watch event) to its
    /// first 200.
    pub kube_propagation: Vec<KubePropagation>,
    /// Gantry: a route with HTTPRoute `retry` that never triggers, next to the same route
    /// without it.
    pub retry_cost: Option<RetryCost>,
    /// Gantry: HTTPTransform header templates and JSON body edits, next to the same routes
    /// without them.
    pub transform_cost: Option<TransformCost>,
    /// Gantry: one route per BackendConfigPolicy load balancer, next to one without a policy.
    pub lb_cost: Option<LbCost>,
    pub policy_cost: Option<PolicyCost>,
    /// User-space instructions per request, counted by callgrind.
    pub instructions: Option<Instructions>,
    /// Each proxy over HTTP/2 (h2c and TLS) and HTTP/1.1 over TLS.
    pub protocols: Option<Protocols>,
    /// Each proxy's memory per open, idle keep-alive connection.
    pub idle_connections: Option<IdleConnections>,
}

/// Where and with what the figures were taken.
#[derive(Debug, Default, serde::Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub gantry_commit: String,
    pub nginx: String,
    pub haproxy: String,
    pub wrk: String,
    /// `h2load --version` (the HTTP/2 load generator).
    pub h2load: String,
    /// 1-minute load average before and after the run (from `/proc/loadavg`).
    pub load_average_start: f64,
    pub load_average_end: f64,
}

/// The knobs of this run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Settings {
    pub quick: bool,
    pub routes: Vec<usize>,
    pub connections: Vec<u32>,
    pub seconds_per_run: u64,
    pub warmup_seconds: u64,
    pub repeats: usize,
    pub propagation_at: Vec<usize>,
    pub propagation_samples: usize,
    pub churn_routes: usize,
    pub churn_seconds: u64,
    pub churn_connections: u32,
    pub kube_propagation_at: Vec<usize>,
    pub kube_propagation_samples: usize,
    /// Only the Kubernetes-mode propagation was measured.
    pub kube_only: bool,
    /// Only file mode's route propagation was measured.
    pub propagation_only: bool,
    /// Seconds per run of the retry-cost scenario (0: not run).
    pub retry_cost_seconds: u64,
    pub retry_cost_repeats: usize,
    /// Only the retry cost was measured.
    pub retry_cost_only: bool,
    /// Seconds per run of the transform-cost scenario (0: not run).
    pub transform_cost_seconds: u64,
    /// Size of the JSON bodies of the transform-cost scenario.
    pub transform_body_kib: usize,
    /// Seconds per run of the load balancer scenario (0: not run).
    pub lb_cost_seconds: u64,
    pub lb_cost_repeats: usize,
    /// Only the load balancer cost was measured.
    pub lb_cost_only: bool,
    /// Seconds per run of the API key, JWT and rate limit scenario (0: not run).
    pub policy_cost_seconds: u64,
    pub policy_cost_repeats: usize,
    /// Only the API key, JWT and rate limit cost was measured.
    pub policy_cost_only: bool,
    /// Seconds per run of the HTTP/2 and TLS scenario (0: not run).
    pub protocols_seconds: u64,
    pub protocols_repeats: usize,
    /// Only the HTTP/2 and TLS scenario was measured.
    pub protocols_only: bool,
    /// Connections held open by the idle-connection scenario (0: not run).
    pub idle_connections: usize,
    /// Only the idle-connection scenario was measured.
    pub idle_connections_only: bool,
    /// Measured requests per instruction-count case (0: not counted).
    pub instructions_requests: usize,
    pub instructions_only: bool,
    /// Where `gantry-proxy` came from: `None` for the release build, else the `--bins` folder.
    pub bins: Option<String>,
}

/// One `wrk` run against one target.
#[derive(Debug, Default, serde::Serialize)]
pub struct LoadRun {
    pub routes: usize,
    pub connections: u32,
    pub load: LoadResult,
    /// CPU seconds the proxy's processes spent per 100,000 requests (none for direct runs).
    pub cpu_s_per_100k: Option<f64>,
}

/// One proxy holding N routes.
#[derive(Debug, serde::Serialize)]
pub struct ProxyAtScale {
    pub proxy: Kind,
    pub routes: usize,
    /// From spawning the process to the first 200 from the last route.
    pub load_time_ms: f64,
    /// Gantry: its first configuration's build, from the objects read to the routing in use
    /// (translation, compilation, statuses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_ms: Option<f64>,
    /// After all load runs at this route count.
    pub memory: Memory,
    pub runs: Vec<LoadRun>,
}

/// New routes added one at a time to a running Gantry.
#[derive(Debug, Default, serde::Serialize)]
pub struct Propagation {
    /// Routes already loaded.
    pub routes: usize,
    /// From the change (a file's rename into the config directory, or a route's creation in the
    /// API server) to the first 200, in order.
    pub samples_ms: Vec<f64>,
}

/// New routes created one at a time through the API server of a Gantry in Kubernetes mode.
#[derive(Debug, Default, serde::Serialize)]
pub struct KubePropagation {
    /// Routes already loaded.
    pub routes: usize,
    /// From the route's creation in the API server to the first 200, in order.
    pub samples_ms: Vec<f64>,
    /// Where the proxy spent its time while the samples ran (its
    /// `gantry_config_stage_duration_seconds`), in pipeline order.
    pub stages: Vec<StageTime>,
}

/// One stage of applying changes, over the samples of a measurement.
#[derive(Debug, Default, serde::Serialize)]
pub struct StageTime {
    pub stage: String,
    /// Times the stage ran (watch events that came back from status writes count too).
    pub count: u64,
    pub mean_ms: f64,
}

/// Routes added, edited and removed while a stable route is under load.
#[derive(Debug, Default, serde::Serialize)]
pub struct Churn {
    pub routes: usize,
    pub seconds: u64,
    pub added: usize,
    pub edited: usize,
    pub removed: usize,
    pub load: LoadResult,
    /// The route added last answered 200 at the end: the changes really went live.
    pub last_change_live: bool,
}

/// The CPU price of a `retry` that never triggers (see `retry_cost`).
#[derive(Debug, Default, serde::Serialize)]
pub struct RetryCost {
    pub connections: u32,
    pub seconds_per_run: u64,
    pub repeats: usize,
    pub plain: RetryCostRoute,
    pub retry: RetryCostRoute,
    /// (retry − plain) / plain CPU per request, in percent.
    pub cpu_difference_percent: f64,
}

/// What HTTPTransform costs (see `transform_cost`).
#[derive(Debug, Default, serde::Serialize)]
pub struct TransformCost {
    pub connections: u32,
    pub seconds_per_run: u64,
    pub repeats: usize,
    /// Size of the JSON request body; the answer echoes it, about as large again.
    pub body_kib: usize,
    pub plain_get: RetryCostRoute,
    pub headers: RetryCostRoute,
    pub plain_post: RetryCostRoute,
    pub json: RetryCostRoute,
    /// CPU per request of the header templates (request and response) over the plain GET.
    pub header_templates_us_per_request: f64,
    /// CPU of the JSON edits over the plain POST, per KiB edited (request and answer).
    pub json_us_per_kib: f64,
}

/// One of the two routes of the retry-cost runs, over all its runs.
#[derive(Debug, Default, serde::Serialize)]
pub struct RetryCostRoute {
    pub requests: u64,
    pub errors: u64,
    /// Median of the runs.
    pub requests_per_sec: f64,
    /// CPU time of the proxy per request, in microseconds.
    pub cpu_us_per_request: f64,
}

/// Each proxy over HTTP/2 and TLS (see `protocols`).
#[derive(Debug, Default, serde::Serialize)]
pub struct Protocols {
    pub connections: u32,
    /// Concurrent streams per HTTP/2 connection.
    pub streams: u32,
    pub seconds_per_run: u64,
    pub repeats: usize,
    /// Per protocol, each proxy in turn.
    pub cases: Vec<ProtocolCase>,
}

/// One proxy over one protocol, over all its runs.
#[derive(Debug, serde::Serialize)]
pub struct ProtocolCase {
    pub protocol: String,
    pub proxy: Kind,
    pub route: RetryCostRoute,
}

/// Memory per open, idle keep-alive connection (see `idle_connections`).
#[derive(Debug, Default, serde::Serialize)]
pub struct IdleConnections {
    /// Connections held open at once.
    pub connections: usize,
    pub cases: Vec<IdleCase>,
}

/// One proxy's memory before, with the connections open and after they closed.
#[derive(Debug, serde::Serialize)]
pub struct IdleCase {
    pub proxy: Kind,
    pub rss_before_bytes: u64,
    pub rss_open_bytes: u64,
    /// Once the memory stopped falling after the connections closed (at most 5 s).
    pub rss_closed_bytes: u64,
    pub pss_before_bytes: u64,
    pub pss_open_bytes: u64,
}

/// The CPU price of each load balancing algorithm (see `lb_cost`).
#[derive(Debug, Default, serde::Serialize)]
pub struct LbCost {
    pub connections: u32,
    pub seconds_per_run: u64,
    pub repeats: usize,
    /// The route without a policy (`none`) first, then one per algorithm.
    pub routes: Vec<LbCostRoute>,
}

/// One algorithm's route, over all its runs.
#[derive(Debug, Default, serde::Serialize)]
pub struct LbCostRoute {
    pub algorithm: String,
    pub route: RetryCostRoute,
}

/// The CPU price of API keys, JWT and rate limits under load (see `policy_cost`).
#[derive(Debug, Default, serde::Serialize)]
pub struct PolicyCost {
    pub connections: u32,
    pub seconds_per_run: u64,
    pub repeats: usize,
    /// The route without a policy first, then one per policy.
    pub cases: Vec<PolicyCostCase>,
}

/// One case's route, over all its runs.
#[derive(Debug, Default, serde::Serialize)]
pub struct PolicyCostCase {
    pub case: String,
    pub route: RetryCostRoute,
}

/// User-space instructions per request, counted by callgrind (see `instructions`).
#[derive(Debug, Default, serde::Serialize)]
pub struct Instructions {
    /// Measured requests per case, on one keep-alive connection.
    pub requests: usize,
    /// Requests on that connection before counting.
    pub warmup: usize,
    pub transform_body_kib: usize,
    pub cases: Vec<InstructionCase>,
}

/// One case of the instruction counts.
#[derive(Debug, Default, serde::Serialize)]
pub struct InstructionCase {
    /// `proxies`, `retry`, `load balancer`, `transform GET` or `transform POST`: cases of a
    /// group are compared with the group's first.
    pub group: String,
    pub case: String,
    /// Instructions of the whole proxy process over the measured requests.
    pub instructions: u64,
    pub per_request: f64,
}

/// How much `value` is over `base`, in percent (negative: under).
pub fn percent_over(value: f64, base: f64) -> f64 {
    (value / base.max(1e-9) - 1.0) * 100.0
}

/// Nearest-rank percentile of `values` (`p` in 0..=100); `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

impl Results {
    pub fn at(&self, proxy: Kind, routes: usize) -> Option<&ProxyAtScale> {
        self.proxies
            .iter()
            .find(|p| p.proxy == proxy && p.routes == routes)
    }

    pub fn direct_run(&self, routes: usize, connections: u32) -> Option<&LoadRun> {
        self.direct
            .iter()
            .find(|r| r.routes == routes && r.connections == connections)
    }
}

impl ProxyAtScale {
    pub fn run(&self, connections: u32) -> Option<&LoadRun> {
        self.runs.iter().find(|r| r.connections == connections)
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(25.0));
        assert_eq!(percentile(&v, 99.0), Some(50.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
