//! One Redis connection shared by every take of a replica, pipelined. A take appends its
//! command to the shared buffer and waits on a slot of its own; one driver task per connection
//! writes whatever has accumulated in one write, reads whatever replies have arrived in one
//! read, and fills the slots in order (Redis answers a connection's commands in the order it
//! received them). Under load, many takes share each system call, on this side and on Redis's.
//!
//! Takes of one bucket share a command. A command that takes may share ends with a count
//! ([`resp::Command::count`]); while it still waits in the buffer, a take whose command is the
//! same but for the count raises the count in place instead of adding one of its own, and is
//! told its place among the takes sharing it (the script grants the first as many as fit, in
//! order). And the driver, woken by a take while others are in flight, first lets the other
//! tasks ready on its thread run before it writes: the takes they add go out in the same write,
//! and a hot bucket's (one key under load: a route's limit, a plan's, every request of one
//! client) in one command, one script run and one reply (`gantry-bench --policy-cost-only`,
//! "global rate limit"). A take alone is written at once.
//!
//! Timeouts: a command not answered by its deadline means the connection is stuck (every
//! later reply waits behind it), so the driver fails every waiting take and the connection
//! closes; the next take opens another. The driver keeps one timer, for the oldest command,
//! moved forward as replies come: that is an atomic store, where a timer per take would lock
//! the timer wheel twice (`gantry-bench --instructions-only`, "global rate limit").
//!
//! Hand-written because it is on the request path of every global rule: the `redis` crate's
//! multiplexed connection and parser cost about 22,000 instructions per take.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::io::ReadBuf;
use tokio::time::{Instant, Sleep};

use super::redis_client::{CallError, Stream};
use super::resp::{self, Reply};

/// A handle on the connection; clones share it.
#[derive(Clone)]
pub struct Mux {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The driver's waker: a take that appends a command wakes it.
    driver: AtomicWaker,
    /// Set once the connection has failed: no command is taken any more.
    failed: AtomicBool,
    /// How long a take may wait, for the timeout's message.
    timeout: Duration,
}

#[derive(Default)]
struct State {
    /// Commands the driver has not taken yet.
    out: Vec<u8>,
    /// One per command taken or to take, in order.
    waiting: VecDeque<Waiter>,
    /// How many commands `out` holds: the last ones of `waiting`.
    queued: usize,
    /// Why the connection failed.
    failure: Option<Failure>,
}

struct Waiter {
    slot: Arc<Slot>,
    /// The other takes sharing the command, in order.
    more: Vec<Arc<Slot>>,
    deadline: Instant,
    /// For a command takes may share, while it is in `out`: where, and its count.
    sharing: Option<Sharing>,
}

struct Sharing {
    span: Range<usize>,
    count: u32,
}

impl Waiter {
    fn answer(self, reply: Reply) {
        for slot in self.more {
            slot.fill(Ok(reply.clone()));
        }
        self.slot.fill(Ok(reply));
    }

    fn fail(self, failure: &Failure) {
        for slot in self.more {
            slot.fill(Err(failure.error()));
        }
        self.slot.fill(Err(failure.error()));
    }
}

/// How far back a take looks among the queued commands for one it may share (the cost of a
/// take when many buckets are queued at once stays bounded).
const SHARE_LOOKBACK: usize = 32;

#[derive(Default)]
struct Slot {
    reply: Mutex<Option<Result<Reply, CallError>>>,
    waker: AtomicWaker,
}

impl Slot {
    fn fill(&self, reply: Result<Reply, CallError>) {
        *self.reply.lock() = Some(reply);
        self.waker.wake();
    }
}

/// Why a connection failed, for every take it fails (an `io::Error` cannot be cloned).
#[derive(Clone, Debug)]
enum Failure {
    Closed,
    Timeout(Duration),
    Io(io::ErrorKind, String),
    Malformed(resp::Malformed),
}

impl Failure {
    fn error(&self) -> CallError {
        match self {
            Self::Closed => CallError::Closed,
            Self::Timeout(after) => CallError::Timeout(*after),
            Self::Io(kind, message) => CallError::Io(io::Error::new(*kind, message.clone())),
            Self::Malformed(malformed) => CallError::Malformed(malformed.clone()),
        }
    }
}

