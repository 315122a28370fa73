//! Global buckets: the same GCRA as [`super::buckets`], kept in Redis so every replica of a
//! fleet takes from one bucket (`--rate-limit-redis`). One Lua script per take reads the
//! arrival time, decides and writes it atomically, with Redis's own clock, so replicas whose
//! clocks differ still agree; the key expires once the bucket is full again.
//!
//! Each take in flight has a connection of its own ([`redis_client`](super::redis_client)),
//! taken from a pool of idle ones or opened, and written and read on the request's own task.
//! Redis unreachable or slower than [`TIMEOUT`]: the take fails and the policy's
//! `failClosed` decides (through the pipeline). After a failed connection attempt the next one
//! waits [`RECONNECT_EVERY`]; a pooled connection found closed (Redis restarted) is replaced at
//! once, and the take runs on the new one, since the script never ran on the old.
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

use parking_lot::Mutex;
use std::pin::Pin;

use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant as Deadline, Sleep};

use super::buckets::{Rate, Taken};
use super::redis_client::{Address, CallError, Connection};
use super::resp::Reply;

/// The longest a take waits for Redis.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// How often a lost Redis is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// At most this many connections per replica: one per take in flight. A take beyond them
/// waits (within [`TIMEOUT`]) for one to be free.
const MAX_CONNECTIONS: usize = 64;

/// GCRA in microseconds, on Redis's clock. KEYS[1]: the bucket; ARGV: emission interval,
/// tolerance (the unit), cost. Returns {allowed, remaining, wait in microseconds}.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next = tat + emission * cost
if next - now > tolerance then
  return {0, math.floor((now + tolerance - tat) / emission), next - now - tolerance}
end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000) + 1)
return {1, math.floor((now + tolerance - next) / emission), next - now}
";

/// Why a global take did not decide.
#[derive(Debug, thiserror::Error)]
pub enum GlobalError {
    #[error("Redis did not answer within {TIMEOUT:?}")]
    Timeout,
    #[error(transparent)]
    Redis(#[from] CallError),
    #[error("Redis unreachable; trying again shortly")]
    Backoff,
}

/// The Redis every replica shares.
pub struct GlobalBuckets {
    address: Address,
    /// Connections no take is using, logged in and with the script loaded.
    idle: Mutex<Vec<Pooled>>,
    /// One per connection, idle or in use.
    permits: Semaphore,
    origin: Instant,
    /// Milliseconds since `origin` before which no new connection is tried.
    retry_after_ms: AtomicU64,
    health: Arc<Health>,
}

/// A connection and the timer of the take using it. The timer stays with the connection:
/// moving a registered timer to a later deadline is one atomic store, where a timer per take
/// locks the timer wheel to register it and again to cancel it (`gantry-bench
/// --instructions-only`, "global rate limit").
struct Pooled {
    connection: Connection,
    deadline: Pin<Box<Sleep>>,
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
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_CONNECTIONS),
            origin: Instant::now(),
            retry_after_ms: AtomicU64::new(0),
            health: Arc::new(Health {
                down: AtomicBool::new(false),
                sender: watch::Sender::new(None),
            }),
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

    /// Takes `cost` from the shared bucket `key` of `rate`; a refusal takes nothing.
    pub async fn take(&self, key: &str, rate: Rate, cost: u32) -> Result<Taken, GlobalError> {
        let taken = self.take_once(key, rate, cost).await;
        match &taken {
            Ok(_) => self.health.reachable(),
            // Already marked by the failure that started the backoff.
            Err(GlobalError::Backoff) => {}
            Err(error) => self.unreachable(error),
        }
        taken
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

    async fn take_once(&self, key: &str, rate: Rate, cost: u32) -> Result<Taken, GlobalError> {
        let deadline = Deadline::now() + TIMEOUT;
        let unit = u64::try_from(rate.unit.as_micros()).unwrap_or(u64::MAX);
        let emission = (unit / u64::from(rate.requests.max(1))).max(1);
        let args = [emission, unit, u64::from(cost)];
        let key = [&b"gantry:rl:"[..], key.as_bytes()];
        let _permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout_at(deadline, self.permits.acquire())
                .await
                .map_err(|_| GlobalError::Timeout)?
                .map_err(|_| GlobalError::Backoff)?,
        };
        let idle = self.idle.lock().pop();
        let (pooled, reply) = match idle {
            Some(mut pooled) => {
                pooled.deadline.as_mut().reset(deadline);
                let eval = pooled.connection.eval(TAKE, &key, &args);
                let reply = tokio::select! {
                    biased;
                    reply = eval => reply,
                    // The connection is dropped: its reply may still come.
                    () = &mut pooled.deadline => return Err(GlobalError::Timeout),
                };
                match reply {
                    // Closed while idle (Redis restarted, or dropped an idle client) before
                    // the script ran: it runs once on a new connection.
                    Err(CallError::Closed) => {
                        Box::pin(self.eval_new(deadline, &key, &args)).await?
                    }
                    reply => (pooled, reply?),
                }
            }
            // Boxed: connecting (TLS included) is a large future, and a rare one; inline, it
            // would be copied with every take's.
            None => Box::pin(self.eval_new(deadline, &key, &args)).await?,
        };
        // A whole reply was read: the connection is ready for the next take.
        self.idle.lock().push(pooled);
        match reply {
            Reply::Array(values) => match values[..] {
                [
                    Reply::Integer(allowed),
                    Reply::Integer(remaining),
                    Reply::Integer(wait),
                ] => Ok(Taken {
                    allowed: allowed == 1,
                    remaining: u64::try_from(remaining).unwrap_or(0),
                    wait: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
                }),
                _ => Err(unexpected(Reply::Array(values))),
            },
            Reply::Error(message) => Err(GlobalError::Redis(CallError::Refused {
                command: "EVALSHA",
                message,
            })),
            reply => Err(unexpected(reply)),
        }
    }

    /// Runs the script on a new connection, by `deadline`.
    async fn eval_new(
        &self,
        deadline: Deadline,
        key: &[&[u8]],
        args: &[u64],
    ) -> Result<(Pooled, Reply), GlobalError> {
        let attempt = async {
            let mut connection = self.connect().await?;
            let reply = connection.eval(TAKE, key, args).await?;
            Ok::<_, GlobalError>((connection, reply))
        };
        let (connection, reply) = tokio::time::timeout_at(deadline, attempt)
            .await
            .map_err(|_| GlobalError::Timeout)??;
        let pooled = Pooled {
            connection,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        };
        Ok((pooled, reply))
    }

    /// Connects (once per [`RECONNECT_EVERY`] at most after a failure).
    async fn connect(&self) -> Result<Connection, GlobalError> {
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms < self.retry_after_ms.load(Ordering::Relaxed) {
            return Err(GlobalError::Backoff);
        }
        Connection::open(&self.address, TAKE)
            .await
            .map_err(|error| {
                let next = now_ms + u64::try_from(RECONNECT_EVERY.as_millis()).unwrap_or(1000);
                self.retry_after_ms.store(next, Ordering::Relaxed);
                GlobalError::Redis(error)
            })
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
