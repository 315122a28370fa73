//! Single raw HTTP/1.1 requests: is a route serving 200 yet, and how long until it does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::bail;

/// Sends one `GET path` with `Host: host` on a new connection and returns the status code.
pub fn status(port: u16, host: &str, path: &str) -> std::io::Result<u16> {
    status_with(port, host, path, &[])
}

/// [`status`] with more request headers.
pub fn status_with(
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP/1.x status line"))
}

/// `GET path` on 127.0.0.1:port; the body of a 200.
pub fn get_body(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP response from port {port}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {path} on port {port}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// Polls every `interval` from `started` until the route answers 200; returns the time taken.
/// `alive` is checked between polls so a crashed proxy fails fast.
pub fn wait_for_200(
    port: u16,
    host: &str,
    path: &str,
    started: Instant,
    timeout: Duration,
    interval: Duration,
    alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let wait = Wait {
        started,
        timeout,
        interval,
    };
    wait_for_200_with(port, host, path, &[], wait, alive)
}

/// How [`wait_for_200_with`] polls.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub started: Instant,
    pub timeout: Duration,
    pub interval: Duration,
}

/// [`wait_for_200`] with more request headers (a credential, say).
pub fn wait_for_200_with(
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    Wait {
        started,
        timeout,
        interval,
    }: Wait,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    loop {
        let last = match status_with(port, host, path, headers) {
            Ok(200) => return Ok(started.elapsed()),
            Ok(code) => format!("status {code}"),
            Err(e) => e.to_string(),
        };
        alive()?;
        if started.elapsed() > timeout {
            bail!(
                "http://{host}{path} on port {port} did not answer 200 within {timeout:?} (last: {last})"
            );
        }
        std::thread::sleep(interval);
    }
}