impl Mux {
    /// Starts the driver of `stream` (on the current runtime).
    pub fn start(stream: Stream, timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            driver: AtomicWaker::new(),
            failed: AtomicBool::new(false),
            timeout,
        });
        let mut driver = Driver {
            shared: shared.clone(),
            stream,
            writing: Vec::with_capacity(1024),
            written: 0,
            chunk: Box::new([0; 4096]),
            input: Vec::with_capacity(1024),
            parsed: 0,
            replies: Vec::new(),
            answered: Vec::new(),
            timer: Box::pin(tokio::time::sleep(timeout)),
            timer_at: None,
            gathered: false,
        };
        tokio::spawn(async move {
            let failure = std::future::poll_fn(|cx| driver.poll(cx)).await;
            driver.fail(failure);
        });
        Self { shared }
    }

    /// Whether the connection has failed (a new one is needed).
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Sends the command `encode` appends to the pipeline, to be answered by `deadline`.
    pub fn send(&self, deadline: Instant, encode: impl FnOnce(&mut Vec<u8>)) -> Answer {
        let slot = Arc::new(Slot::default());
        {
            let mut state = self.shared.state.lock();
            if let Some(failure) = &state.failure {
                slot.fill(Err(failure.error()));
                return Answer(slot);
            }
            encode(&mut state.out);
            state.push(slot.clone(), deadline, None);
        }
        self.shared.driver.wake();
        Answer(slot)
    }

    /// Sends the command `encode` appends, which must end with a count of 1
    /// ([`resp::Command::count`]), or joins a queued command that is the same but for its
    /// count. Answers the reply, and this take's place among those sharing it (from 0).
    pub fn send_shared(
        &self,
        deadline: Instant,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> (Answer, u32) {
        let slot = Arc::new(Slot::default());
        let place = {
            let mut state = self.shared.state.lock();
            if let Some(failure) = &state.failure {
                slot.fill(Err(failure.error()));
                return (Answer(slot), 0);
            }
            let start = state.out.len();
            encode(&mut state.out);
            match state.join(start, &slot) {
                Some(place) => place,
                None => {
                    let span = start..state.out.len();
                    state.push(slot.clone(), deadline, Some(Sharing { span, count: 1 }));
                    0
                }
            }
        };
        // A take that joined needs no wake: the driver was woken for the command it joined.
        if place == 0 {
            self.shared.driver.wake();
        }
        (Answer(slot), place)
    }
}

impl State {
    fn push(&mut self, slot: Arc<Slot>, deadline: Instant, sharing: Option<Sharing>) {
        self.waiting.push_back(Waiter {
            slot,
            more: Vec::new(),
            deadline,
            sharing,
        });
        self.queued += 1;
    }

    /// Joins the command just written at `start` to a queued one that is the same but for its
    /// count: raises that one's count, takes the new one back out, and says the take's place.
    fn join(&mut self, start: usize, slot: &Arc<Slot>) -> Option<u32> {
        let Self {
            out,
            waiting,
            queued,
            ..
        } = self;
        let body = |span: &Range<usize>| &out[span.start..span.end - resp::COUNT_DIGITS - 2];
        let new = start..out.len();
        let first_queued = waiting.len() - (*queued).min(waiting.len());
        let waiter = waiting
            .range_mut(first_queued..)
            .rev()
            .take(SHARE_LOOKBACK)
            .find(|waiter| {
                waiter.sharing.as_ref().is_some_and(|sharing| {
                    sharing.count < resp::MAX_COUNT
                        && sharing.span.len() == new.len()
                        && body(&sharing.span) == body(&new)
                })
            })?;
        let sharing = waiter.sharing.as_mut()?;
        sharing.count += 1;
        resp::set_count(&mut out[sharing.span.clone()], sharing.count);
        out.truncate(start);
        waiter.more.push(slot.clone());
        Some(sharing.count - 1)
    }
}

/// The reply to one command.
pub struct Answer(Arc<Slot>);

impl Future for Answer {
    type Output = Result<Reply, CallError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.waker.register(cx.waker());
        match self.0.reply.lock().take() {
            Some(reply) => Poll::Ready(reply),
            None => Poll::Pending,
        }
    }
}

/// Rounds of writing and reading before the driver yields to other tasks.
const ROUNDS: usize = 16;

struct Driver {
    shared: Arc<Shared>,
    stream: Stream,
    /// Commands being written, and how much of them is.
    writing: Vec<u8>,
    written: usize,
    /// What each read fills (zeroed once, not per read).
    chunk: Box<[u8; 4096]>,
    /// Bytes read, and how many of them are parsed.
    input: Vec<u8>,
    parsed: usize,
    /// Replies parsed and not yet handed to their takes, and the takes they go to.
    replies: Vec<Reply>,
    answered: Vec<Waiter>,
    /// Fires at the oldest waiting command's deadline.
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    /// Whether the driver has let the other tasks add their commands since it last took
    /// `out`.
    gathered: bool,
}

