//! Global buckets: the same GCRA as [`super::buckets`], kept in Redis so every replica of a
//! fleet takes from one bucket (`--rate-limit-redis`). A Lua script reads the arrival time,
//! decides and writes it atomically, with Redis's own clock, so replicas whose clocks differ
//! still agree; the key expires once the bucket is full again.
//!
//! A busy bucket's takes are mostly handed out from a few the replica reserved ahead in an
//! earlier call ([`reserve`](super::reserve)), within bounds that keep the fleet's limit the
//! configured one; a bucket slower than one take per [`reserve::HOLD`](super::reserve::HOLD)
//! is decided take by take. Every take that goes to Redis goes through one pipelined
//! connection ([`redis_mux`](super::redis_mux), opened by [`redis_client`](super::redis_client)
//! on first use). Takes of one bucket queued together share one script call, which grants the
//! first as many as fit, in order: each take is answered exactly as a call of its own would
//! have been. Redis unreachable or slower than [`TIMEOUT`]: the take fails and the policy's
//! `failClosed` decides (through the pipeline). After a failed connection attempt the next one
//! waits [`RECONNECT_EVERY`]; a connection found closed (Redis restarted) is replaced at once
//! and the take sent again on the new one, and should Redis have lost the script (`SCRIPT
//! FLUSH`) the take sends it whole.
//!
//! Whether Redis answers is published ([`GlobalBuckets::health`]) for the control loop, which
//! puts a condition on the status of every policy with global rules while it does not. The
//! state changes only on a transition: the first failed take marks Redis unreachable (with
//! that failure's message) and starts a probe that PINGs it every [`RECONNECT_EVERY`]; the
//! first take or PING that succeeds marks it reachable again, so the condition clears even
//! when no request comes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::time::Instant as Deadline;

use super::buckets::{Rate, Taken};
use super::redis_client::{Address, CallError, Connection};
use super::redis_mux::Mux;
use super::reserve::{Plan, Reserves};
use super::resp::{Command, Reply};

/// The longest a take waits for Redis.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// How often a lost Redis is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// GCRA in microseconds, on Redis's clock, for `count` takes of one bucket at once (the takes
/// of one replica that share a command, [`redis_mux`](super::redis_mux)): as many as fit are
/// granted, in order, exactly as one call each would have been. KEYS[1]: the bucket; ARGV:
/// emission interval, tolerance (the unit), cost, takes given back (of a reserve that lapsed),
/// takes to reserve once every take fits ([`reserve`](super::reserve)), count. Returns
/// {granted, remaining after them and the reserve, microseconds until the bucket is full again,
/// microseconds until one more fits, reserved}.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local step = emission * tonumber(ARGV[3])
local returned = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') - step * returned
if tat < now then tat = now end
local fit = math.floor((now + tolerance - tat) / step)
local granted = fit
if granted > count then granted = count end
if granted < 0 then granted = 0 end
local reserved = 0
if granted == count and fit - count > 0 then reserved = math.min(reserve, fit - count) end
local next = tat + step * (granted + reserved)
if granted + reserved > 0 or returned > 0 then
  redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000) + 1)
end
return {granted, math.floor((now + tolerance - next) / emission), next - now, next + step - now - tolerance, reserved}
";

