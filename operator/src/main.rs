//! `gantry-operator`: the command line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser;
use gantry_operator::admin::{self, AdminState};
use gantry_operator::controller::{Context, Scope, ServedClass, run};
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
    /// Proxy image used when GatewayParameters do not name one.
    #[arg(
        long,
        env = "GANTRY_PROXY_IMAGE",
        default_value = "ghcr.io/gantry-dev/gantry-proxy:latest"
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
    /// Log as JSON lines.
    #[arg(long, env = "GANTRY_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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

    let ctx = Arc::new(Context::new(
        client,
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
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!("controllers starting");
    tokio::select! {
        () = run::run(ctx) => tracing::info!("controllers stopped"),
        result = admin => {
            result.context("admin task panicked")?.context("admin endpoint failed")?;
        }
    }
    Ok(())
}
