//! `gantry-operator`: the command line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use gantry_lease::LeaseConfig;
use gantry_operator::admin::{self, AdminState};
use gantry_operator::controller::{Context, Scope, ServedClass, run};
use gantry_operator::leader::{self, Election, Ended};
use gantry_operator::metrics::Metrics;
use gantry_operator::params::{OperatorDefaults, ProxyRoles};
use tracing_subscriber::EnvFilter;

/// Reconciles GatewayClasses and Gateways of `gantry.dev/gateway-controller` into proxy fleets.
#[derive(Parser, Debug)]
#[command(name = "gantry-operator", version)]
struct Args {
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "GANTRY_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    admin_addr: SocketAddr,
    /// Proxy image used when GatewayParameters do not name one: the operator's own version
    /// (an upgrade of the operator rolls the fleets that use the default to its version).
    #[arg(
        long,
        env = "GANTRY_PROXY_IMAGE",
        default_value = concat!("ghcr.io/gantry-dev/gantry-proxy:", env!("CARGO_PKG_VERSION"))
    )]
    proxy_image: String,
    /// Prefix of the roles fleets are bound to (installed with the operator): `<prefix>`,
    /// `<prefix>-leader-election`, `<prefix>-secrets`, `<prefix>-configmaps`. ClusterRoles, or
    /// Roles in `--namespace`.
    #[arg(long, env = "GANTRY_PROXY_ROLE_PREFIX", default_value = "gantry-proxy")]
    proxy_role_prefix: String,
    /// Namespace-scoped install: read and write only namespaced objects of this namespace, bind
    /// fleets to the proxies' Roles there; needs `--gateway-class`, since no GatewayClass is read.
    #[arg(long, env = "GANTRY_NAMESPACE", requires = "gateway_classes")]
    namespace: Option<String>,
    /// With `--namespace`: a GatewayClass served, as `NAME` or `NAME=PARAMETERS` (the
    /// GatewayParameters in `--namespace` that parameterise it); repeat for several. Its
    /// Gateways in the namespace are served; the GatewayClass object is never read, nor its
    /// status written.
    #[arg(
        long = "gateway-class",
        value_name = "NAME[=PARAMETERS]",
        requires = "namespace",
        value_parser = ServedClass::parse
    )]
    gateway_classes: Vec<ServedClass>,
    /// Run the controllers only while holding the Lease `--leader-election-name` in
    /// `--leader-election-namespace`, so that several replicas can run and one writes. Off by
    /// default for the binary (one process, controllers at once); the chart turns it on.
    #[arg(long, env = "GANTRY_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the operator's Lease; the pod's namespace (`POD_NAMESPACE`, which the chart
    /// sets from the downward API), else the client's default namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the operator's Lease.
    #[arg(long, default_value = "gantry-operator")]
    leader_election_name: String,
    /// This replica's identity in the Lease: the pod's name (`POD_NAME`), else the host name.
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// How long a Lease not renewed keeps a standby waiting before it takes over.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// How long the leader keeps its controllers running while renewals fail; below
    /// `--lease-duration`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    renew_deadline: Duration,
    /// How often the leader renews and a standby tries to take over; below `--renew-deadline`.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    retry_period: Duration,
    /// Log as JSON lines.
    #[arg(long, env = "GANTRY_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.leader_elect
        && !(args.retry_period < args.renew_deadline && args.renew_deadline < args.lease_duration)
    {
        anyhow::bail!("leader election needs --retry-period < --renew-deadline < --lease-duration");
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AdminState {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
    });
    let admin_addr = args.admin_addr;
    let admin_state = state.clone();
    let admin = tokio::spawn(async move { admin::serve(admin_addr, admin_state).await });

    let election = args.leader_elect.then(|| Election {
        lease: LeaseConfig {
            namespace: args
                .leader_election_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
            name: args.leader_election_name.clone(),
            identity: args
                .leader_election_identity
                .clone()
                .unwrap_or_else(identity),
            duration: args.lease_duration,
            renew_every: args.retry_period,
        },
        renew_deadline: args.renew_deadline,
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        OperatorDefaults {
            proxy_image: args.proxy_image,
            proxy_roles: ProxyRoles {
                prefix: args.proxy_role_prefix,
                namespace: None,
            },
        },
        metrics,
        match args.namespace {
            Some(namespace) => Scope::Namespace {
                namespace,
                classes: args.gateway_classes,
            },
            None => Scope::Cluster,
        },
    ));
    // Ready once running, leader or standby: a standby is healthy and ready to take over, and
    // a rolling update must not wait for a replica that cannot lead while the old one does.
    state.ready.store(true, Ordering::Relaxed);
    let controllers = async move {
        match election {
            None => {
                tracing::info!("controllers starting (no leader election)");
                ctx.metrics.leading(true);
                run::run(ctx).await;
                Ended::Shutdown
            }
            Some(election) => {
                let metrics = ctx.metrics.clone();
                leader::lead(client, election, metrics, move || run::run(ctx), shutdown()).await
            }
        }
    };
    tokio::select! {
        ended = controllers => match ended {
            Ended::Shutdown => tracing::info!("controllers stopped"),
            // Exit so that Kubernetes restarts this replica as a standby: nothing of the
            // cancelled controllers lingers in the new process.
            Ended::Lost => anyhow::bail!("lost the leader-election Lease; exiting"),
        },
        result = admin => {
            result.context("admin task panicked")?.context("admin endpoint failed")?;
        }
    }
    Ok(())
}

/// Completes on SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A name for this replica outside a pod: the host name, else the process id.
fn identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("gantry-operator-{}", std::process::id()))
}
