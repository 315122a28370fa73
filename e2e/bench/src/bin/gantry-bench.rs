//! `gantry-bench`: Gantry side by side with nginx and haproxy (throughput, latency, CPU,
//! memory, load time at N routes), plus Gantry's route propagation (from files, and from a
//! Kubernetes watch event) and churn under load.
//!
//! Run it through `e2e/bench/run.sh`, which installs wrk, nginx and haproxy first; `--help`
//! lists the knobs. Writes `report.md`, `throughput.svg`, `memory.svg` and `results.json`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use gantry_bench::backend::{self, Echo};
use gantry_bench::process::release_bins;
use gantry_bench::proxy::{self, Kind, Running, Setup};
use gantry_bench::results::{Machine, Results, Settings};
use gantry_bench::{
    churn, idle_connections, instructions, kube_propagation, lb_cost, matrix, policy_cost,
    propagation, protocols, report, retry_cost, transform_cost,
};

#[derive(Parser)]
#[command(about = "Gantry, nginx and haproxy with the same N routes in front of one backend")]
struct Args {
    /// A smoke test (about a minute): 1 and 100 routes, 1 s runs, a 3 s churn, report in a
    /// temporary directory. Figures are not meaningful; it fails only when something is broken.
    #[arg(long)]
    quick: bool,
    /// Where the report goes [default: docs/benchmarks, or a temporary directory with --quick].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Route counts (1 is always added: memory per route is measured against it).
    #[arg(long, value_delimiter = ',')]
    routes: Option<Vec<usize>>,
    /// Connection levels for the load runs.
    #[arg(long, value_delimiter = ',')]
    connections: Option<Vec<u32>>,
    /// Seconds per load run.
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds of warm-up load after each proxy start (not measured).
    #[arg(long)]
    warmup: Option<u64>,
    /// Runs per proxy and connection level, interleaved across proxies; the median is reported.
    #[arg(long)]
    repeats: Option<usize>,
    /// Proxies to measure.
    #[arg(long, value_delimiter = ',', default_value = "gantry,nginx,haproxy")]
    proxies: Vec<String>,
    /// Route counts at which Gantry's route propagation is measured.
    #[arg(long, value_delimiter = ',')]
    propagation_at: Option<Vec<usize>>,
    /// New routes added one at a time for each propagation measurement.
    #[arg(long)]
    propagation_samples: Option<usize>,
    /// Measure only file mode's route propagation (no load runs, no other proxy, no churn).
    #[arg(long)]
    propagation_only: bool,
    /// Routes loaded before the churn.
    #[arg(long)]
    churn_routes: Option<usize>,
    /// Seconds of churn under load (0 skips it).
    #[arg(long)]
    churn_seconds: Option<u64>,
    /// Route counts at which Kubernetes mode's watch event to first 200 is measured.
    #[arg(long, value_delimiter = ',')]
    kube_propagation_at: Option<Vec<usize>>,
    /// New routes created through the API server, one at a time, for each such measurement.
    #[arg(long)]
    kube_propagation_samples: Option<usize>,
    /// Measure only Kubernetes mode's watch event to first 200 (no load runs, no other proxy).
    #[arg(long)]
    kube_only: bool,
    /// Seconds per run of the retry-cost scenario: a route with HTTPRoute retry that never
    /// triggers next to the same route without it (0 skips it).
    #[arg(long)]
    retry_cost_seconds: Option<u64>,
    /// Runs per route of the retry-cost scenario, interleaved.
    #[arg(long)]
    retry_cost_repeats: Option<usize>,
    /// Measure only the retry cost (no other load runs, no other proxy).
    #[arg(long)]
    retry_cost_only: bool,
    /// Seconds per run of the transform-cost scenario: HTTPTransform header templates and
    /// JSON body edits next to the same routes without them (0 skips it).
    #[arg(long)]
    transform_cost_seconds: Option<u64>,
    /// KiB of the JSON request body of the transform-cost scenario.
    #[arg(long)]
    transform_body_kib: Option<usize>,
    /// Seconds per run of the load balancer scenario: one route per BackendConfigPolicy
    /// load balancer next to one without a policy (0 skips it).
    #[arg(long)]
    lb_cost_seconds: Option<u64>,
    /// Runs per route of the load balancer scenario, interleaved.
    #[arg(long)]
    lb_cost_repeats: Option<usize>,
    /// Measure only the load balancer cost (no other load runs, no other proxy).
    #[arg(long)]
    lb_cost_only: bool,
    /// Seconds per run of the policy scenario under load: API key, JWT, local and global
    /// (Redis) rate limits next to the same route without a policy (0 skips it).
    #[arg(long)]
    policy_cost_seconds: Option<u64>,
    /// Runs per route of the policy scenario, interleaved.
    #[arg(long)]
    policy_cost_repeats: Option<usize>,
    /// Measure only the policy scenario under load (no other load runs, no other proxy).
    #[arg(long)]
    policy_cost_only: bool,
    /// Seconds per run of the HTTP/2 and TLS scenario: every proxy over h2c, HTTP/2 over TLS
    /// and HTTP/1.1 over TLS (0 skips it).
    #[arg(long)]
    protocols_seconds: Option<u64>,
    /// Runs per protocol and proxy of the HTTP/2 and TLS scenario, interleaved.
    #[arg(long)]
    protocols_repeats: Option<usize>,
    /// Measure only the HTTP/2 and TLS scenario (no other load runs).
    #[arg(long)]
    protocols_only: bool,
    /// Connections each proxy holds open, idle, in the memory-per-connection scenario
    /// (0 skips it) [default: 1000; 200 with --quick].
    #[arg(long)]
    idle_connections: Option<usize>,
    /// Measure only memory per idle connection (no load runs).
    #[arg(long)]
    idle_connections_only: bool,
    /// Measured requests per case of the instruction counts (callgrind: Gantry, nginx and
    /// haproxy at one route, and Gantry's retry, load balancer and transform variants);
    /// 0 skips them [default: 2000; 0 with --quick].
    #[arg(long)]
    instructions_requests: Option<usize>,
    /// Count only instructions per request (no load runs).
    #[arg(long)]
    instructions_only: bool,
    /// Use the `gantry-proxy` and `gantry-echo` binaries in this directory instead of building
    /// release ones (figures from a debug build are only good for comparing two builds).
    #[arg(long)]
    bins: Option<PathBuf>,
}

