//! Memory per open, idle keep-alive connection, side by side: each proxy serves the HTTP/2
//! and TLS scenario's route (`protocols`); `connections` clients connect over HTTP/1.1, each
//! sends one request, reads the answer and keeps its connection open. The requests go one
//! after the other, so each proxy reuses one connection to the backend: the figure is the
//! client side's. The proxy's resident memory is read before, with every connection open,
//! and after they have all closed, once it has stopped falling (what a proxy gives back when
//! a crowd of clients has gone). Nothing is asserted: the report prints the figures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use gantry_testkit::certs::Ca;

use super::process::Memory;
use super::protocols::{HOST, PATH, Started};
use super::proxy::{Kind, Setup};
use super::results::{IdleCase, IdleConnections};

/// How long the memory may take to settle after the connections close.
const SETTLE: Duration = Duration::from_secs(5);
/// Readings of the memory while it settles.
const SETTLE_EVERY: Duration = Duration::from_millis(100);
/// The memory has settled once it has not fallen for this long.
const SETTLED_AFTER: Duration = Duration::from_millis(1500);

pub fn measure(
    setup: &Setup,
    kinds: &[Kind],
    connections: usize,
) -> anyhow::Result<IdleConnections> {
    let leaf = Ca::new("gantry-bench").server(&[HOST]);
    let mut cases = Vec::new();
    for &kind in kinds {
        let mut started = Started::start(kind, setup, &leaf)?;
        let port = started.ports.plain;
        // One request first, so that the backend connection and the proxy's lazily made
        // state are there before the reading.
        drop(open_one(port)?);
        let before = started.proc.memory()?;
        let open = (0..connections)
            .map(|_| open_one(port))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("{}: opening {connections} connections", kind.name()))?;
        let with_open = started.proc.memory()?;
        drop(open);
        let closed = settle(&started)?;
        started.proc.check_alive()?;
        cases.push(IdleCase {
            proxy: kind,
            rss_before_bytes: before.rss_bytes,
            rss_open_bytes: with_open.rss_bytes,
            rss_closed_bytes: closed.rss_bytes,
            pss_before_bytes: before.pss_bytes,
            pss_open_bytes: with_open.pss_bytes,
        });
    }
    Ok(IdleConnections { connections, cases })
}

/// A connection that has had one answer and stays open.
fn open_one(port: u16) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "the connection closed before the answer ended");
        answer.extend_from_slice(&chunk[..n]);
        if let Some(end) = complete(&answer) {
            anyhow::ensure!(
                answer.starts_with(b"HTTP/1.1 200"),
                "answered {}",
                String::from_utf8_lossy(&answer[..end.min(40)])
            );
            return Ok(stream);
        }
    }
}

/// The length of the answer in `bytes` once all of it (head and `Content-Length` body) is in.
fn complete(bytes: &[u8]) -> Option<usize> {
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&bytes[..head]).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (bytes.len() >= head + length).then_some(head + length)
}

/// The memory once it has stopped falling, or after `SETTLE`.
fn settle(started: &Started) -> anyhow::Result<Memory> {
    let began = Instant::now();
    let mut lowest = started.proc.memory()?;
    let mut fell = Instant::now();
    while began.elapsed() < SETTLE && fell.elapsed() < SETTLED_AFTER {
        std::thread::sleep(SETTLE_EVERY);
        let now = started.proc.memory()?;
        if now.rss_bytes < lowest.rss_bytes {
            lowest = now;
            fell = Instant::now();
        }
    }
    Ok(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_complete_once_its_body_is_in() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(complete(&answer[..answer.len() - 1]), None);
        assert_eq!(complete(answer), Some(answer.len()));
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
