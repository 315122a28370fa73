//! Leader election against the test kit's API server: two operator instances (two controller
//! runs with distinct identities in one process) compete for one Lease; only the holder
//! reconciles and writes, a standby takes over when the leader shuts down (releasing the
//! Lease) and reconciles what changes after, and a leader that loses the Lease stops at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gantry_lease::LeaseConfig;
use gantry_operator::controller::{Context, run};
use gantry_operator::leader::{self, Election, Ended};
#[path = "support/context.rs"]
mod context;

use context::{client, context};
use gantry_testkit::apiserver::ApiServer;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CLASS: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/gantry";
const GATEWAY: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/apps/gateways/web";
const SERVICE: &str = "/api/v1/namespaces/apps/services/web-gantry";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases/gantry-operator";

fn gateway(ports: &[u16]) -> Value {
    let listeners: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": format!("l{p}"), "port": p, "protocol": "HTTP"}))
        .collect();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web", "namespace": "apps", "uid": "gateway-uid"},
        "spec": {"gatewayClassName": "gantry", "listeners": listeners},
    })
}

fn cluster(fake: &ApiServer) {
    fake.put(
        CLASS,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "gantry", "uid": "class-uid"},
            "spec": {"controllerName": "gantry.dev/gateway-controller"},
        }),
    );
    fake.put(GATEWAY, gateway(&[80]));
}

/// One operator instance: its context (metrics), the end of its `lead`, and its shutdown.
struct Instance {
    ctx: Arc<Context>,
    task: JoinHandle<Ended>,
    stop: Option<oneshot::Sender<()>>,
}