/// Why a global take did not decide.
#[derive(Debug, thiserror::Error)]
pub enum GlobalError {
    #[error(transparent)]
    Redis(#[from] CallError),
    #[error("Redis unreachable; trying again shortly")]
    Backoff,
}

/// The Redis every replica shares.
pub struct GlobalBuckets {
    address: Address,
    /// The connection, once open, and `EVALSHA <sha> 1`: what every take's command starts with.
    connection: ArcSwapOption<(Mux, Vec<u8>)>,
    /// Held while a connection is opened, so concurrent takes open one.
    connecting: tokio::sync::Mutex<()>,
    origin: Instant,
    /// Milliseconds since `origin` before which no new connection is tried.
    retry_after_ms: AtomicU64,
    health: Arc<Health>,
    /// Takes of busy buckets reserved ahead.
    reserves: Reserves,
}

/// Whether Redis answers, for the control loop.
struct Health {
    /// Read by every take; the watch is written only on a transition.
    down: AtomicBool,
    /// `Some(why)` while Redis cannot be reached.
    sender: watch::Sender<Option<String>>,
}

impl std::fmt::Debug for GlobalBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalBuckets")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl GlobalBuckets {
    /// For `redis://[[user]:password@]host[:port][/db]` or `rediss://…`; connects on first use.
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(Self {
            address: Address::parse(url)?,
            connection: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            origin: Instant::now(),
            retry_after_ms: AtomicU64::new(0),
            health: Arc::new(Health {
                down: AtomicBool::new(false),
                sender: watch::Sender::new(None),
            }),
            reserves: Reserves::default(),
        })
    }

    /// Redis's `host:port`, without credentials.
    pub fn address(&self) -> String {
        self.address.display()
    }

    /// `Some(why)` while Redis cannot be reached; changes only on a transition.
    pub fn health(&self) -> watch::Receiver<Option<String>> {
        self.health.sender.subscribe()
    }

    /// Takes `cost` from the shared bucket `key` of `rate`; a refusal takes nothing. A busy
    /// bucket's takes are mostly handed out from what this replica reserved ahead
    /// ([`reserve`](super::reserve)).
    pub async fn take(&self, key: &str, rate: Rate, cost: u32) -> Result<Taken, GlobalError> {
        match self.try_reserved(key, rate, cost, Instant::now()) {
            Ok(taken) => Ok(taken),
            Err(plan) => self.take_with(key, rate, cost, plan).await,
        }
    }

    /// The take handed out at `now` from this replica's reserve of the bucket, or what its call
    /// to Redis ([`GlobalBuckets::take_with`]) should give back and reserve.
    pub(crate) fn try_reserved(
        &self,
        key: &str,
        rate: Rate,
        cost: u32,
        now: Instant,
    ) -> Result<Taken, Plan> {
        self.reserves.take(key, rate, cost, now)
    }

    /// The take counted in Redis, with what `plan` gives back and reserves.
    pub(crate) async fn take_with(
        &self,
        key: &str,
        rate: Rate,
        cost: u32,
        plan: Plan,
    ) -> Result<Taken, GlobalError> {
        let unit = u64::try_from(rate.unit.as_micros()).unwrap_or(u64::MAX);
        let emission = (unit / u64::from(rate.requests.max(1))).max(1);
        let args: [u64; TAKE_ARGS] = [
            emission,
            unit,
            u64::from(cost),
            u64::from(plan.returned),
            u64::from(plan.reserve),
        ];
        let answered = self.take_once(key.as_bytes(), &args).await;
        if plan.refill {
            let reserved = answered.as_ref().ok().map(|&(shared, place)| {
                // Only a call of its own reserves (a shared one asked for none).
                let reserved = if place == 0 { shared.reserved } else { 0 };
                (
                    u32::try_from(reserved).unwrap_or(0),
                    u64::try_from(shared.remaining).unwrap_or(0),
                    Duration::from_micros(u64::try_from(shared.full_in).unwrap_or(0)),
                )
            });
            self.reserves.refilled(key, reserved, Instant::now());
        }
        match &answered {
            Ok(_) => self.health.reachable(),
            // Already marked by the failure that started the backoff.
            Err(GlobalError::Backoff) => {}
            Err(error) => self.unreachable(error),
        }
        answered.map(|(shared, place)| share(shared, place, emission, cost))
    }

    /// Marks Redis unreachable, and on the transition starts the probe that marks it
    /// reachable again.
    fn unreachable(&self, error: &GlobalError) {
        let marked = self.health.sender.send_if_modified(|health| {
            if health.is_some() {
                return false;
            }
            *health = Some(error.to_string());
            // Under the watch's lock, so `down` and the watch never disagree for long.
            self.health.down.store(true, Ordering::Relaxed);
            true
        });
        if !marked {
            return;
        }
        tracing::warn!(address = %self.address.display(), %error, "Redis cannot be reached; global rate limit rules fail open or closed as their policies say");
        let health = self.health.clone();
        let address = self.address.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RECONNECT_EVERY);
            every.tick().await;
            while health.sender.borrow().is_some() {
                every.tick().await;
                if ping(&address).await {
                    health.reachable();
                }
            }
        });
    }

    /// One script call for the take (or a share of one), and this take's place in it.
    async fn take_once(
        &self,
        key: &[u8],
        args: &[u64; TAKE_ARGS],
    ) -> Result<(Shared, u32), GlobalError> {
        let deadline = Deadline::now() + TIMEOUT;
        let (mut reply, mut place) = match self.send(deadline, key, args).await {
            // Closed (Redis restarted, or dropped the connection) before the reply: the take
            // is sent again on a new connection.
            Err(GlobalError::Redis(CallError::Closed)) => self.send(deadline, key, args).await,
            reply => reply,
        }?;
        if matches!(&reply, Reply::Error(message) if message.starts_with("NOSCRIPT")) {
            // Redis lost the script (SCRIPT FLUSH): EVAL sends it whole, and Redis keeps it.
            let (mux, _) = &*self.connection(deadline).await?;
            reply = mux
                .send(deadline, |out| {
                    let command = Command::new(out, 4 + TAKE_ARGS + 1)
                        .arg(b"EVAL")
                        .arg(TAKE.as_bytes())
                        .arg(b"1");
                    key_and_args(command, key, args);
                })
                .await?;
            place = 0;
        }
        match reply {
            Reply::Array(values) => match values[..] {
                [
                    Reply::Integer(granted),
                    Reply::Integer(remaining),
                    Reply::Integer(full_in),
                    Reply::Integer(retry_in),
                    Reply::Integer(reserved),
                ] => Ok((
                    Shared {
                        granted,
                        remaining,
                        full_in,
                        retry_in,
                        reserved,
                    },
                    place,
                )),
                _ => Err(unexpected(Reply::Array(values))),
            },
            Reply::Error(message) => Err(GlobalError::Redis(CallError::Refused {
                command: "EVALSHA",
                message,
            })),
            reply => Err(unexpected(reply)),
        }
    }

    /// Sends one `EVALSHA` of the script, or joins a queued one of the same bucket, and waits
    /// for its reply; says this take's place among those sharing it.
    async fn send(
        &self,
        deadline: Deadline,
        key: &[u8],
        args: &[u64; TAKE_ARGS],
    ) -> Result<(Reply, u32), GlobalError> {
        let encode = |out: &mut Vec<u8>, evalsha: &[u8]| {
            out.extend_from_slice(evalsha);
            key_and_args(Command::append(out), key, args);
        };
        let answer = match &*self.connection.load() {
            Some(connection) if !connection.0.failed() => {
                let (mux, evalsha) = &**connection;
                mux.send_shared(deadline, |out| encode(out, evalsha))
            }
            _ => {
                // Boxed: connecting (TLS included) is a large future, and a rare one; inline,
                // it would be copied with every take's.
                let connection = Box::pin(self.reconnect(deadline)).await?;
                let (mux, evalsha) = &*connection;
                mux.send_shared(deadline, |out| encode(out, evalsha))
            }
        };
        let (answer, place) = answer;
        Ok((answer.await?, place))
    }

    /// The open connection, or a new one.
    async fn connection(&self, deadline: Deadline) -> Result<Arc<(Mux, Vec<u8>)>, GlobalError> {
        if let Some(connection) = &*self.connection.load()
            && !connection.0.failed()
        {
            return Ok(connection.clone());
        }
        Box::pin(self.reconnect(deadline)).await
    }

    async fn reconnect(&self, deadline: Deadline) -> Result<Arc<(Mux, Vec<u8>)>, GlobalError> {
        let _one = tokio::time::timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| GlobalError::Redis(CallError::Timeout(TIMEOUT)))?;
        // Another take may have opened it meanwhile.
        if let Some(connection) = &*self.connection.load()
            && !connection.0.failed()
        {
            return Ok(connection.clone());
        }
        let (stream, sha) = self.connect(deadline).await?.into_stream();
        let mut evalsha = Vec::new();
        Command::new(&mut evalsha, 4 + TAKE_ARGS + 1)
            .arg(b"EVALSHA")
            .arg(&sha)
            .arg(b"1");
        let connection = Arc::new((Mux::start(stream, TIMEOUT), evalsha));
        self.connection.store(Some(connection.clone()));
        Ok(connection)
    }

    /// Connects by `deadline` (once per [`RECONNECT_EVERY`] at most after a failure or a
    /// timeout).
    async fn connect(&self, deadline: Deadline) -> Result<Connection, GlobalError> {
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms < self.retry_after_ms.load(Ordering::Relaxed) {
            return Err(GlobalError::Backoff);
        }
        let error =
            match tokio::time::timeout_at(deadline, Connection::open(&self.address, TAKE)).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(error)) => GlobalError::Redis(error),
                Err(_) => GlobalError::Redis(CallError::Timeout(TIMEOUT)),
            };
        let next = now_ms + u64::try_from(RECONNECT_EVERY.as_millis()).unwrap_or(1000);
        self.retry_after_ms.store(next, Ordering::Relaxed);
        Err(error)
    }
}

