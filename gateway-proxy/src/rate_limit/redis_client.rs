//! A Redis connection for global rate limits: the address from `--rate-limit-redis` and the
//! handshake (TLS for `rediss://`, `AUTH`, `SELECT`, `SCRIPT LOAD`, and `PING` for the health
//! probe), one command at a time over [`resp`](super::resp). The takes then share it through
//! [`super::redis_mux`].

use std::io;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::resp::{self, Command, Malformed, Reply};

/// Where Redis is and how to log in, from `redis://[[user]:password@]host[:port][/db]` or
/// `rediss://…` (TLS, verified against the system trust store).
#[derive(Clone)]
pub struct Address {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    username: Option<String>,
    password: Option<String>,
    db: u32,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Address")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Redis's default port.
const PORT: u16 = 6379;

impl Address {
    pub fn parse(text: &str) -> Result<Self, String> {
        const FORM: &str = "expected redis://[[user]:password@]host[:port][/db] or rediss://…";
        let url = url::Url::parse(text).map_err(|e| format!("{e}; {FORM}"))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(format!("unsupported scheme {other}://; {FORM}")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("no host; {FORM}")),
        };
        let port = url.port().unwrap_or(PORT);
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the user or password is not UTF-8 once decoded".to_owned())
        };
        let username = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(decode)
            .transpose()?;
        let password = url.password().map(decode).transpose()?;
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| format!("the database {db:?} is not a number; {FORM}"))?,
        };
        let tls = if tls {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            Some((TlsConnector::from(client_config()?), name))
        } else {
            None
        };
        Ok(Self {
            host,
            port,
            tls,
            username,
            password,
            db,
        })
    }

    /// `host:port` (`[ip]:port` for IPv6), for logs and status: never the password.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn client_config() -> Result<Arc<ClientConfig>, String> {
    let roots = crate::upstream::tls::root_store(&gantry_translate::ir::TrustIr::System)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {address}: {error}")]
    Connect { address: String, error: io::Error },
    /// The connection closed before the reply.
    #[error("Redis closed the connection")]
    Closed,
    /// No reply within the take's time; the connection is closed.
    #[error("Redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// An error reply (`-ERR …`, `-WRONGPASS …`).
    #[error("Redis answered {command}: {message}")]
    Refused {
        command: &'static str,
        message: String,
    },
    #[error("Redis answered {command} with {reply:?}")]
    Unexpected { command: &'static str, reply: Reply },
}

/// The connection's byte stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }

    pub fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, bytes),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, bytes),
        }
    }

    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(_) => Poll::Ready(Ok(())),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }
}

/// An open connection, logged in, with the script loaded; one command at a time until
/// [`Connection::into_stream`] hands it to the pipeline ([`super::redis_mux`]).
pub struct Connection {
    stream: Stream,
    /// The command being sent.
    out: Vec<u8>,
    /// What has been read and not yet parsed.
    input: Vec<u8>,
    /// SHA-1 (hex) of the script, as `SCRIPT LOAD` answered.
    sha: Vec<u8>,
}

