//! Drives `h2load` (Debian's nghttp2-client), the HTTP/2 load generator, and reads its
//! summary into the same figures `wrk` gives.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::wrk::LoadResult;

/// Loads `url` over HTTP/2 (h2c with prior knowledge for `http://`, ALPN `h2` for `https://`)
/// for `duration` with `connections` connections of at most `streams` concurrent streams each.
/// `h2load` reports no latency percentiles in this mode: they stay zero.
pub fn run(
    url: &str,
    connections: u32,
    streams: u32,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let connections = connections.max(1);
    // Two client threads, as `wrk` gets, when the connections divide between them.
    let threads = if connections.is_multiple_of(2) { 2 } else { 1 };
    let output = Command::new("h2load")
        .arg(format!("--threads={threads}"))
        .arg(format!("--clients={connections}"))
        .arg(format!("--max-concurrent-streams={}", streams.max(1)))
        .arg(format!("--duration={}", duration.as_secs().max(1)))
        .arg(url)
        .output()
        .context("running h2load (install it with `apt-get install nghttp2-client`)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "h2load failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("unexpected h2load output:\n{stdout}"))
}

/// Reads the summary lines: `finished in 5.00s, 53212.40 req/s, …`, `requests: 266062
/// total, … 266062 done, 266062 succeeded, 0 failed, 0 errored, 0 timeout` and `status
/// codes: 266062 2xx, 0 3xx, 0 4xx, 0 5xx`.
fn parse(out: &str) -> Option<LoadResult> {
    let line = |prefix: &str| out.lines().find_map(|l| l.trim().strip_prefix(prefix));
    // `N word` pairs of a line, by word.
    let counts = |text: &str, word: &str| -> Option<u64> {
        text.split(',').find_map(|part| {
            let mut it = part.split_whitespace();
            let n = it.next()?.parse().ok()?;
            (it.next()? == word).then_some(n)
        })
    };
    let finished = line("finished in ")?;
    let requests_per_sec = finished
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" req/s"))?
        .parse()
        .ok()?;
    let requests = line("requests: ")?;
    let statuses = line("status codes: ")?;
    Some(LoadResult {
        requests: counts(requests, "done")?,
        requests_per_sec,
        socket_errors: counts(requests, "errored")? + counts(requests, "timeout")?,
        status_errors: counts(statuses, "4xx")? + counts(statuses, "5xx")?,
        ..LoadResult::default()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_summary() {
        let out = "\
starting benchmark...
spawning thread #0: 8 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Application protocol: h2
finished in 2.01s, 45386.50 req/s, 2.40MB/s
requests: 90773 total, 90813 started, 90773 done, 90770 succeeded, 3 failed, 2 errored, 1 timeout
status codes: 90770 2xx, 0 3xx, 3 4xx, 0 5xx
traffic: 4.79MB (5027435) total, 1.15MB (1209231) headers (space savings 91.43%), 1.73MB (1815460) data
";
        let r = super::parse(out).expect("parsed");
        assert_eq!(r.requests, 90773);
        assert_eq!(r.requests_per_sec, 45386.50);
        assert_eq!(r.socket_errors, 3);
        assert_eq!(r.status_errors, 3);
        assert_eq!(r.errors(), 6);
        assert!(super::parse("h2load: connection refused\n").is_none());
    }
}
