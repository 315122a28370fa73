//! The side-by-side runs: at one route count, every proxy and a direct connection to the
//! backend, interleaved run by run and repeated, so drift of a shared machine hits all alike.

use std::net::SocketAddr;
use std::time::Duration;

use super::config::{host, path};
use super::proxy::Running;
use super::results::{LoadRun, ProxyAtScale};
use super::wrk::{self, Counting, LoadResult};

/// Load-run knobs shared by every target.
pub struct LoadPlan {
    pub connections: Vec<u32>,
    pub duration: Duration,
    /// Load before the measured runs (fills connection pools, faults pages in); zero skips it.
    pub warmup: Duration,
    /// Runs per target and connection level; the report takes the median.
    pub repeats: usize,
}

/// The measured route at `routes` routes: the last one.
pub fn measured_route(routes: usize) -> usize {
    routes.saturating_sub(1)
}

/// Runs the plan at `routes` routes: for each connection level and repeat, one run straight to
/// the backend, then one through each proxy. Returns the direct runs and one entry per proxy.
pub fn round(
    backend: SocketAddr,
    routes: usize,
    proxies: &mut [Running],
    plan: &LoadPlan,
) -> anyhow::Result<(Vec<LoadRun>, Vec<ProxyAtScale>)> {
    let i = measured_route(routes);
    let direct_url = format!("http://{backend}{}", path(i));
    for p in proxies.iter_mut() {
        p.expect_200(i)?;
        if !plan.warmup.is_zero() {
            wrk::run(&url(p, i), &host(i), 16, plan.warmup, Counting::Summary)?;
        }
    }
    let mut direct = Vec::new();
    let mut through: Vec<Vec<LoadRun>> = proxies.iter().map(|_| Vec::new()).collect();
    for &c in &plan.connections {
        let mut direct_samples = Vec::new();
        let mut samples: Vec<Vec<(LoadResult, Duration)>> =
            proxies.iter().map(|_| Vec::new()).collect();
        for _ in 0..plan.repeats.max(1) {
            direct_samples.push(wrk::run(
                &direct_url,
                &host(i),
                c,
                plan.duration,
                Counting::Summary,
            )?);
            for (p, s) in proxies.iter_mut().zip(samples.iter_mut()) {
                let before = p.cpu_time()?;
                let load = wrk::run(&url(p, i), &host(i), c, plan.duration, Counting::Summary)?;
                let cpu = p.cpu_time()?.saturating_sub(before);
                p.check_alive()?;
                s.push((load, cpu));
            }
        }
        direct.push(LoadRun {
            routes,
            connections: c,
            load: median(&direct_samples),
            cpu_s_per_100k: None,
        });
        for (runs, s) in through.iter_mut().zip(samples) {
            let cpu: f64 = s.iter().map(|(_, c)| c.as_secs_f64()).sum();
            let requests: u64 = s.iter().map(|(l, _)| l.requests).sum();
            let loads: Vec<LoadResult> = s.into_iter().map(|(l, _)| l).collect();
            runs.push(LoadRun {
                routes,
                connections: c,
                load: median(&loads),
                cpu_s_per_100k: Some(cpu * 100_000.0 / requests.max(1) as f64),
            });
        }
    }
    let mut results = Vec::new();
    for (p, runs) in proxies.iter_mut().zip(through) {
        p.expect_200(i)?;
        // Memory first: reading `/config` makes the proxy serialize its whole configuration.
        let memory = p.memory()?;
        results.push(ProxyAtScale {
            proxy: p.kind,
            routes,
            load_time_ms: p.load_time.as_secs_f64() * 1e3,
            build_ms: p.first_build_ms()?,
            memory,
            runs,
        });
    }
    Ok((direct, results))
}

fn url(p: &Running, i: usize) -> String {
    format!("http://127.0.0.1:{}{}", p.port, path(i))
}

/// Per-figure median of repeated runs; requests and errors are summed.
fn median(samples: &[LoadResult]) -> LoadResult {
    let mid = |f: fn(&LoadResult) -> f64| -> f64 {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    LoadResult {
        requests: samples.iter().map(|s| s.requests).sum(),
        requests_per_sec: mid(|s| s.requests_per_sec),
        p50_ms: mid(|s| s.p50_ms),
        p99_ms: mid(|s| s.p99_ms),
        p999_ms: mid(|s| s.p999_ms),
        socket_errors: samples.iter().map(|s| s.socket_errors).sum(),
        status_errors: samples.iter().map(|s| s.status_errors).sum(),
        non_200: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::wrk::LoadResult;

    #[test]
    fn median_of_runs_sums_counts() {
        let run = |rps: f64, errors: u64| LoadResult {
            requests: 10,
            requests_per_sec: rps,
            socket_errors: errors,
            ..LoadResult::default()
        };
        let m = super::median(&[run(3.0, 1), run(1.0, 0), run(2.0, 2)]);
        assert_eq!(m.requests_per_sec, 2.0);
        assert_eq!(m.requests, 30);
        assert_eq!(m.socket_errors, 3);
    }
}
