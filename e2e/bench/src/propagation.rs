//! Route propagation in Gantry: a new route file appears, how long until that route serves 200.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::{self, host, path};
use super::probe;
use super::proxy::Running;
use super::results::Propagation;

/// Adds `samples` new routes one at a time (each in its own file, written to a temporary name
/// and renamed into place, as config management tools do) and times each from the rename to
/// the first 200.
pub fn measure(gantry: &mut Running, samples: usize) -> anyhow::Result<Propagation> {
    let dir = gantry.config_dir();
    let mut result = Propagation {
        routes: gantry.routes,
        samples_ms: Vec::new(),
    };
    for k in 0..samples {
        let i = gantry.routes + 1_000_000 + k;
        let tmp = dir.join(format!(".new-{i}.tmp"));
        std::fs::write(&tmp, config::route(i))?;
        let started = Instant::now();
        std::fs::rename(&tmp, dir.join(format!("new-{i}.yaml")))?;
        let took = probe::wait_for_200(
            gantry.port,
            &host(i),
            &path(i),
            started,
            Duration::from_secs(60),
            Duration::from_micros(500),
            || gantry.check_alive(),
        )
        .with_context(|| format!("new route {i} at {} routes", gantry.routes))?;
        result.samples_ms.push(took.as_secs_f64() * 1e3);
    }
    Ok(result)
}
