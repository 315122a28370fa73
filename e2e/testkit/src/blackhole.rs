//! An address whose connects never complete, for connect-timeout tests: a listener that never
//! accepts, with its accept queue filled, so the kernel drops every further SYN and a connect
//! hangs until the connecting side gives up. Local, so no test depends on how a network treats
//! an unroutable address.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long a filling connect may take before the queue counts as full.
const HANGING: Duration = Duration::from_millis(300);

/// The address and what keeps it black.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

/// Binds a listener on 127.0.0.1 with the smallest accept queue and fills the queue.
pub async fn blackhole() -> std::io::Result<Blackhole> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
    let listener = socket.listen(0)?;
    let addr = listener.local_addr()?;
    let mut queued = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(HANGING, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(error)) => return Err(error),
            // This connect hangs: the queue is full.
            Err(_) => {
                return Ok(Blackhole {
                    addr,
                    _listener: listener,
                    _queued: queued,
                });
            }
        }
    }
    Err(std::io::Error::other("the accept queue never filled"))
}
