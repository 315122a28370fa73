//! The command line: `gantry-proxy run ...`, `gantry-proxy validate DIR` and
//! `gantry-proxy explain --config-dir DIR 'METHOD URL'`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::explain;
use crate::kubernetes::KubeSource;
use crate::kubernetes::serving::{FleetConfig, Policy};
use crate::kubernetes::watch::Scope;
use crate::routing::normalize::{EscapedSlashes, PathOptions};
use crate::serve::{ServeOptions, serve};
use crate::server::activity::Timeouts;
use crate::server::l4::L4Options;
use crate::server::{ConnectionOptions, DataPlaneOptions, HttpOptions};
use crate::source::FileSource;
use crate::telemetry::logging::{self, LogFormat};
use crate::upstream::session::SessionKey;
use crate::validate::{self, Output};
use gantry_translate::status::GatewayStatusAddress;
use gantry_translate::store::ObjectKey;
use gantry_translate::translate::{AddressAssignment, TranslateOptions};

#[derive(Debug, Parser)]
#[command(name = "gantry-proxy", version, about = "Gantry's Gateway API proxy")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Gateways described by YAML files (`--config-dir`) or by the cluster
    /// (`--kubernetes`).
    Run(Box<RunArgs>),
    /// Check a directory of YAML as `run --config-dir DIR` would load it, without serving:
    /// print every condition that is not healthy (file:line, object, condition, reason,
    /// message) and exit 1 when any is an error.
    Validate(ValidateArgs),
    /// Explain what the proxy would do with one request to a configuration directory:
    /// the listener, route, rule, filters, policies and backends it gets, what the proxy
    /// answers itself if anything, and why every other candidate route did not answer.
    /// Exit status: 0 when a route answers, 1 when the proxy answers itself (404, 421, 500...)
    /// or the connection fails, 2 on a usage or configuration error.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The directory `run --config-dir` would be given (a cluster is not read, for now).
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// The request: `METHOD URL` as one argument (`'GET https://shop.example.com/cart?x=1'`),
    /// or the method and the URL as two.
    #[arg(value_name = "REQUEST", required = true, num_args = 1..=2)]
    pub request: Vec<String>,
    /// A request header, `name: value`; repeat for several. A `host` header replaces the
    /// URL's authority as the Host sent (the URL still gives the port and the SNI).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The TLS server name the client sends (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// The Gateway (NS/NAME) meant, when several share the port: the proxy is loaded as one
    /// serving only it, as `run --gateway` does.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_gateway)]
    pub gateway: Option<ObjectKey>,
    /// The client's address, as source-IP rules and `${client_ip}` see it (default
    /// 192.0.2.1).
    #[arg(long, value_name = "IP")]
    pub client_ip: Option<IpAddr>,
    /// `text` for people, `json` for tools.
    #[arg(long, value_enum, default_value_t = explain::Output::Text)]
    pub output: explain::Output,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The directory `run --config-dir` would be given.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Validate as a proxy serving only this Gateway (NS/NAME); repeat for several.
    #[arg(long = "gateway", value_name = "NS/NAME", value_parser = parse_gateway)]
    pub gateways: Vec<ObjectKey>,
    /// `text` for people, `json` for tools.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Standalone mode: read Gateway API YAML from this directory (recursively) and watch it.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "kubernetes",
        required_unless_present = "kubernetes"
    )]
    pub config_dir: Option<PathBuf>,
    /// Kubernetes mode: watch the cluster (in-cluster config or KUBECONFIG).
    #[arg(long)]
    pub kubernetes: bool,
    /// Serve only this Gateway (NS/NAME); repeat for several. Default: every Gateway whose
    /// class names Gantry's controller.
    #[arg(long = "gateway", value_name = "NS/NAME", value_parser = parse_gateway)]
    pub gateways: Vec<ObjectKey>,
    /// Serve every Gateway of this GatewayClass (a shared fleet). With --watch-namespace, the
    /// class served, which is then not read (with --gateway too: those Gateways' class).
    #[arg(long, value_name = "NAME")]
    pub gateway_class: Option<String>,
    /// Kubernetes mode with Roles only: list and watch only this namespace, nothing
    /// cluster-scoped. Needs --gateway-class (GatewayClasses cannot be read); Namespaces cannot
    /// be read either, so a listener's allowedRoutes `from: Selector` admits no route.
    #[arg(long, value_name = "NS", requires = "kubernetes")]
    pub watch_namespace: Option<String>,
    /// Kubernetes mode: the fleet this replica belongs to, its Deployment's name in
    /// POD_NAMESPACE and the value of its Pods' `gantry.dev/fleet` label. Each replica then
    /// reports what it serves on its Pod (POD_NAME, annotation `gantry.dev/serving`), and a
    /// Gateway is `Programmed` only once enough ready replicas serve its generation.
    #[arg(long, value_name = "NAME", requires = "kubernetes")]
    pub fleet: Option<String>,
    /// With --fleet: how many ready replicas must serve a Gateway's generation for it to be
    /// `Programmed`. Default: every replica the fleet's Deployment wants (`spec.replicas`).
    #[arg(long, value_name = "N", requires = "fleet", value_parser = clap::value_parser!(u32).range(1..))]
    pub programmed_min_replicas: Option<u32>,
    /// With --fleet: how long a Gateway may wait for its replicas with `Programmed=False`
    /// reason `Pending` before the reason becomes `NoResources`, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub programmed_timeout: Duration,
    /// Address every listener binds.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,
    /// Added to listener ports below 1024 (so an unprivileged process can serve port 80);
    /// 0 to 64512, so that port 1023 stays within 65535.
    #[arg(long, default_value_t = 0, value_parser = parse_port_offset)]
    pub port_offset: u16,
    /// Admin server: /healthz, /readyz, /metrics; also /status and /config when it is a
    /// loopback address and no --admin-debug-addr is given. An IPv6 address may be written
    /// without brackets (`fd00::7:9901`, as `$(POD_IP):9901` expands to).
    #[arg(long, default_value = "127.0.0.1:9901", value_parser = parse_socket_addr)]
    pub admin_addr: SocketAddr,
    /// Where /status and /config are served (with the admin endpoints): a listener of its own,
    /// or the admin server itself when equal to --admin-addr. Default: the admin server when
    /// --admin-addr is a loopback address, otherwise nowhere.
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    pub admin_debug_addr: Option<SocketAddr>,
    /// Log filter, e.g. `info` or `gantry_proxy=debug,info` (RUST_LOG wins when set).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Format of logs and access logs.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub access_log_format: LogFormat,
    /// Do not log a line per request.
    #[arg(long)]
    pub no_access_log: bool,
    /// Threads serving traffic (default: one per core), each with its own connections, like
    /// nginx's worker processes. The first also runs the control loop and the admin server;
    /// blocking work such as translation has threads of its own.
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// On SIGTERM, how long the proxy keeps serving with `/readyz` failing before it stops
    /// accepting, so that load balancers and kube-proxy stop sending it new connections
    /// first, e.g. `5s`; `0s` stops accepting at once. A second SIGTERM or SIGINT ends it.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,
    /// After the drain delay, how long open connections may take to finish before they are
    /// dropped, e.g. `20s` (a bare number is seconds). With the delay, within the
    /// termination grace period.
    #[arg(long, default_value = "20s", value_parser = parse_seconds_or_duration)]
    pub drain_timeout: Duration,
    /// Close a UDP session (one per client address) after this long without a datagram in
    /// either direction, e.g. `60s` or `500ms`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub udp_session_idle_timeout: Duration,
    /// UDP sessions one port keeps at most; datagrams from new clients are dropped beyond it.
    #[arg(long, default_value_t = crate::server::l4::DEFAULT_UDP_MAX_SESSIONS)]
    pub udp_max_sessions: usize,
    /// Merge runs of `/` in request paths before matching (`//a///b` → `/a/b`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub path_merge_slashes: bool,
    /// What to do with `%2F` and `%5C` in request paths: `reject` answers 400, `keep` leaves
    /// them encoded, as ordinary characters of a segment.
    #[arg(long, value_enum, default_value_t = EscapedSlashes::Reject)]
    pub path_escaped_slashes: EscapedSlashes,
    /// Proxies in front of Gantry whose X-Forwarded-* and Forwarded headers are trusted; with
    /// 0, whatever the client sent in them is replaced.
    #[arg(long, default_value_t = 0)]
    pub trusted_proxy_hops: u32,
    /// The longest wait for the next part of a request body before answering 408; `0`
    /// waits forever.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub request_body_timeout: Duration,
    /// Request timeout (to response headers) of routes that set no `timeouts.request`; `0`
    /// for none. A route's `request: 0s` disables it for that route.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub default_request_timeout: Duration,
    /// Client connections open at once on one listener port; more are closed on accept.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS_PER_LISTENER)]
    pub max_connections_per_listener: usize,
    /// Client connections open at once in the process (default: half the open-file limit).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// A client must send its first request head after connecting, and each HTTP/1 head after
    /// the previous response, within this.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub client_header_timeout: Duration,
    /// A client connection with no request in flight is closed after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub client_idle_timeout: Duration,
    /// A client connection whose responses stop moving (the client stopped reading) is
    /// closed after this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub client_stall_timeout: Duration,
    /// Streams one HTTP/2 client connection may have open at once.
    #[arg(long, default_value_t = crate::server::DEFAULT_HTTP2_MAX_STREAMS)]
    pub http2_max_concurrent_streams: u32,
    /// The key session persistence tokens are signed with: a file of at least 32 random
    /// bytes (a mounted Secret), the same for every replica so that a session survives a
    /// request landing on another replica or a restart. Without it each process signs with a
    /// random key of its own.
    #[arg(long, value_name = "FILE")]
    pub session_key_file: Option<PathBuf>,
    /// Trace requests with OpenTelemetry: the OTLP receiver, `http://host:port` (OTLP/HTTP
    /// posts to its `/v1/traces`; OTLP/gRPC uses its host and port). Without it nothing is
    /// traced and `traceparent` passes through untouched.
    #[arg(long, value_name = "URL", value_parser = parse_tracing_endpoint)]
    pub tracing_endpoint: Option<http::Uri>,
    /// How spans are sent to --tracing-endpoint.
    #[arg(long, value_enum, default_value_t = crate::telemetry::trace::Protocol::Http)]
    pub tracing_protocol: crate::telemetry::trace::Protocol,
    /// Share of new traces sampled, from 0 to 1 (trace-ID based, as OpenTelemetry's
    /// TraceIdRatioBased, so every replica decides alike for one trace).
    #[arg(long, default_value_t = 1.0, value_parser = parse_ratio)]
    pub tracing_sampling_ratio: f64,
    /// Follow the sampled flag of a request's valid `traceparent` (parent-based sampling);
    /// with `false`, the ratio decides for every request.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub tracing_parent_based: bool,
    /// `service.name` of the spans.
    #[arg(long, default_value = "gantry-proxy")]
    pub tracing_service_name: String,
    #[command(flatten)]
    pub acme: crate::acme::args::AcmeArgs,
    /// Redis for the global rules of RateLimitPolicies, shared by every replica of the fleet:
    /// `redis://host:port` (`/db` optional; `rediss://` for TLS). Without it a policy with
    /// global rules answers 500.
    #[arg(long, value_name = "URL")]
    pub rate_limit_redis: Option<String>,
}