impl Connection {
    /// Connects, logs in, selects the database and loads `script`.
    pub async fn open(address: &Address, script: &str) -> Result<Self, CallError> {
        let connect_error = |error| CallError::Connect {
            address: address.display(),
            error,
        };
        let tcp = TcpStream::connect((address.host.as_str(), address.port))
            .await
            .map_err(connect_error)?;
        // Commands are written as they come: Nagle would only add delay.
        tcp.set_nodelay(true).map_err(connect_error)?;
        let stream = match &address.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => Stream::Tls(Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(connect_error)?,
            )),
        };
        let mut connection = Self {
            stream,
            out: Vec::with_capacity(256),
            input: Vec::with_capacity(256),
            sha: Vec::new(),
        };
        if let Some(password) = &address.password {
            let command = match &address.username {
                Some(user) => Command::new(&mut connection.out, 3)
                    .arg(b"AUTH")
                    .arg(user.as_bytes()),
                None => Command::new(&mut connection.out, 2).arg(b"AUTH"),
            };
            command.arg(password.as_bytes());
            connection.expect_ok("AUTH").await?;
        }
        if address.db != 0 {
            Command::new(&mut connection.out, 2)
                .arg(b"SELECT")
                .int(u64::from(address.db));
            connection.expect_ok("SELECT").await?;
        }
        Command::new(&mut connection.out, 3)
            .arg(b"SCRIPT")
            .arg(b"LOAD")
            .arg(script.as_bytes());
        match connection.round_trip().await? {
            Reply::Bulk(Some(sha)) => connection.sha = sha,
            reply => return Err(unexpected("SCRIPT LOAD", reply)),
        }
        Ok(connection)
    }

    async fn expect_ok(&mut self, command: &'static str) -> Result<(), CallError> {
        match self.round_trip().await? {
            Reply::Simple(ok) if ok == "OK" => Ok(()),
            reply => Err(unexpected(command, reply)),
        }
    }

    /// `PING`.
    pub async fn ping(&mut self) -> Result<(), CallError> {
        Command::new(&mut self.out, 1).arg(b"PING");
        match self.round_trip().await? {
            Reply::Simple(pong) if pong == "PONG" => Ok(()),
            reply => Err(unexpected("PING", reply)),
        }
    }

    /// The stream, and the script's SHA-1 (hex).
    pub fn into_stream(self) -> (Stream, Vec<u8>) {
        (self.stream, self.sha)
    }

    /// Sends the command in `out` and reads one reply.
    async fn round_trip(&mut self) -> Result<Reply, CallError> {
        self.input.clear();
        let sent = match &mut self.stream {
            Stream::Plain(tcp) => tcp.write_all(&self.out).await,
            Stream::Tls(tls) => match tls.write_all(&self.out).await {
                Ok(()) => tls.flush().await,
                Err(error) => Err(error),
            },
        };
        self.out.clear();
        sent?;
        loop {
            if let Some((reply, _)) = resp::parse(&self.input)? {
                return Ok(reply);
            }
            let read = match &mut self.stream {
                Stream::Plain(tcp) => tcp.read_buf(&mut self.input).await,
                Stream::Tls(tls) => tls.read_buf(&mut self.input).await,
            };
            if read? == 0 {
                return Err(CallError::Closed);
            }
        }
    }
}

fn unexpected(command: &'static str, reply: Reply) -> CallError {
    match reply {
        Reply::Error(message) => CallError::Refused { command, message },
        reply => CallError::Unexpected { command, reply },
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_has_a_host_port_login_and_database() {
        let a = Address::parse("redis://user:p%40ss@redis.gantry-system:6380/3").unwrap();
        assert_eq!(a.display(), "redis.gantry-system:6380");
        assert_eq!(a.username.as_deref(), Some("user"));
        assert_eq!(a.password.as_deref(), Some("p@ss"));
        assert_eq!(a.db, 3);
        assert!(a.tls.is_none());
        assert!(!format!("{a:?}").contains("p@ss"));

        let a = Address::parse("redis://:secret@[::1]").unwrap();
        assert_eq!(a.display(), "[::1]:6379");
        assert_eq!(
            (a.username, a.password.as_deref(), a.db),
            (None, Some("secret"), 0)
        );

        let a = Address::parse("redis://10.0.0.7/").unwrap();
        assert_eq!(
            (a.display(), a.password, a.db),
            ("10.0.0.7:6379".into(), None, 0)
        );
    }

    #[test]
    fn other_schemes_and_databases_are_refused_with_the_expected_form() {
        for (url, says) in [
            ("http://redis:6379", "unsupported scheme http://"),
            ("unix:///run/redis.sock", "unsupported scheme unix://"),
            ("redis://redis:6379/cache", "is not a number"),
            ("redis:6379", "no host"),
        ] {
            let error = Address::parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(error.contains("redis://[[user]:password@]host"), "{error}");
        }
    }
}
