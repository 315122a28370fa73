//! ACME in Kubernetes mode: the fleet's leader orders, every replica answers.
//!
//! - The fleet's ACME state (account, orders in progress, challenge answers) is one Secret,
//!   `<lease-name>-acme` of type `gantry.dev/acme-state` in the fleet's namespace, owned by
//!   the fleet's Lease (so it goes with the fleet). Every replica watches it and answers
//!   HTTP-01 and TLS-ALPN-01 validations from it, so the CA may reach any replica; only the
//!   leader writes it.
//! - An issued certificate is written, by server-side apply (field manager `gantry-acme`,
//!   forced only over a placeholder whose listener opted in), as the `kubernetes.io/tls`
//!   Secret the listener names, annotated `gantry.dev/acme-directory`; every replica serves it
//!   through its Secret watch.
//! - Issuances and failures are Events on the Gateways whose listeners name the Secret.
//!
//! Why the fleet and not the operator: the fleet already watches these Secrets, answers the
//! validations and writes the listeners' status; its grant (`<prefix>-acme`) is bound only
//! in its own namespace and its Gateways' (docs/acme.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use ::kube::runtime::watcher::{self, Event};
use arc_swap::ArcSwap;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;
use tokio::sync::watch;

use crate::acme::SharedState;
use crate::acme_manager::{CertificateEvent, Cluster};

/// The field manager of the certificate Secrets the leader writes.
pub const FIELD_MANAGER: &str = "gantry-acme";

/// The type of the fleet's ACME state Secret.
pub const STATE_TYPE: &str = "gantry.dev/acme-state";

/// After publishing a challenge answer, how long the leader waits before telling the CA to
/// validate, once its own watch has shown the answer: the other replicas' watches get the
/// same event from the API server, and this covers their lag.
const ANSWER_SETTLE: Duration = Duration::from_millis(300);

/// The most the leader waits for its own watch to show a write.
const SEEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of a fleet's ACME state Secret.
pub fn state_secret_name(lease_name: &str) -> String {
    format!("{lease_name}-acme")
}

/// The fleet's ACME state Secret, as every replica's watch last showed it.
pub struct KubeState {
    api: Api<Secret>,
    lease: Api<Lease>,
    name: String,
    lease_name: String,
    entries: ArcSwap<BTreeMap<String, String>>,
    /// The newest resourceVersion the cache holds (a write's answer, or the watch's).
    version: watch::Sender<u64>,
    /// The newest resourceVersion this replica's watch has shown.
    watched: watch::Sender<u64>,
}

impl KubeState {
    /// Starts watching the state Secret `name` in `namespace` (owned by the Lease
    /// `lease_name`); the watch runs until the process ends.
    pub fn start(client: ::kube::Client, namespace: &str, lease_name: &str) -> Arc<Self> {
        let name = state_secret_name(lease_name);
        let state = Arc::new(Self {
            api: Api::namespaced(client.clone(), namespace),
            lease: Api::namespaced(client, namespace),
            name,
            lease_name: lease_name.to_owned(),
            entries: ArcSwap::default(),
            version: watch::channel(0).0,
            watched: watch::channel(0).0,
        });
        tokio::spawn(Arc::clone(&state).watch());
        state
    }

    async fn watch(self: Arc<Self>) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut events = watcher::watcher(self.api.clone(), config)
            .default_backoff()
            .boxed();
        let mut listed: Option<Secret> = None;
        while let Some(event) = events.next().await {
            let shown = match event {
                Ok(Event::Apply(secret)) => Some(secret),
                Ok(Event::Delete(_)) => None,
                Ok(Event::Init) => {
                    listed = None;
                    continue;
                }
                Ok(Event::InitApply(secret)) => {
                    listed = Some(secret);
                    continue;
                }
                Ok(Event::InitDone) => listed.take(),
                Err(error) => {
                    tracing::warn!(secret = self.name, %error, "watching the ACME state Secret");
                    continue;
                }
            };
            self.observe(shown.as_ref());
            let version = shown.as_ref().map_or(0, resource_version);
            self.watched.send_modify(|v| *v = (*v).max(version));
        }
    }

    /// Takes `secret` (none: deleted) into the cache unless the cache already holds a newer
    /// version (the answer to this replica's own write).
    fn observe(&self, secret: Option<&Secret>) {
        let version = secret.map_or(0, resource_version);
        if secret.is_some() && version != 0 && version < *self.version.borrow() {
            return;
        }
        self.entries
            .store(Arc::new(secret.map(decode).unwrap_or_default()));
        self.version.send_modify(|v| *v = (*v).max(version));
    }

    /// Waits (bounded) until this replica's watch has shown `version`.
    async fn seen(&self, version: u64) {
        let mut seen = self.watched.subscribe();
        let _ = tokio::time::timeout(SEEN_TIMEOUT, seen.wait_for(|v| *v >= version)).await;
    }

    async fn write(&self, writes: &[(String, Option<String>)]) -> Result<Secret, ::kube::Error> {
        let data: serde_json::Map<String, serde_json::Value> = writes
            .iter()
            .map(|(key, value)| {
                let value = value.as_ref().map_or(serde_json::Value::Null, |v| {
                    serde_json::Value::String(base64_encode(v.as_bytes()))
                });
                (key.clone(), value)
            })
            .collect();
        let patch = json!({ "data": data });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(::kube::Error::Api(status)) if status.code == 404 => {}
            other => return other,
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                owner_references: self.owner().await.map(|o| vec![o]),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "gantry".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some(STATE_TYPE.to_owned()),
            data: Some(
                writes
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), ByteString(v.clone()?.into_bytes()))))
                    .collect(),
            ),
            ..Secret::default()
        };
        match self.api.create(&PostParams::default(), &secret).await {
            // Created meanwhile (by a previous leader's last write): patch it.
            Err(::kube::Error::Api(status)) if status.code == 409 => {
                self.api
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
            other => other,
        }
    }

    /// The fleet's Lease as the state's owner, so the state goes with the fleet; none when
    /// the Lease cannot be read.
    async fn owner(&self) -> Option<OwnerReference> {
        let lease = self.lease.get(&self.lease_name).await.ok()?;
        Some(OwnerReference {
            api_version: "coordination.k8s.io/v1".to_owned(),
            kind: "Lease".to_owned(),
            name: self.lease_name.clone(),
            uid: lease.metadata.uid?,
            ..OwnerReference::default()
        })
    }
}

