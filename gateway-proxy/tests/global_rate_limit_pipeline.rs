//! The global rate limit's pipelined Redis connection against a real `redis-server` (from
//! `.ci/packages`): many takes in flight at once on one connection, each given its own reply;
//! and the takes of a busy bucket reserved ahead, two replicas sharing it exactly.

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

/// Takes of one bucket queued together share one script call: they get, in order, exactly
/// what one call each would have given them (the limit, each remaining count once, the
/// refused told when one more fits), in fewer calls than takes.
#[tokio::test(flavor = "current_thread")]
async fn takes_of_one_bucket_share_a_call_and_get_what_one_call_each_would() {
    let redis = Redis::start().await;
    let buckets = Arc::new(GlobalBuckets::new(&redis.url()).expect("URL"));
    let rate = Rate {
        requests: 10,
        unit: Duration::from_secs(60),
    };
    // Opens the connection and loads the script, so that the takes below queue together.
    let first = buckets.take("shared:warm", rate, 1).await.expect("Redis");
    assert!(first.allowed);
    // 40 takes of cost 2 from a bucket of 10: 5 pass. On one thread, every take is queued
    // before the connection's driver writes.
    let takes: Vec<_> = (0..40)
        .map(|_| {
            let buckets = buckets.clone();
            tokio::spawn(async move { buckets.take("shared:hot", rate, 2).await })
        })
        .collect();
    let mut remaining = Vec::new();
    let mut refused = 0;
    for taken in join_all(takes).await {
        let taken = taken.expect("take task").expect("Redis answers");
        if taken.allowed {
            remaining.push(taken.remaining);
            // Full again once this take's 2 units (6 s each) and those before it have
            // drained.
            assert!(taken.wait <= Duration::from_secs(60), "{taken:?}");
        } else {
            refused += 1;
            assert_eq!(taken.remaining, 0, "{taken:?}");
            // One more fits once the first grant's 2 units are back: about 12 s.
            assert!(
                taken.wait > Duration::from_secs(11) && taken.wait <= Duration::from_secs(12),
                "{taken:?}"
            );
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, [0, 2, 4, 6, 8], "one remaining count per grant");
    assert_eq!(refused, 35);
    let calls = redis.calls("evalsha");
    // The warm-up's call, and far fewer than one per take for the 40.
    assert!(calls <= 5, "{calls} EVALSHA calls for 41 takes");
}

/// Two replicas drain one bucket of 1,000 a second (60,000 a minute, so a full bucket holds
/// 60,000), each taking until Redis refuses it. A busy bucket's takes are reserved ahead, so
/// Redis runs the script far less often than once per take; and the fleet lets through all
/// the bucket held, and no more than it held plus what refilled meanwhile and one hold's
/// worth (`reserve::HOLD`, 50 ms): no reserved take is lost or handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_drain_a_busy_bucket_exactly_with_takes_reserved_ahead() {
    let redis = Redis::start().await;
    let rate = Rate {
        requests: 60_000,
        unit: Duration::from_secs(60),
    };
    let started = std::time::Instant::now();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let buckets = GlobalBuckets::new(&redis.url()).expect("URL");
            tokio::spawn(async move {
                let mut passed = 0u64;
                // Far more than the bucket holds, so that a take handed out twice fails the
                // count below instead of never ending.
                while passed < 200_000 {
                    let taken = buckets.take("busy", rate, 1).await.expect("Redis answers");
                    if !taken.allowed {
                        break;
                    }
                    passed += 1;
                }
                passed
            })
        })
        .collect();
    let mut passed = 0;
    for replica in join_all(replicas).await {
        passed += replica.expect("replica task");
    }
    let elapsed = started.elapsed();
    // 1,000 a second: one per millisecond since the start, and one hold of 50 ms.
    let refilled = u64::try_from(elapsed.as_millis()).expect("ms") + 50;
    assert!(
        (60_000..=60_000 + refilled + 1).contains(&passed),
        "{passed} passed in {elapsed:?}"
    );
    let calls = redis.calls("evalsha");
    assert!(
        calls * 10 < passed,
        "{calls} script calls for {passed} takes: not reserved ahead"
    );
}