/// The script's arguments but the count: emission interval, tolerance, cost, takes given back,
/// takes to reserve.
const TAKE_ARGS: usize = 5;

/// Every bucket's key in Redis starts with this.
const KEY_PREFIX: &[u8] = b"gantry:rl:";

/// The rest of a script call: the bucket's key, the arguments, and a count of 1 (raised in
/// place by the takes that share the call).
fn key_and_args(command: Command<'_>, key: &[u8], args: &[u64; TAKE_ARGS]) {
    args.iter()
        .fold(command.parts(&[KEY_PREFIX, key]), |command, &arg| {
            command.int(arg)
        })
        .count();
}

/// The script's answer to the takes sharing a call.
#[derive(Debug, Clone, Copy)]
struct Shared {
    granted: i64,
    remaining: i64,
    /// Microseconds until the bucket is full again, after the grants.
    full_in: i64,
    /// Microseconds until one more take fits.
    retry_in: i64,
    /// Takes reserved after the granted ones, for this replica to hand out.
    reserved: i64,
}

/// What the take at `place` among those sharing a call was given, as if each had made the
/// call on its own, in order: the first `granted` are let through, each seeing the bucket as it
/// was after its own grant (one `cost` of `emission` microseconds apart from the next, the
/// takes reserved after the last), and the rest are refused.
fn share(shared: Shared, place: u32, emission: u64, cost: u32) -> Taken {
    let place = i64::from(place);
    let (remaining, wait) = if place < shared.granted {
        let after = shared.granted - 1 - place + shared.reserved.max(0);
        let step = i64::try_from(emission.saturating_mul(u64::from(cost))).unwrap_or(i64::MAX);
        (
            shared
                .remaining
                .saturating_add(after.saturating_mul(i64::from(cost))),
            shared.full_in.saturating_sub(after.saturating_mul(step)),
        )
    } else {
        (shared.remaining, shared.retry_in)
    };
    Taken {
        allowed: place < shared.granted,
        remaining: u64::try_from(remaining).unwrap_or(0),
        wait: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
    }
}