impl Args {
    fn settings(&self) -> Settings {
        let q = self.quick;
        let mut routes = self.routes.clone().unwrap_or_else(|| {
            if q {
                vec![1, 100]
            } else {
                vec![1, 1_000, 5_000, 10_000]
            }
        });
        routes.push(1);
        routes.sort_unstable();
        routes.dedup();
        routes.retain(|&n| n > 0);
        Settings {
            quick: q,
            routes,
            connections: self
                .connections
                .clone()
                .unwrap_or_else(|| if q { vec![1, 16] } else { vec![1, 16, 128] }),
            seconds_per_run: self.duration.unwrap_or(if q { 1 } else { 5 }),
            warmup_seconds: self.warmup.unwrap_or(if q { 0 } else { 1 }),
            repeats: self.repeats.unwrap_or(if q { 1 } else { 3 }),
            propagation_at: self
                .propagation_at
                .clone()
                .unwrap_or_else(|| if q { vec![100] } else { vec![1_000, 5_000] }),
            propagation_samples: self.propagation_samples.unwrap_or(if q { 3 } else { 50 }),
            churn_routes: self.churn_routes.unwrap_or(if q { 100 } else { 1_000 }),
            churn_seconds: self.churn_seconds.unwrap_or(if q { 3 } else { 60 }),
            churn_connections: 16,
            kube_propagation_at: self
                .kube_propagation_at
                .clone()
                .unwrap_or_else(|| if q { vec![100] } else { vec![1_000, 5_000] }),
            kube_propagation_samples: self.kube_propagation_samples.unwrap_or(if q {
                5
            } else {
                100
            }),
            kube_only: self.kube_only,
            propagation_only: self.propagation_only,
            retry_cost_seconds: self.retry_cost_seconds.unwrap_or(if q { 1 } else { 5 }),
            retry_cost_repeats: self.retry_cost_repeats.unwrap_or(if q { 1 } else { 5 }),
            retry_cost_only: self.retry_cost_only,
            transform_cost_seconds: self.transform_cost_seconds.unwrap_or(if q { 1 } else { 5 }),
            transform_body_kib: self.transform_body_kib.unwrap_or(4).max(1),
            lb_cost_seconds: self.lb_cost_seconds.unwrap_or(if q { 1 } else { 5 }),
            lb_cost_repeats: self.lb_cost_repeats.unwrap_or(if q { 1 } else { 3 }),
            lb_cost_only: self.lb_cost_only,
            policy_cost_seconds: self.policy_cost_seconds.unwrap_or(if q { 1 } else { 5 }),
            policy_cost_repeats: self.policy_cost_repeats.unwrap_or(if q { 1 } else { 5 }),
            policy_cost_only: self.policy_cost_only,
            protocols_seconds: self.protocols_seconds.unwrap_or(if q { 1 } else { 5 }),
            protocols_repeats: self.protocols_repeats.unwrap_or(if q { 1 } else { 3 }),
            protocols_only: self.protocols_only,
            idle_connections: self.idle_connections.unwrap_or(if q { 200 } else { 1_000 }),
            idle_connections_only: self.idle_connections_only,
            instructions_requests: self
                .instructions_requests
                .unwrap_or(if q { 0 } else { 2_000 }),
            instructions_only: self.instructions_only,
            // `run.sh` hands a release suite the release binaries it built beside it: that is
            // the release build, not another (a debug suite's are debug builds).
            bins: self
                .bins
                .as_ref()
                .filter(|dir| cfg!(debug_assertions) || !beside_this_binary(dir))
                .map(|d| d.display().to_string()),
        }
    }
}