/// `--tracing-endpoint`: an `http://` URL with a host.
fn parse_tracing_endpoint(value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("not a URL ({e}): give http://host:port"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(uri),
        (Some("https"), _) => Err(
            "https receivers are not supported yet; use a plaintext OTLP receiver (a collector              beside the proxy)"
                .to_owned(),
        ),
        _ => Err("give http://host:port".to_owned()),
    }
}

/// A number from 0 to 1.
fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{value:?} is not a number from 0 to 1")),
    }
}

impl RunArgs {
    /// Tracing, when an endpoint is given.
    pub fn tracing_options(&self) -> Option<crate::telemetry::trace::TracingOptions> {
        let endpoint = self.tracing_endpoint.clone()?;
        let mut options =
            crate::telemetry::trace::TracingOptions::new(endpoint, self.tracing_protocol);
        options.ratio = self.tracing_sampling_ratio;
        options.parent_based = self.tracing_parent_based;
        options.service_name.clone_from(&self.tracing_service_name);
        Some(options)
    }

    /// The data plane's settings, the same in both modes.
    pub fn dataplane_options(&self) -> DataPlaneOptions {
        DataPlaneOptions {
            bind_address: self.bind_address,
            port_offset: self.port_offset,
            drain_timeout: self.drain_timeout,
            access_log: !self.no_access_log,
            l4: L4Options {
                udp_idle_timeout: self.udp_session_idle_timeout,
                udp_max_sessions: self.udp_max_sessions.max(1),
            },
            http: HttpOptions {
                paths: PathOptions {
                    merge_slashes: self.path_merge_slashes,
                    escaped_slashes: self.path_escaped_slashes,
                },
                trusted_proxy_hops: self.trusted_proxy_hops,
                request_body_timeout: nonzero(self.request_body_timeout),
                default_request_timeout: nonzero(self.default_request_timeout),
                ..HttpOptions::default()
            },
            connections: ConnectionOptions {
                per_listener: self.max_connections_per_listener.max(1),
                process: self
                    .max_connections
                    .unwrap_or_else(crate::server::default_max_connections)
                    .max(1),
                timeouts: Timeouts {
                    header: self.client_header_timeout.max(MIN_CLIENT_TIMEOUT),
                    idle: self.client_idle_timeout.max(MIN_CLIENT_TIMEOUT),
                    stall: self.client_stall_timeout.max(MIN_CLIENT_TIMEOUT),
                },
                http2_max_streams: self.http2_max_concurrent_streams.max(1),
            },
        }
    }
}

