//! The global rate limit's pipelined Redis connection against a real `redis-server` (from
//! `.ci/packages`): many takes in flight at once on one connection, each given its own reply.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use gantry_proxy::rate_limit::buckets::Rate;
use gantry_proxy::rate_limit::global::GlobalBuckets;
use gantry_testkit::redis::Redis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takes_on_one_connection_each_get_their_own_reply() {
    let redis = Redis::start().await;
    let buckets = Arc::new(GlobalBuckets::new(&redis.url()).expect("URL"));
    // Key i allows i + 1 requests a minute; 25 takes per key, all interleaved and in flight
    // together. Were a reply given to another take than the one it answers, some key would
    // pass more or fewer than its limit.
    let keys = 40u32;
    let takes: Vec<_> = (0..25)
        .flat_map(|_| 0..keys)
        .map(|i| {
            let buckets = buckets.clone();
            tokio::spawn(async move {
                let rate = Rate {
                    requests: i + 1,
                    unit: Duration::from_secs(60),
                };
                let taken = buckets.take(&format!("pipeline:{i}"), rate, 1).await;
                (i, taken.expect("Redis answers"))
            })
        })
        .collect();
    let mut passed = vec![0u32; keys as usize];
    for result in join_all(takes).await {
        let (i, taken) = result.expect("take task");
        if taken.allowed {
            passed[i as usize] += 1;
            assert!(u64::from(i) >= taken.remaining, "key {i}: {taken:?}");
        }
    }
    for (i, passed) in passed.into_iter().enumerate() {
        assert_eq!(passed, (i as u32 + 1).min(25), "key {i}");
    }
    // One connection served them all (plus redis-cli's own).
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert_eq!(clients.lines().count(), 2, "{clients}");
}