/// Whether `dir` is the directory this binary runs from.
fn beside_this_binary(dir: &std::path::Path) -> bool {
    let own = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(|d| d.canonicalize().ok()));
    own.is_some() && dir.canonicalize().ok() == own
}

/// Requests on a connection before its instructions are counted.
const INSTRUCTIONS_WARMUP: usize = 200;

/// Connections of the HTTP/2 and TLS scenario, and concurrent streams per HTTP/2 connection.
const PROTOCOLS_CONNECTIONS: u32 = 16;
const PROTOCOLS_STREAMS: u32 = 10;

/// How long a proxy may take to serve its last route after starting.
const START_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = args.settings();
    let kinds = args
        .proxies
        .iter()
        .map(|p| Kind::parse(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = args.out.clone().unwrap_or_else(|| {
        if settings.quick {
            std::env::temp_dir().join("gantry-bench-quick")
        } else {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../docs/benchmarks"
            ))
        }
    });
    let clock = Instant::now();
    let progress = |msg: &str| eprintln!("[{:>6.1} s] {msg}", clock.elapsed().as_secs_f64());

    let bins = match &args.bins {
        Some(dir) => dir.clone(),
        None => release_bins(&["gantry-proxy", "gantry-echo"])?,
    };
    let (mut echo, backend) =
        backend::start(&bins, Echo::Plain).context("the backend did not start")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let setup = Setup {
        bins,
        backend,
        workers: cores,
        access_log: false,
    };
    let plan = matrix::LoadPlan {
        connections: settings.connections.clone(),
        duration: Duration::from_secs(settings.seconds_per_run),
        warmup: Duration::from_secs(settings.warmup_seconds),
        repeats: settings.repeats,
    };
    let mut results = Results {
        machine: machine(cores),
        ..Results::default()
    };
    if !settings.quick {
        wait_for_quiet(&progress);
    }
    results.machine.load_average_start = load_average();

    // One round per route count: every proxy started (one at a time, each timed alone), then
    // runs interleaved across the proxies and a direct connection.
    // With an `--*-only` flag, only the scenarios so flagged run; without one, all of them.
    let only = settings.kube_only
        || settings.propagation_only
        || settings.retry_cost_only
        || settings.lb_cost_only
        || settings.policy_cost_only
        || settings.protocols_only
        || settings.idle_connections_only
        || settings.instructions_only;
    let wanted = |flag: bool| flag || !only;
    let rounds: &[usize] = if only { &[] } else { &settings.routes };
    for &n in rounds {
        let mut running = Vec::new();
        for &kind in &kinds {
            progress(&format!("{n} routes: starting {}", kind.name()));
            running.push(Running::start(kind, &setup, n, START_TIMEOUT)?);
        }
        progress(&format!("{n} routes: load runs"));
        let (direct, proxies) = matrix::round(backend, n, &mut running, &plan)?;
        results.direct.extend(direct);
        results.proxies.extend(proxies);
        if let Some(gantry) = running.iter_mut().find(|r| r.kind == Kind::Gantry)
            && settings.propagation_at.contains(&n)
        {
            progress(&format!("{n} routes: gantry route propagation"));
            results
                .propagation
                .push(propagation::measure(gantry, settings.propagation_samples)?);
        }
    }
    if kinds.contains(&Kind::Gantry) && wanted(settings.propagation_only) {
        for &n in &settings.propagation_at {
            if only || !settings.routes.contains(&n) {
                progress(&format!("{n} routes: gantry route propagation"));
                let mut running = Running::start(Kind::Gantry, &setup, n, START_TIMEOUT)?;
                results.propagation.push(propagation::measure(
                    &mut running,
                    settings.propagation_samples,
                )?);
            }
        }
        if settings.churn_seconds > 0 && !only {
            progress(&format!(
                "{} routes: gantry churn under load for {} s",
                settings.churn_routes, settings.churn_seconds
            ));
            let mut running =
                Running::start(Kind::Gantry, &setup, settings.churn_routes, START_TIMEOUT)?;
            results.churn = Some(churn::measure(
                &mut running,
                settings.churn_seconds,
                settings.churn_connections,
            )?);
        }
    }
    if settings.protocols_seconds > 0 && wanted(settings.protocols_only) {
        progress("every proxy over h2c, HTTP/2 over TLS and HTTP/1.1 over TLS");
        let measured = protocols::measure(
            &setup,
            &kinds,
            protocols::Plan {
                connections: PROTOCOLS_CONNECTIONS,
                streams: PROTOCOLS_STREAMS,
                duration: Duration::from_secs(settings.protocols_seconds),
                warmup: Duration::from_secs(settings.warmup_seconds),
                repeats: settings.protocols_repeats,
            },
        )?;
        for c in &measured.cases {
            progress(&format!(
                "{}, {}: {:.0} requests/s, {:.2} µs CPU per request",
                c.protocol,
                c.proxy.name(),
                c.route.requests_per_sec,
                c.route.cpu_us_per_request
            ));
        }
        results.protocols = Some(measured);
    }
    if settings.idle_connections > 0 && wanted(settings.idle_connections_only) {
        progress(&format!(
            "every proxy with {} idle connections open",
            settings.idle_connections
        ));
        let measured = idle_connections::measure(&setup, &kinds, settings.idle_connections)?;
        for c in &measured.cases {
            progress(&format!(
                "{}: {:.1} KiB per idle connection; {:.1} MiB after they closed",
                c.proxy.name(),
                c.rss_open_bytes.saturating_sub(c.rss_before_bytes) as f64
                    / 1024.0
                    / settings.idle_connections as f64,
                c.rss_closed_bytes as f64 / (1024.0 * 1024.0)
            ));
        }
        results.idle_connections = Some(measured);
    }
    if kinds.contains(&Kind::Gantry)
        && settings.retry_cost_seconds > 0
        && wanted(settings.retry_cost_only)
    {
        progress("gantry: a route with retry that never triggers, next to one without");
        let cost = retry_cost::measure(
            &setup,
            16,
            Duration::from_secs(settings.retry_cost_seconds),
            Duration::from_secs(settings.warmup_seconds),
            settings.retry_cost_repeats,
        )?;
        progress(&format!(
            "retry cost: {:.2} µs CPU per request without retry, {:.2} with ({:+.1}%)",
            cost.plain.cpu_us_per_request,
            cost.retry.cpu_us_per_request,
            cost.cpu_difference_percent
        ));
        results.retry_cost = Some(cost);
    }
    if kinds.contains(&Kind::Gantry) && settings.transform_cost_seconds > 0 && wanted(false) {
        progress("gantry: HTTPTransform header templates and JSON body edits");
        let cost = transform_cost::measure(
            &setup,
            16,
            Duration::from_secs(settings.transform_cost_seconds),
            Duration::from_secs(settings.warmup_seconds),
            settings.retry_cost_repeats,
            settings.transform_body_kib,
        )?;
        progress(&format!(
            "transform cost: header templates {:+.2} µs CPU per request; JSON body edits {:.2} µs CPU per KiB",
            cost.header_templates_us_per_request, cost.json_us_per_kib
        ));
        results.transform_cost = Some(cost);
    }
    if kinds.contains(&Kind::Gantry)
        && settings.lb_cost_seconds > 0
        && wanted(settings.lb_cost_only)
    {
        progress("gantry: one route per load balancer, next to one without a policy");
        let cost = lb_cost::measure(
            &setup,
            16,
            Duration::from_secs(settings.lb_cost_seconds),
            Duration::from_secs(settings.warmup_seconds),
            settings.lb_cost_repeats,
        )?;
        for r in &cost.routes {
            progress(&format!(
                "load balancer {}: {:.2} µs CPU per request",
                r.algorithm, r.route.cpu_us_per_request
            ));
        }
        results.lb_cost = Some(cost);
    }
    if kinds.contains(&Kind::Gantry)
        && settings.policy_cost_seconds > 0
        && wanted(settings.policy_cost_only)
    {
        progress("gantry: API key, JWT and rate limits under load, next to no policy");
        let cost = policy_cost::measure(
            &setup,
            16,
            Duration::from_secs(settings.policy_cost_seconds),
            Duration::from_secs(settings.warmup_seconds),
            settings.policy_cost_repeats,
        )?;
        for c in &cost.cases {
            progress(&format!(
                "policy {}: {:.2} µs CPU per request, {:.0} requests/s",
                c.case, c.route.cpu_us_per_request, c.route.requests_per_sec
            ));
        }
        results.policy_cost = Some(cost);
    }
    if kinds.contains(&Kind::Gantry)
        && settings.instructions_requests > 0
        && wanted(settings.instructions_only)
    {
        let counted = instructions::measure(
            &setup.bins,
            backend,
            settings.instructions_requests,
            INSTRUCTIONS_WARMUP,
            &progress,
        )?;
        for c in &counted.cases {
            progress(&format!(
                "instructions per request, {} {}: {:.0}",
                c.group, c.case, c.per_request
            ));
        }
        results.instructions = Some(counted);
    }
    if kinds.contains(&Kind::Gantry) && wanted(settings.kube_only) {
        for &n in &settings.kube_propagation_at {
            progress(&format!(
                "{n} routes: gantry in Kubernetes mode, watch event to first 200"
            ));
            results.kube_propagation.push(kube_propagation::measure(
                &setup,
                n,
                settings.kube_propagation_samples,
            )?);
        }
    }
    echo.check_alive()?;
    results.machine.load_average_end = load_average();
    results.settings = settings;

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let markdown = report::markdown(&results);
    std::fs::write(out.join("report.md"), &markdown)?;
    std::fs::write(
        out.join("throughput.svg"),
        report::throughput_chart(&results),
    )?;
    std::fs::write(out.join("memory.svg"), report::memory_chart(&results))?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("{markdown}");
    progress(&format!(
        "report written to {}",
        out.join("report.md").display()
    ));
    Ok(())
}

