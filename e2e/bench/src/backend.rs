//! The backends every scenario proxies to: `gantry-echo`, started and answering.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::probe;
use super::process::{Proc, free_port};

/// What the echo answers.
#[derive(Clone, Copy)]
pub enum Echo {
    /// A fixed small body (`--plain`): the backend costs next to nothing.
    Plain,
    /// The request it saw, as JSON, its body included.
    Json,
}

/// Starts `gantry-echo` from `bins` on a free port and waits until it answers.
pub fn start(bins: &Path, echo: Echo) -> anyhow::Result<(Proc, SocketAddr)> {
    let port = free_port()?;
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut command = Command::new(bins.join("gantry-echo"));
    if let Echo::Plain = echo {
        command.arg("--plain");
    }
    command.args(["--listen", &listen.to_string()]);
    let mut proc = Proc::spawn("gantry-echo", &mut command, None)?;
    probe::wait_for_200(
        port,
        "direct",
        "/",
        Instant::now(),
        Duration::from_secs(10),
        Duration::from_millis(5),
        || proc.check_alive(),
    )
    .context("gantry-echo did not start")?;
    Ok((proc, listen))
}
