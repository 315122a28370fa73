//! One Gateway status, two writers on one API server: the operator's Gateway reconciler (addresses, and `Accepted` only to refuse the Gateway) and the proxy's status writer (Accepted, Programmed, listeners), in both orders and repeatedly; neither removes what the other wrote, and a refusal by the operator is never overwritten.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use gantry_crds::gateway::gateways::Gateway;
use gantry_operator::controller::{Context, gateway as gateway_controller};
use gantry_operator::metrics::Metrics;
use gantry_operator::params::OperatorDefaults;
use gantry_proxy::kubernetes::status_writer::StatusWriter;
use gantry_proxy::source::SourceUpdate;
use gantry_translate::store::Store;
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::apiserver::fields::Element::{Field, Key};
use support::objects::{gateway, seed};
use support::{Client, desired, free_port, gw, start_backend, start_source, store_where, writer};
use tokio::sync::watch;

const STATUS_PATH: &str =
    "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/gw/status";

/// The two writers and what each last wrote, to check the stored status against.
struct Writers {
    server: ApiServer,
    updates: watch::Receiver<Option<SourceUpdate>>,
    proxy: StatusWriter,
    operator: Arc<Context>,
    /// After the operator's last write: its addresses (`None`: not written yet).
    addresses: Option<Value>,
    /// After the proxy's last write: its listener names (`None`: not written yet).
    listeners: Option<Vec<String>>,
}

impl Writers {
    fn stored(&self) -> Value {
        self.server.get("gateways", "default", "gw").unwrap()
    }

    /// Successful writes of the Gateway's status so far.
    fn status_writes(&self) -> usize {
        self.server
            .writes()
            .iter()
            .filter(|w| w.path == STATUS_PATH && w.status == 200)
            .count()
    }

    async fn operator_writes(&mut self) {
        self.operator_reconciles().await;
        let stored = self.stored();
        self.addresses = Some(stored["status"]["addresses"].clone());
        self.check("after the operator's write");
    }

    async fn operator_reconciles(&self) {
        let gateway: Gateway = serde_json::from_value(self.stored()).unwrap();
        gateway_controller::reconcile(Arc::new(gateway), self.operator.clone())
            .await
            .unwrap();
    }

    async fn proxy_writes(&mut self) {
        let before = self.status_writes();
        let version = self.stored()["metadata"]["resourceVersion"].clone();
        let store = self.store_at(&version).await;
        let written = self
            .proxy
            .reconcile(&store, &desired(&store))
            .await
            .unwrap();
        assert_eq!(written.gateways, 1, "the proxy wrote the status");
        assert_eq!(self.status_writes(), before + 1);
        let stored = self.stored();
        for type_ in ["Accepted", "Programmed"] {
            let written = condition(&stored, type_).expect(type_);
            assert_eq!(
                written["observedGeneration"],
                stored["metadata"]["generation"]
            );
        }
        self.listeners = Some(listener_names(&stored));
        self.check("after the proxy's write");
    }

    /// The proxy's store once it has seen the Gateway at `version`.
    async fn store_at(&self, version: &Value) -> Arc<Store> {
        store_where(&self.updates, "the Gateway's latest version", |s| {
            s.gateways
                .get(&gw())
                .and_then(|g| g.metadata.resource_version.as_deref())
                == version.as_str()
        })
        .await
    }

    /// Both writers' parts are in the stored status, each exactly once.
    fn check(&self, when: &str) {
        let stored = self.stored();
        let status = &stored["status"];
        let mut types = condition_types(&stored);
        types.sort();
        let mut expected = Vec::new();
        if self.listeners.is_some() {
            expected.push("Accepted");
            expected.push("Programmed");
        }
        assert_eq!(types, expected, "conditions {when}: {status}");
        if let Some(addresses) = &self.addresses {
            assert_eq!(
                &status["addresses"], addresses,
                "addresses {when}: {status}"
            );
        }
        if let Some(listeners) = &self.listeners {
            assert_eq!(
                &listener_names(&stored),
                listeners,
                "listeners {when}: {status}"
            );
            assert!(!listeners.is_empty());
        }
    }
}

fn condition(object: &Value, type_: &str) -> Option<Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn condition_types(object: &Value) -> Vec<String> {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["type"].as_str().unwrap().to_owned())
        .collect()
}

