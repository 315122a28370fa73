//! TCP and UDP echo backends for L4 routes: each says who it is, then echoes what it gets.
//!
//! TCP: on connect the server writes `<name>\n`, then echoes every byte; when the client
//! half-closes, it finishes echoing and closes its side, so a client that shuts down its write
//! half reads everything back and then EOF. UDP: every datagram is answered with
//! `<name>:<payload>` to the address it came from.

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
