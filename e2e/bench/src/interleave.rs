//! The load loop every cost scenario shares: each case loaded in turn, round after round, with
//! the proxy's CPU time read around each run, so a drift of the machine hits every case alike;
//! and one case's runs summed up.

use std::time::Duration;

use super::process::Proc;
use super::results::RetryCostRoute;
use super::wrk::LoadResult;

/// One run of one case: what `wrk` saw and the proxy's CPU time during it.
pub type Sample = (LoadResult, Duration);

/// How a scenario's cases are loaded: a warm-up run of `warmup` per case first (skipped when
/// zero, not measured), then `repeats` rounds (at least one) of a `duration` run per case.
/// With `rotate`, each round starts at the next case, so no case always follows the same one.
#[derive(Clone, Copy, Debug)]
pub struct Runs {
    pub warmup: Duration,
    pub duration: Duration,
    pub repeats: usize,
    pub rotate: bool,
}

/// Loads `cases` cases as `runs` says, interleaved: `load(i, duration)` runs case `i` once.
/// The samples come back per case, in case order.
pub fn rounds(
    proc: &mut Proc,
    cases: usize,
    runs: Runs,
    mut load: impl FnMut(usize, Duration) -> anyhow::Result<LoadResult>,
) -> anyhow::Result<Vec<Vec<Sample>>> {
    if !runs.warmup.is_zero() {
        for i in 0..cases {
            load(i, runs.warmup)?;
        }
    }
    let mut samples: Vec<Vec<Sample>> = (0..cases).map(|_| Vec::new()).collect();
    for round in 0..runs.repeats.max(1) {
        let start = if runs.rotate { round } else { 0 };
        for i in (0..cases).map(|i| (i + start) % cases) {
            let before = proc.cpu_time()?;
            let result = load(i, runs.duration)?;
            let cpu = proc.cpu_time()?.saturating_sub(before);
            proc.check_alive()?;
            samples[i].push((result, cpu));
        }
    }
    Ok(samples)
}

/// One case's runs: requests, errors, the median rate and CPU per request.
pub fn summarise(samples: &[Sample]) -> RetryCostRoute {
    let requests: u64 = samples.iter().map(|(l, _)| l.requests).sum();
    let errors: u64 = samples.iter().map(|(l, _)| l.errors()).sum();
    let cpu: f64 = samples.iter().map(|(_, c)| c.as_secs_f64()).sum();
    let mut rps: Vec<f64> = samples.iter().map(|(l, _)| l.requests_per_sec).collect();
    rps.sort_by(f64::total_cmp);
    RetryCostRoute {
        requests,
        errors,
        requests_per_sec: rps.get(rps.len() / 2).copied().unwrap_or(0.0),
        cpu_us_per_request: cpu * 1e6 / requests.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_request_is_summed_over_runs() {
        let run = |requests: u64| LoadResult {
            requests,
            requests_per_sec: requests as f64,
            ..LoadResult::default()
        };
        let s = summarise(&[
            (run(1_000), Duration::from_millis(30)),
            (run(3_000), Duration::from_millis(50)),
        ]);
        assert_eq!(s.requests, 4_000);
        assert!((s.cpu_us_per_request - 20.0).abs() < 1e-9);
        assert_eq!(s.requests_per_sec, 3_000.0);
    }
}
