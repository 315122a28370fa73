//! The proxies under test: write a configuration for N routes, start one, and know when it
//! serves the last route.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::config::{self, host, path};
use super::process::{Memory, Proc, free_port};
use super::{haproxy, nginx, probe};

/// A proxy the suite measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gantry,
    Nginx,
    Haproxy,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Gantry, Kind::Nginx, Kind::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Gantry => "gantry",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| format!("unknown proxy {s:?} (gantry, nginx, haproxy)"))
    }
}

/// Where the programs are and how many workers each proxy gets.
#[derive(Clone)]
pub struct Setup {
    /// Directory holding the release `gantry-proxy`.
    pub bins: PathBuf,
    pub backend: SocketAddr,
    /// Worker processes (nginx) or threads (haproxy, Gantry): the number of cores.
    pub workers: usize,
    /// Access logs on (Gantry and nginx, each buffered and written to a file); every scenario
    /// but the access log's own instruction counts runs with them off.
    pub access_log: bool,
}

/// A started proxy serving `routes` routes; its files are removed on drop.
pub struct Running {
    pub kind: Kind,
    pub routes: usize,
    pub port: u16,
    /// From spawning the process to the first 200 from the last route.
    pub load_time: Duration,
    pub dir: PathBuf,
    /// Gantry's admin port.
    pub admin: Option<u16>,
    proc: Proc,
}

impl Running {
    /// Writes the configuration, starts the proxy and waits until route `routes - 1` answers
    /// 200 (at most `timeout`).
    pub fn start(
        kind: Kind,
        setup: &Setup,
        routes: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_with(kind, setup, routes, timeout, |command| command)
    }

    /// [`Running::start`], with the proxy's command line passed through `wrap` first (to run
    /// it under a tool such as callgrind).
    pub fn start_with(
        kind: Kind,
        setup: &Setup,
        routes: usize,
        timeout: Duration,
        wrap: impl FnOnce(Command) -> Command,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "gantry-bench-{}-{}-{routes}",
            std::process::id(),
            kind.name()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let config_dir = dir.join("config");
        std::fs::create_dir_all(&config_dir)?;
        let admin = match kind {
            Kind::Gantry => Some(free_port()?),
            Kind::Nginx | Kind::Haproxy => None,
        };
        let command = match (kind, admin) {
            (Kind::Gantry, Some(admin)) => {
                for (name, text) in config::gantry(port, setup.backend, routes) {
                    std::fs::write(config_dir.join(name), text)?;
                }
                gantry_command_on(setup, &config_dir, admin)
            }
            (Kind::Gantry, None) => unreachable!("Gantry always gets an admin port"),
            (Kind::Nginx, _) => {
                let conf = config_dir.join("nginx.conf");
                std::fs::write(
                    &conf,
                    nginx::config(
                        &dir,
                        port,
                        setup.backend,
                        routes,
                        setup.workers,
                        setup.access_log,
                    ),
                )?;
                let mut c = Command::new(which("nginx")?);
                c.arg("-p")
                    .arg(&dir)
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .arg("-c")
                    .arg(&conf)
                    .args(["-g", "daemon off;"]);
                c
            }
            (Kind::Haproxy, _) => {
                let map = config_dir.join("routes.map");
                std::fs::write(&map, haproxy::map(routes))?;
                let cfg = config_dir.join("haproxy.cfg");
                std::fs::write(
                    &cfg,
                    haproxy::config(&map, port, setup.backend, setup.workers),
                )?;
                let mut c = Command::new(which("haproxy")?);
                c.arg("-db").arg("-f").arg(&cfg);
                c
            }
        };
        let mut command = wrap(command);
        let started = Instant::now();
        let mut proc = Proc::spawn(kind.name(), &mut command, Some(&dir.join("stderr.log")))?;
        let last = routes.saturating_sub(1);
        let load_time = probe::wait_for_200(
            port,
            &host(last),
            &path(last),
            started,
            timeout,
            Duration::from_millis(2),
            || proc.check_alive(),
        )
        .with_context(|| format!("{} with {routes} routes did not start", kind.name()))?;
        Ok(Self {
            kind,
            routes,
            port,
            load_time,
            dir,
            admin,
            proc,
        })
    }