impl Instance {
    fn start(fake: &ApiServer, identity: &str) -> Self {
        let ctx = context(fake);
        let election = Election {
            lease: LeaseConfig {
                namespace: "gantry-system".into(),
                name: "gantry-operator".into(),
                identity: identity.into(),
                duration: Duration::from_secs(2),
                renew_every: Duration::from_millis(100),
            },
            renew_deadline: Duration::from_millis(1500),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let run_ctx = ctx.clone();
        let task = tokio::spawn(leader::lead(
            client(fake),
            election,
            ctx.metrics.clone(),
            move || run::run(run_ctx),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            ctx,
            task,
            stop: Some(stop),
        }
    }

    fn metric(&self, name: &str) -> i64 {
        self.ctx
            .metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as i64)
            .sum()
    }

    fn leads(&self) -> bool {
        self.metric("gantry_operator_leader ") == 1
    }

    /// Reconciles this instance started, over both controllers.
    fn reconciles(&self) -> i64 {
        self.metric("gantry_operator_reconciles_total{")
    }

    async fn shut_down(mut self) -> Ended {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

/// Polls `check` until it holds, for at most 20 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn holder(fake: &ApiServer) -> String {
    fake.at(LEASE).unwrap()["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Successful Lease writes naming `identity` as the holder.
fn renewals_by(fake: &ApiServer, identity: &str) -> usize {
    fake.writes()
        .iter()
        .filter(|w| {
            w.path.contains("/leases/")
                && w.status < 300
                && w.body["spec"]["holderIdentity"] == identity
        })
        .count()
}

fn service_ports(fake: &ApiServer) -> Vec<i64> {
    fake.at(SERVICE)
        .and_then(|s| s["spec"]["ports"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["port"].as_i64())
        .collect()
}

#[tokio::test]
async fn only_the_leader_writes_and_a_standby_takes_over_when_it_shuts_down() {
    let fake = ApiServer::start().await;
    cluster(&fake);
    let a = Instance::start(&fake, "operator-a");
    until("operator-a to lead and apply the fleet", || {
        a.leads() && service_ports(&fake) == [80]
    })
    .await;
    assert_eq!(holder(&fake), "operator-a");

    let b = Instance::start(&fake, "operator-b");
    // operator-b tries as often as operator-a renews: after five renewals it has tried and
    // stood by several times.
    let before = renewals_by(&fake, "operator-a");
    until("operator-a to renew five more times", || {
        renewals_by(&fake, "operator-a") >= before + 5
    })
    .await;
    assert!(a.leads(), "the leader lost the Lease while renewing");
    assert!(!b.leads(), "two leaders at once");
    assert_eq!(b.reconciles(), 0, "a standby reconciles nothing");
    assert_eq!(renewals_by(&fake, "operator-b"), 0);

    // SIGTERM: operator-a cancels its controllers and releases the Lease; operator-b takes
    // over at its next try, not after the lease duration.
    let a_metrics = a.ctx.clone();
    assert_eq!(a.shut_down().await, Ended::Shutdown);
    assert!(
        a_metrics
            .metrics
            .encode()
            .contains("gantry_operator_leader 0")
    );
    let a_reconciles = a_metrics
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("gantry_operator_reconciles_total{"))
        .map(str::to_string)
        .collect::<Vec<_>>();
    until("operator-b to lead", || b.leads()).await;
    assert_eq!(holder(&fake), "operator-b");
    let takeover = fake
        .writes()
        .iter()
        .filter(|w| w.path.ends_with("/leases/gantry-operator") && w.status < 300)
        .map(|w| w.body["spec"]["holderIdentity"].clone())
        .collect::<Vec<_>>();
    let released = takeover.iter().rposition(Value::is_null).unwrap();
    assert_eq!(
        takeover[released + 1],
        json!("operator-b"),
        "the released Lease is the one operator-b takes: {takeover:?}"
    );

    // operator-b reconciles a change made after it took over.
    fake.put(GATEWAY, gateway(&[80, 8080]));
    until("operator-b to open 8080", || {
        service_ports(&fake) == [80, 8080]
    })
    .await;
    assert!(b.reconciles() > 0);
    let a_after = a_metrics
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("gantry_operator_reconciles_total{"))
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(a_after, a_reconciles, "a stopped leader reconciles nothing");
    // One writer at a time: no write of the fleet met a conflict.
    let conflicts: Vec<String> = fake
        .writes()
        .iter()
        .filter(|w| w.status == 409 && !w.path.contains("/leases/"))
        .map(|w| w.line())
        .collect();
    assert_eq!(conflicts, Vec::<String>::new());
    assert_eq!(b.shut_down().await, Ended::Shutdown);
    assert_eq!(holder(&fake), "", "released on shutdown");
}

#[tokio::test]
async fn a_leader_that_loses_the_lease_stops_writing_at_once() {
    let fake = ApiServer::start().await;
    cluster(&fake);
    let a = Instance::start(&fake, "operator-a");
    until("operator-a to lead and apply the fleet", || {
        a.leads() && service_ports(&fake) == [80]
    })
    .await;

    // Another holder appears (a replica that saw the Lease expire while operator-a was cut
    // off): operator-a sees it at its next renewal and stops.
    let mut lease = fake.at(LEASE).unwrap();
    lease["spec"]["holderIdentity"] = json!("operator-z");
    lease["spec"]["renewTime"] = json!("2026-01-01T00:00:00.000000Z");
    fake.put(LEASE, lease);
    let ended = tokio::time::timeout(Duration::from_secs(10), a.task)
        .await
        .expect("operator-a to notice")
        .unwrap();
    assert_eq!(ended, Ended::Lost);
    assert!(a.ctx.metrics.encode().contains("gantry_operator_leader 0"));
    assert_eq!(holder(&fake), "operator-z", "a lost Lease is not released");
    let a_reconciles = a.ctx.metrics.encode();

    // A change now is reconciled by operator-b once operator-z's Lease expires, never by
    // operator-a.
    fake.put(GATEWAY, gateway(&[80, 8080]));
    let b = Instance::start(&fake, "operator-b");
    until("operator-b to take over and open 8080", || {
        b.leads() && service_ports(&fake) == [80, 8080]
    })
    .await;
    let reconciles = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("gantry_operator_reconciles_total{"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        reconciles(&a.ctx.metrics.encode()),
        reconciles(&a_reconciles)
    );
    assert_eq!(b.shut_down().await, Ended::Shutdown);
}
