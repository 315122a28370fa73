//! Takes of a busy global bucket reserved ahead, so that most of its requests are decided
//! without a round trip to Redis. Measured by `gantry-bench --policy-cost-only` and
//! `--instructions-only` ("global rate limit"): a round trip per request cost about +12–17% of
//! the CPU of a request without the policy, against a target of half of Kong's −12%.
//!
//! When a take of a bucket must go to Redis, the replica may ask the script for a few more
//! takes than it needs (`reserve`). The script grants them only when every take of the call
//! fits and the bucket holds them; they are counted in Redis at once, like any take, and the
//! replica hands them to its next requests of that bucket until [`HOLD`] after that call. The
//! take that finds a quarter of the last grant left goes to Redis for the next reserve while
//! the rest is handed out, so that under load hardly a request waits for Redis. What is held
//! when the reserve lapses goes back to Redis with the bucket's next call from this replica.
//!
//! How much it may hold is bounded so that the fleet's limit stays the configured one:
//! - at most what the bucket's rate refills in [`HOLD`] (so a bucket slower than one take per
//!   [`HOLD`], such as 10 a minute or a daily quota, never reserves and is decided take by
//!   take, exactly), and at most [`MAX_RESERVE`]; a reserve is at most a quarter of what Redis
//!   said remained at the last call;
//! - it starts at none and grows (1, 3, 7, …) only while each reserve is used up within its
//!   [`HOLD`]; a reserve that lapses shrinks the next to what was used;
//! - one call that reserves is in flight per bucket and replica at a time.
//!
//! So over any window the fleet lets through at most one [`HOLD`] of the rate per replica more
//! than a take-by-take count would (what was counted before the window and handed out in it),
//! and a replica holds back at most as much from the others until it uses it or gives it back.
//! docs/rate-limits.md states this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use super::buckets::{Rate, Taken};

/// How long a reserve is handed out before it lapses.
pub const HOLD: Duration = Duration::from_millis(50);
/// The most takes one reserve holds.
pub const MAX_RESERVE: u32 = 256;
/// A reserving call not answered in this long no longer keeps the next from reserving (its
/// take gave up on Redis: [`super::global::TIMEOUT`]).
const REFILL_STALE: Duration = Duration::from_millis(250);
/// How many buckets may have a reserve at once; buckets beyond it are taken one by one.
const MAX_BUCKETS: usize = 8192;
/// Buckets whose reserve lapsed this long ago are forgotten (what they held is not returned:
/// at most one [`HOLD`] of the rate each).
const FORGET_AFTER: Duration = Duration::from_secs(1);

/// The reserves of this replica, by bucket key.
pub struct Reserves {
    origin: Instant,
    map: papaya::HashMap<Box<str>, Mutex<Reserve>, RandomState>,
    /// Milliseconds since `origin` of the last time lapsed buckets were forgotten.
    forgotten_ms: AtomicU64,
}

impl Default for Reserves {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            map: papaya::HashMap::with_hasher(RandomState::default()),
            forgotten_ms: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Reserves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserves")
            .field("buckets", &self.map.len())
            .finish()
    }
}

/// One bucket's reserve on this replica.
#[derive(Debug)]
struct Reserve {
    /// The bucket's settings it was reserved under: a changed policy starts afresh.
    rate: Rate,
    cost: u32,
    /// Takes reserved and not handed out yet.
    left: u32,
    /// How many the next reserving call asks for (before the caps).
    size: u32,
    /// How many the last reserving call was granted.
    granted: u32,
    /// When the reserve lapses: [`HOLD`] after the last reserving call was answered.
    until: Instant,
    /// Set while a reserving call is in flight.
    refilling: Option<Instant>,
    /// What Redis answered that call, for the `RateLimit` headers of the takes handed out:
    /// requests left in the bucket after it, and when the bucket is full again.
    remaining: u64,
    full_at: Instant,
}

/// What a take that goes to Redis asks for besides itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Takes of an earlier reserve that were not handed out, given back.
    pub returned: u32,
    /// Takes to reserve if every take of the call fits.
    pub reserve: u32,
    /// This take's call reserves: its answer must reach [`Reserves::refilled`].
    pub refill: bool,
}

