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
