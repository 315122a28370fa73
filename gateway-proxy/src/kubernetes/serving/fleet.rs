//! The leader's view of its fleet: the Pods selected by `gantry.dev/fleet=<fleet>` and the
//! Deployment `<fleet>`'s `spec.replicas`, both watched in the fleet's namespace while this
//! replica leads.

use std::collections::BTreeMap;
use std::sync::Arc;

use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use ::kube::{Api, Client};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use super::report::{ANNOTATION, ServingReport};
use super::verdict::{Fleet, Replica};

/// The label every Pod of a fleet carries (the operator's selector).
pub const FLEET_LABEL: &str = "gantry.dev/fleet";

/// Keeps `out` in step with fleet `name` in `namespace` while `leading`; an unsynced, empty
/// fleet otherwise.
pub async fn run(
    client: Client,
    namespace: String,
    name: String,
    mut leading: watch::Receiver<bool>,
    out: watch::Sender<Arc<Fleet>>,
) {
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        tokio::select! {
            () = follow(client.clone(), &namespace, &name, &out) => {}
            result = leading.wait_for(|l| !*l) => if result.is_err() { return; },
        }
        out.send_replace(Arc::new(Fleet::default()));
    }
}

async fn follow(client: Client, namespace: &str, name: &str, out: &watch::Sender<Arc<Fleet>>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client, namespace);
    let mut pod_events = watcher::watcher(
        pods,
        watcher::Config::default().labels(&format!("{FLEET_LABEL}={name}")),
    )
    .default_backoff()
    .boxed();
    let mut deployment_events = watcher::watcher(
        deployments,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .boxed();
    let mut replicas: BTreeMap<String, Replica> = BTreeMap::new();
    let mut listing: BTreeMap<String, Replica> = BTreeMap::new();
    let mut pods_listed = false;
    let mut desired: Option<i32> = None;
    let mut deployment_listed = false;
    loop {
        tokio::select! {
            event = next(&mut pod_events) => match event {
                Event::Init => listing.clear(),
                Event::InitApply(pod) => { let r = replica(&pod); listing.insert(r.name.clone(), r); }
                Event::InitDone => { replicas = std::mem::take(&mut listing); pods_listed = true; }
                Event::Apply(pod) => {
                    let r = replica(&pod);
                    if pod.metadata.deletion_timestamp.is_some() {
                        replicas.remove(&r.name);
                    } else {
                        replicas.insert(r.name.clone(), r);
                    }
                }
                Event::Delete(pod) => { replicas.remove(pod.metadata.name.as_deref().unwrap_or_default()); }
            },
            event = next(&mut deployment_events) => match event {
                Event::Init | Event::InitApply(_) => {}
                Event::InitDone => deployment_listed = true,
                Event::Apply(d) => desired = Some(spec_replicas(&d)),
                Event::Delete(_) => desired = None,
            },
        }
        // An initial list replaces the Deployment's replicas too (it may be gone).
        if !deployment_listed {
            continue;
        }
        let fleet = Fleet {
            synced: pods_listed,
            replicas: replicas
                .values()
                .filter(|r| !r.name.is_empty())
                .cloned()
                .collect(),
            desired,
        };
        out.send_if_modified(|current| {
            if **current == fleet {
                false
            } else {
                *current = Arc::new(fleet);
                true
            }
        });
    }
}

/// The next event; errors are logged and the watcher retries with backoff.
async fn next<K>(
    events: &mut (impl Stream<Item = Result<Event<K>, watcher::Error>> + Unpin),
) -> Event<K> {
    loop {
        match events.next().await {
            Some(Ok(event)) => return event,
            Some(Err(error)) => tracing::warn!(%error, "fleet watch failed; retrying"),
            None => std::future::pending::<()>().await,
        }
    }
}

fn spec_replicas(deployment: &Deployment) -> i32 {
    // The API server defaults `spec.replicas` to 1.
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

fn replica(pod: &Pod) -> Replica {
    let ready = pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let report = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .and_then(|text| ServingReport::parse(text));
    Replica {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready,
        report,
    }
}
