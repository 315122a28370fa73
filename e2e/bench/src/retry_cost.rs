//! What a `retry` that never triggers costs: one Gantry with two routes to the same backend,
//! identical but for HTTPRoute `retry` on one of them, loaded in turn with `wrk`; CPU time of
//! the proxy per request for each, side by side. The backend always answers 200, so the
//! retrying route never retries: the figure is the price of being ready to (the request's
//! headers kept for a second attempt, a status check, a counter).
//!
//! Nothing is asserted: the target (within 3% of the route without `retry`) is read from the
//! report, since timings on a shared machine are not something a test can hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::interleave::{self, Runs, summarise};
use super::probe;
use super::process::{Proc, free_port, scratch};
use super::proxy::{self, Setup};
use super::results::{RetryCost, percent_over};
use super::wrk::{self, Counting};

pub const PLAIN_HOST: &str = "plain.bench.example.com";
pub const RETRY_HOST: &str = "retry.bench.example.com";
pub const PATH: &str = "/svc";

/// Gantry standalone files: a Gateway on `port`, the backend's Service, and the two routes.
pub fn config(port: u16, backend: SocketAddr) -> String {
    format!(
        r#"{base}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: plain, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{PLAIN_HOST}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {PATH}}}}}]
      timeouts: {{request: 10s, backendRequest: 5s}}
      backendRefs: [{{name: backend, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: retry, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{RETRY_HOST}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {PATH}}}}}]
      timeouts: {{request: 10s, backendRequest: 5s}}
      retry: {{codes: [500, 502, 503, 504], attempts: 2, backoff: 25ms}}
      backendRefs: [{{name: backend, port: 80}}]
"#,
        base = crate::config::base(port, backend),
    )
}

/// Starts Gantry with both routes and loads them in turn, `repeats` times each, with
/// `connections` connections for `duration` per run (after `warmup` on each).
pub fn measure(
    setup: &Setup,
    connections: u32,
    duration: Duration,
    warmup: Duration,
    repeats: usize,
) -> anyhow::Result<RetryCost> {
    let port = free_port()?;
    let dir = scratch("retry-cost")?;
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(config_dir.join("config.yaml"), config(port, setup.backend))?;
    let mut command = proxy::gantry_command(setup, &config_dir)?;
    let mut proc = Proc::spawn("gantry", &mut command, Some(&dir.join("stderr.log")))?;
    let started = Instant::now();
    for host in [PLAIN_HOST, RETRY_HOST] {
        probe::wait_for_200(
            port,
            host,
            PATH,
            started,
            Duration::from_secs(60),
            Duration::from_millis(2),
            || proc.check_alive(),
        )
        .with_context(|| format!("gantry did not serve {host}"))?;
    }
    let url = format!("http://127.0.0.1:{port}{PATH}");
    let hosts = [PLAIN_HOST, RETRY_HOST];
    let runs = Runs {
        warmup,
        duration,
        repeats,
        rotate: false,
    };
    let samples = interleave::rounds(&mut proc, hosts.len(), runs, |i, duration| {
        wrk::run(&url, hosts[i], connections, duration, Counting::Summary)
    })?;
    for host in [PLAIN_HOST, RETRY_HOST] {
        let code = probe::status(port, host, PATH)?;
        anyhow::ensure!(code == 200, "{host} answered {code} after the load");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let plain = summarise(&samples[0]);
    let retry = summarise(&samples[1]);
    Ok(RetryCost {
        connections,
        seconds_per_run: duration.as_secs(),
        repeats: repeats.max(1),
        cpu_difference_percent: percent_over(retry.cpu_us_per_request, plain.cpu_us_per_request),
        plain,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_routes_differ_only_in_retry() {
        let text = config(8080, "127.0.0.1:9000".parse().expect("an address"));
        let routes: Vec<&str> = text.split("kind: HTTPRoute").skip(1).collect();
        assert_eq!(routes.len(), 2);
        let strip = |r: &str| {
            r.lines()
                .filter(|l| {
                    !l.contains("retry:")
                        && !l.contains("name: plain")
                        && !l.contains("name: retry")
                        && !l.starts_with("---")
                        && !l.starts_with("apiVersion")
                })
                .map(|l| l.replace(PLAIN_HOST, "HOST").replace(RETRY_HOST, "HOST"))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(routes[0]), strip(routes[1]));
        assert!(routes[1].contains("retry: {codes"));
    }
}