/// The shortest client connection timeout accepted; shorter values are raised to it.
const MIN_CLIENT_TIMEOUT: Duration = Duration::from_millis(100);

/// `None` for a zero duration (no limit).
fn nonzero(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

/// A duration such as `20s` or `1m30s`, or a bare number of seconds (what `--drain-timeout`
/// took before it took units).
fn parse_seconds_or_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string()),
    }
}

fn parse_gateway(s: &str) -> Result<ObjectKey, String> {
    ObjectKey::parse(s).ok_or_else(|| format!("`{s}` is not NAMESPACE/NAME"))
}

/// `IP:PORT`, `[IPv6]:PORT`, or an IPv6 address and port without brackets (the last `:`
/// separates the port), which is what `$(POD_IP):PORT` gives on an IPv6 pod.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let invalid = || format!("`{s}` is not an address with a port, e.g. 10.0.0.7:9901");
    let (ip, port) = s.rsplit_once(':').ok_or_else(invalid)?;
    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    Ok(SocketAddr::new(ip, port))
}

fn parse_port_offset(s: &str) -> Result<u16, String> {
    let offset: i64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    gantry_translate::ports::port_offset(offset).map_err(|e| e.to_string())
}

/// Parses the command line, builds the Tokio runtime and runs until SIGTERM or SIGINT.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Run(args) => *args,
        Command::Validate(args) => validate_command(&args),
        Command::Explain(args) => explain_command(&args),
    };
    logging::init(&args.log_level, args.access_log_format);
    // Each worker thread runs a single-threaded runtime of its own, the way each nginx worker
    // is a process of its own; the main thread is worker 0 (see `workers`). Against one
    // multi-threaded runtime, that skips the scheduler's work that only pays off when threads
    // share tasks (work stealing, waking idle threads, per-batch poll-time statistics: about
    // 900 instructions per request, docs/benchmarks.md, "Instructions per request: the
    // runtime and the allocator"), and a request's tasks are no longer woken across threads.
    // Blocking work (translation, bcrypt, key generation, file reads) still goes to the
    // blocking pool's own threads.
    let workers = args
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let runtime = || {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        // After a crowd of connections has gone, each worker gives its free memory back when
        // idle (see `server::trim`).
        builder.on_thread_park(crate::server::trim::on_worker_idle);
        builder
    };
    let ran = runtime()
        .build()
        .context("starting the async runtime")?
        .block_on(async move {
            // This thread is worker 0.
            crate::workers::start(workers - 1, runtime).context("starting the worker threads")?;
            run(args).await
        });
    // The access log's last lines, still buffered.
    crate::telemetry::access_log::flush();
    ran
}

