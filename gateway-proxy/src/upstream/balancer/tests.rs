use std::collections::BTreeMap;

use http::HeaderMap;

use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
}

fn key(client: [u8; 4]) -> RequestKey<'static> {
    RequestKey::connection(client.into())
}

/// How many of `picks` choices went to each of `n` endpoints.
fn counts(balancer: &Balancer, n: usize, picks: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for _ in 0..picks {
        let choice = balancer.choose(Choosable::all(n), &key([10, 0, 0, 1]));
        counts[choice.map_or(n, |c| c.index).min(n - 1)] += 1;
    }
    counts
}

fn compile(ir: &LoadBalancerIr, n: usize) -> Balancer {
    Balancer::compile(ir, &names(n), None, None, Instant::now())
}

/// Each count within `tolerance` (a fraction) of an even share.
fn assert_even(counts: &[usize], tolerance: f64) {
    let total: usize = counts.iter().sum();
    let even = total as f64 / counts.len() as f64;
    for c in counts {
        assert!(
            (*c as f64 - even).abs() <= even * tolerance,
            "{counts:?} is not even within {tolerance}"
        );
    }
}

#[test]
fn round_robin_takes_each_endpoint_in_turn_and_skips_what_may_not_be_chosen() {
    let rr = compile(
        &LoadBalancerIr::RoundRobin {
            slow_start_window_ms: None,
        },
        3,
    );
    let picks: Vec<_> = (0..6)
        .filter_map(|_| rr.choose(Choosable::all(3), &key([1, 1, 1, 1])))
        .map(|c| c.index)
        .collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    let allowed = [true, false, true];
    for _ in 0..6 {
        let choice = rr.choose(Choosable::only(&allowed), &key([1, 1, 1, 1]));
        assert_ne!(choice.map(|c| c.index), Some(1));
    }
    assert!(rr.choose(Choosable::all(0), &key([1, 1, 1, 1])).is_none());
    assert!(
        rr.choose(Choosable::only(&[false, false]), &key([1, 1, 1, 1]))
            .is_none()
    );
}

#[test]
fn random_spreads_evenly() {
    let random = compile(&LoadBalancerIr::Random, 4);
    // 40 000 picks over 4: a share's standard deviation is under 1%; 5% is far outside.
    assert_even(&counts(&random, 4, 40_000), 0.05);
    let allowed = [false, true, false, false];
    for _ in 0..20 {
        let choice = random.choose(Choosable::only(&allowed), &key([1, 1, 1, 1]));
        assert_eq!(choice.map(|c| c.index), Some(1));
    }
}

#[test]
fn least_request_prefers_the_endpoint_with_fewer_requests_in_flight() {
    let lr = compile(
        &LoadBalancerIr::LeastRequest {
            choices: 2,
            slow_start_window_ms: None,
        },
        4,
    );
    // Nothing in flight (each pick's count is released at once): even.
    assert_even(&counts(&lr, 4, 40_000), 0.05);
    // Endpoint 0 holds 10 requests: it only wins a draw against itself, which a second draw
    // makes rare (both draws 0, then the redraw 0 again: 1/64).
    let held: Vec<Slot> = (0..10).filter_map(|_| lr.slot(0)).collect();
    let busy = counts(&lr, 4, 10_000);
    assert!(busy[0] < 300, "{busy:?}");
    drop(held);
    let choice = lr.choose(Choosable::all(4), &key([1, 1, 1, 1]));
    assert!(
        choice.is_some_and(|c| c.slot.is_some()),
        "the pick holds a count"
    );
}

#[test]
fn slow_start_ramps_a_new_endpoint_up_over_the_window() {
    let ir = LoadBalancerIr::RoundRobin {
        slow_start_window_ms: Some(100_000),
    };
    let start = Instant::now();
    let first = Balancer::compile(&ir, &names(3), None, None, start);
    assert!(
        first.warm_until.is_none(),
        "the first endpoints are not new"
    );
    // Endpoint 3 joins.
    let four = names(4);
    let old = names(3);
    let second = Balancer::compile(&ir, &four, Some(&first), Some(&old), start);
    let end = start + Duration::from_secs(100);
    assert_eq!(second.warm_until, Some(end));
    assert_eq!(second.weight(3, Some(start)), SLOW_START_MIN_WEIGHT);
    assert!((second.weight(3, Some(start + Duration::from_secs(50))) - 0.5).abs() < 1e-9);
    assert_eq!(second.weight(3, Some(end)), 1.0);
    assert_eq!(second.weight(0, Some(start)), 1.0);
    // At the start of the window it gets about a tenth of an established endpoint's share.
    let picks = counts(&second, 4, 20_000);
    let established = (picks[0] + picks[1] + picks[2]) as f64 / 3.0;
    let share = picks[3] as f64 / established;
    assert!((0.05..0.2).contains(&share), "{picks:?}");
    // A reload keeps when it joined.
    let third = Balancer::compile(&ir, &four, Some(&second), Some(&four), end);
    assert_eq!(third.states[3].added, Some(start));
    assert!(third.warm_until.is_none(), "window over");
}

