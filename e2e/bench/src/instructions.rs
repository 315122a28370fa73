//! User-space instructions per request, counted by callgrind: exact and repeatable on a busy
//! machine, where CPU time is not, so it is the figure to track per change.
//!
//! Each proxy runs under `valgrind --tool=callgrind` with one worker. For each case, one
//! keep-alive connection sends warm-up requests, the counters are dumped and so zeroed
//! (`callgrind_control --dump`), the measured requests follow on the same connection, and a
//! second dump holds their instructions: every thread of the proxy process, nothing of the
//! client, the backend or the kernel. Divided by the number of requests, that is the price
//! of one request in steady state.
//!
//! Cases: Gantry, nginx and haproxy with the suite's single route; and Gantry's own variants
//! next to their plain route (a retry that never triggers; each load balancer; tracing not
//! configured, sampling 1% and 100%; API keys, local and global rate limits; HTTPTransform
//! header templates and JSON body edits).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::backend::{self, Echo};
use super::client::{KeepAlive, Request};
use super::process::{Proc, free_port, scratch};
use super::proxy::{self, Kind, Running, Setup};
use super::results::{InstructionCase, Instructions};
use super::{config, lb_cost, policy_cost, retry_cost, transform_cost};

/// How long a proxy under callgrind may take to serve (it runs some 50 times slower).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// A single answer under callgrind.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts every case with `requests` measured requests after `warmup` ones.
pub fn measure(
    bins: &Path,
    backend: std::net::SocketAddr,
    requests: usize,
    warmup: usize,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Instructions> {
    anyhow::ensure!(requests > 0, "no requests to count");
    for tool in ["valgrind", "callgrind_control"] {
        proxy::which(tool)
            .with_context(|| format!("{tool} is missing: install the Debian package valgrind"))?;
    }
    let setup = Setup {
        bins: bins.to_path_buf(),
        backend,
        workers: 1,
        access_log: false,
    };
    let run = Counter { requests, warmup };
    let mut cases = Vec::new();

    // The suite's single route, in each proxy.
    for kind in Kind::ALL {
        progress(&format!("instructions: {}, 1 route", kind.name()));
        let dir = scratch(&format!("instructions-{}", kind.name()))?;
        let out = dir.join("callgrind.out");
        let out_for_wrap = out.clone();
        let running = Running::start_with(kind, &setup, 1, START_TIMEOUT, move |command| {
            under_callgrind(command, &out_for_wrap, kind)
        })?;
        let request = Request::get(&config::host(0), &config::path(0));
        let mut dumps = Dumps::new(running.pid(), out);
        let count = run.count(running.port, &request, &mut dumps)?;
        cases.push(case("proxies", kind.name(), count, requests));
        drop(running);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // The same route with access logs on, in Gantry and nginx (haproxy logs only to syslog).
    let logged = Setup {
        access_log: true,
        ..setup.clone()
    };
    for kind in [Kind::Gantry, Kind::Nginx] {
        progress(&format!(
            "instructions: {}, 1 route, access log on",
            kind.name()
        ));
        let dir = scratch(&format!("instructions-{}-logged", kind.name()))?;
        let out = dir.join("callgrind.out");
        let out_for_wrap = out.clone();
        let running = Running::start_with(kind, &logged, 1, START_TIMEOUT, move |command| {
            under_callgrind(command, &out_for_wrap, kind)
        })?;
        let request = Request::get(&config::host(0), &config::path(0));
        let mut dumps = Dumps::new(running.pid(), out);
        let count = run.count(running.port, &request, &mut dumps)?;
        // Each proxy against itself with the access log off (the run above).
        let group = format!("access log, {}", kind.name());
        if let Some(off) = cases
            .iter()
            .find(|c| c.group == "proxies" && c.case == kind.name())
        {
            cases.push(case(&group, "off", off.instructions, requests));
        }
        cases.push(case(&group, "on", count, requests));
        drop(running);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // A retry that never triggers, next to the same route without it.
    progress("instructions: gantry, retry configured but not triggered");
    let mut group = Group::start(&setup, "retry", |port| retry_cost::config(port, backend))?;
    for (label, host) in [
        ("no retry", retry_cost::PLAIN_HOST),
        ("retry (not triggered)", retry_cost::RETRY_HOST),
    ] {
        let count = group.count(&run, &Request::get(host, retry_cost::PATH))?;
        cases.push(case("retry", label, count, requests));
    }
    drop(group);

    // Each load balancer, next to the same route to a Service without a policy.
    progress("instructions: gantry, each load balancer");
    let mut backends = vec![backend];
    let mut echoes = Vec::new();
    for _ in 0..lb_cost::EXTRA_BACKENDS {
        let (echo, listen) = backend::start(bins, Echo::Plain)?;
        backends.push(listen);
        echoes.push(echo);
    }
    let mut group = Group::start(&setup, "lb", |port| lb_cost::config(port, &backends))?;
    for (name, _) in lb_cost::ALGORITHMS {
        let count = group.count(&run, &Request::get(&lb_cost::host(name), lb_cost::PATH))?;
        cases.push(case("load balancer", name, count, requests));
    }
    drop(group);
    drop(echoes);

    // OpenTelemetry tracing: not configured, then sampling 1% and 100% of requests, the spans
    // exported over OTLP/HTTP to an echo backend (which answers every POST 200) as receiver.
    progress("instructions: gantry, tracing");
    let (sink, sink_addr) = backend::start(bins, Echo::Plain)?;
    let endpoint = format!("http://{sink_addr}");
    for (label, ratio) in [
        ("tracing not configured", None),
        ("tracing, 1% sampled", Some("0.01")),
        ("tracing, 100% sampled", Some("1")),
    ] {
        let args: Vec<&str> = match ratio {
            Some(ratio) => vec![
                "--tracing-endpoint",
                &endpoint,
                "--tracing-sampling-ratio",
                ratio,
                // Every request is a new trace: the ratio alone decides.
                "--tracing-parent-based",
                "false",
            ],
            None => Vec::new(),
        };
        let mut group = Group::start_with_args(
            &setup,
            "tracing",
            |port| {
                config::gantry(port, backend, 1)
                    .into_iter()
                    .map(|(_, text)| text)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            },
            &args,
        )?;
        let count = group.count(&run, &Request::get(&config::host(0), &config::path(0)))?;
        cases.push(case("tracing", label, count, requests));
    }
    drop(sink);

    // API keys and rate limits (local, and global in Redis), next to the same route without
    // a policy; no limit is reached.
    progress("instructions: gantry, API key and rate limits");
    let redis_dir = scratch("instructions-redis")?;
    let redis = policy_cost::Redis::start(&redis_dir)?;
    let (jwt_key, token) = policy_cost::jwt_key();
    let bearer = format!("Bearer {token}");
    let mut group = Group::start_with_args(
        &setup,
        "policies",
        |port| policy_cost::config(port, backend, &jwt_key),
        &["--rate-limit-redis", &redis.url],
    )?;
    for (label, host) in policy_cost::CASES {
        let request = match policy_cost::credential(label, &bearer) {
            Some((name, value)) => Request::get_with(host, policy_cost::PATH, (name, &value)),
            None => Request::get(host, policy_cost::PATH),
        };
        let count = group.count(&run, &request)?;
        cases.push(case("policies", label, count, requests));
    }
    drop(group);
    drop(redis);
    let _ = std::fs::remove_dir_all(&redis_dir);

    // HTTPTransform, in front of the JSON echo.
    progress("instructions: gantry, HTTPTransform");
    let (echo, json_backend) = backend::start(bins, Echo::Json)?;
    let mut group = Group::start(&setup, "transform", |port| {
        transform_cost::config(port, json_backend)
    })?;
    let body = transform_cost::body(TRANSFORM_BODY_KIB);
    let transform_cases = [
        (
            "no transform",
            Request::get(transform_cost::PLAIN_HOST, transform_cost::PATH),
        ),
        (
            "header templates",
            Request::get(transform_cost::HEADERS_HOST, transform_cost::PATH),
        ),
        (
            "4 KiB JSON, no transform",
            Request::post_json(transform_cost::PLAIN_HOST, transform_cost::PATH, &body),
        ),
        (
            "4 KiB JSON, body edits both ways",
            Request::post_json(transform_cost::JSON_HOST, transform_cost::PATH, &body),
        ),
    ];
    for (i, (label, request)) in transform_cases.iter().enumerate() {
        let count = group.count(&run, request)?;
        // GETs against the plain GET, POSTs against the plain POST.
        let group = if i < 2 {
            "transform GET"
        } else {
            "transform POST"
        };
        cases.push(case(group, label, count, requests));
    }
    drop(group);
    drop(echo);

    Ok(Instructions {
        requests,
        warmup,
        transform_body_kib: TRANSFORM_BODY_KIB,
        cases,
    })
}

/// JSON body size of the transform cases (the answer echoes it: about as large again).
pub const TRANSFORM_BODY_KIB: usize = 4;

fn case(group: &str, label: &str, instructions: u64, requests: usize) -> InstructionCase {
    InstructionCase {
        group: group.to_owned(),
        case: label.to_owned(),
        instructions,
        per_request: instructions as f64 / requests as f64,
    }
}

/// `command` run by valgrind's callgrind, writing its dumps to `out.N`. nginx runs without
/// its master process, so the process callgrind follows is the one that serves.
fn under_callgrind(command: Command, out: &Path, kind: Kind) -> Command {
    let mut wrapped = Command::new("valgrind");
    wrapped
        .args(["--tool=callgrind", "--vgdb=yes", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(command.get_program());
    for arg in command.get_args() {
        if kind == Kind::Nginx && arg == "daemon off;" {
            wrapped.arg("daemon off; master_process off;");
        } else {
            wrapped.arg(arg);
        }
    }
    wrapped
}

/// Warm-up and measured requests per case.
struct Counter {
    requests: usize,
    warmup: usize,
}

impl Counter {
    /// Instructions the proxy executed for `self.requests` copies of `request` on one
    /// keep-alive connection, after `self.warmup` on it.
    fn count(&self, port: u16, request: &Request, dumps: &mut Dumps) -> anyhow::Result<u64> {
        let mut client = KeepAlive::connect(port, ANSWER_TIMEOUT)?;
        for _ in 0..self.warmup.max(1) {
            expect_200(client.send(request)?)?;
        }
        dumps.take()?;
        for _ in 0..self.requests {
            expect_200(client.send(request)?)?;
        }
        dumps.take()
    }
}

fn expect_200(status: u16) -> anyhow::Result<()> {
    if status != 200 {
        bail!("the proxy answered {status}, expected 200");
    }
    Ok(())
}

/// The dumps of one callgrind process.
struct Dumps {
    pid: u32,
    out: PathBuf,
    taken: usize,
}

impl Dumps {
    fn new(pid: u32, out: PathBuf) -> Self {
        Self { pid, out, taken: 0 }
    }

    /// Dumps the counters (which zeroes them) and returns the instructions since the last
    /// dump.
    fn take(&mut self) -> anyhow::Result<u64> {
        let output = Command::new("callgrind_control")
            .args(["--dump", &self.pid.to_string()])
            .output()
            .context("running callgrind_control")?;
        anyhow::ensure!(
            output.status.success(),
            "callgrind_control --dump {} failed: {}",
            self.pid,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        self.taken += 1;
        let file = PathBuf::from(format!("{}.{}", self.out.display(), self.taken));
        // The dump is written by the proxy's process; its last line, `totals:`, marks the end.
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Some(total) = totals(&text)
            {
                return Ok(total);
            }
            if started.elapsed() > ANSWER_TIMEOUT {
                bail!("callgrind wrote no totals to {}", file.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The instruction count (`Ir`, the first event) of a callgrind dump's `totals:` line.
fn totals(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ir| ir.parse().ok())
}

/// One Gantry under callgrind serving a scenario's standalone files.
struct Group {
    port: u16,
    dir: PathBuf,
    dumps: Dumps,
    proc: Proc,
}

impl Group {
    fn start(setup: &Setup, name: &str, files: impl FnOnce(u16) -> String) -> anyhow::Result<Self> {
        Self::start_with_args(setup, name, files, &[])
    }

    /// [`Group::start`], with more arguments for the proxy.
    fn start_with_args(
        setup: &Setup,
        name: &str,
        files: impl FnOnce(u16) -> String,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = scratch(&format!("instructions-{name}"))?;
        let config_dir = dir.join("config");
        std::fs::create_dir_all(&config_dir)?;
        let port = free_port()?;
        std::fs::write(config_dir.join("config.yaml"), files(port))?;
        let out = dir.join("callgrind.out");
        let mut gantry = proxy::gantry_command(setup, &config_dir)?;
        gantry.args(args);
        let mut command = under_callgrind(gantry, &out, Kind::Gantry);
        let proc = Proc::spawn(
            "gantry (callgrind)",
            &mut command,
            Some(&dir.join("stderr.log")),
        )?;
        let dumps = Dumps::new(proc.pid(), out);
        Ok(Self {
            port,
            dir,
            dumps,
            proc,
        })
    }

    /// Waits until `request`'s route serves, then counts it.
    fn count(&mut self, run: &Counter, request: &Request) -> anyhow::Result<u64> {
        let started = Instant::now();
        loop {
            let ready = KeepAlive::connect(self.port, ANSWER_TIMEOUT)
                .and_then(|mut c| c.send(request))
                .is_ok_and(|status| status == 200);
            if ready {
                break;
            }
            self.proc.check_alive()?;
            if started.elapsed() > START_TIMEOUT {
                bail!("gantry under callgrind did not serve within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        run.count(self.port, request, &mut self.dumps)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_instruction_count_of_a_dump() {
        let dump = "events: Ir\nsummary: 300018\nfn=main\n1 5\ntotals: 300018\n";
        assert_eq!(super::totals(dump), Some(300_018));
        assert_eq!(super::totals("events: Ir\n"), None);
    }
}
