//! `gantry-echo`: an HTTP backend that answers with the request it saw, as JSON.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use gantry_testkit::echo::{self, EchoIdentity};

#[derive(Parser)]
#[command(
    version,
    about = "HTTP/1.1 + h2c (or HTTPS) echo backend for Gantry's tests and quick start"
)]
struct Args {
    /// Address to listen on; repeat to serve several ports from one process.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: Vec<SocketAddr>,
    /// Name reported in every answer.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Namespace reported in every answer.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Answer every request with a short fixed body instead of the echo JSON (a fast backend
    /// for benchmarks).
    #[arg(long)]
    plain: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this PEM CA bundle and report its subject in
    /// every answer (needs --tls-cert).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let client_ca = args.client_ca.as_ref().map(read).transpose()?;
            Some(echo::tls_config(
                &read(cert)?,
                &read(key)?,
                client_ca.as_deref(),
            )?)
        }
        _ => None,
    };
    let mut tasks = Vec::new();
    for addr in args.listen {
        let identity = EchoIdentity {
            name: args.name.clone(),
            namespace: args.namespace.clone(),
            plain: args.plain,
        };
        let (bound, task) = match &tls {
            Some(config) => echo::spawn_tls(addr, identity, config.clone()).await?,
            None => echo::spawn(addr, identity).await?,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("gantry-echo {} listening on {scheme}://{bound}", args.name);
        tasks.push(task);
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}
