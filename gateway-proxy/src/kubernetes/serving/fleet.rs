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
    let mut pods = Pods::default();
    let mut desired: Option<i32> = None;
    let mut deployment_listed = false;
    loop {
        tokio::select! {
            event = next(&mut pod_events) => pods.on(event),
            event = next(&mut deployment_events) => match event {
                // A fleet whose Deployment cannot be read counts its Pods instead.
                Err(_) | Ok(Event::InitDone) => deployment_listed = true,
                Ok(Event::Init | Event::InitApply(_)) => {}
                Ok(Event::Apply(d)) => desired = Some(spec_replicas(&d)),
                Ok(Event::Delete(_)) => desired = None,
            },
        }
        // An initial list replaces the Deployment's replicas too (it may be gone).
        if !deployment_listed && pods.error.is_none() {
            continue;
        }
        let fleet = Fleet {
            synced: pods.listed,
            error: pods.error.clone(),
            replicas: pods.replicas.values().cloned().collect(),
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

/// The fleet's Pods as the watch tells them.
#[derive(Default)]
struct Pods {
    replicas: BTreeMap<String, Replica>,
    /// An initial list in progress.
    listing: BTreeMap<String, Replica>,
    listed: bool,
    /// Why the Pods cannot be listed, until they have been once: most often a missing grant,
    /// told in `Programmed`'s message rather than holding every status write back.
    error: Option<String>,
}

impl Pods {
    fn on(&mut self, event: Result<Event<Pod>, String>) {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                if !self.listed {
                    self.error = Some(error);
                }
                return;
            }
        };
        self.error = None;
        match event {
            Event::Init => self.listing.clear(),
            Event::InitApply(pod) => self.insert(&pod, true),
            Event::InitDone => {
                self.replicas = std::mem::take(&mut self.listing);
                self.listed = true;
            }
            Event::Apply(pod) if pod.metadata.deletion_timestamp.is_none() => {
                self.insert(&pod, false);
            }
            Event::Apply(pod) | Event::Delete(pod) => {
                self.replicas
                    .remove(pod.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    fn insert(&mut self, pod: &Pod, listing: bool) {
        let replica = replica(pod);
        if replica.name.is_empty() {
            return;
        }
        let into = if listing {
            &mut self.listing
        } else {
            &mut self.replicas
        };
        into.insert(replica.name.clone(), replica);
    }
}

/// The next event or error; after an error the watcher retries with backoff.
async fn next<K>(
    events: &mut (impl Stream<Item = Result<Event<K>, watcher::Error>> + Unpin),
) -> Result<Event<K>, String> {
    match events.next().await {
        Some(Ok(event)) => Ok(event),
        Some(Err(error)) => {
            tracing::warn!(%error, "fleet watch failed; retrying");
            Err(error.to_string())
        }
        None => std::future::pending().await,
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