impl Reserves {
    /// A take of `cost` from the bucket `key` of `rate`, handed out from its reserve; or what
    /// the call to Redis should give back and reserve.
    pub fn take(&self, key: &str, rate: Rate, cost: u32, now: Instant) -> Result<Taken, Plan> {
        let map = self.map.pin();
        let Some(reserve) = map.get(key) else {
            // Only buckets fast enough to reserve are kept.
            if rate_cap(rate, cost) == 0 || (map.len() >= MAX_BUCKETS && !self.forget(now)) {
                return Err(Plan::default());
            }
            map.insert(key.into(), Mutex::new(Reserve::new(rate, cost, now)));
            return Err(Plan {
                refill: true,
                ..Plan::default()
            });
        };
        let mut reserve = reserve.lock();
        if reserve.rate != rate || reserve.cost != cost {
            *reserve = Reserve::new(rate, cost, now);
            return Err(Plan {
                refill: true,
                ..Plan::default()
            });
        }
        let fresh = now < reserve.until;
        let refilling = reserve.refilling(now);
        if fresh && reserve.left > 0 {
            // Down to a quarter of the last grant with no call in flight: this take refills
            // (the rest is handed out meanwhile, so that the requests of a busy bucket rarely
            // wait for Redis). Otherwise it is handed out.
            if refilling || reserve.left > reserve.granted / 4 {
                reserve.left -= 1;
                return Ok(reserve.taken(now));
            }
        } else if refilling {
            // Another take's call reserves for this bucket: this one goes alone.
            return Err(Plan::default());
        }
        let cap = rate_cap(rate, cost);
        let returned = if fresh {
            // Used up (or nearly) within its hold: the next may be larger.
            reserve.size = reserve.size.saturating_mul(2).saturating_add(1).min(cap);
            0
        } else {
            // Lapsed: the next is what this one handed out, and the rest goes back.
            let unused = std::mem::take(&mut reserve.left);
            reserve.size = reserve.granted.saturating_sub(unused);
            unused
        };
        reserve.refilling = Some(now);
        let by_remaining = reserve.remaining / u64::from(cost.max(1)) / 4;
        // What is still held counts against the cap.
        let reserve = reserve
            .size
            .min(cap.saturating_sub(reserve.left))
            .min(u32::try_from(by_remaining).unwrap_or(u32::MAX));
        Err(Plan {
            returned,
            reserve,
            refill: true,
        })
    }

    /// The answer to a reserving call ([`Plan::refill`]): `reserved` takes to hand out, and
    /// Redis's count of what remains after them; `None` when the call failed.
    pub fn refilled(&self, key: &str, answer: Option<(u32, u64, Duration)>, now: Instant) {
        let map = self.map.pin();
        let Some(reserve) = map.get(key) else {
            return;
        };
        let mut reserve = reserve.lock();
        reserve.refilling = None;
        let Some((reserved, remaining, full_in)) = answer else {
            return;
        };
        reserve.left = reserve.left.saturating_add(reserved);
        reserve.granted = reserved;
        reserve.until = now + HOLD;
        reserve.remaining = remaining;
        reserve.full_at = now + full_in;
    }

    /// Forgets the buckets whose reserve lapsed [`FORGET_AFTER`] ago, at most once per
    /// [`HOLD`]; says whether there is room for another.
    fn forget(&self, now: Instant) -> bool {
        let now_ms = millis(now.saturating_duration_since(self.origin));
        let last = self.forgotten_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= millis(HOLD)
            && self
                .forgotten_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let map = self.map.pin();
            map.retain(|_, reserve| {
                let reserve = reserve.lock();
                reserve.refilling(now) || now < reserve.until + FORGET_AFTER
            });
        }
        self.map.len() < MAX_BUCKETS
    }

    /// How many buckets have a reserve (tests).
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.map.len()
    }

    /// How many takes of `key` are held (tests).
    #[cfg(test)]
    fn held(&self, key: &str) -> u32 {
        self.map
            .pin()
            .get(key)
            .map_or(0, |reserve| reserve.lock().left)
    }
}

impl Reserve {
    fn new(rate: Rate, cost: u32, now: Instant) -> Self {
        Self {
            rate,
            cost,
            left: 0,
            size: 0,
            granted: 0,
            until: now,
            refilling: Some(now),
            remaining: 0,
            full_at: now,
        }
    }

    /// Whether a reserving call is in flight (one not answered in [`REFILL_STALE`] no longer
    /// counts: its take was dropped or gave up).
    fn refilling(&self, now: Instant) -> bool {
        self.refilling
            .is_some_and(|since| now.saturating_duration_since(since) < REFILL_STALE)
    }