impl Driver {
    /// Runs until the connection fails, and says why.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Failure> {
        self.shared.driver.register(cx.waker());
        for _ in 0..ROUNDS {
            let mut progress = false;
            if self.written == self.writing.len() {
                self.writing.clear();
                self.written = 0;
                let mut state = self.shared.state.lock();
                if !state.out.is_empty() {
                    let in_flight = state.waiting.len() > state.queued;
                    if in_flight && !self.gathered {
                        // Takes are already waiting for Redis, so others are likely under way:
                        // the tasks ready on this thread run first, and their takes go out in
                        // the same write (or join a queued command). With none in flight (one
                        // take at a time) the command is written at once.
                        self.gathered = true;
                        drop(state);
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    std::mem::swap(&mut state.out, &mut self.writing);
                    state.queued = 0;
                    self.gathered = false;
                }
            }
            while self.written < self.writing.len() {
                match self.stream.poll_write(cx, &self.writing[self.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Failure::Closed),
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        progress = true;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(io_failure(&error)),
                    Poll::Pending => break,
                }
            }
            if self.written == self.writing.len()
                && let Poll::Ready(Err(error)) = self.stream.poll_flush(cx)
            {
                return Poll::Ready(io_failure(&error));
            }
            match self.read(cx) {
                Poll::Ready(Ok(true)) => progress = true,
                Poll::Ready(Ok(false)) | Poll::Pending => {}
                Poll::Ready(Err(failure)) => return Poll::Ready(failure),
            }
            let oldest = match self.hand_out() {
                Ok(oldest) => oldest,
                Err(failure) => return Poll::Ready(failure),
            };
            if let Some(deadline) = oldest {
                if self.timer_at != Some(deadline) {
                    self.timer.as_mut().reset(deadline);
                    self.timer_at = Some(deadline);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Failure::Timeout(self.shared.timeout));
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Busy: let the other tasks of this thread run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads what has arrived and parses the whole replies in it: `Ok(true)` when something
    /// was read.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Failure>> {
        let mut buf = ReadBuf::new(&mut self.chunk[..]);
        match self.stream.poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(io_failure(&error))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                return Poll::Ready(Err(Failure::Closed));
            }
            Poll::Ready(Ok(())) => self.input.extend_from_slice(buf.filled()),
        }
        loop {
            match resp::parse(&self.input[self.parsed..]) {
                Ok(Some((reply, used))) => {
                    self.parsed += used;
                    self.replies.push(reply);
                }
                Ok(None) => break,
                Err(malformed) => return Poll::Ready(Err(Failure::Malformed(malformed))),
            }
        }
        if self.parsed == self.input.len() {
            self.input.clear();
            self.parsed = 0;
        }
        Poll::Ready(Ok(true))
    }

    /// Gives each parsed reply to the oldest waiting take, and says when the oldest take
    /// still waiting must be answered by. A reply nobody waits for is an error (Redis sends
    /// nothing unasked in RESP2).
    fn hand_out(&mut self) -> Result<Option<Instant>, Failure> {
        let oldest = {
            let mut state = self.shared.state.lock();
            // Only commands written are answered: never one still queued in `out`.
            let sent = state.waiting.len() - state.queued.min(state.waiting.len());
            for _ in 0..self.replies.len().min(sent) {
                match state.waiting.pop_front() {
                    Some(waiter) => self.answered.push(waiter),
                    None => break,
                }
            }
            state.waiting.front().map(|waiter| waiter.deadline)
        };
        let unasked = self.replies.len() > self.answered.len();
        for (waiter, reply) in self.answered.drain(..).zip(self.replies.drain(..)) {
            waiter.answer(reply);
        }
        if unasked {
            return Err(Failure::Malformed(resp::Malformed("a reply to no command")));
        }
        Ok(oldest)
    }

    /// Marks the connection failed and fails every waiting take.
    fn fail(&mut self, failure: Failure) {
        self.shared.failed.store(true, Ordering::Release);
        let waiting = {
            let mut state = self.shared.state.lock();
            state.failure = Some(failure.clone());
            state.out.clear();
            state.queued = 0;
            std::mem::take(&mut state.waiting)
        };
        for waiter in waiting {
            waiter.fail(&failure);
        }
    }
}

fn io_failure(error: &io::Error) -> Failure {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => Failure::Closed,
        kind => Failure::Io(kind, error.to_string()),
    }
}