#[test]
fn consistent_hash_sticks_to_an_endpoint_per_key_and_spreads_keys() {
    let ir = LoadBalancerIr::ConsistentHash(ConsistentHashIr {
        key: HashKeyIr::Header {
            name: "x-user".into(),
        },
        table_size: 65_537,
    });
    let hash = compile(&ir, 5);
    let mut per_endpoint = vec![0; 5];
    for user in 0..10_000 {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-user",
            HeaderValue::from_str(&format!("user-{user}")).unwrap_or(HeaderValue::from_static("")),
        );
        let request = RequestKey {
            client: [10, 0, 0, 1].into(),
            headers: Some(&headers),
            query: None,
        };
        let first = hash.choose(Choosable::all(5), &request).map(|c| c.index);
        for _ in 0..3 {
            assert_eq!(
                hash.choose(Choosable::all(5), &request).map(|c| c.index),
                first
            );
        }
        per_endpoint[first.unwrap_or_default()] += 1;
    }
    assert_even(&per_endpoint, 0.1);
    // No header: an endpoint at random, and no cookie.
    let bare = hash.choose(Choosable::all(5), &key([1, 1, 1, 1]));
    assert!(bare.is_some_and(|c| c.set_cookie.is_none()));
    // A retry never gets the same endpoint while another exists.
    assert_eq!(hash.choose_other(Choosable::all(5), |i| i != 2), Some(2));
}

#[test]
fn a_cookie_key_sets_a_cookie_that_leads_back_to_the_same_endpoint() {
    let ir = LoadBalancerIr::ConsistentHash(ConsistentHashIr {
        key: HashKeyIr::Cookie {
            name: "lb".into(),
            ttl_ms: Some(60_000),
            attributes: BTreeMap::new(),
        },
        table_size: 251,
    });
    let hash = compile(&ir, 4);
    for _ in 0..20 {
        let first = hash
            .choose(Choosable::all(4), &key([1, 1, 1, 1]))
            .expect("a choice");
        let cookie = first.set_cookie.expect("a cookie is set");
        let value = cookie
            .to_str()
            .ok()
            .and_then(|c| c.split(';').next())
            .unwrap_or_default()
            .to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("")),
        );
        let again = RequestKey {
            client: [1, 1, 1, 1].into(),
            headers: Some(&headers),
            query: None,
        };
        let next = hash.choose(Choosable::all(4), &again).expect("a choice");
        assert_eq!(next.index, first.index);
        assert!(next.set_cookie.is_none());
    }
}

#[test]
fn the_maglev_table_is_reused_while_the_endpoints_stay() {
    let ir = LoadBalancerIr::ConsistentHash(ConsistentHashIr {
        key: HashKeyIr::SourceIp,
        table_size: 251,
    });
    let table = |b: &Balancer| match &b.algorithm {
        Algorithm::ConsistentHash { table, .. } => Some(table.clone()),
        _ => None,
    };
    let now = Instant::now();
    let first = Balancer::compile(&ir, &names(3), None, None, now);
    let same = Balancer::compile(&ir, &names(3), Some(&first), Some(&names(3)), now);
    let (a, b) = (table(&first), table(&same));
    assert!(a.zip(b).is_some_and(|(a, b)| Arc::ptr_eq(&a, &b)));
    let more = Balancer::compile(&ir, &names(4), Some(&same), Some(&names(3)), now);
    let (b, c) = (table(&same), table(&more));
    assert!(b.zip(c).is_some_and(|(b, c)| !Arc::ptr_eq(&b, &c)));
}

#[test]
fn least_request_counts_survive_a_reload() {
    let ir = LoadBalancerIr::LeastRequest {
        choices: 2,
        slow_start_window_ms: None,
    };
    let now = Instant::now();
    let first = Balancer::compile(&ir, &names(2), None, None, now);
    let held = first.slot(1);
    // Endpoint 1 moves to index 0 in the next configuration.
    let moved = vec![names(2)[1].clone(), names(3)[2].clone()];
    let second = Balancer::compile(&ir, &moved, Some(&first), Some(&names(2)), now);
    assert_eq!(second.states[0].in_flight.load(Ordering::Relaxed), 1);
    assert_eq!(second.states[1].in_flight.load(Ordering::Relaxed), 0);
    drop(held);
    assert_eq!(second.states[0].in_flight.load(Ordering::Relaxed), 0);
}
