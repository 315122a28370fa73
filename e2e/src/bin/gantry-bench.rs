//! `gantry-bench`: throughput and latency through Gantry against a direct connection to the same
//! backend, and what N routes cost (load time, memory, propagation of a new route).
//!
//! Run with `cargo run --release -p gantry-e2e --bin gantry-bench -- --help`. Needs `wrk`.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use gantry_e2e::bench::process::{Proc, release_bins, wait_port};
use gantry_e2e::bench::{config, wrk};

#[derive(Parser)]
#[command(about = "Gantry benchmarks: throughput against a direct connection, and route scale")]
struct Args {
    /// Routes loaded for the scale measurement.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Concurrent connections for the load runs.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Seconds per load run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// New routes added one at a time to measure propagation.
    #[arg(long, default_value_t = 20)]
    new_routes: usize,
    /// A short run that checks the benchmark works (figures are not meaningful).
    #[arg(long)]
    quick: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.routes = args.routes.min(200);
        args.duration = 1;
        args.new_routes = 3;
    }
    let bins = release_bins(&["gantry-proxy", "gantry-echo"])?;
    let backend_port = free_port()?;
    let backend_addr: SocketAddr = format!("127.0.0.1:{backend_port}").parse()?;
    let _backend = Proc::spawn(
        "gantry-echo",
        Command::new(bins.join("gantry-echo")).args([
            "--plain",
            "--listen",
            &backend_addr.to_string(),
        ]),
    )?;
    wait_port(backend_port, Duration::from_secs(5))?;

    println!("# Gantry benchmark\n");
    println!(
        "{} connections, {} s per run, {} routes for the scale run, {} cores.\n",
        args.connections,
        args.duration,
        args.routes,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Throughput: one route, through the proxy and straight to the backend.
    let duration = Duration::from_secs(args.duration);
    let direct = wrk::run(
        &format!("http://{backend_addr}/svc0"),
        "direct",
        args.connections,
        duration,
    )?;
    let small = Gantry::start(&bins, backend_addr, 1)?;
    let cpu_before = small.proc.cpu_time()?;
    let proxied = wrk::run(
        &format!("http://127.0.0.1:{}/svc0", small.port),
        &config::host(0),
        args.connections,
        duration,
    )?;
    let cpu = small.proc.cpu_time()?.saturating_sub(cpu_before);
    println!("## Throughput and latency (1 route)\n");
    println!("| target | req/s | p50 ms | p99 ms | p99.9 ms | errors | proxy CPU s / 100k req |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    row("direct to backend", &direct, None);
    row("through gantry-proxy", &proxied, Some(cpu));
    println!(
        "\nThrough the proxy: {:.0} % of direct throughput, +{:.2} ms at p50, +{:.2} ms at p99.\n",
        100.0 * proxied.requests_per_sec / direct.requests_per_sec.max(1.0),
        proxied.p50_ms - direct.p50_ms,
        proxied.p99_ms - direct.p99_ms
    );
    drop(small);

    // Scale: N routes.
    let started = Instant::now();
    let big = Gantry::start(&bins, backend_addr, args.routes)?;
    let load_time = started.elapsed();
    let rss_loaded = big.proc.rss_bytes()?;
    let last = args.routes.saturating_sub(1);
    let loaded = wrk::run(
        &format!("http://127.0.0.1:{}{}", big.port, config::path(last)),
        &config::host(last),
        args.connections,
        duration,
    )?;
    let rss_after = big.proc.rss_bytes()?;
    let mut propagation = Vec::new();
    for k in 0..args.new_routes {
        propagation.push(big.add_route(args.routes + k)?);
    }
    propagation.sort();
    println!("## {} routes\n", args.routes);
    println!("| figure | value |");
    println!("|---|---:|");
    println!(
        "| start to ready (load + translate + bind) | {:.0} ms |",
        load_time.as_secs_f64() * 1e3
    );
    println!("| resident memory, loaded | {:.1} MiB |", mib(rss_loaded));
    println!(
        "| resident memory, after load run | {:.1} MiB |",
        mib(rss_after)
    );
    println!(
        "| req/s to the last route | {:.0} (p99 {:.2} ms, {} errors) |",
        loaded.requests_per_sec, loaded.p99_ms, loaded.errors
    );
    if let (Some(median), Some(max)) = (propagation.get(propagation.len() / 2), propagation.last())
    {
        println!(
            "| new route: file written to first 200, median of {} | {:.1} ms (max {:.1} ms) |",
            propagation.len(),
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn row(name: &str, r: &wrk::LoadResult, cpu: Option<Duration>) {
    let cpu = cpu.map_or("".to_owned(), |c| {
        format!(
            "{:.2}",
            c.as_secs_f64() * 100_000.0 / r.requests.max(1) as f64
        )
    });
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {cpu} |",
        r.requests_per_sec, r.p50_ms, r.p99_ms, r.p999_ms, r.errors
    );
}

/// A gantry-proxy process serving generated routes.
struct Gantry {
    proc: Proc,
    port: u16,
    dir: std::path::PathBuf,
}

impl Gantry {
    fn start(bins: &Path, backend: SocketAddr, routes: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let admin = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("gantry-bench-{}-{routes}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for (name, text) in config::gantry(port, backend, routes) {
            std::fs::write(dir.join(name), text)?;
        }
        let proc = Proc::spawn(
            "gantry-proxy",
            Command::new(bins.join("gantry-proxy"))
                .args(["run", "--no-access-log", "--log-level", "warn"])
                .arg("--config-dir")
                .arg(&dir)
                .args(["--bind-address", "127.0.0.1"])
                .args(["--admin-addr", &format!("127.0.0.1:{admin}")]),
        )?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = Command::new("curl")
                .args([
                    "-fs",
                    "-o",
                    "/dev/null",
                    &format!("http://127.0.0.1:{admin}/readyz"),
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("gantry-proxy with {routes} routes not ready after 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self { proc, port, dir })
    }

    /// Writes one new route file and returns the time until that route answers 200.
    fn add_route(&self, i: usize) -> anyhow::Result<Duration> {
        let tmp = self.dir.join(format!(".new-{i}.tmp"));
        std::fs::write(&tmp, config::route(i))?;
        let started = Instant::now();
        std::fs::rename(&tmp, self.dir.join(format!("new-{i}.yaml")))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            config::path(i),
            config::host(i)
        );
        loop {
            if probe(self.port, &request).context("probing the new route")? {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("route {i} never answered 200");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Gantry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One raw HTTP/1.1 request; true when the status is 200.
fn probe(port: u16, request: &str) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(request.as_bytes())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(&head[9..12] == b"200")
}
