//! One keep-alive HTTP/1.1 connection that sends requests one after another and reads each
//! answer to its end: the client of the instruction counts, where every request must take
//! the same path through the proxy (no new connection, no pipelining).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

/// A request the client repeats: `GET` without a body, or `POST` with a JSON body.
pub struct Request {
    text: Vec<u8>,
}

impl Request {
    pub fn get(host: &str, path: &str) -> Self {
        Self {
            text: format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        }
    }

    /// A GET with one more header.
    pub fn get_with(host: &str, path: &str, header: (&str, &str)) -> Self {
        Self {
            text: format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\n{}: {}\r\n\r\n",
                header.0, header.1
            )
            .into_bytes(),
        }
    }

    pub fn post_json(host: &str, path: &str, body: &str) -> Self {
        Self {
            text: format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        }
    }
}

/// The connection.
pub struct KeepAlive {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    line: String,
}

impl KeepAlive {
    pub fn connect(port: u16, timeout: Duration) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            line: String::new(),
        })
    }

    /// Sends `request` and reads the answer (Content-Length or chunked body); its status.
    /// Fails when the proxy closes the connection, so every request really reused it.
    pub fn send(&mut self, request: &Request) -> anyhow::Result<u16> {
        self.writer.write_all(&request.text)?;
        let status_line = self.read_line()?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not an HTTP/1.1 status line: {status_line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>()?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                bail!("the proxy closed the keep-alive connection (status {status})");
            }
        }
        if chunked {
            loop {
                let size = usize::from_str_radix(self.read_line()?.trim(), 16)?;
                self.skip(size)?;
                self.read_line()?;
                if size == 0 {
                    break;
                }
            }
        } else {
            self.skip(length.unwrap_or(0))?;
        }
        Ok(status)
    }

    fn read_line(&mut self) -> anyhow::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            bail!("the proxy closed the connection");
        }
        Ok(self.line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn skip(&mut self, n: usize) -> anyhow::Result<()> {
        let copied = std::io::copy(&mut (&mut self.reader).take(n as u64), &mut std::io::sink())?;
        anyhow::ensure!(
            copied == n as u64,
            "the body ended after {copied} of {n} bytes"
        );
        Ok(())
    }
}