    /// Fails unless route `i` answers 200 right now.
    pub fn expect_200(&mut self, i: usize) -> anyhow::Result<()> {
        self.proc.check_alive()?;
        let code = probe::status(self.port, &host(i), &path(i))
            .with_context(|| format!("requesting route {i} from {}", self.kind.name()))?;
        if code != 200 {
            bail!(
                "{} answered {code} for route {i} (http://{}{}), expected 200",
                self.kind.name(),
                host(i),
                path(i)
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("config")
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        self.proc.memory()
    }

    /// Gantry: milliseconds its first configuration took from the objects read to the routing
    /// in use (translation, compilation, statuses), as its `/config` records it (the first
    /// applied change, version 1). `None` for the other proxies.
    pub fn first_build_ms(&self) -> anyhow::Result<Option<f64>> {
        let Some(admin) = self.admin else {
            return Ok(None);
        };
        let config: serde_json::Value = serde_json::from_str(&probe::get_body(admin, "/config")?)
            .context("reading Gantry's /config")?;
        first_build(&config).map(Some)
    }

    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        self.proc.cpu_time()
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.proc.check_alive()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `tookMs` of the first applied change (version 1) among `/config`'s `reloads`.
fn first_build(config: &serde_json::Value) -> anyhow::Result<f64> {
    config["reloads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["result"] == "applied" && r["version"] == 1)
        .and_then(|r| r["tookMs"].as_f64())
        .context("Gantry's /config records no first applied change (version 1)")
}

/// `gantry-proxy run` on the files in `config_dir`, as every scenario runs it: no access log
/// (unless `setup.access_log`),
/// warnings only, listeners on 127.0.0.1, an admin port, `setup.workers` worker threads.
pub fn gantry_command(setup: &Setup, config_dir: &Path) -> anyhow::Result<Command> {
    Ok(gantry_command_on(setup, config_dir, free_port()?))
}

/// [`gantry_command`] with its admin port on `admin`.
fn gantry_command_on(setup: &Setup, config_dir: &Path, admin: u16) -> Command {
    let mut c = Command::new(setup.bins.join("gantry-proxy"));
    if setup.access_log {
        // The access log is written at INFO, to stderr (the process's log file).
        c.args(["run", "--log-level", "warn,access=info"]);
    } else {
        c.args(["run", "--no-access-log", "--log-level", "warn"]);
    }
    c.arg("--config-dir")
        .arg(config_dir)
        .args(["--bind-address", "127.0.0.1"])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .args(["--worker-threads", &setup.workers.to_string()]);
    c
}

/// Full path of a program on `PATH` (Debian puts nginx and haproxy in /usr/sbin).
pub fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{program} is not installed: run e2e/bench/run.sh, which installs it")
        })
}

/// Version line of nginx, haproxy or wrk, for the report.
pub fn version(program: &str) -> String {
    let Ok(bin) = which(program) else {
        return "not installed".to_owned();
    };
    Command::new(bin)
        .arg("-v")
        .output()
        .ok()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let first = text.lines().next().unwrap_or_default();
            // Drop haproxy's address and wrk's copyright line tail.
            let first = first.split(" - ").next().unwrap_or_default();
            let first = first.split(" Copyright").next().unwrap_or_default();
            first.trim().to_owned()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::first_build;

    #[test]
    fn first_build_is_the_first_applied_version() {
        let config = serde_json::json!({"reloads": [
            {"result": "rejected", "version": 0, "tookMs": 0.0},
            {"result": "applied", "version": 1, "tookMs": 41.5},
            {"result": "applied", "version": 2, "tookMs": 3.0},
        ]});
        assert_eq!(first_build(&config).ok(), Some(41.5));
        let later = serde_json::json!({"reloads": [
            {"result": "applied", "version": 2, "tookMs": 3.0},
        ]});
        assert!(first_build(&later).is_err());
        assert!(first_build(&serde_json::json!({})).is_err());
    }
}
