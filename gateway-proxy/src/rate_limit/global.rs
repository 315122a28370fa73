//! Global buckets: the same GCRA as [`super::buckets`], kept in Redis so every replica of a
//! fleet takes from one bucket (`--rate-limit-redis`). One Lua script per take reads the
//! arrival time, decides and writes it atomically, with Redis's own clock, so replicas whose
//! clocks differ still agree; the key expires once the bucket is full again.
//!
//! Redis unreachable or slower than [`TIMEOUT`]: the take fails and the policy's
//! `failClosed` decides (through the pipeline). The connection is made on first use and
//! made again after a failure, at most once per [`RECONNECT_EVERY`].
//!
//! Whether Redis answers is published ([`GlobalBuckets::health`]) for the control loop, which
//! puts a condition on the status of every policy with global rules while it does not. The
//! state changes only on a transition: the first failed take marks Redis unreachable (with
//! that failure's message) and starts a probe that PINGs it every [`RECONNECT_EVERY`]; the
//! first take or PING that succeeds marks it reachable again, so the condition clears even
//! when no request comes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::{OnceCell, watch};

use super::buckets::{Rate, Taken};

/// The longest a take waits for Redis.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// How often a lost Redis is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

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
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis unreachable; trying again shortly")]
    Backoff,
}

/// The Redis every replica shares.
pub struct GlobalBuckets {
    client: redis::Client,
    /// Set by the first successful connection; the manager reconnects by itself after that.
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    origin: Instant,
    /// Milliseconds since `origin` before which no new connection is tried.
    retry_after_ms: AtomicU64,
    /// `Some(why)` while Redis cannot be reached.
    health: Arc<watch::Sender<Option<String>>>,
    /// `host:port` (or the socket path): never the URL, which may hold a password.
    address: String,
}

impl std::fmt::Debug for GlobalBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalBuckets").finish_non_exhaustive()
    }
}

impl GlobalBuckets {
    /// For `redis://host:port[/db]`; connects on first use.
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let address = client.get_connection_info().addr.to_string();
        Ok(Self {
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(TAKE),
            origin: Instant::now(),
            retry_after_ms: AtomicU64::new(0),
            health: Arc::new(watch::Sender::new(None)),
            address,
        })
    }

    /// Redis's `host:port`, without credentials.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `Some(why)` while Redis cannot be reached; changes only on a transition.
    pub fn health(&self) -> watch::Receiver<Option<String>> {
        self.health.subscribe()
    }

    /// Takes `cost` from the shared bucket `key` of `rate`; a refusal takes nothing.
    pub async fn take(&self, key: &str, rate: Rate, cost: u32) -> Result<Taken, GlobalError> {
        let taken = self.take_once(key, rate, cost).await;
        match &taken {
            Ok(_) => reachable(&self.health),
            // Already marked by the failure that started the backoff.
            Err(GlobalError::Backoff) => {}
            Err(error) => self.unreachable(error),
        }
        taken
    }

    /// Marks Redis unreachable, and on the transition starts the probe that marks it
    /// reachable again.
    fn unreachable(&self, error: &GlobalError) {
        let marked = self.health.send_if_modified(|health| {
            if health.is_some() {
                return false;
            }
            *health = Some(error.to_string());
            true
        });
        if !marked {
            return;
        }
        tracing::warn!(address = %self.address, %error, "Redis cannot be reached; global rate limit rules fail open or closed as their policies say");
        let health = self.health.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RECONNECT_EVERY);
            every.tick().await;
            while health.borrow().is_some() {
                every.tick().await;
                if ping(&client).await {
                    reachable(&health);
                }
            }
        });
    }

    async fn take_once(&self, key: &str, rate: Rate, cost: u32) -> Result<Taken, GlobalError> {
        let unit = u64::try_from(rate.unit.as_micros()).unwrap_or(u64::MAX);
        let emission = (unit / u64::from(rate.requests.max(1))).max(1);
        let mut connection = match self.connection.get() {
            Some(connection) => connection.clone(),
            None => self.connect().await?,
        };
        let mut invocation = self.script.key(format!("gantry:rl:{key}"));
        invocation.arg(emission).arg(unit).arg(cost);
        let reply: Result<Result<Vec<i64>, redis::RedisError>, _> =
            tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut connection)).await;
        let values = match reply {
            Ok(Ok(values)) => values,
            Ok(Err(error)) => return Err(GlobalError::Redis(error)),
            Err(_) => return Err(GlobalError::Timeout),
        };
        let [allowed, remaining, wait] = values[..] else {
            return Err(GlobalError::Redis(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "unexpected reply from the rate limit script",
            ))));
        };
        Ok(Taken {
            allowed: allowed == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            wait: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
        })
    }

    /// Connects (once per [`RECONNECT_EVERY`] at most after a failure).
    async fn connect(&self) -> Result<ConnectionManager, GlobalError> {
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms < self.retry_after_ms.load(Ordering::Relaxed) {
            return Err(GlobalError::Backoff);
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(1);
        let connected = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await;
        match connected {
            Ok(connection) => Ok(connection.clone()),
            Err(error) => {
                let next = now_ms + u64::try_from(RECONNECT_EVERY.as_millis()).unwrap_or(1000);
                self.retry_after_ms.store(next, Ordering::Relaxed);
                Err(GlobalError::Redis(error))
            }
        }
    }
}

/// Marks Redis reachable (a no-op when it already is).
fn reachable(health: &watch::Sender<Option<String>>) {
    if health.send_if_modified(|health| health.take().is_some()) {
        tracing::info!("Redis answers again; global rate limit rules are counted");
    }
}

/// Whether Redis answers PING within [`TIMEOUT`] on a new connection.
async fn ping(client: &redis::Client) -> bool {
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    matches!(tokio::time::timeout(TIMEOUT, attempt).await, Ok(Ok(_)))
}