impl SharedState for KubeState {
    fn get(&self, key: &str) -> Option<String> {
        self.entries.load().get(key).cloned()
    }

    fn set(&self, writes: Vec<(String, Option<String>)>) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let secret = self.write(&writes).await.map_err(|e| {
                std::io::Error::other(format!("writing the ACME state Secret {}: {e}", self.name))
            })?;
            let version = resource_version(&secret);
            self.observe(Some(&secret));
            let answers = writes.iter().any(|(key, value)| {
                value.is_some() && (key.starts_with("http-01.") || key.starts_with("tls-alpn-01."))
            });
            if answers {
                // Every replica must answer before the CA is told to validate.
                self.seen(version).await;
                tokio::time::sleep(ANSWER_SETTLE).await;
            }
            Ok(())
        })
    }
}

/// The cluster side of the ACME manager for one fleet.
pub struct KubeAcme {
    client: ::kube::Client,
    state: Arc<KubeState>,
    leading: watch::Receiver<bool>,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeAcme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeAcme")
            .field("state", &self.state.name)
            .finish_non_exhaustive()
    }
}

impl KubeAcme {
    pub fn new(
        client: ::kube::Client,
        state: Arc<KubeState>,
        leading: watch::Receiver<bool>,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: "gantry-proxy".to_owned(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            state,
            leading,
        }
    }
}

impl Cluster for KubeAcme {
    fn state(&self) -> Arc<dyn SharedState> {
        self.state.clone()
    }

    fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    fn write_secret(&self, secret: Secret, take_over: bool) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let namespace = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
            let mut body = serde_json::to_value(&secret).map_err(|e| e.to_string())?;
            body["apiVersion"] = json!("v1");
            body["kind"] = json!("Secret");
            // Not forced: a Secret someone else wrote is theirs (a conflict is the answer),
            // unless its listener opted in to have it replaced.
            let params = if take_over {
                PatchParams::apply(FIELD_MANAGER).force()
            } else {
                PatchParams::apply(FIELD_MANAGER)
            };
            api.patch(&name, &params, &Patch::Apply(&body))
                .await
                .map(drop)
                .map_err(|e| match e {
                    ::kube::Error::Api(status) if status.code == 409 => format!(
                        "{namespace}/{name} is managed by someone else ({}); delete it, or \
                         name another Secret in certificateRefs",
                        status.message
                    ),
                    other => other.to_string(),
                })
        })
    }

    fn publish(&self, event: CertificateEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let note: String = event.note.chars().take(1000).collect();
            for gateway in &event.gateways {
                let reference = ObjectReference {
                    api_version: Some("gateway.networking.k8s.io/v1".to_owned()),
                    kind: Some("Gateway".to_owned()),
                    name: Some(gateway.name.clone()),
                    namespace: Some(gateway.namespace.clone()),
                    ..ObjectReference::default()
                };
                let kube_event = KubeEvent {
                    type_: if event.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.reason.to_owned(),
                    note: Some(note.clone()),
                    action: "IssueCertificate".to_owned(),
                    secondary: None,
                };
                if let Err(error) = self.recorder.publish(&kube_event, &reference).await {
                    tracing::warn!(%gateway, %error, "could not publish the certificate Event");
                }
            }
        })
    }
}

fn resource_version(secret: &Secret) -> u64 {
    secret
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The Secret's entries as text (an entry that is not UTF-8 is not ours and is skipped).
fn decode(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
