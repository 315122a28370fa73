//! Closing a relayed pair of streams when the proxy drains: an upgraded (WebSocket) connection
//! and its backend, or a TCP or TLS route's client and backend.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a peer is given to close its side after the proxy closed its own.
pub const LINGER: Duration = Duration::from_secs(1);

/// Closes both streams cleanly: each peer gets end-of-stream (FIN; over TLS a `close_notify`
/// first), then whatever it still sends is read and discarded until it closes its side too, for
/// at most [`LINGER`]. Reading to the end lets the sockets close with FIN rather than RST (a
/// socket closed with unread data resets the connection), so the client sees an orderly close.
/// A WebSocket close frame is not sent: the relay copies bytes without framing them, and a frame
/// written in the middle of one the backend is sending would corrupt the stream.
pub async fn close_both<A, B>(a: &mut A, b: &mut B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(LINGER, async { tokio::join!(finish(a), finish(b)) }).await;
}

async fn finish<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut discard = [0u8; 4096];
    while let Ok(n) = stream.read(&mut discard).await {
        if n == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_peers_see_the_end_of_the_stream() {
        let (mut a, mut a_peer) = tokio::io::duplex(64);
        let (mut b, mut b_peer) = tokio::io::duplex(64);
        let peers = tokio::spawn(async move {
            let mut got = Vec::new();
            // Each peer reads to the end, as a client does on end-of-stream, then closes.
            a_peer.read_to_end(&mut got).await.unwrap();
            b_peer.read_to_end(&mut got).await.unwrap();
            drop((a_peer, b_peer));
            got
        });
        close_both(&mut a, &mut b).await;
        assert!(peers.await.unwrap().is_empty());
    }
}
