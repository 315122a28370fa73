//! Drives `wrk` and reads its figures, including p99.9 through a small Lua `done` hook.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// One load run's figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    /// Responses with a status of 400 or more (how `wrk` counts bad statuses).
    pub status_errors: u64,
    /// Responses other than 200, counted per response (only with [`Counting::EveryResponse`]).
    pub non_200: Option<u64>,
}

impl LoadResult {
    /// Failed requests of any kind.
    pub fn errors(&self) -> u64 {
        self.socket_errors + self.status_errors.max(self.non_200.unwrap_or(0))
    }
}

/// Whether a Lua hook inspects every response (exact non-200 count, but it costs `wrk` CPU, so
/// throughput runs do without).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    Summary,
    EveryResponse,
}

const DONE_HOOK: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local e = summary.errors
  local non200 = -1
  if count_responses then
    non200 = 0
    for _, t in ipairs(threads) do non200 = non200 + t:get("non200") end
  end
  io.write(string.format("GANTRY requests=%d socket_errors=%d status_errors=%d non200=%d p50=%d p99=%d p999=%d duration_us=%d\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status, non200,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), summary.duration))
end
"#;

const RESPONSE_HOOK: &str = r#"
count_responses = true
function init(args) non200 = 0 end
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
"#;

/// Runs `wrk` against `url` with `connections` connections for `duration` (whole seconds),
/// sending `host` as the Host header.
pub fn run(
    url: &str,
    host: &str,
    connections: u32,
    duration: Duration,
    counting: Counting,
) -> anyhow::Result<LoadResult> {
    run_with(url, host, connections, duration, counting, "")
}

/// [`run`] with Lua run before the hooks: `wrk.method`, `wrk.body`, `wrk.headers[...]`.
pub fn run_with(
    url: &str,
    host: &str,
    connections: u32,
    duration: Duration,
    counting: Counting,
    prelude: &str,
) -> anyhow::Result<LoadResult> {
    let script = std::env::temp_dir().join(format!(
        "gantry-wrk-{}-{}.lua",
        std::process::id(),
        connections
    ));
    let text = match counting {
        Counting::Summary => format!("{prelude}\n{DONE_HOOK}"),
        Counting::EveryResponse => format!("{prelude}\n{RESPONSE_HOOK}{DONE_HOOK}"),
    };
    std::fs::write(&script, text)?;
    let threads = connections.clamp(1, 2);
    let output = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--timeout", "5s"])
        .args(["-H", &format!("Host: {host}")])
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk (install it with `apt-get install wrk`)")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
}

fn parse(out: &str) -> Option<LoadResult> {
    let line = out.lines().find(|l| l.starts_with("GANTRY "))?;
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
    };
    let requests = field("requests")?;
    let duration_s = field("duration_us")? / 1e6;
    let non_200 = field("non200")?;
    Some(LoadResult {
        requests: requests as u64,
        requests_per_sec: requests / duration_s,
        p50_ms: field("p50")? / 1e3,
        p99_ms: field("p99")? / 1e3,
        p999_ms: field("p999")? / 1e3,
        socket_errors: field("socket_errors")? as u64,
        status_errors: field("status_errors")? as u64,
        non_200: (non_200 >= 0.0).then_some(non_200 as u64),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_done_hook_line() {
        let r = super::parse("Running 1s test\nGANTRY requests=2000 socket_errors=3 status_errors=1 non200=-1 p50=250 p99=1200 p999=4000 duration_us=2000000\n")
            .expect("parsed");
        assert_eq!(r.requests, 2000);
        assert_eq!(r.errors(), 4);
        assert_eq!(r.non_200, None);
        assert!((r.requests_per_sec - 1000.0).abs() < 1e-9);
        assert!((r.p99_ms - 1.2).abs() < 1e-9);
    }

    #[test]
    fn parses_a_per_response_count() {
        let r = super::parse("GANTRY requests=10 socket_errors=0 status_errors=0 non200=2 p50=1 p99=1 p999=1 duration_us=1000000\n")
            .expect("parsed");
        assert_eq!(r.non_200, Some(2));
        assert_eq!(r.errors(), 2);
    }
}
