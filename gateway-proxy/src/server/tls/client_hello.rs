//! Reads a TLS ClientHello without consuming it: the bytes read are kept so the handshake (or
//! a passthrough forwarder) sees the stream from its first byte. Bounded in size and time.
//!
//! Only what listener selection needs is parsed: the `server_name` (SNI) and
//! `application_layer_protocol_negotiation` extensions (RFC 8446 §4.1.2, RFC 6066 §3,
//! RFC 7301 §3.1). The handshake itself validates everything else.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most ClientHello bytes read before giving up: a handshake message may span records,
/// but real ClientHellos (post-quantum key shares included) stay well under this.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
const SERVER_NAME_HOST: u8 = 0;

/// What the ClientHello asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The SNI host name, lower case, without a trailing dot.
    pub server_name: Option<String>,
    /// ALPN protocol names offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

/// A ClientHello and every byte read to find it.
#[derive(Debug)]
pub struct Peeked {
    pub hello: ClientHello,
    pub bytes: Vec<u8>,
}

/// Why no ClientHello could be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("the client did not send a ClientHello in time")]
    Timeout,
    #[error("the connection closed before a complete ClientHello")]
    Closed,
    #[error("not a TLS handshake")]
    NotTls,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    #[error("ClientHello larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    #[error("read failed: {0}")]
    Io(String),
}

impl HelloError {
    /// The `reason` label of the handshake error counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout => "client_hello_timeout",
            Self::Closed | Self::Io(_) => "client_closed",
            Self::NotTls => "not_tls",
            Self::Malformed(_) => "malformed_client_hello",
            Self::TooLarge => "client_hello_too_large",
        }
    }
}

/// Reads from `stream` until a whole ClientHello is buffered, within `timeout`.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Peeked, HelloError> {
    let mut bytes = Vec::with_capacity(1024);
    let read_all = async {
        loop {
            match parse(&bytes) {
                Ok(Some(hello)) => return Ok(hello),
                Ok(None) => {}
                Err(error) => return Err(error),
            }
            if bytes.len() >= MAX_CLIENT_HELLO {
                return Err(HelloError::TooLarge);
            }
            let mut chunk = [0u8; 4096];
            let want = chunk.len().min(MAX_CLIENT_HELLO - bytes.len());
            match stream.read(&mut chunk[..want]).await {
                Ok(0) => return Err(HelloError::Closed),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(error) => return Err(HelloError::Io(error.to_string())),
            }
        }
    };
    let hello = tokio::time::timeout(timeout, read_all)
        .await
        .map_err(|_| HelloError::Timeout)??;
    Ok(Peeked { hello, bytes })
}

/// Parses the ClientHello at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<ClientHello>, HelloError> {
    // Reassemble the handshake message from as many handshake records as it spans.
    let mut message = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + RECORD_HEADER) else {
            // The first byte alone tells a TLS handshake from anything else (plain HTTP).
            if at == 0 && buf.first().is_some_and(|b| *b != CONTENT_HANDSHAKE) {
                return Err(HelloError::NotTls);
            }
            return Ok(None);
        };
        if header[0] != CONTENT_HANDSHAKE {
            return Err(if at == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed("a non-handshake record inside the ClientHello")
            });
        }
        if header[1] != 3 {
            return Err(HelloError::NotTls);
        }
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if length == 0 || length > (1 << 14) + 2048 {
            return Err(HelloError::Malformed("bad record length"));
        }
        let Some(fragment) = buf.get(at + RECORD_HEADER..at + RECORD_HEADER + length) else {
            return Ok(None);
        };
        message.extend_from_slice(fragment);
        at += RECORD_HEADER + length;
        if message.len() >= 4 {
            if message[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(HelloError::Malformed(
                    "first handshake message is not a ClientHello",
                ));
            }
            let body = (usize::from(message[1]) << 16)
                | (usize::from(message[2]) << 8)
                | usize::from(message[3]);
            if body > MAX_CLIENT_HELLO {
                return Err(HelloError::TooLarge);
            }
            if message.len() >= 4 + body {
                return parse_body(&message[4..4 + body]).map(Some);
            }
        }
    }
}

