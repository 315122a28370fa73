//! Child processes under measurement: start, stop, and read memory and CPU from /proc.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

/// A process killed, with every process it started, on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    log: Option<PathBuf>,
}

impl Proc {
    /// Starts `command` with stdout discarded and stderr written to `log` (when given), so a
    /// failure to start can be explained.
    pub fn spawn(name: &str, command: &mut Command, log: Option<&Path>) -> anyhow::Result<Self> {
        let stderr = match log {
            Some(path) => Stdio::from(File::create(path)?),
            None => Stdio::null(),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.map(Path::to_path_buf),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the tail of the process's log, when it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = self
                .log
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("{} exited ({status}):\n{tail}", self.name);
        }
        Ok(())
    }

    /// Memory of the process and all its descendants.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory(self.pid())
    }

    /// User + system CPU time of the process and all its descendants.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Its descendants first (nginx's and haproxy's workers keep listening when only their
        // master is killed), read before the master dies and they are re-parented.
        let descendants: Vec<String> = tree(self.pid())
            .into_iter()
            .skip(1)
            .map(|pid| pid.to_string())
            .collect();
        let _ = self.child.kill();
        if !descendants.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&descendants)
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
    }
}

/// Resident memory summed over a process tree.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Memory {
    /// Sum of `Rss` (pages shared between processes, such as nginx's configuration inherited
    /// by its workers, count once per process).
    pub rss_bytes: u64,
    /// Sum of `Pss` (shared pages divided among the processes sharing them).
    pub pss_bytes: u64,
}

/// The process and its descendants, parents first.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while let Some(&p) = all.get(i) {
        all.extend(children(p));
        i += 1;
    }
    all
}

/// `Rss` and `Pss` from `/proc/PID/smaps_rollup`, summed over the process tree.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let mut total = Memory::default();
    for p in tree(pid) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue; // exited meanwhile
        };
        total.rss_bytes += kib_field(&text, "Rss:").unwrap_or(0) * 1024;
        total.pss_bytes += kib_field(&text, "Pss:").unwrap_or(0) * 1024;
    }
    if total.rss_bytes == 0 {
        bail!("no memory figures for process {pid} (has it exited?)");
    }
    Ok(total)
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime + stime (+ cutime + cstime, the reaped children) over the process tree: nginx's
/// workers are children of its master.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut ticks = 0;
    for p in tree(pid) {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            ticks += stat_ticks(&stat).with_context(|| format!("malformed /proc/{p}/stat"))?;
        }
    }
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn stat_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
    let tick = |i: usize| -> u64 { fields.get(i - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Some(tick(14) + tick(15) + tick(16) + tick(17))
}

fn children(pid: u32) -> Vec<u32> {
    // Children may be attached to any thread of the process.
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(s) = std::fs::read_to_string(path) {
            all.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    all
}

fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// An empty scratch directory of this run, `gantry-bench-<pid>-<name>` under the temporary
/// directory (emptied first, so a previous run's files never leak in).
pub fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gantry-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A port nothing listens on right now, from below the ephemeral range (the test kit's
/// [`gantry_testkit::ports::free_port`]), so no outgoing connection takes it before the proxy
/// binds it.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(gantry_testkit::ports::free_port())
}

/// Builds the workspace binaries in release mode and returns the directory holding them.
pub fn release_bins(bins: &[&str]) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"]);
    for b in bins {
        cmd.args(["--bin", b]);
    }
    let status = cmd.status().context("running cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    // Run through `cargo run --release`, this binary already lives in target/release.
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the benchmark binary has no directory")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_cpu_ticks_after_a_command_with_spaces() {
        let stat = "42 (a b) S 1 2 3 4 5 6 7 8 9 10 100 20 3 4 20 0";
        assert_eq!(super::stat_ticks(stat), Some(127));
    }

    #[test]
    fn measures_this_process() {
        let me = std::process::id();
        let m = super::memory(me).expect("memory");
        assert!(m.rss_bytes > 0 && m.pss_bytes > 0);
        assert!(super::cpu_time(me).is_ok());
    }
}