fn unexpected(reply: Reply) -> GlobalError {
    GlobalError::Redis(CallError::Unexpected {
        command: "the rate limit script",
        reply,
    })
}

impl Health {
    /// Marks Redis reachable (a no-op when it already is).
    fn reachable(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let cleared = self.sender.send_if_modified(|health| {
            self.down.store(false, Ordering::Relaxed);
            health.take().is_some()
        });
        if cleared {
            tracing::info!("Redis answers again; global rate limit rules are counted");
        }
    }
}

/// Whether Redis answers PING within [`TIMEOUT`] on a new connection.
async fn ping(address: &Address) -> bool {
    let attempt = async { Connection::open(address, TAKE).await?.ping().await };
    matches!(tokio::time::timeout(TIMEOUT, attempt).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_testkit::redis::Redis;

    /// The script's arguments for takes of cost 1 from a bucket of 100 a second.
    fn args(returned: u64, reserve: u64) -> [u64; TAKE_ARGS] {
        [10_000, 1_000_000, 1, returned, reserve]
    }

    /// The script against a real Redis: a reserve is granted after the take only when it fits,
    /// counted like takes, and what is given back is in the bucket again.
    #[tokio::test]
    async fn the_script_reserves_what_fits_and_takes_back_what_is_returned() {
        let redis = Redis::start().await;
        let buckets = GlobalBuckets::new(&redis.url()).expect("URL");
        let (first, place) = buckets.take_once(b"r", &args(0, 30)).await.expect("Redis");
        assert_eq!(place, 0);
        assert_eq!((first.granted, first.reserved), (1, 30));
        // A new bucket holds 100: 1 taken and 30 reserved.
        assert_eq!(first.remaining, 69, "{first:?}");
        // 30 given back with the next take: it sees them in the bucket again (and what
        // refilled meanwhile, up to full).
        let (back, _) = buckets.take_once(b"r", &args(30, 0)).await.expect("Redis");
        assert_eq!((back.granted, back.reserved), (1, 0));
        assert!((98..=99).contains(&back.remaining), "{back:?}");
        // A reserve never takes the last of the bucket from the takes themselves: asked for
        // more than is left, it gets what is left after the take.
        let (drained, _) = buckets.take_once(b"r", &args(0, 500)).await.expect("Redis");
        assert_eq!(drained.granted, 1);
        assert!((97..=99).contains(&drained.reserved), "{drained:?}");
        assert_eq!(drained.remaining, 0);
        // Empty: the take is refused and nothing is reserved.
        let (refused, _) = buckets.take_once(b"r", &args(0, 5)).await.expect("Redis");
        assert_eq!((refused.granted, refused.reserved), (0, 0), "{refused:?}");
    }
}
