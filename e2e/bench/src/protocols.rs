//! HTTP/2 and TLS, side by side: each proxy serves one route over HTTP/2 with prior knowledge
//! (h2c, `h2load`), over TLS with HTTP/2 (ALPN `h2`, `h2load`) and over TLS with HTTP/1.1
//! (`wrk`), to the same plain HTTP/1.1 backend. The runs interleave across protocols and
//! proxies, round after round, with each proxy's CPU time read around each run.
//!
//! All three use the same ECDSA P-256 certificate for `localhost` and their default TLS
//! settings (TLS 1.3 with these clients). Nothing is asserted: the report prints the figures.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use gantry_testkit::certs::{Ca, Leaf, tls_secret_yaml};

use super::interleave::{Sample, summarise};
use super::process::{Proc, free_port, scratch};
use super::proxy::{self, Kind, Setup};
use super::results::{ProtocolCase, Protocols};
use super::wrk::{self, Counting, LoadResult};
use super::{config, h2load, haproxy, nginx, probe};

/// The route every proxy serves: this host (the name in the certificate, which the clients
/// also resolve and send as SNI), and this path prefix.
pub const HOST: &str = "localhost";
pub const PATH: &str = "/svc";

/// The ports a proxy listens on. Gantry's HTTP listener takes HTTP/1.1 and h2c on one port.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// HTTP/1.1 (readiness and the final check).
    pub plain: u16,
    /// HTTP/2 with prior knowledge.
    pub h2c: u16,
    /// TLS, ALPN `h2` or `http/1.1`.
    pub tls: u16,
}

/// The protocols measured, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    H2c,
    H2Tls,
    H1Tls,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::H2c, Protocol::H2Tls, Protocol::H1Tls];

    pub fn name(self) -> &'static str {
        match self {
            Self::H2c => "HTTP/2 cleartext (h2c)",
            Self::H2Tls => "HTTP/2 over TLS",
            Self::H1Tls => "HTTP/1.1 over TLS",
        }
    }

    fn load(
        self,
        ports: Ports,
        connections: u32,
        streams: u32,
        duration: Duration,
    ) -> anyhow::Result<LoadResult> {
        match self {
            Self::H2c => h2load::run(
                &format!("http://{HOST}:{}{PATH}", ports.h2c),
                connections,
                streams,
                duration,
            ),
            Self::H2Tls => h2load::run(
                &format!("https://{HOST}:{}{PATH}", ports.tls),
                connections,
                streams,
                duration,
            ),
            Self::H1Tls => wrk::run(
                &format!("https://{HOST}:{}{PATH}", ports.tls),
                HOST,
                connections,
                duration,
                Counting::Summary,
            ),
        }
    }
}

/// How the scenario loads each proxy.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub connections: u32,
    /// Concurrent streams per HTTP/2 connection.
    pub streams: u32,
    pub duration: Duration,
    /// One unmeasured run per protocol and proxy first (skipped when zero).
    pub warmup: Duration,
    pub repeats: usize,
}

/// Starts each of `kinds`, then loads every protocol of every proxy in turn, `plan.repeats`
/// rounds.
pub fn measure(setup: &Setup, kinds: &[Kind], plan: Plan) -> anyhow::Result<Protocols> {
    let leaf = Ca::new("gantry-bench").server(&[HOST]);
    let mut started = Vec::new();
    for &kind in kinds {
        started.push(Started::start(kind, setup, &leaf)?);
    }
    if !plan.warmup.is_zero() {
        for protocol in Protocol::ALL {
            for s in &started {
                protocol.load(s.ports, plan.connections, plan.streams, plan.warmup)?;
            }
        }
    }
    let mut samples: Vec<Vec<Vec<Sample>>> = Protocol::ALL
        .iter()
        .map(|_| started.iter().map(|_| Vec::new()).collect())
        .collect();
    for _ in 0..plan.repeats.max(1) {
        for (protocol, per_proxy) in Protocol::ALL.iter().zip(samples.iter_mut()) {
            for (s, runs) in started.iter_mut().zip(per_proxy.iter_mut()) {
                let before = s.proc.cpu_time()?;
                let load = protocol.load(s.ports, plan.connections, plan.streams, plan.duration)?;
                let cpu = s.proc.cpu_time()?.saturating_sub(before);
                s.proc.check_alive()?;
                runs.push((load, cpu));
            }
        }
    }
    for s in &started {
        let code = probe::status(s.ports.plain, HOST, PATH)?;
        anyhow::ensure!(
            code == 200,
            "{} answered {code} after the load",
            s.kind.name()
        );
    }
    let mut cases = Vec::new();
    for (protocol, per_proxy) in Protocol::ALL.iter().zip(&samples) {
        for (s, runs) in started.iter().zip(per_proxy) {
            cases.push(ProtocolCase {
                protocol: protocol.name().to_owned(),
                proxy: s.kind,
                route: summarise(runs),
            });
        }
    }
    Ok(Protocols {
        connections: plan.connections,
        streams: plan.streams,
        seconds_per_run: plan.duration.as_secs(),
        repeats: plan.repeats.max(1),
        cases,
    })
}