/// `validate`: prints the report and exits, 0 when there is no error and 1 otherwise.
fn validate_command(args: &ValidateArgs) -> ! {
    let options = TranslateOptions {
        gateways: (!args.gateways.is_empty()).then(|| args.gateways.clone()),
        ..TranslateOptions::default()
    };
    let report = validate::validate(&args.dir, &options);
    print!("{}", report.render(args.output));
    std::process::exit(if report.ok() { 0 } else { 1 })
}

/// `explain`: prints the explanation and exits 0 when a route answers, 1 when the proxy
/// answers itself, 2 when the request or the directory cannot be used.
fn explain_command(args: &ExplainArgs) -> ! {
    let (method, url) = match args.request.as_slice() {
        [one] => match one.trim().split_once(char::is_whitespace) {
            Some((method, url)) => (method.to_owned(), url.trim().to_owned()),
            None => (String::from("GET"), one.clone()),
        },
        [method, url, ..] => (method.clone(), url.clone()),
        [] => (String::from("GET"), String::new()),
    };
    let query = explain::Query {
        method,
        url,
        headers: args.headers.clone(),
        sni: args.sni.clone(),
        client_ip: args.client_ip,
    };
    let options = TranslateOptions {
        gateways: args.gateway.clone().map(|g| vec![g]),
        ..TranslateOptions::default()
    };
    match explain::explain(&args.config_dir, &options, &query, args.gateway.as_ref()) {
        Ok(explanation) => {
            print!("{}", explanation.render(args.output));
            std::process::exit(if explanation.routed() { 0 } else { 1 })
        }
        Err(error) => {
            eprintln!("gantry-proxy explain: {error}");
            std::process::exit(2)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut dataplane = args.dataplane_options();
    match &args.session_key_file {
        Some(path) => {
            dataplane.http.session_key = std::sync::Arc::new(
                SessionKey::from_file(path).context("loading --session-key-file")?,
            );
            tracing::info!(file = %path.display(), "session persistence tokens are signed with the key of --session-key-file");
        }
        None => tracing::info!(
            "no --session-key-file: session persistence tokens are signed with a random key of \
             this process, so sessions do not survive a restart or a request reaching another \
             replica; give every replica the same key file to share them"
        ),
    }
    let options = ServeOptions {
        admin_addr: args.admin_addr,
        admin_debug_addr: args.admin_debug_addr,
        dataplane,
        drain_delay: args.drain_delay,
        explainer: Some(crate::admin::ui::Explainer::new(explain::explain_live)),
        tracing: args.tracing_options(),
        acme: args.acme.options()?,
        acme_cluster: None,
        rate_limit_redis: args.rate_limit_redis.clone(),
    };
    if args.kubernetes {
        if args.acme.acme_dir.is_some() {
            bail!(
                "--acme-dir is for standalone mode: in Kubernetes mode the fleet keeps its ACME \
                 state in a Secret (docs/acme.md)"
            );
        }
        let (scope, namespaced) = Scope::from_flags_in(
            &args.gateways,
            args.gateway_class.as_deref(),
            args.watch_namespace.as_deref(),
        )?;
        tracing::info!(
            ?scope,
            ?namespaced,
            "gantry-proxy starting in Kubernetes mode"
        );
        if let Some(namespaced) = &namespaced {
            tracing::info!(
                namespace = %namespaced.namespace,
                "watching one namespace (Roles only): GatewayClass {} taken from the command \
                 line, Namespace labels unknown, so allowedRoutes selectors admit no route",
                namespaced.class
            );
        }
        let source = KubeSource::connect(scope)
            .await
            .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?
            .in_namespace(namespaced);
        let fleet = args.fleet.clone().map(|name| FleetConfig {
            name,
            namespace: source.lease().namespace.clone(),
            pod: std::env::var("POD_NAME")
                .ok()
                .map(|pod| ObjectKey::new(source.lease().namespace.clone(), pod)),
            policy: Policy {
                min_replicas: args.programmed_min_replicas,
                timeout: args.programmed_timeout,
            },
        });
        let source = source.with_fleet(fleet);
        let mut options = options;
        if options.acme.is_some() {
            options.acme_cluster = Some(source.acme_cluster());
        }
        return Ok(serve(source, options).await?);
    }
    let Some(config_dir) = args.config_dir.clone() else {
        bail!("give --config-dir DIR or --kubernetes");
    };
    if args.gateway_class.is_some() {
        bail!("--gateway-class is only meaningful with --kubernetes");
    }
    if options.acme.is_some() && args.acme.acme_dir.is_none() {
        bail!("--acme-directory needs --acme-dir in standalone mode (where certificates are kept)");
    }
    // Standalone: nobody else reports where the Gateways are reachable, so the proxy does.
    let reachable = match args.bind_address {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    tracing::info!(config_dir = %config_dir.display(), "gantry-proxy starting");
    let source = FileSource {
        dir: config_dir,
        options: TranslateOptions {
            gateways: (!args.gateways.is_empty()).then(|| args.gateways.clone()),
            // A Gateway's spec.addresses: any local address when listening on all of them.
            addresses: if args.bind_address.is_unspecified() {
                AddressAssignment::Any
            } else {
                AddressAssignment::Only(args.bind_address)
            },
            ..TranslateOptions::default()
        },
        addresses: vec![GatewayStatusAddress {
            type_: "IPAddress".to_owned(),
            value: reachable.to_string(),
        }],
    };
    Ok(serve(source, options).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_take_ipv6_pod_ips_without_brackets() {
        let v4: SocketAddr = "10.0.0.7:9901".parse().expect("v4");
        let v6: SocketAddr = "[fd00::7]:9901".parse().expect("v6");
        assert_eq!(parse_socket_addr("10.0.0.7:9901"), Ok(v4));
        assert_eq!(parse_socket_addr("[fd00::7]:9901"), Ok(v6));
        assert_eq!(parse_socket_addr("fd00::7:9901"), Ok(v6));
        assert!(parse_socket_addr("10.0.0.7").is_err());
        assert!(parse_socket_addr("$(POD_IP):9901").is_err());
        assert!(parse_socket_addr("10.0.0.7:99999").is_err());
    }

    #[test]
    fn drain_timeouts_take_units_or_bare_seconds() {
        assert_eq!(parse_seconds_or_duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(
            parse_seconds_or_duration("20s"),
            Ok(Duration::from_secs(20))
        );
        assert_eq!(
            parse_seconds_or_duration("1500ms"),
            Ok(Duration::from_millis(1500))
        );
        assert!(parse_seconds_or_duration("soon").is_err());
        assert!(parse_seconds_or_duration("-1").is_err());
    }

    #[test]
    fn the_default_drain_delay_is_the_documented_one() {
        let cli = Cli::try_parse_from(["gantry-proxy", "run", "--kubernetes"]).expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.drain_delay, crate::serve::DEFAULT_DRAIN_DELAY);
        assert_eq!(args.drain_timeout, Duration::from_secs(20));
    }
}
