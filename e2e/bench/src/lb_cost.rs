//! What each BackendConfigPolicy load balancer costs: one Gantry with one route per
//! algorithm, each to its own Service with the same endpoints, and the same route to a
//! Service without a policy; `wrk` loads each in turn, and the report prints the proxy's CPU
//! time per request for each, side by side. The Services have four endpoints (the suite's
//! backend and three more `gantry-echo --plain`), so the algorithms have a choice to make.
//!
//! Nothing is asserted: timings on a shared machine are read from the report, not tested.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::backend::{self, Echo};
use super::interleave::{self, Runs, summarise};
use super::probe;
use super::process::{Proc, free_port, scratch};
use super::proxy::{self, Setup};
use super::results::{LbCost, LbCostRoute};
use super::wrk::{self, Counting};

pub const PATH: &str = "/svc";

/// `(name, loadBalancer YAML)`; `None` is the Service without a policy.
pub const ALGORITHMS: [(&str, Option<&str>); 5] = [
    ("none", None),
    ("roundrobin", Some("{type: RoundRobin}")),
    ("random", Some("{type: Random}")),
    ("leastrequest", Some("{type: LeastRequest}")),
    (
        "consistenthash",
        Some("{type: ConsistentHash, consistentHash: {type: SourceIP}}"),
    ),
];

pub fn host(name: &str) -> String {
    format!("{name}.lb.bench.example.com")
}

/// Extra backends beside the suite's.
pub const EXTRA_BACKENDS: usize = 3;

/// Gantry standalone files: a Gateway on `port`, one Service (endpoints `backends`, one
/// EndpointSlice each), policy and route per algorithm.
pub fn config(port: u16, backends: &[SocketAddr]) -> String {
    let mut text = super::config::gateway(port);
    for (name, lb) in ALGORITHMS {
        let host = host(name);
        text.push_str(&super::config::service(name, backends));
        let _ = write!(
            text,
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{host}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {PATH}}}}}]
      backendRefs: [{{name: {name}, port: 80}}]
"#
        );
        if let Some(lb) = lb {
            let _ = write!(
                text,
                r#"---
apiVersion: gantry.dev/v1alpha1
kind: BackendConfigPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {name}}}]
  loadBalancer: {lb}
"#
            );
        }
    }
    text
}

/// Starts Gantry and loads each algorithm's route in turn, `repeats` times each, with
/// `connections` connections for `duration` per run (after `warmup` on each).
pub fn measure(
    setup: &Setup,
    connections: u32,
    duration: Duration,
    warmup: Duration,
    repeats: usize,
) -> anyhow::Result<LbCost> {
    let port = free_port()?;
    let dir = scratch("lb-cost")?;
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir)?;
    let mut backends = vec![setup.backend];
    let mut echoes = Vec::new();
    for _ in 0..EXTRA_BACKENDS {
        let (echo, listen) = backend::start(&setup.bins, Echo::Plain)?;
        backends.push(listen);
        echoes.push(echo);
    }
    std::fs::write(config_dir.join("config.yaml"), config(port, &backends))?;
    let mut command = proxy::gantry_command(setup, &config_dir)?;
    let mut proc = Proc::spawn("gantry", &mut command, Some(&dir.join("stderr.log")))?;
    let started = Instant::now();
    let hosts: Vec<String> = ALGORITHMS.iter().map(|(name, _)| host(name)).collect();
    for host in &hosts {
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
    let runs = Runs {
        warmup,
        duration,
        repeats,
        rotate: false,
    };
    let samples = interleave::rounds(&mut proc, hosts.len(), runs, |i, duration| {
        wrk::run(&url, &hosts[i], connections, duration, Counting::Summary)
    })?;
    for host in &hosts {
        let code = probe::status(port, host, PATH)?;
        anyhow::ensure!(code == 200, "{host} answered {code} after the load");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(LbCost {
        connections,
        seconds_per_run: duration.as_secs(),
        repeats: repeats.max(1),
        routes: ALGORITHMS
            .iter()
            .zip(&samples)
            .map(|((name, _), samples)| LbCostRoute {
                algorithm: (*name).to_owned(),
                route: summarise(samples),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_service_route_and_policy_per_algorithm() {
        let backends: Vec<SocketAddr> = (9000..9004)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let text = config(8080, &backends);
        assert_eq!(text.matches("kind: HTTPRoute").count(), ALGORITHMS.len());
        assert_eq!(
            text.matches("kind: BackendConfigPolicy").count(),
            ALGORITHMS.len() - 1
        );
        assert_eq!(
            text.matches("kind: EndpointSlice").count(),
            4 * ALGORITHMS.len()
        );
    }
}