fn listener_names(object: &Value) -> Vec<String> {
    object["status"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Round `round`'s Gateway spec: a second listener in odd rounds, so the spec (and with it
/// every condition's observedGeneration) changes each round and the proxy's listeners[] grows
/// and shrinks.
fn gateway_spec(port: u16, round: u32) -> Value {
    let mut object = gateway("default", "gw", "gantry", port);
    if round % 2 == 1 {
        object["spec"]["listeners"].as_array_mut().unwrap().push(
            json!({"name": "extra", "protocol": "HTTP", "port": port + 1,
                         "allowedRoutes": {"namespaces": {"from": "All"}}}),
        );
    }
    object
}

/// The fleet's Service gets a new ClusterIP: the operator's addresses change.
fn assign_cluster_ip(server: &ApiServer, round: u32) {
    if let Some(mut service) = server.get("services", "default", "gw-gantry") {
        service["spec"]["clusterIP"] = json!(format!("10.0.0.{}", round + 1));
        server.apply("services", service);
    }
}

#[tokio::test]
async fn operator_and_proxy_keep_each_others_gateway_status() {
    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    let updates = start_source(&server);
    let operator = Arc::new(Context::new(
        server.client(),
        OperatorDefaults {
            proxy_image: "gantry-proxy:test".to_owned(),
            proxy_roles: gantry_operator::params::ProxyRoles::default(),
        },
        Arc::new(Metrics::new()),
        gantry_operator::controller::Scope::Cluster,
    ));
    let mut writers = Writers {
        proxy: writer(&server),
        server: server.clone(),
        updates,
        operator,
        addresses: None,
        listeners: None,
    };

    // First writes, one order; the operator's first has no address yet (no ClusterIP), so it
    // writes nothing.
    let before = writers.status_writes();
    writers.operator_writes().await;
    assert_eq!(writers.addresses, Some(Value::Null));
    assert_eq!(
        writers.status_writes(),
        before,
        "nothing for the operator to say"
    );
    writers.proxy_writes().await;

    for round in 1..=4 {
        server.apply("gateways", gateway_spec(port, round));
        assign_cluster_ip(&server, round);
        if round % 2 == 0 {
            writers.operator_writes().await;
            writers.proxy_writes().await;
        } else {
            writers.proxy_writes().await;
            writers.operator_writes().await;
        }
        let stored = writers.stored();
        assert_eq!(
            stored["status"]["addresses"],
            json!([{"type": "IPAddress", "value": format!("10.0.0.{}", round + 1)}])
        );
        let expected: &[&str] = if round % 2 == 1 {
            &["http", "extra"]
        } else {
            &["http"]
        };
        assert_eq!(listener_names(&stored), expected);
    }

    // Each manager owns exactly its own part of the Gateway's status.
    let entries = server.managed_fields("gateways", "default", "gw");
    let owned = |manager: &str| -> Vec<String> {
        // Every entry of the manager: the operator also owns the Gateway's fleet finalizer
        // (metadata, by an update of the object itself).
        let mut parts: Vec<String> = entries
            .iter()
            .filter(|e| e.manager == manager)
            .flat_map(|e| e.fields.iter())
            .filter_map(|path| match path.as_slice() {
                [Field(s), Field(c), Key(k)] if s == "status" && c == "conditions" => {
                    Some(format!("condition {k}"))
                }
                [Field(s), Field(f), ..] if s == "status" => Some(f.clone()),
                _ => None,
            })
            .collect();
        parts.sort();
        parts.dedup();
        parts
    };
    assert_eq!(owned("gantry-operator"), ["addresses"]);
    assert_eq!(
        owned("gantry-proxy"),
        [
            r#"condition {"type":"Accepted"}"#,
            r#"condition {"type":"Programmed"}"#,
            "conditions",
            "listeners"
        ]
    );
}

/// The operator refuses a Gateway whose parametersRef names nothing (`InvalidParameters`); the
/// proxy, which does not resolve parameters in Kubernetes mode, leaves that `Accepted` alone
/// however often it writes. Once the reference is fixed the operator gives the condition up
/// and the proxy's `Accepted` takes its place: one owner at a time, no flapping.
#[tokio::test]
async fn an_operator_refusal_stands_until_the_operator_lifts_it() {
    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    let updates = start_source(&server);
    let operator = Arc::new(Context::new(
        server.client(),
        OperatorDefaults {
            proxy_image: "gantry-proxy:test".to_owned(),
            proxy_roles: gantry_operator::params::ProxyRoles::default(),
        },
        Arc::new(Metrics::new()),
        gantry_operator::controller::Scope::Cluster,
    ));
    let mut writers = Writers {
        proxy: writer(&server),
        server: server.clone(),
        updates,
        operator,
        addresses: None,
        listeners: None,
    };
    writers.proxy_writes().await;

    let mut refused = gateway_spec(port, 0);
    refused["spec"]["infrastructure"] = json!({"parametersRef": {"group": "gantry.dev", "kind": "GatewayParameters", "name": "absent"}});
    server.apply("gateways", refused);
    writers.operator_reconciles().await;
    let accepted = |server: &ApiServer| {
        let stored = server.get("gateways", "default", "gw").unwrap();
        let c = condition(&stored, "Accepted").expect("Accepted");
        (
            c["reason"].as_str().unwrap().to_owned(),
            c["observedGeneration"] == stored["metadata"]["generation"],
        )
    };
    assert_eq!(accepted(&server), ("InvalidParameters".to_owned(), true));
    for _ in 0..2 {
        let version = writers.stored()["metadata"]["resourceVersion"].clone();
        let store = writers.store_at(&version).await;
        writers
            .proxy
            .reconcile(&store, &desired(&store))
            .await
            .unwrap();
        assert_eq!(
            accepted(&server),
            ("InvalidParameters".to_owned(), true),
            "the proxy leaves the refusal alone"
        );
    }

    server.apply("gateways", gateway_spec(port, 0));
    writers.operator_reconciles().await;
    let stored = writers.stored();
    assert!(
        condition(&stored, "Accepted").is_none_or(|c| c["reason"] != "InvalidParameters"),
        "the operator lifted its refusal: {}",
        stored["status"]
    );
    writers.proxy_writes().await;
    assert_eq!(accepted(&server), ("Accepted".to_owned(), true));
}
