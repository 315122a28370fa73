//! `gantry-echo`: an HTTP backend that answers with the request it saw, as JSON.

use std::net::SocketAddr;

use clap::Parser;
use gantry_e2e::echo::{self, EchoIdentity};

#[derive(Parser)]
#[command(
    version,
    about = "HTTP/1.1 + h2c echo backend for Gantry's tests and quick start"
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut tasks = Vec::new();
    for addr in args.listen {
        let identity = EchoIdentity {
            name: args.name.clone(),
            namespace: args.namespace.clone(),
            plain: args.plain,
        };
        let (bound, task) = echo::spawn(addr, identity).await?;
        println!("gantry-echo {} listening on {bound}", args.name);
        tasks.push(task);
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}
