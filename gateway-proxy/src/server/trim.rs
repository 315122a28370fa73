//! Memory given back to the system once a crowd of connections has gone.
//!
//! Every open connection holds some 16 KiB (hyper's read and write buffers, its task, the
//! request in flight). When many close, the allocator keeps their pages for the next ones,
//! and only returns them from inside a later allocation; a proxy that goes quiet after a
//! burst never makes one, so the burst's memory stayed resident (1,000 idle connections,
//! closed: 32 MiB). Once a second [`run`] compares the open connections with the most that were
//! open since it last looked: when at least [`TRIM_AFTER`] have closed and no more than half
//! remain, it gives the free memory back, and each worker thread does the same for its own
//! heap the next time it has nothing to do ([`on_worker_idle`]). A steady load, however many
//! connections it opens and closes, never trims. The figures are in docs/benchmarks.md,
//! "Memory per connection".

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

/// How often the open connections are compared with their high-water mark.
const TICK: Duration = Duration::from_secs(1);

/// Connections that must have closed (at about 16 KiB each) before memory is given back.
pub(crate) const TRIM_AFTER: i64 = 32;

/// The most connections open at once since the last tick.
static HIGH_WATER: AtomicI64 = AtomicI64::new(0);

/// Bumped at each trim; a worker thread that has not trimmed since does so when idle.
static TRIMS: AtomicU64 = AtomicU64::new(0);

/// Records that `open` connections are open now (called as each one opens).
pub(crate) fn opened(open: i64) {
    HIGH_WATER.fetch_max(open, Ordering::Relaxed);
}

/// Whether enough connections closed since the high-water mark for their memory to matter.
pub(crate) fn should_trim(high_water: i64, open: i64) -> bool {
    high_water - open >= TRIM_AFTER && open <= high_water / 2
}

/// Watches `connections` (the open-connection gauge) and gives memory back after a crowd
/// has gone. Runs until the runtime stops.
pub async fn run(connections: Gauge) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let open = connections.get();
        let high_water = HIGH_WATER.swap(open, Ordering::Relaxed).max(open);
        if should_trim(high_water, open) {
            tracing::debug!(high_water, open, "connections gone; giving memory back");
            TRIMS.fetch_add(1, Ordering::Relaxed);
            gantry_allocator::release_free_memory();
        }
    }
}

/// For the runtime's `on_thread_park`: a worker thread about to wait for work gives its own
/// heap's free memory back once after each trim. Otherwise one load and one compare.
pub fn on_worker_idle() {
    thread_local! {
        static SEEN: Cell<u64> = const { Cell::new(0) };
    }
    let trims = TRIMS.load(Ordering::Relaxed);
    SEEN.with(|seen| {
        if seen.get() != trims {
            seen.set(trims);
            gantry_allocator::release_free_memory();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_crowd_that_has_mostly_gone_is_trimmed() {
        // 128 connections, all gone: trimmed.
        assert!(should_trim(128, 0));
        // Half gone, at least `TRIM_AFTER` of them: trimmed.
        assert!(should_trim(128, 64));
        // Fewer than half gone: a load still running.
        assert!(!should_trim(128, 65));
        // A steady load of new connections: the high-water mark stays near the open count.
        assert!(!should_trim(1_000, 990));
        // Too few to matter.
        assert!(!should_trim(TRIM_AFTER - 1, 0));
        assert!(should_trim(TRIM_AFTER, 0));
    }
}
