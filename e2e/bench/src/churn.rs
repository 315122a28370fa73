//! Churn under load: routes are added, edited and removed while `wrk` drives a stable route;
//! every request to that route must still succeed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::{self, host, path};
use super::probe;
use super::proxy::Running;
use super::results::Churn;
use super::wrk::{self, Counting};

/// Index of the route under load (in its own file, edited during the churn).
const STABLE: usize = 2_000_000;
/// First index of the routes the churn adds.
const CHURNED: usize = 3_000_000;
/// Pause between change cycles.
const PACE: Duration = Duration::from_millis(100);

/// Runs the churn for `seconds` with `connections` connections on the stable route.
pub fn measure(gantry: &mut Running, seconds: u64, connections: u32) -> anyhow::Result<Churn> {
    let dir = gantry.config_dir();
    write_atomic(&dir, "stable.yaml", &stable_route(0))?;
    probe::wait_for_200(
        gantry.port,
        &host(STABLE),
        &path(STABLE),
        Instant::now(),
        Duration::from_secs(60),
        Duration::from_millis(1),
        || gantry.check_alive(),
    )
    .context("the stable route never went live")?;

    let url = format!("http://127.0.0.1:{}{}", gantry.port, path(STABLE));
    let duration = Duration::from_secs(seconds);
    let load = std::thread::spawn(move || {
        wrk::run(
            &url,
            &host(STABLE),
            connections,
            duration,
            Counting::EveryResponse,
        )
    });

    let mut churn = Churn {
        routes: gantry.routes,
        seconds,
        ..Churn::default()
    };
    let started = Instant::now();
    // Leave the last half second of load without changes so late failures still show.
    let stop = duration.saturating_sub(Duration::from_millis(500));
    let mut k = 0;
    while started.elapsed() < stop {
        let i = CHURNED + k;
        write_atomic(&dir, &format!("churn-{k}.yaml"), &config::route(i))?;
        churn.added += 1;
        if k >= 1 {
            let j = CHURNED + k - 1;
            let edited = config::route(j).replace(&path(j), &format!("{}/v{k}", path(j)));
            write_atomic(&dir, &format!("churn-{}.yaml", k - 1), &edited)?;
            churn.edited += 1;
        }
        if k >= 3 {
            std::fs::remove_file(dir.join(format!("churn-{}.yaml", k - 3)))?;
            churn.removed += 1;
        }
        if k % 5 == 4 {
            write_atomic(&dir, "stable.yaml", &stable_route(k))?;
            churn.edited += 1;
        }
        gantry.check_alive()?;
        k += 1;
        std::thread::sleep(PACE);
    }
    churn.load = load
        .join()
        .map_err(|_| anyhow::anyhow!("the wrk thread panicked"))??;
    let last = CHURNED + k.saturating_sub(1);
    churn.last_change_live = k > 0
        && probe::wait_for_200(
            gantry.port,
            &host(last),
            &path(last),
            Instant::now(),
            Duration::from_secs(30),
            Duration::from_millis(1),
            || gantry.check_alive(),
        )
        .is_ok();
    Ok(churn)
}

/// The stable route, with a request header filter whose value changes with `version`.
fn stable_route(version: usize) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: stable, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{host}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {{set: [{{name: x-churn, value: "{version}"}}]}}
      backendRefs: [{{name: backend, port: 80}}]
"#,
        host = host(STABLE),
        path = path(STABLE)
    )
}

/// Writes `name` in `dir` through a temporary file and a rename, so the watcher never reads a
/// half-written file.
fn write_atomic(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}
