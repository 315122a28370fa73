//! TCP and UDP echo backends for L4 routes: each says who it is, then echoes what it gets.
//!
//! TCP: on connect the server writes `<name>\n`, then echoes every byte; when the client
//! half-closes, it finishes echoing and closes its side, so a client that shuts down its write
//! half reads everything back and then EOF. UDP: every datagram is answered with
//! `<name>:<payload>` to the address it came from. TLS ([`spawn_tls`]): the same over TLS;
//! [`spawn_tls_backend`] also says what the handshake settled ([`TlsGreeting`]) and can insist
//! on a server name and a client certificate, standing for a backend a BackendTLSPolicy covers.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// Starts a TCP echo server named `name` on an ephemeral loopback port.
pub async fn spawn_tcp(name: &str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the TCP echo backend");
    let addr = listener.local_addr().expect("TCP echo address");
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(greet_and_echo(stream, name.clone()));
        }
    });
    (addr, task)
}

/// Writes `<name>\n`, echoes until the client half-closes, then closes.
pub async fn greet_and_echo<S>(stream: S, name: String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut read, mut write) = tokio::io::split(stream);
    if write
        .write_all(format!("{name}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy(&mut read, &mut write).await;
    let _ = write.shutdown().await;
}

/// Starts a UDP echo server named `name` on an ephemeral loopback port.
pub async fn spawn_udp(name: &str) -> (SocketAddr, JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("binding the UDP echo backend");
    let addr = socket.local_addr().expect("UDP echo address");
    let prefix = format!("{name}:");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let mut reply = prefix.clone().into_bytes();
            reply.extend_from_slice(&buf[..len]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    (addr, task)
}

/// Starts a TLS server named `name` presenting `leaf` on an ephemeral loopback port: after the
/// handshake it greets and echoes like [`spawn_tcp`]. It stands for a backend that terminates
/// TLS itself (TLSRoute passthrough).
pub async fn spawn_tls(name: &str, leaf: &crate::certs::Leaf) -> (SocketAddr, JoinHandle<()>) {
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(leaf.chain(), leaf.key())
    .expect("backend certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the TLS echo backend");
    let addr = listener.local_addr().expect("TLS echo address");
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let name = name.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    greet_and_echo(tls, name).await;
                }
            });
        }
    });
    (addr, task)
}

/// A TLS backend for [`spawn_tls_backend`].
pub struct TlsBackend<'a> {
    pub name: &'a str,
    /// The certificate it presents.
    pub leaf: &'a crate::certs::Leaf,
    /// When set, a client certificate signed by this CA is required.
    pub client_ca: Option<&'a crate::certs::Ca>,
    /// When set, a handshake that did not ask for this server name (SNI) is closed without a
    /// greeting.
    pub require_sni: Option<&'a str>,
}

/// The greeting of a [`spawn_tls_backend`] server: `<name> sni=<sni> alpn=<alpn>
/// client=<subject>`, `-` for what was absent (no spaces in any value).
#[derive(Clone, Debug, PartialEq)]
pub struct TlsGreeting {
    pub name: String,
    pub tls: crate::echo::EchoTls,
}

impl TlsGreeting {
    fn line(&self) -> String {
        let show = |v: &Option<String>| v.as_deref().unwrap_or("-").replace(' ', "");
        format!(
            "{} sni={} alpn={} client={}\n",
            self.name,
            show(&self.tls.sni),
            show(&self.tls.alpn),
            show(&self.tls.client_subject)
        )
    }

    /// Reads a greeting line (with or without its newline).
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.trim_end().split(' ');
        let name = words.next()?.to_owned();
        let mut field = |key: &str| {
            let value = words.next()?.strip_prefix(key)?;
            Some((value != "-").then(|| value.to_owned()))
        };
        let tls = crate::echo::EchoTls {
            sni: field("sni=")?,
            alpn: field("alpn=")?,
            client_subject: field("client=")?,
        };
        Some(Self { name, tls })
    }
}

/// Starts a TLS backend on an ephemeral loopback port that requires TLS: after a handshake it
/// greets with a [`TlsGreeting`], then echoes like [`spawn_tcp`]. A client that does not speak
/// TLS, presents no certificate it requires, or asks for another server name is closed.
pub async fn spawn_tls_backend(backend: TlsBackend<'_>) -> (SocketAddr, JoinHandle<()>) {
    let config = crate::echo::tls_config(
        &backend.leaf.cert_pem,
        &backend.leaf.key_pem,
        backend.client_ca.map(|ca| ca.cert_pem.as_str()),
    )
    .expect("backend TLS configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the TLS backend");
    let addr = listener.local_addr().expect("TLS backend address");
    let name = backend.name.to_owned();
    let require_sni = backend.require_sni.map(str::to_owned);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let name = name.clone();
            let require_sni = require_sni.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let seen = crate::echo::handshake(tls.get_ref().1);
                if require_sni.is_some() && seen.sni != require_sni {
                    let _ = tls.shutdown().await;
                    return;
                }
                let greeting = TlsGreeting { name, tls: seen };
                let (mut read, mut write) = tokio::io::split(tls);
                if write.write_all(greeting.line().as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_round_trip() {
        let greeting = TlsGreeting {
            name: "db".into(),
            tls: crate::echo::EchoTls {
                sni: Some("db.internal".into()),
                alpn: None,
                client_subject: Some("CN=gantry gateway".into()),
            },
        };
        let parsed = TlsGreeting::parse(&greeting.line()).expect("parses");
        assert_eq!(parsed.name, "db");
        assert_eq!(parsed.tls.sni.as_deref(), Some("db.internal"));
        assert_eq!(parsed.tls.alpn, None);
        assert_eq!(
            parsed.tls.client_subject.as_deref(),
            Some("CN=gantrygateway")
        );
        assert_eq!(TlsGreeting::parse("db\n"), None);
    }
}