/// What the report says about the machine and the programs.
fn machine(cores: usize) -> Machine {
    let cmd = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let dir = env!("CARGO_MANIFEST_DIR");
    Machine {
        date_utc: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cores,
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        // `-dirty` when the working tree differs from the commit (the binaries may too).
        gantry_commit: cmd(
            "git",
            &["-C", dir, "describe", "--always", "--dirty", "--abbrev=7"],
        ),
        nginx: proxy::version("nginx"),
        haproxy: proxy::version("haproxy"),
        wrk: proxy::version("wrk"),
        h2load: cmd("h2load", &["--version"]),
        ..Machine::default()
    }
}

/// Waits, at most two minutes, for the 1-minute load average to fall below 1 (after a release
/// build, say), so that the run starts on a quiet machine when it can.
fn wait_for_quiet(progress: &dyn Fn(&str)) {
    const LIMIT: Duration = Duration::from_secs(120);
    let started = Instant::now();
    let mut said = false;
    while load_average() >= 1.0 && started.elapsed() < LIMIT {
        if !said {
            progress(&format!(
                "load average {:.1}: waiting up to {} s for the machine to settle",
                load_average(),
                LIMIT.as_secs()
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// The 1-minute load average: above the core count, other programs competed for the CPU.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::beside_this_binary;

    #[test]
    fn only_this_binarys_own_folder_is_beside_it() {
        let exe = std::env::current_exe().expect("this test's binary");
        let own = exe.parent().expect("its folder");
        assert!(beside_this_binary(own));
        // The same folder written another way is still it.
        assert!(beside_this_binary(&own.join(".")));
        assert!(!beside_this_binary(own.parent().expect("the folder above")));
        assert!(!beside_this_binary(std::path::Path::new("/no/such/folder")));
    }
}
