//! The side-by-side runs: each proxy at each route count and connection level, plus the same
//! load straight to the backend.

use std::time::Duration;

use super::config::{host, path};
use super::proxy::Running;
use super::results::{LoadRun, ProxyAtScale};
use super::wrk::{self, Counting};

/// Load-run knobs shared by every target.
pub struct LoadPlan {
    pub connections: Vec<u32>,
    pub duration: Duration,
    /// Load before the measured runs (fills connection pools, faults pages in); zero skips it.
    pub warmup: Duration,
}

/// The measured route at `routes` routes: the last one.
pub fn measured_route(routes: usize) -> usize {
    routes.saturating_sub(1)
}

/// Runs the plan straight against the backend, sending the measured route's host and path.
pub fn direct(
    backend: std::net::SocketAddr,
    routes: usize,
    plan: &LoadPlan,
) -> anyhow::Result<Vec<LoadRun>> {
    let i = measured_route(routes);
    let url = format!("http://{backend}{}", path(i));
    let mut runs = Vec::new();
    for &c in &plan.connections {
        let load = wrk::run(&url, &host(i), c, plan.duration, Counting::Summary)?;
        runs.push(LoadRun {
            routes,
            connections: c,
            load,
            cpu_s_per_100k: None,
        });
    }
    Ok(runs)
}

/// Checks the measured route answers 200, runs the plan through `proxy`, and reads its memory
/// after the load.
pub fn through(proxy: &mut Running, plan: &LoadPlan) -> anyhow::Result<ProxyAtScale> {
    let i = measured_route(proxy.routes);
    proxy.expect_200(i)?;
    let url = format!("http://127.0.0.1:{}{}", proxy.port, path(i));
    if !plan.warmup.is_zero() {
        wrk::run(&url, &host(i), 16, plan.warmup, Counting::Summary)?;
    }
    let mut runs = Vec::new();
    for &c in &plan.connections {
        let before = proxy.cpu_time()?;
        let load = wrk::run(&url, &host(i), c, plan.duration, Counting::Summary)?;
        let cpu = proxy.cpu_time()?.saturating_sub(before);
        proxy.check_alive()?;
        runs.push(LoadRun {
            routes: proxy.routes,
            connections: c,
            cpu_s_per_100k: Some(cpu.as_secs_f64() * 100_000.0 / load.requests.max(1) as f64),
            load,
        });
    }
    proxy.expect_200(i)?;
    Ok(ProxyAtScale {
        proxy: proxy.kind,
        routes: proxy.routes,
        load_time_ms: proxy.load_time.as_secs_f64() * 1e3,
        memory: proxy.memory()?,
        runs,
    })
}
