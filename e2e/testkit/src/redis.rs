//! A real Redis for tests: Debian's `redis-server` (package `redis-server`, in `.ci/packages`)
//! on a free port, with nothing written to disk; stopped and started again on the same port
//! to test what a proxy does while it is gone. [`Options`] add a password and a TLS port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::certs::Leaf;
use crate::harness::tempdir::TempDir;
use crate::ports::free_port;

/// A running (or stopped) redis-server; killed on drop.
pub struct Redis {
    /// The plain port (also served with TLS on: the test talks to Redis there).
    pub port: u16,
    /// The TLS port, with [`Options::tls`].
    pub tls_port: Option<u16>,
    password: Option<String>,
    /// The TLS certificate and key files, with [`Options::tls`].
    dir: TempDir,
    child: Option<Child>,
}

/// How [`Redis::start_with`] starts the server.
#[derive(Default)]
pub struct Options {
    /// `requirepass`: every client must `AUTH` first.
    pub password: Option<String>,
    /// A TLS port too, serving this certificate (clients are not asked for one).
    pub tls: Option<Leaf>,
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
        Self::start_with(Options::default()).await
    }

    /// Starts redis-server with `options` and waits until it answers PING.
    pub async fn start_with(options: Options) -> Self {
        let dir = TempDir::new("gantry-redis");
        let tls_port = options.tls.map(|leaf| {
            std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).expect("writing tls.crt");
            std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).expect("writing tls.key");
            free_port()
        });
        let mut redis = Self {
            port: free_port(),
            tls_port,
            password: options.password,
            dir,
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
        let mut command = Command::new(redis_server());
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if let Some(tls_port) = self.tls_port {
            let file = |name: &str| self.dir.path().join(name);
            command
                .args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("tls.crt"))
                .arg("--tls-key-file")
                .arg(file("tls.key"))
                .args(["--tls-auth-clients", "no"]);
        }
        let child = command
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
        let (ask, answer): (String, &[u8]) = match &self.password {
            Some(password) => (format!("AUTH {password}\r\nPING\r\n"), b"+OK\r\n+PONG\r\n"),
            None => ("PING\r\n".to_owned(), b"+PONG\r\n"),
        };
        if stream.write_all(ask.as_bytes()).await.is_err() {
            return false;
        }
        let mut reply = vec![0u8; answer.len()];
        stream.read_exact(&mut reply).await.is_ok() && reply == answer
    }

    /// Runs one command with `redis-cli` (package redis-tools, which redis-server depends on)
    /// on the plain port, logged in, and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.args(["-a", password, "--no-auth-warning"]);
        }
        let output = command.args(args).output().expect("running redis-cli");
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// How many times Redis ran `command` (lower case, as `INFO commandstats` names it) since
    /// it started: 0 before the first.
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| {
                calls
                    .parse()
                    .unwrap_or_else(|_| panic!("{command} calls in {stats}"))
            })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
