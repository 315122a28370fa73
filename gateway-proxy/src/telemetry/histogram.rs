//! A latency histogram that records with atomics only, so the request path takes no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds, from 0.5 ms to 30 s.
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

#[derive(Debug, Default)]
struct Inner {
    /// Non-cumulative counts; the last slot is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// Cheap to clone: clones share the same counts.
#[derive(Clone, Debug, Default)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

impl AtomicHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|upper| secs <= *upper)
            .unwrap_or(BUCKETS.len());
        self.inner.counts[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.inner.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Total observations.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    /// The encoder takes each bucket's own count and sums them into the cumulative `le`
    /// series itself; the last bucket's bound must be infinity to be printed as `+Inf`.
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, count) in self.inner.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            total += count;
            buckets.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), count));
        }
        let sum = self.inner.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 3);
        assert_eq!(h.inner.counts[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.inner.counts[4].load(Ordering::Relaxed), 1);
        assert_eq!(h.inner.counts[BUCKETS.len()].load(Ordering::Relaxed), 1);
    }

    /// The text Prometheus reads: cumulative `le` series ending in `+Inf` equal to the count.
    #[test]
    fn buckets_are_encoded_cumulatively_up_to_inf() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(60));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("latency", "test", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let bucket = |le: &str| -> u64 {
            let prefix = format!("latency_bucket{{le=\"{le}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no bucket le={le} in:\n{text}"))
                .parse()
                .expect("a count")
        };
        assert_eq!(bucket("0.0005"), 1);
        assert_eq!(bucket("0.005"), 1);
        assert_eq!(bucket("0.01"), 2);
        assert_eq!(bucket("30.0"), 2);
        assert_eq!(bucket("+Inf"), 3);
        assert!(text.contains("latency_count 3"), "{text}");
    }
}