/// A cursor over a byte slice that fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed("field runs past its end"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a `len`-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello::default();
    if r.0.is_empty() {
        // A ClientHello without extensions (TLS 1.2 and older): no SNI, no ALPN.
        return Ok(hello);
    }
    let mut extensions = Reader(r.vec16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        match kind {
            EXTENSION_SERVER_NAME => hello.server_name = server_name(data)?,
            EXTENSION_ALPN => hello.alpn = alpn(data)?,
            _ => {}
        }
    }
    Ok(hello)
}

fn server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut list = Reader(Reader(data).vec16()?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == SERVER_NAME_HOST {
            let name = std::str::from_utf8(name)
                .ok()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or(HelloError::Malformed(
                    "server name is not an ASCII host name",
                ))?;
            let name = name.strip_suffix('.').unwrap_or(name);
            return Ok(Some(name.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

fn alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, HelloError> {
    let mut list = Reader(Reader(data).vec16()?);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let name = list.vec8()?;
        if name.is_empty() {
            return Err(HelloError::Malformed("empty ALPN protocol name"));
        }
        out.push(name.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello, as rustls writes it.
    fn client_hello(server_name: Option<&str>, alpn: &[&[u8]]) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = match server_name {
            Some(n) => rustls_pki_types::ServerName::try_from(n.to_owned()).unwrap(),
            None => rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_sni_and_alpn_from_a_real_client_hello() {
        let bytes = client_hello(Some("Foo.Example.com"), &[b"h2", b"http/1.1"]);
        let hello = parse(&bytes).unwrap().unwrap();
        assert_eq!(hello.server_name.as_deref(), Some("foo.example.com"));
        assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn no_sni_for_an_ip_address() {
        let bytes = client_hello(None, &[]);
        let hello = parse(&bytes).unwrap().unwrap();
        assert_eq!(hello.server_name, None);
        assert!(hello.alpn.is_empty());
    }

    #[test]
    fn every_truncation_asks_for_more_and_never_panics() {
        let bytes = client_hello(Some("a.example.com"), &[b"h2"]);
        for n in 0..bytes.len() {
            assert_eq!(parse(&bytes[..n]), Ok(None), "prefix of {n} bytes");
        }
    }

    #[test]
    fn a_hello_split_across_records_is_reassembled() {
        let bytes = client_hello(Some("split.example.com"), &[b"http/1.1"]);
        let message = &bytes[RECORD_HEADER..];
        let (a, b) = message.split_at(40);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            split.extend_from_slice(part);
        }
        let hello = parse(&split).unwrap().unwrap();
        assert_eq!(hello.server_name.as_deref(), Some("split.example.com"));
    }

    #[test]
    fn plain_http_is_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotTls));
        assert_eq!(parse(b"G"), Err(HelloError::NotTls));
    }

    #[test]
    fn garbage_never_panics() {
        let real = client_hello(Some("fuzz.example.com"), &[b"h2"]);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut bytes = real.clone();
            // Flip a few bytes past the record header, or cut the message short.
            for _ in 0..(next() % 4 + 1) {
                let i = RECORD_HEADER + (next() as usize) % (bytes.len() - RECORD_HEADER);
                bytes[i] = next() as u8;
            }
            let cut = (next() as usize) % (bytes.len() + 1);
            let _ = parse(&bytes[..cut]);
            let _ = parse(&bytes);
        }
        for len in 0..64 {
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse(&random);
            let mut framed = vec![22, 3, 1, 0, u8::try_from(len).unwrap()];
            framed.extend_from_slice(&random);
            let _ = parse(&framed);
        }
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut bytes = vec![22, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff];
        bytes.resize(5 + 0x4000, 0);
        assert_eq!(parse(&bytes), Err(HelloError::TooLarge));
    }

    #[tokio::test]
    async fn read_stops_at_the_deadline() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &[22, 3, 1])
            .await
            .unwrap();
        let result = read(&mut server, Duration::from_millis(50)).await;
        assert_eq!(result.unwrap_err(), HelloError::Timeout);
        drop(client);
    }

    #[tokio::test]
    async fn read_keeps_every_byte() {
        let bytes = client_hello(Some("keep.example.com"), &[]);
        let (mut client, mut server) = tokio::io::duplex(16);
        let sent = bytes.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(7) {
                tokio::io::AsyncWriteExt::write_all(&mut client, chunk)
                    .await
                    .unwrap();
            }
            client
        });
        let peeked = read(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(peeked.bytes, bytes);
        assert_eq!(
            peeked.hello.server_name.as_deref(),
            Some("keep.example.com")
        );
        drop(writer.await.unwrap());
    }
}
