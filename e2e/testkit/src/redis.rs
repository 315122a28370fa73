//! A real Redis for tests: Debian's `redis-server` (package `redis-server`, in `.ci/packages`)
//! on a free port, with nothing written to disk; stopped and started again on the same port
//! to test what a proxy does while it is gone.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ports::free_port;

/// A running (or stopped) redis-server; killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

fn redis_server() -> PathBuf {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let path = dir.join("redis-server");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "`redis-server` is not installed: `apt-get install redis-server` (listed in .ci/packages)"
    )
}

impl Redis {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL): connections drop at once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new(redis_server())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong().await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pong(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
