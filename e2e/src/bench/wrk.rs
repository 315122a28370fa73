//! Drives `wrk` and reads its figures, including p99.9 through a small Lua `done` hook.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// One load run's figures.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

const DONE_HOOK: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("GANTRY requests=%d errors=%d p50=%d p99=%d p999=%d duration_us=%d\n",
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), summary.duration))
end
"#;

/// Runs `wrk` against `url` with `connections` connections for `duration`, sending `host` as
/// the Host header.
pub fn run(
    url: &str,
    host: &str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let script = std::env::temp_dir().join(format!("gantry-wrk-{}.lua", std::process::id()));
    std::fs::write(&script, DONE_HOOK)?;
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
    Some(LoadResult {
        requests: requests as u64,
        requests_per_sec: requests / duration_s,
        p50_ms: field("p50")? / 1e3,
        p99_ms: field("p99")? / 1e3,
        p999_ms: field("p999")? / 1e3,
        errors: field("errors")? as u64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_done_hook_line() {
        let r = super::parse("Running 1s test\nGANTRY requests=2000 errors=3 p50=250 p99=1200 p999=4000 duration_us=2000000\n")
            .expect("parsed");
        assert_eq!(r.requests, 2000);
        assert_eq!(r.errors, 3);
        assert!((r.requests_per_sec - 1000.0).abs() < 1e-9);
        assert!((r.p99_ms - 1.2).abs() < 1e-9);
    }
}