    /// A take handed out, as the client sees the bucket: the takes still held here are in it,
    /// but never more than a full bucket leaves after this take. The held takes were counted in
    /// Redis when they were reserved; a reserving call made while some were still held (a
    /// quarter of the last grant) may find the bucket full again, refilled since (GCRA counts
    /// no refill beyond full), so its `remaining` no longer has them taken out. They are the
    /// one [`HOLD`] a replica may let through beyond the rate, not room in the bucket.
    fn taken(&self, now: Instant) -> Taken {
        let cost = u64::from(self.cost.max(1));
        let held = u64::from(self.left) * cost;
        let step = self.rate.unit / self.rate.requests.max(1);
        let wait = self
            .full_at
            .saturating_duration_since(now)
            .saturating_sub(step.saturating_mul(u32::try_from(held).unwrap_or(u32::MAX)));
        Taken {
            allowed: true,
            remaining: self
                .remaining
                .saturating_add(held)
                .min(u64::from(self.rate.requests).saturating_sub(cost)),
            wait,
        }
    }
}

/// The most takes of `cost` that `rate` refills in [`HOLD`], at most [`MAX_RESERVE`].
fn rate_cap(rate: Rate, cost: u32) -> u32 {
    let unit = rate.unit.as_nanos().max(1);
    let per_hold = u128::from(rate.requests) * HOLD.as_nanos() / unit / u128::from(cost.max(1));
    u32::try_from(per_hold).unwrap_or(u32::MAX).min(MAX_RESERVE)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Rate = Rate {
        requests: 1000,
        unit: Duration::from_secs(1),
    };

    /// Answers a reserving call as Redis would: `reserve` granted, `remaining` left.
    fn answer(reserves: &Reserves, plan: Plan, remaining: u64, now: Instant) {
        assert!(plan.refill, "{plan:?}");
        reserves.refilled(
            "k",
            Some((plan.reserve, remaining, Duration::from_millis(10))),
            now,
        );
    }

    /// Takes at `now` until one goes to Redis: how many were handed out, and its plan.
    fn drain(reserves: &Reserves, now: Instant) -> (u32, Plan) {
        let mut served = 0;
        loop {
            match reserves.take("k", FAST, 1, now) {
                Ok(taken) => {
                    assert!(taken.allowed);
                    served += 1;
                }
                Err(plan) => return (served, plan),
            }
        }
    }

    /// The first take, then `cycles` reserves each used up, all at `now` with 900 remaining
    /// (sizes 1, 3, 7, 15, …).
    fn warm(reserves: &Reserves, cycles: usize, now: Instant) {
        let plan = reserves.take("k", FAST, 1, now).unwrap_err();
        answer(reserves, plan, 900, now);
        for _ in 0..cycles {
            let (_, plan) = drain(reserves, now);
            answer(reserves, plan, 900, now);
        }
    }

    #[test]
    fn a_slow_bucket_never_reserves() {
        let reserves = Reserves::default();
        let now = Instant::now();
        for rate in [
            Rate {
                requests: 10,
                unit: Duration::from_secs(60),
            },
            Rate {
                requests: 3,
                unit: Duration::from_secs(86_400),
            },
            // 20 a second refills 1 in 50 ms, but a cost of 2 takes 2.
            Rate {
                requests: 20,
                unit: Duration::from_secs(1),
            },
        ] {
            let cost = if rate.requests == 20 { 2 } else { 1 };
            assert_eq!(reserves.take("k", rate, cost, now), Err(Plan::default()));
        }
        assert_eq!(reserves.buckets(), 0, "nothing kept for them");
        assert_eq!(rate_cap(FAST, 1), 50);
        assert_eq!(rate_cap(FAST, 10), 5);
        assert_eq!(
            rate_cap(
                Rate {
                    requests: u32::MAX,
                    unit: Duration::from_secs(1)
                },
                1
            ),
            MAX_RESERVE
        );
    }

    #[test]
    fn a_reserve_grows_while_used_up_and_hands_out_takes_without_redis() {
        let reserves = Reserves::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // The first take learns what remains; it reserves nothing.
        let plan = reserves.take("k", FAST, 1, at(0)).unwrap_err();
        assert_eq!(plan.reserve, 0);
        answer(&reserves, plan, 900, at(0));
        // Sizes 1, 3, 7, 15, 31, each used up within its hold, then what the rate's cap of 50
        // (what 1,000 a second refills in 50 ms) leaves beside what is still held: from a
        // reserve of 4 or more, the take that finds a quarter of it left refills while the
        // rest is handed out.
        let mut sizes = Vec::new();
        let mut served = Vec::new();
        for ms in 1..=7 {
            let (handed, plan) = drain(&reserves, at(ms));
            assert_eq!(plan.returned, 0);
            assert!(plan.reserve + reserves.held("k") <= 50, "{plan:?}");
            served.push(handed);
            sizes.push(plan.reserve);
            answer(&reserves, plan, 900, at(ms));
        }
        assert_eq!(sizes, [1, 3, 7, 15, 31, 43, 40]);
        assert_eq!(served, [0, 1, 3, 6, 13, 27, 40]);
    }

    #[test]
    fn the_headers_of_a_take_handed_out_count_what_is_still_held() {
        let reserves = Reserves::default();
        let now = Instant::now();
        let plan = reserves.take("k", FAST, 1, now).unwrap_err();
        answer(&reserves, plan, 900, now);
        let plan = reserves.take("k", FAST, 1, now).unwrap_err();
        assert_eq!(plan.reserve, 1);
        reserves.refilled("k", Some((1, 899, Duration::from_millis(101))), now);
        let taken = reserves.take("k", FAST, 1, now).unwrap();
        // Nothing held any more: what Redis said, as the last take of the call would see it.
        assert_eq!(
            taken,
            Taken {
                allowed: true,
                remaining: 899,
                wait: Duration::from_millis(101),
            }
        );
        let plan = reserves.take("k", FAST, 1, now).unwrap_err();
        assert_eq!(plan.reserve, 3);
        reserves.refilled("k", Some((3, 890, Duration::from_millis(110))), now);
        let first = reserves.take("k", FAST, 1, now).unwrap();
        // Two still held: 2 more remain, and the bucket is 2 ms (1 ms a take) fuller.
        assert_eq!(first.remaining, 892);
        assert_eq!(first.wait, Duration::from_millis(108));
    }

    #[test]
    fn the_headers_never_say_more_remains_than_a_full_bucket_leaves() {
        let reserves = Reserves::default();
        let now = Instant::now();
        warm(&reserves, 4, now);
        // 16 held (15 granted and 1 of the 7 before): the take that finds 3 left reserves 31
        // more while those are still held.
        let (handed, plan) = drain(&reserves, now);
        assert_eq!((handed, plan.reserve, reserves.held("k")), (13, 31, 3));
        // The bucket refilled to full since the 15 were counted: Redis says 1,000 less this
        // take and the 31 remain, with 34 held here.
        reserves.refilled(
            "k",
            Some((plan.reserve, 1000 - 1 - 31, Duration::from_millis(32))),
            now,
        );
        let mut left = Vec::new();
        while let Ok(taken) = reserves.take("k", FAST, 1, now) {
            left.push(taken.remaining);
        }
        // Redis's 968 and the 33 still held after the first would say 1,001. After a take at
        // most 999 of 1,000 remain; the count goes down from there once fewer are held.
        assert_eq!(left.len(), 27, "{left:?}");
        assert_eq!(left[..4], [999, 999, 999, 998], "{left:?}");
        assert_eq!(left.last(), Some(&975));
    }

    #[test]
    fn a_lapsed_reserve_goes_back_and_the_next_is_what_was_used() {
        let reserves = Reserves::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let plan = reserves.take("k", FAST, 1, at(0)).unwrap_err();
        answer(&reserves, plan, 900, at(0));
        for ms in 1..=3 {
            let (_, plan) = drain(&reserves, at(ms));
            answer(&reserves, plan, 900, at(ms));
        }
        // Size 7 reserved at 3 ms; 6 handed out, and the take that found 1 left reserves 15
        // more at 5 ms: 16 held until 55 ms.
        let (handed, plan) = drain(&reserves, at(5));
        assert_eq!((handed, plan.reserve), (6, 15));
        answer(&reserves, plan, 900, at(5));
        for _ in 0..5 {
            reserves.take("k", FAST, 1, at(30)).unwrap();
        }
        // Lapsed with 11 held: they go back, and the next reserve is the 4 of the 15 used.
        let late = reserves.take("k", FAST, 1, at(55)).unwrap_err();
        assert_eq!(
            late,
            Plan {
                returned: 11,
                reserve: 4,
                refill: true,
            }
        );
        assert_eq!(reserves.held("k"), 0);
    }

    #[test]
    fn one_reserving_call_at_a_time_and_a_lost_one_goes_stale() {
        let reserves = Reserves::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let first = reserves.take("k", FAST, 1, at(0)).unwrap_err();
        assert!(first.refill);
        // Its answer has not come: the takes meanwhile go to Redis alone.
        assert_eq!(
            reserves.take("k", FAST, 1, at(1)),
            Err(Plan::default()),
            "no second reserving call"
        );
        // The answer never comes (the request was dropped): after the take's timeout the next
        // reserves again.
        let later = reserves.take("k", FAST, 1, at(300)).unwrap_err();
        assert!(later.refill);
        // A failed call reserves nothing and frees the bucket for the next.
        reserves.refilled("k", None, at(301));
        assert!(reserves.take("k", FAST, 1, at(302)).unwrap_err().refill);
    }

    #[test]
    fn a_reserve_is_at_most_a_quarter_of_what_remains() {
        let reserves = Reserves::default();
        let now = Instant::now();
        warm(&reserves, 4, now);
        // Redis says 13 remain: the next reserve is 3 at most.
        let (_, plan) = drain(&reserves, now);
        answer(&reserves, plan, 13, now);
        let (_, plan) = drain(&reserves, now);
        assert_eq!(plan.reserve, 3);
        // Then 2: none, as the bucket runs dry.
        answer(&reserves, plan, 2, now);
        let (_, plan) = drain(&reserves, now);
        assert_eq!(plan.reserve, 0);
    }

    #[test]
    fn while_a_refill_is_in_flight_what_is_held_is_handed_out() {
        let reserves = Reserves::default();
        let now = Instant::now();
        warm(&reserves, 3, now);
        // 7 granted: the take that finds 1 left refills; its answer has not come.
        let (handed, refill) = drain(&reserves, now);
        assert_eq!(handed, 6);
        assert!(refill.refill && refill.reserve > 0, "{refill:?}");
        assert!(
            reserves.take("k", FAST, 1, now).is_ok(),
            "the last one held"
        );
        assert_eq!(
            reserves.take("k", FAST, 1, now),
            Err(Plan::default()),
            "none held: alone to Redis"
        );
        answer(&reserves, refill, 900, now);
        assert_eq!(reserves.held("k"), refill.reserve);
    }

    #[test]
    fn a_changed_rate_starts_afresh() {
        let reserves = Reserves::default();
        let now = Instant::now();
        let plan = reserves.take("k", FAST, 1, now).unwrap_err();
        answer(&reserves, plan, 900, now);
        let plan = reserves.take("k", FAST, 1, now).unwrap_err();
        answer(&reserves, plan, 900, now);
        let slower = Rate {
            requests: 500,
            unit: Duration::from_secs(1),
        };
        // The take held under the old rate is not handed out under the new one.
        let plan = reserves.take("k", slower, 1, now).unwrap_err();
        assert_eq!(
            plan,
            Plan {
                returned: 0,
                reserve: 0,
                refill: true
            }
        );
    }

    #[test]
    fn buckets_are_bounded_and_lapsed_ones_forgotten() {
        let reserves = Reserves::default();
        let start = Instant::now();
        for i in 1..MAX_BUCKETS {
            let key = format!("k{i}");
            reserves.take(&key, FAST, 1, start).unwrap_err();
            reserves.refilled(&key, Some((0, 900, Duration::ZERO)), start);
        }
        // One whose reserving call was never answered (its request was dropped).
        assert!(reserves.take("stuck", FAST, 1, start).unwrap_err().refill);
        // Full, none lapsed long enough: another bucket goes to Redis take by take.
        assert_eq!(
            reserves.take("new", FAST, 1, start + HOLD),
            Err(Plan::default())
        );
        assert_eq!(reserves.buckets(), MAX_BUCKETS);
        // A second later, they are forgotten, the stuck one too, and the new one is kept.
        let later = start + HOLD + FORGET_AFTER + Duration::from_millis(1);
        assert!(reserves.take("new", FAST, 1, later).unwrap_err().refill);
        assert_eq!(reserves.buckets(), 1);
    }
}
