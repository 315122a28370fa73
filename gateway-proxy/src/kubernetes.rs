//! Kubernetes mode: the kube source, the control loop, the status writer and leader election,
//! wired together for `gantry-proxy run --kubernetes`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::leader::{self, Elector, LeaseConfig};
use crate::runtime::Runtime;
use crate::server::DataPlane;
use crate::source::kube::Scope;
use crate::status::writer::{self, StatusWriter};
use crate::telemetry::Metrics;
use gantry_translate::translate::TranslateOptions;

/// How long shutdown waits to hand the Lease back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The scope of a proxy from its flags.
pub fn scope(args: &RunArgs) -> anyhow::Result<Scope> {
    Ok(match (&args.gateway_class, args.gateways.as_slice()) {
        (Some(_), [_, ..]) => bail!("give either --gateway or --gateway-class, not both"),
        (Some(class), []) => Scope::Class(class.clone()),
        (None, []) => Scope::All,
        (None, gateways) => Scope::Gateways(gateways.to_vec()),
    })
}

/// What the Lease of this fleet is named after.
fn serves(scope: &Scope) -> String {
    match scope {
        Scope::Class(class) => class.clone(),
        Scope::Gateways(keys) => keys
            .iter()
            .map(|k| format!("{}.{}", k.namespace, k.name))
            .collect::<Vec<_>>()
            .join("."),
        Scope::All => "all".to_owned(),
    }
}

/// Keeps `gantry_kube_leader` in step with the election.
async fn count_leadership(
    mut leading: watch::Receiver<bool>,
    metrics: crate::telemetry::kube::KubeMetrics,
    lease: String,
) {
    loop {
        metrics.leading(&lease, *leading.borrow_and_update());
        if leading.changed().await.is_err() {
            return;
        }
    }
}

/// Serves the cluster's Gateways until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let scope = scope(&args)?;
    let client = ::kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let dataplane = Arc::new(DataPlane::new(args.dataplane_options(), metrics.clone()));
    let options = TranslateOptions {
        gateways: match &scope {
            Scope::Gateways(keys) => Some(keys.clone()),
            _ => None,
        },
        ..TranslateOptions::default()
    };
    let controller_name = options.controller_name.clone();
    let kube_metrics = metrics.kube.clone();
    let runtime = Arc::new(Runtime::new(options, dataplane.clone(), metrics.clone()));
    let (admin_addr, _admin) = crate::admin::serve(args.admin_addr, runtime.clone())
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_addr))?;
    tracing::info!(%admin_addr, ?scope, "gantry-proxy starting in Kubernetes mode");

    let (updates_tx, updates_rx) = watch::channel(None);
    let (leading_tx, leading_rx) = watch::channel(false);
    let namespace =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_owned());
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("gantry-proxy-{}", uuid::Uuid::new_v4()));
    let lease = LeaseConfig::new(namespace, leader::lease_name(&serves(&scope)), identity);
    let lease_id = format!("{}/{}", lease.namespace, lease.name);
    let mut elector = Elector::new(client.clone(), lease.clone());
    let election = tokio::spawn(leader::run(Elector::new(client.clone(), lease), leading_tx));
    let configured = match &scope {
        Scope::Gateways(keys) => keys.clone(),
        _ => Vec::new(),
    };
    let leadership = tokio::spawn(count_leadership(
        leading_rx.clone(),
        kube_metrics.clone(),
        lease_id,
    ));
    let status = tokio::spawn(writer::run(
        StatusWriter::new(client.clone(), controller_name, configured).with_metrics(kube_metrics),
        runtime.statuses(),
        updates_rx.clone(),
        leading_rx,
    ));
    let source = tokio::spawn(crate::source::kube::run(client, scope, updates_tx, metrics));
    let control = tokio::spawn(runtime.clone().run(updates_rx));

    let outcome = tokio::select! {
        result = source => match result {
            Ok(Ok(())) => Err(anyhow::anyhow!("the Kubernetes source stopped")),
            Ok(Err(error)) => Err(error.into()),
            Err(error) => Err(anyhow::anyhow!("the Kubernetes source failed: {error}")),
        },
        _ = control => Err(anyhow::anyhow!("the control loop stopped")),
        signal = crate::cli::shutdown_signal() => {
            tracing::info!(signal, "draining in-flight requests");
            Ok(())
        }
    };
    runtime.start_draining();
    election.abort();
    status.abort();
    leadership.abort();
    // Hand the Lease over so another replica writes status at once; bounded, so an
    // unreachable API server cannot hold up draining.
    match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "Lease not released; another replica takes over when it expires");
        }
        Err(_) => {
            tracing::warn!("Lease release timed out; another replica takes over when it expires")
        }
    }
    outcome?;
    dataplane.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