/// A proxy serving the scenario's route; its files are removed on drop.
pub struct Started {
    pub kind: Kind,
    pub ports: Ports,
    pub proc: Proc,
    dir: std::path::PathBuf,
}

impl Started {
    pub fn start(kind: Kind, setup: &Setup, leaf: &Leaf) -> anyhow::Result<Self> {
        let dir = scratch(&format!("protocols-{}", kind.name()))?;
        let plain = free_port()?;
        let ports = Ports {
            plain,
            h2c: match kind {
                Kind::Gantry => plain,
                Kind::Nginx | Kind::Haproxy => free_port()?,
            },
            tls: free_port()?,
        };
        let mut command = command(kind, setup, ports, leaf, &dir)?;
        let mut proc = Proc::spawn(kind.name(), &mut command, Some(&dir.join("stderr.log")))?;
        probe::wait_for_200(
            ports.plain,
            HOST,
            PATH,
            Instant::now(),
            Duration::from_secs(60),
            Duration::from_millis(2),
            || proc.check_alive(),
        )
        .with_context(|| format!("{} did not serve {HOST}{PATH}", kind.name()))?;
        Ok(Self {
            kind,
            ports,
            proc,
            dir,
        })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The proxy's command line, its configuration written under `dir`.
fn command(
    kind: Kind,
    setup: &Setup,
    ports: Ports,
    leaf: &Leaf,
    dir: &Path,
) -> anyhow::Result<Command> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &leaf.cert_pem)?;
    std::fs::write(&key, &leaf.key_pem)?;
    Ok(match kind {
        Kind::Gantry => {
            let config_dir = dir.join("config");
            std::fs::create_dir_all(&config_dir)?;
            std::fs::write(
                config_dir.join("config.yaml"),
                gantry_config(ports, setup.backend, leaf),
            )?;
            proxy::gantry_command(setup, &config_dir)?
        }
        Kind::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::write(
                &conf,
                nginx::protocols_config(
                    dir,
                    ports,
                    setup.backend,
                    setup.workers,
                    (&cert, &key),
                    (HOST, PATH),
                ),
            )?;
            let mut c = Command::new(proxy::which("nginx")?);
            c.arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .args(["-g", "daemon off;"]);
            c
        }
        Kind::Haproxy => {
            let pem = dir.join("cert-and-key.pem");
            std::fs::write(&pem, format!("{}{}", leaf.cert_pem, leaf.key_pem))?;
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(
                &cfg,
                haproxy::protocols_config(ports, setup.backend, setup.workers, &pem),
            )?;
            let mut c = Command::new(proxy::which("haproxy")?);
            c.arg("-db").arg("-f").arg(&cfg);
            c
        }
    })
}

/// Gantry standalone files: the Gateway with an HTTP listener on `ports.plain` and an HTTPS
/// listener on `ports.tls` (its certificate in a Secret), and the route to `backend`.
pub fn gantry_config(ports: Ports, backend: SocketAddr, leaf: &Leaf) -> String {
    let mut text = config::gateway_with(&format!(
        "[{{name: http, port: {plain}, protocol: HTTP}}, {{name: https, port: {tls}, protocol: HTTPS, \
         tls: {{certificateRefs: [{{name: bench-cert}}]}}}}]",
        plain = ports.plain,
        tls = ports.tls,
    ));
    text.push_str("---\n");
    text.push_str(&tls_secret_yaml("default", "bench-cert", leaf));
    text.push_str(&config::service("backend", &[backend]));
    let _ = write!(
        text,
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: protocols, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{HOST}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {PATH}}}}}]
      backendRefs: [{{name: backend, port: 80}}]
"#
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gantry_serves_the_route_on_both_listeners() {
        let leaf = Leaf {
            cert_pem: "CERT".to_owned(),
            key_pem: "KEY".to_owned(),
        };
        let ports = Ports {
            plain: 8080,
            h2c: 8080,
            tls: 8443,
        };
        let backend = "127.0.0.1:3000".parse().expect("addr");
        let text = gantry_config(ports, backend, &leaf);
        assert!(text.contains("{name: http, port: 8080, protocol: HTTP}"));
        assert!(text.contains("{name: https, port: 8443, protocol: HTTPS, tls:"));
        assert!(text.contains("certificateRefs: [{name: bench-cert}]"));
        assert!(text.contains("type: kubernetes.io/tls"));
        assert_eq!(text.matches("kind: HTTPRoute").count(), 1);
        assert!(text.contains("hostnames: [\"localhost\"]"));
        // Every document starts on a line of its own.
        assert!(!text.contains("---apiVersion"));
        assert!(text.contains("\n---\napiVersion: v1\nkind: Secret"));
    }
}
