//! Controller tests against the test kit's API server over real HTTP: the requests each reconcile makes (apply bodies, field manager, owner references, pruning deletes), what the server stores, status written only when it changed, InvalidParameters and recovery, and a topology switch without a gap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_operator::controller::{Context, Scope, ServedClass, gateway, gatewayclass};
use gantry_operator::metrics::Metrics;
use gantry_operator::params::OperatorDefaults;
#[path = "support/context.rs"]
mod context;

use context::{client, context};
use gantry_testkit::apiserver::{ApiServer, Recorded};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const CLASS: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/gantry";
const GATEWAY: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/apps/gateways/web";
const CLASS_PARAMS: &str =
    "/apis/gantry.dev/v1alpha1/namespaces/gantry-system/gatewayparameters/fleet";
const DEDICATED: &str = "/apis/apps/v1/namespaces/apps/deployments/web-gantry";
const SHARED: &str = "/apis/apps/v1/namespaces/gantry-system/deployments/gantry-shared";
const LISTENER_SETS: &str = "/apis/gateway.networking.k8s.io/v1/listenersets";
/// The dedicated fleet's Lease, named as its proxies (`--gateway apps/web`) name it.
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/apps/leases/gantry-proxy-apps.web";
const SHARED_LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases/gantry-proxy-gantry";

fn class(parameters_ref: Option<Value>) -> Value {
    let mut class = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "gantry", "uid": "class-uid", "generation": 1},
        "spec": {"controllerName": "gantry.dev/gateway-controller"},
    });
    if let Some(r) = parameters_ref {
        class["spec"]["parametersRef"] = r;
    }
    class
}

fn class_params_ref() -> Value {
    json!({"group": "gantry.dev", "kind": "GatewayParameters", "name": "fleet", "namespace": "gantry-system"})
}

fn parameters(spec: Value) -> Value {
    json!({
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "GatewayParameters",
        "metadata": {"name": "fleet", "namespace": "gantry-system"},
        "spec": spec,
    })
}

fn gateway_object() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web", "namespace": "apps", "uid": "gateway-uid", "generation": 3},
        "spec": {
            "gatewayClassName": "gantry",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    })
}

fn stored<K: DeserializeOwned>(fake: &ApiServer, path: &str) -> Arc<K> {
    Arc::new(serde_json::from_value(fake.at(path).expect(path)).unwrap())
}

/// `METHOD path` of each call, leaving out the probes of which route and policy kinds are
/// served (lists of one object, for supportedFeatures).
fn lines(calls: &[Recorded]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| !c.query.contains("limit=1"))
        .map(Recorded::line)
        .collect()
}

fn status_patches(calls: &[Recorded]) -> Vec<&Recorded> {
    calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.ends_with("/status"))
        .collect()
}

fn available_deployment(generation: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x", "generation": generation},
        "spec": {"replicas": 1, "selector": {}, "template": {}},
        "status": {"observedGeneration": generation, "availableReplicas": 1},
    })
}

/// Reconciles the class as stored; the requests it made.
async fn reconcile_class(fake: &ApiServer) -> Vec<Recorded> {
    let class: Arc<GatewayClass> = stored(fake, CLASS);
    fake.take_requests();
    gatewayclass::reconcile(class, context(fake)).await.unwrap();
    let calls = fake.take_requests();
    assert_eq!(
        refused(&calls),
        Vec::<String>::new(),
        "every request succeeds"
    );
    calls
}

/// Reconciles the Gateway as stored; the requests it made.
async fn reconcile_gateway(fake: &ApiServer) -> Vec<Recorded> {
    let gateway: Arc<Gateway> = stored(fake, GATEWAY);
    fake.take_requests();
    gateway::reconcile(gateway, context(fake)).await.unwrap();
    let calls = fake.take_requests();
    assert_eq!(
        refused(&calls),
        Vec::<String>::new(),
        "every request succeeds"
    );
    calls
}

/// The managers of an object's fields: `(manager, operation, subresource)`.
fn managers(fake: &ApiServer, path: &str) -> Vec<String> {
    let object = fake.at(path).expect(path);
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {} {}",
                e["manager"].as_str().unwrap_or(""),
                e["operation"].as_str().unwrap_or(""),
                e["subresource"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

/// Every failed request: none is expected.
fn refused(calls: &[Recorded]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.status >= 400 && c.status != 404)
        .map(|c| format!("{} {}: {}", c.line(), c.status, c.body))
        .collect()
}

#[tokio::test]
async fn missing_parameters_make_the_class_invalid_until_they_exist() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));

    let calls = reconcile_class(&fake).await;
    assert_eq!(
        lines(&calls)[..2],
        [
            format!("GET {CLASS_PARAMS}"),
            format!("PATCH {CLASS}/status")
        ]
    );
    let patch = status_patches(&calls)[0];
    assert!(
        patch.query.contains("fieldManager=gantry-operator"),
        "{}",
        patch.query
    );
    assert!(patch.query.contains("force=true"));
    let condition = &patch.body["status"]["conditions"][0];
    assert_eq!(condition["type"], "Accepted");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "InvalidParameters");
    assert_eq!(
        condition["message"],
        "GatewayParameters gantry-system/fleet named by parametersRef does not exist"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.method == "POST" && c.path.contains("/events")),
        "an Event is recorded: {:?}",
        lines(&calls)
    );
    assert!(
        !calls.iter().any(|c| c.path.contains("clusterrole")),
        "nothing applied while invalid"
    );
    let stored_class = fake.at(CLASS).unwrap();
    assert_eq!(
        stored_class["status"]["conditions"][0]["reason"],
        "InvalidParameters"
    );
    assert_eq!(
        managers(&fake, CLASS),
        ["gantry-operator Apply status"],
        "the status is applied through the status subresource"
    );
    assert_eq!(
        fake.count("events", |e| e["reason"] == "InvalidParameters"),
        1
    );

    fake.put(CLASS_PARAMS, parameters(json!({})));
    let calls = reconcile_class(&fake).await;
    let patch = status_patches(&calls)[0];
    let status = &patch.body["status"];
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][0]["reason"], "Accepted");
    let names: Vec<&str> = status["supportedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        gantry_translate::features::supported(|_| true),
        "every feature, sorted by name, when every kind is served"
    );
    let applied: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.ends_with("/status"))
        .map(Recorded::line)
        .collect();
    assert_eq!(
        applied,
        ["PATCH /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/gantry-proxy-gantry"],
        "the operator binds the installed ClusterRole; it never writes a role"
    );
    let binding =
        fake.at("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/gantry-proxy-gantry");
    assert_eq!(
        binding.unwrap()["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gantry-proxy"})
    );

    let stored_class = fake.at(CLASS).unwrap();
    assert_eq!(
        stored_class["status"]["conditions"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the server merged the new Accepted over the old one"
    );
    assert_eq!(stored_class["status"]["conditions"][0]["status"], "True");

    // Nothing changed: the status is not written again.
    let calls = reconcile_class(&fake).await;
    assert!(status_patches(&calls).is_empty(), "{:?}", lines(&calls));
}

#[tokio::test]
async fn parameters_ref_to_another_kind_is_invalid_parameters() {
    let fake = ApiServer::start().await;
    fake.put(
        CLASS,
        class(Some(
            json!({"group": "", "kind": "ConfigMap", "name": "cfg", "namespace": "x"}),
        )),
    );
    let calls = reconcile_class(&fake).await;
    assert_eq!(
        lines(&calls)[0],
        format!("PATCH {CLASS}/status"),
        "no lookup of a wrong kind"
    );
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["reason"], "InvalidParameters");
    assert_eq!(
        condition["message"],
        "parametersRef must refer to gantry.dev/GatewayParameters, not core/ConfigMap"
    );
}

#[tokio::test]
async fn contradictory_parameters_are_invalid_and_a_fix_accepts_the_class() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(
        CLASS_PARAMS,
        parameters(
            json!({"service": {"type": "ClusterIP", "loadBalancerClass": "example.com/lb"}}),
        ),
    );
    let calls = reconcile_class(&fake).await;
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["reason"], "InvalidParameters");
    assert_eq!(
        condition["message"],
        "service.loadBalancerClass requires service.type LoadBalancer, not ClusterIP"
    );

    fake.put(
        CLASS_PARAMS,
        parameters(json!({"service": {"type": "ClusterIP"}})),
    );
    let calls = reconcile_class(&fake).await;
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["status"], "True");
}

#[tokio::test]
async fn a_broken_overlay_is_invalid_parameters_and_the_last_good_fleet_stays() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    let env_overlay = |value: &str| {
        json!({"overlays": {"deployment": [{"value": {"spec": {"template": {"spec": {
            "containers": [{"name": "proxy", "env": [{"name": "EXTRA", "value": value}]}]
        }}}}}]}})
    };
    fake.put(CLASS_PARAMS, parameters(env_overlay("one")));
    fake.put(GATEWAY, gateway_object());
    reconcile_gateway(&fake).await;
    let env = |fake: &ApiServer| {
        fake.at(DEDICATED).unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["name"] == "EXTRA")
            .map(|e| e["value"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(env(&fake), ["one"], "the overlay is applied");

    let mut broken = env_overlay("two");
    broken["overlays"]["deployment"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "JSONPatch", "value": [
            {"op": "replace", "path": "/spec/template/spec/containers/7/image", "value": "x"}
        ]}));
    fake.put(CLASS_PARAMS, parameters(broken));
    let calls = reconcile_gateway(&fake).await;
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "InvalidParameters");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("overlay 1 of Deployment web-gantry:"),
        "{message}"
    );
    assert_eq!(env(&fake), ["one"], "the last good Deployment stays");
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "PATCH" && c.path.contains("deployments")),
        "nothing is applied while an overlay is broken"
    );

    // Valid as JSON, refused by the API server: its message, through a dry run.
    let mut sidecar = env_overlay("two");
    sidecar["overlays"]["deployment"][0]["value"]["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "Log_Shipper", "image": "log-shipper:1"}));
    fake.put(CLASS_PARAMS, parameters(sidecar));
    let gateway: Arc<Gateway> = stored(&fake, GATEWAY);
    fake.take_requests();
    gateway::reconcile(gateway, context(&fake)).await.unwrap();
    let calls = fake.take_requests();
    let refusals: Vec<&Recorded> = calls.iter().filter(|c| c.status >= 400).collect();
    assert!(
        refusals.len() == 1 && refusals[0].query.contains("dryRun=All"),
        "only the dry run is refused: {refusals:?}"
    );
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["reason"], "InvalidParameters");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the overlays of Deployment web-gantry leave an object the API server refuses: Deployment.apps \"web-gantry\" is invalid: spec.template.spec.containers[1].name: Invalid value: \"Log_Shipper\""),
        "{message}"
    );
    assert_eq!(env(&fake), ["one"], "the dry run stored nothing");

    fake.put(CLASS_PARAMS, parameters(env_overlay("two")));
    reconcile_gateway(&fake).await;
    assert_eq!(env(&fake), ["two"]);
    let accepted = &fake.at(GATEWAY).unwrap()["status"]["conditions"];
    assert!(
        accepted
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["reason"] != "InvalidParameters"),
        "the refusal is withdrawn: {accepted}"
    );
}

#[tokio::test]
async fn a_drain_longer_than_the_grace_period_is_invalid_parameters() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(
        CLASS_PARAMS,
        parameters(json!({
            "deployment": {"terminationGracePeriodSeconds": 20},
            "proxy": {"shutdown": {"drainDelay": "5s", "drainTimeout": "15s"}},
        })),
    );
    let calls = reconcile_class(&fake).await;
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["reason"], "InvalidParameters");
    assert_eq!(
        condition["message"],
        "deployment.terminationGracePeriodSeconds (20) must exceed proxy.shutdown.drainDelay \
         (5s) plus proxy.shutdown.drainTimeout (15s) by at least 1s: the kubelet kills the \
         proxy when the grace period ends, before it has drained"
    );

    fake.put(
        CLASS_PARAMS,
        parameters(json!({
            "deployment": {"terminationGracePeriodSeconds": 21},
            "proxy": {"shutdown": {"drainDelay": "5s", "drainTimeout": "15s"}},
        })),
    );
    let calls = reconcile_class(&fake).await;
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["status"], "True");
}

#[tokio::test]
async fn class_of_another_controller_is_left_alone() {
    let fake = ApiServer::start().await;
    let mut other = class(None);
    other["spec"]["controllerName"] = json!("example.com/other");
    fake.put(CLASS, other);
    assert!(reconcile_class(&fake).await.is_empty());
}

#[tokio::test]
async fn dedicated_gateway_gets_its_fleet_applied_owned_and_pruned() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    fake.put(GATEWAY, gateway_object());

    let calls = reconcile_gateway(&fake).await;
    assert_eq!(
        lines(&calls),
        [
            format!("GET {CLASS}"),
            format!("GET {GATEWAY}"),
            format!("PATCH {GATEWAY}"),
            format!("GET {LISTENER_SETS}"),
            "PATCH /api/v1/namespaces/apps/serviceaccounts/web-gantry".to_string(),
            "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/web-gantry-leader-election"
                .to_string(),
            format!("PATCH {LEASE}"),
            "PATCH /api/v1/namespaces/apps/services/web-gantry".to_string(),
            format!("PATCH {DEDICATED}"),
            "DELETE /apis/autoscaling/v2/namespaces/apps/horizontalpodautoscalers/web-gantry"
                .to_string(),
            "DELETE /apis/policy/v1/namespaces/apps/poddisruptionbudgets/web-gantry".to_string(),
            format!("GET {DEDICATED}"),
            "GET /apis/apps/v1/namespaces/apps/daemonsets/web-gantry".to_string(),
            "GET /api/v1/namespaces/apps/services/web-gantry".to_string(),
        ],
        "the fleet finalizer first (on the Gateway read afresh); no status yet: no address to report, and Accepted belongs \
         to the proxy fleet; the ListenerSets are read for the ports they may add; the Lease \
         the proxies will hold is applied with an owner; both workload kinds are read (a switch \
         of kind retires the other)"
    );
    assert_eq!(
        fake.at(GATEWAY).unwrap()["metadata"]["finalizers"],
        json!(["gantry.dev/fleet-teardown"])
    );
    let lease = fake.at(LEASE).unwrap();
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        "gateway-uid"
    );
    assert!(lease.get("spec").is_none(), "the proxies write the spec");
    for apply in calls.iter().filter(|c| c.method == "PATCH") {
        assert!(
            apply.query.contains("fieldManager=gantry-operator"),
            "{}",
            apply.query
        );
    }
    let deployment = &calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path == DEDICATED)
        .unwrap()
        .body;
    assert_eq!(
        deployment["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "web",
            "uid": "gateway-uid", "controller": true, "blockOwnerDeletion": true,
        }])
    );
    assert_eq!(
        deployment["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"],
        "web"
    );
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[2], "--gateway");
    assert_eq!(args[3], "apps/web");

    let stored_deployment = fake.at(DEDICATED).unwrap();
    assert_eq!(
        stored_deployment["metadata"]["ownerReferences"][0]["uid"],
        "gateway-uid"
    );
    assert_eq!(managers(&fake, DEDICATED), ["gantry-operator Apply -"]);
    assert_eq!(stored_deployment["metadata"]["generation"], 1);

    // The Service gets a ClusterIP: the address is written; after that nothing changes.
    let mut service = fake
        .at("/api/v1/namespaces/apps/services/web-gantry")
        .unwrap();
    service["spec"]["clusterIP"] = json!("10.0.0.7");
    fake.put("/api/v1/namespaces/apps/services/web-gantry", service);
    let calls = reconcile_gateway(&fake).await;
    let status = &status_patches(&calls)[0].body["status"];
    assert_eq!(
        status["addresses"],
        json!([{"type": "IPAddress", "value": "10.0.0.7"}])
    );
    assert!(
        status.get("conditions").is_none() && status.get("listeners").is_none(),
        "only addresses are the operator's: {status}"
    );
    let stored_gateway = fake.at(GATEWAY).unwrap();
    assert_eq!(stored_gateway["status"]["addresses"], status["addresses"]);
    assert_eq!(
        fake.at("/api/v1/namespaces/apps/services/web-gantry")
            .unwrap()["spec"]["clusterIP"],
        "10.0.0.7",
        "the operator's apply leaves the ClusterIP it does not own"
    );
    let calls = reconcile_gateway(&fake).await;
    assert!(
        status_patches(&calls).is_empty(),
        "unchanged status is not rewritten"
    );
}

#[tokio::test]
async fn load_balancer_ingress_is_preferred_over_cluster_ip() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    fake.put(GATEWAY, gateway_object());
    reconcile_gateway(&fake).await;
    let mut service = fake
        .at("/api/v1/namespaces/apps/services/web-gantry")
        .unwrap();
    service["spec"]["clusterIP"] = json!("10.0.0.7");
    service["status"] = json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}});
    fake.put("/api/v1/namespaces/apps/services/web-gantry", service);
    let calls = reconcile_gateway(&fake).await;
    let status = &status_patches(&calls)[0].body["status"];
    assert_eq!(
        status["addresses"],
        json!([{"type": "Hostname", "value": "lb.example.com"}])
    );
}

#[tokio::test]
async fn static_addresses_go_on_the_service_and_into_the_gateway_status() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    let mut gateway = gateway_object();
    gateway["spec"]["addresses"] = json!([
        {"value": "192.0.2.10"},
        {"type": "IPAddress", "value": "2001:db8::10"},
    ]);
    fake.put(GATEWAY, gateway);
    reconcile_gateway(&fake).await;
    let path = "/api/v1/namespaces/apps/services/web-gantry";
    let mut service = fake.at(path).unwrap();
    assert_eq!(
        service["spec"]["externalIPs"],
        json!(["192.0.2.10", "2001:db8::10"])
    );
    service["spec"]["clusterIP"] = json!("10.0.0.7");
    fake.put(path, service);
    reconcile_gateway(&fake).await;
    assert_eq!(
        fake.at(GATEWAY).unwrap()["status"]["addresses"],
        json!([
            {"type": "IPAddress", "value": "192.0.2.10"},
            {"type": "IPAddress", "value": "2001:db8::10"},
        ]),
        "the requested addresses, not the ClusterIP"
    );
}

#[tokio::test]
async fn a_switch_to_a_daemon_set_keeps_the_deployment_until_the_daemon_set_serves() {
    const DAEMON_SET: &str = "/apis/apps/v1/namespaces/apps/daemonsets/web-gantry";
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(CLASS_PARAMS, parameters(json!({})));
    fake.put(GATEWAY, gateway_object());
    reconcile_gateway(&fake).await;
    assert!(fake.at(DEDICATED).is_some() && fake.at(DAEMON_SET).is_none());

    fake.put(CLASS_PARAMS, parameters(json!({"workload": "DaemonSet"})));
    let calls = reconcile_gateway(&fake).await;
    assert!(fake.at(DAEMON_SET).is_some(), "the DaemonSet is applied");
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path == DEDICATED),
        "the Deployment serves until the DaemonSet has an available pod"
    );

    let mut daemon_set = fake.at(DAEMON_SET).unwrap();
    daemon_set["metadata"]["generation"] = json!(1);
    daemon_set["status"] = json!({"observedGeneration": 1, "desiredNumberScheduled": 2,
        "numberAvailable": 1, "updatedNumberScheduled": 1, "currentNumberScheduled": 2,
        "numberMisscheduled": 0, "numberReady": 1});
    fake.put(DAEMON_SET, daemon_set);
    let calls = reconcile_gateway(&fake).await;
    let deletes: Vec<&Recorded> = calls.iter().filter(|c| c.method == "DELETE").collect();
    let deployment_delete = deletes
        .iter()
        .find(|c| c.path == DEDICATED)
        .expect("the Deployment goes once the DaemonSet serves");
    assert_eq!(deployment_delete.body["propagationPolicy"], "Foreground");
    assert!(fake.at(DEDICATED).unwrap()["metadata"]["deletionTimestamp"].is_string());
    assert!(fake.at(DAEMON_SET).is_some());
}

#[tokio::test]
async fn autoscaling_turned_off_removes_the_hpa() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(
        CLASS_PARAMS,
        parameters(json!({"autoscaling": {"maxReplicas": 4}})),
    );
    fake.put(GATEWAY, gateway_object());
    let hpa = "/apis/autoscaling/v2/namespaces/apps/horizontalpodautoscalers/web-gantry";

    let calls = reconcile_gateway(&fake).await;
    assert!(lines(&calls).contains(&format!("PATCH {hpa}")));
    let deployment = calls.iter().find(|c| c.path == DEDICATED).unwrap();
    assert!(
        deployment.body["spec"].get("replicas").is_none(),
        "replicas left to the HPA"
    );
    assert!(fake.at(hpa).is_some());

    fake.put(
        CLASS_PARAMS,
        parameters(json!({"autoscaling": {"enabled": false}})),
    );
    let calls = reconcile_gateway(&fake).await;
    assert!(lines(&calls).contains(&format!("DELETE {hpa}")));
    assert!(fake.at(hpa).is_none());
    let deployment = calls.iter().find(|c| c.path == DEDICATED).unwrap();
    assert_eq!(deployment.body["spec"]["replicas"], 1);
    assert_eq!(fake.at(DEDICATED).unwrap()["spec"]["replicas"], 1);

    // On again: the server removes `replicas`, which the operator no longer applies.
    fake.put(
        CLASS_PARAMS,
        parameters(json!({"autoscaling": {"maxReplicas": 4}})),
    );
    reconcile_gateway(&fake).await;
    assert!(
        fake.at(DEDICATED).unwrap()["spec"]
            .get("replicas")
            .is_none(),
        "replicas pruned by server-side apply"
    );
    assert!(fake.at(hpa).is_some());
}

#[tokio::test]
async fn gateway_with_missing_parameters_is_invalid_and_gets_an_event() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    let mut gateway = gateway_object();
    gateway["spec"]["infrastructure"] = json!({
        "parametersRef": {"group": "gantry.dev", "kind": "GatewayParameters", "name": "nope"}
    });
    fake.put(GATEWAY, gateway);
    let calls = reconcile_gateway(&fake).await;
    let condition = &status_patches(&calls)[0].body["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "InvalidParameters");
    assert_eq!(
        condition["message"],
        "GatewayParameters apps/nope named by parametersRef does not exist"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.method == "POST" && c.path.contains("/events"))
    );
    assert!(
        !calls.iter().any(|c| c.path.contains("deployments")),
        "no fleet while invalid"
    );
}

#[tokio::test]
async fn switch_to_shared_keeps_the_dedicated_fleet_until_the_shared_one_is_available() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(CLASS_PARAMS, parameters(json!({})));
    fake.put(GATEWAY, gateway_object());
    reconcile_gateway(&fake).await;
    assert!(fake.at(DEDICATED).is_some());

    fake.put(CLASS_PARAMS, parameters(json!({"topology": "Shared"})));
    // The class controller brings up the shared fleet, owned by the class.
    let calls = reconcile_class(&fake).await;
    let shared = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path == SHARED)
        .unwrap();
    let body = &shared.body;
    assert_eq!(
        body["metadata"]["ownerReferences"][0]["kind"],
        "GatewayClass"
    );
    let args = &body["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[2], "--gateway-class");
    assert_eq!(args[3], "gantry");
    let binding = calls
        .iter()
        .find(|c| c.path.ends_with("clusterrolebindings/gantry-proxy-gantry"))
        .unwrap();
    assert_eq!(
        binding.body["subjects"],
        json!([
            {"kind": "ServiceAccount", "name": "web-gantry", "namespace": "apps"},
            {"kind": "ServiceAccount", "name": "gantry-shared", "namespace": "gantry-system"},
        ]),
        "both fleets stay bound during the switch"
    );

    // Not available yet: the Gateway keeps its dedicated fleet.
    let calls = reconcile_gateway(&fake).await;
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "{:?}",
        lines(&calls)
    );
    assert!(fake.at(DEDICATED).is_some());

    // Available: the dedicated Deployment goes first, in the foreground (its pods drain with
    // their RBAC and Lease in place); the Gateway still reports the dedicated fleet.
    let mut deployment = fake.at(SHARED).unwrap();
    deployment["metadata"]["generation"] = json!(1);
    deployment["status"] = available_deployment(1)["status"].clone();
    fake.put(SHARED, deployment);
    let calls = reconcile_gateway(&fake).await;
    let deletes: Vec<&Recorded> = calls.iter().filter(|c| c.method == "DELETE").collect();
    assert_eq!(
        deletes.iter().map(|c| c.line()).collect::<Vec<_>>(),
        [format!("DELETE {DEDICATED}")],
        "the workload first"
    );
    assert_eq!(deletes[0].body["propagationPolicy"], "Foreground");
    assert!(fake.at(DEDICATED).unwrap()["metadata"]["deletionTimestamp"].is_string());
    assert!(fake.at(LEASE).is_some() && fake.at(SERVICE).is_some());
    let calls = reconcile_gateway(&fake).await;
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "nothing else while the pods drain: {:?}",
        lines(&calls)
    );

    // The garbage collector removes the Deployment once its pods are gone: then the rest.
    fake.delete("deployments", "apps", "web-gantry");
    let calls = reconcile_gateway(&fake).await;
    let deletes: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(Recorded::line)
        .collect();
    for gone in [
        LEASE,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/web-gantry-leader-election",
        "/api/v1/namespaces/apps/serviceaccounts/web-gantry",
        SERVICE,
    ] {
        assert!(deletes.contains(&format!("DELETE {gone}")), "{deletes:?}");
        assert!(fake.at(gone).is_none(), "{gone}");
    }
    assert_eq!(
        deletes.last(),
        Some(&format!("DELETE {SERVICE}")),
        "the Service last"
    );
    for patch in status_patches(&calls) {
        assert!(
            patch.body["status"]["conditions"].is_null(),
            "the operator claims no condition of a Gateway it serves: {}",
            patch.body
        );
    }
}

#[tokio::test]
async fn switch_to_dedicated_removes_the_shared_fleet_once_dedicated_fleets_are_available() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(CLASS_PARAMS, parameters(json!({"topology": "Shared"})));
    fake.put(GATEWAY, gateway_object());
    reconcile_class(&fake).await;
    assert!(fake.at(SHARED).is_some());

    fake.put(CLASS_PARAMS, parameters(json!({})));
    reconcile_gateway(&fake).await;
    assert!(fake.at(DEDICATED).is_some());
    let calls = reconcile_class(&fake).await;
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "dedicated fleet not available yet"
    );

    let mut deployment = fake.at(DEDICATED).unwrap();
    deployment["metadata"]["generation"] = json!(1);
    deployment["status"] = available_deployment(1)["status"].clone();
    fake.put(DEDICATED, deployment);
    let calls = reconcile_class(&fake).await;
    assert!(
        lines(&calls).contains(&format!("DELETE {SHARED}")),
        "{:?}",
        lines(&calls)
    );
    assert!(fake.at(SHARED).unwrap()["metadata"]["deletionTimestamp"].is_string());
    assert!(fake.at(SHARED_LEASE).is_some(), "kept while the pods drain");
    fake.delete("deployments", "gantry-system", "gantry-shared");
    reconcile_class(&fake).await;
    assert!(fake.at(SHARED_LEASE).is_none());
    assert!(fake.at(SHARED_SERVICE).is_none());
}

#[tokio::test]
async fn certificate_is_issued_for_a_missing_secret_and_pruned_with_its_listener() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(
        CLASS_PARAMS,
        parameters(json!({"certificates": {"issuerRef": {"name": "le", "kind": "ClusterIssuer"}}})),
    );
    let mut gateway = gateway_object();
    gateway["spec"]["listeners"] = json!([
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "www.example.com",
         "tls": {"certificateRefs": [{"name": "www-tls"}]}},
    ]);
    fake.put(GATEWAY, gateway.clone());
    let certificate = "/apis/cert-manager.io/v1/namespaces/apps/certificates/web-www-tls";

    let calls = reconcile_gateway(&fake).await;
    assert!(lines(&calls).contains(&"GET /api/v1/namespaces/apps/secrets/www-tls".to_string()));
    let apply = calls
        .iter()
        .find(|c| c.path == certificate)
        .expect("Certificate applied");
    let body = &apply.body;
    assert_eq!(body["spec"]["secretName"], "www-tls");
    assert_eq!(body["spec"]["dnsNames"], json!(["www.example.com"]));
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "gateway-uid");

    // The HTTPS listener goes away: its Certificate is found by label and deleted.
    gateway["spec"]["listeners"] = json!([{"name": "http", "port": 80, "protocol": "HTTP"}]);
    fake.put(GATEWAY, gateway);
    let calls = reconcile_gateway(&fake).await;
    assert!(
        calls.iter().any(|c| c.method == "GET"
            && c.path == "/apis/cert-manager.io/v1/namespaces/apps/certificates"
            && c.query.contains("labelSelector")),
        "{:?}",
        lines(&calls)
    );
    assert!(lines(&calls).contains(&format!("DELETE {certificate}")));
    assert!(fake.at(certificate).is_none());
}

const GRANTS_SECRETS_IN_CERTS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/certs/rolebindings/gantry-proxy-apps-web-gantry-secrets";
const GRANTS_SECRETS_IN_APPS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/gantry-proxy-apps-web-gantry-secrets";
const REFERENCE_GRANT: &str =
    "/apis/gateway.networking.k8s.io/v1beta1/namespaces/certs/referencegrants/gateways-in-apps";

fn https_gateway(certificate_refs: Value) -> Value {
    let mut gateway = gateway_object();
    gateway["spec"]["listeners"] = json!([
        {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "www.example.com",
         "tls": {"certificateRefs": certificate_refs}},
    ]);
    gateway
}

fn secret_grant() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "gateways-in-apps", "namespace": "certs"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "apps"}],
            "to": [{"group": "", "kind": "Secret"}],
        },
    })
}

/// `namespace/name` of every RoleBinding granting reads of Secrets or ConfigMaps.
fn read_grants(fake: &ApiServer) -> Vec<String> {
    let mut grants: Vec<String> = fake
        .objects("rolebindings")
        .iter()
        .filter(|b| b["metadata"]["labels"]["gantry.dev/grant"].is_string())
        .map(|b| {
            format!(
                "{}/{}",
                b["metadata"]["namespace"].as_str().unwrap(),
                b["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    grants.sort();
    grants
}

#[tokio::test]
async fn a_fleet_may_read_secrets_in_a_namespace_only_while_its_gateway_references_one_there() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    // Someone else's RoleBinding in the namespace: never touched.
    let foreign = "/apis/rbac.authorization.k8s.io/v1/namespaces/certs/rolebindings/readers";
    fake.put(
        foreign,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "readers", "namespace": "certs",
                         "labels": {"gantry.dev/grant": "secrets"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        }),
    );
    fake.put(
        GATEWAY,
        https_gateway(json!([{"name": "www-tls"}, {"name": "shared-tls", "namespace": "certs"}])),
    );

    // No ReferenceGrant: the Secret in `certs` cannot be used, so nothing is granted there.
    reconcile_class(&fake).await;
    assert_eq!(
        read_grants(&fake),
        ["apps/gantry-proxy-apps-web-gantry-secrets", "certs/readers"]
    );

    // `certs` grants it: the fleet may read Secrets there, through the installed ClusterRole.
    fake.put(REFERENCE_GRANT, secret_grant());
    let calls = reconcile_class(&fake).await;
    assert!(
        lines(&calls).contains(&format!("PATCH {GRANTS_SECRETS_IN_CERTS}")),
        "{:?}",
        lines(&calls)
    );
    let binding = fake.at(GRANTS_SECRETS_IN_CERTS).expect("granted in certs");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gantry-proxy-secrets"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "web-gantry", "namespace": "apps"}])
    );
    assert_eq!(
        binding["metadata"]["ownerReferences"][0]["kind"],
        "GatewayClass"
    );
    assert_eq!(
        managers(&fake, GRANTS_SECRETS_IN_CERTS),
        ["gantry-operator Apply -"]
    );

    // Nothing changed: nothing is deleted.
    let calls = reconcile_class(&fake).await;
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "{:?}",
        lines(&calls)
    );

    // The Gateway stops referencing `certs`: the grant there goes, the one at home stays.
    fake.put(GATEWAY, https_gateway(json!([{"name": "www-tls"}])));
    let calls = reconcile_class(&fake).await;
    let deletes: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(Recorded::line)
        .collect();
    assert_eq!(deletes, [format!("DELETE {GRANTS_SECRETS_IN_CERTS}")]);
    assert!(fake.at(GRANTS_SECRETS_IN_CERTS).is_none());
    assert!(fake.at(GRANTS_SECRETS_IN_APPS).is_some());

    // No TLS listener at all: nothing is granted anywhere, the foreign binding stays.
    fake.put(GATEWAY, gateway_object());
    reconcile_class(&fake).await;
    assert_eq!(read_grants(&fake), ["certs/readers"]);
    assert!(fake.at(foreign).is_some());
}

#[tokio::test]
async fn withdrawing_a_reference_grant_withdraws_the_fleets_read_access() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    fake.put(REFERENCE_GRANT, secret_grant());
    fake.put(
        GATEWAY,
        https_gateway(json!([{"name": "shared-tls", "namespace": "certs"}])),
    );
    reconcile_class(&fake).await;
    assert_eq!(
        read_grants(&fake),
        ["certs/gantry-proxy-apps-web-gantry-secrets"]
    );

    fake.delete("referencegrants", "certs", "gateways-in-apps");
    reconcile_class(&fake).await;
    assert_eq!(read_grants(&fake), Vec::<String>::new());
}

/// Resources a subject holding only Roles in one namespace cannot touch elsewhere: every
/// cluster-scoped kind, and every namespaced kind across namespaces (namespace `""`).
const CLUSTER_WIDE: &[&str] = &[
    "gatewayclasses",
    "namespaces",
    "clusterroles",
    "clusterrolebindings",
    "gateways",
    "gatewayparameters",
    "referencegrants",
    "backendtlspolicies",
    "listenersets",
    "deployments",
    "services",
    "serviceaccounts",
    "rolebindings",
    "secrets",
    "events",
];

fn namespaced_context(fake: &ApiServer, namespace: &str) -> Arc<Context> {
    Arc::new(Context::new(
        client(fake),
        OperatorDefaults {
            proxy_image: "gantry-proxy:test".to_string(),
            proxy_roles: gantry_operator::params::ProxyRoles::default(),
        },
        Arc::new(Metrics::new()),
        Scope::Namespace {
            namespace: namespace.to_string(),
            classes: vec![ServedClass::parse("gantry=fleet").unwrap()],
        },
    ))
}

/// Polls `check` until it holds (the controllers work in the background), for at most 20 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_namespace_scoped_install_reads_and_writes_only_its_namespace_and_binds_roles() {
    let fake = ApiServer::start().await;
    for resource in CLUSTER_WIDE {
        fake.forbid(resource, "");
    }
    // No GatewayClass exists: a namespace-scoped install takes its class from the command line.
    // The fleet obtains its certificates itself: the ACME role is bound too, as a Role.
    let mut params = parameters(
        json!({"certificates": {"acme": {"directory": "https://acme.example.com/directory"}}}),
    );
    params["metadata"]["namespace"] = json!("apps");
    params["metadata"]["uid"] = json!("params-uid");
    fake.apply("gatewayparameters", params);
    let mut gateway = gateway_object();
    gateway["spec"]["listeners"] = json!([{"name": "https", "port": 443, "protocol": "HTTPS",
        "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}}]);
    fake.apply("gateways", gateway);
    // Another namespace's Gateway of the same class is none of its business.
    let mut other = gateway_object();
    other["metadata"]["namespace"] = json!("elsewhere");
    fake.apply("gateways", other);

    let ctx = namespaced_context(&fake, "apps");
    let controllers = tokio::spawn(gantry_operator::controller::run::run(ctx));
    until("the fleet and its bindings", || {
        fake.get("deployments", "apps", "web-gantry").is_some()
            && fake
                .get(
                    "rolebindings",
                    "apps",
                    "gantry-proxy-apps-web-gantry-secrets",
                )
                .is_some()
            && fake
                .get("rolebindings", "apps", "gantry-proxy-apps-web-gantry-acme")
                .is_some()
    })
    .await;
    controllers.abort();

    let requests = fake.take_requests();
    let outside: Vec<String> = requests
        .iter()
        .filter(|r| !r.path.contains("/namespaces/apps/"))
        .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
        .collect();
    assert_eq!(outside, Vec::<String>::new(), "requests outside apps");
    assert_eq!(refused(&requests), Vec::<String>::new());
    assert!(fake.objects("clusterrolebindings").is_empty());
    assert!(fake.get("deployments", "elsewhere", "web-gantry").is_none());

    // Every binding is a RoleBinding of the proxies' Roles.
    let role = |name: &str| fake.get("rolebindings", "apps", name).unwrap()["roleRef"].clone();
    let role_ref =
        |name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name});
    assert_eq!(role("web-gantry-gateway-api"), role_ref("gantry-proxy"));
    assert_eq!(
        role("web-gantry-leader-election"),
        role_ref("gantry-proxy-leader-election")
    );
    let secrets = fake
        .get(
            "rolebindings",
            "apps",
            "gantry-proxy-apps-web-gantry-secrets",
        )
        .unwrap();
    assert_eq!(secrets["roleRef"], role_ref("gantry-proxy-secrets"));
    assert_eq!(
        role("gantry-proxy-apps-web-gantry-acme"),
        role_ref("gantry-proxy-acme")
    );
    assert_eq!(
        secrets["metadata"]["ownerReferences"][0]["kind"], "Gateway",
        "owned by the Gateway: no GatewayClass uid is known"
    );

    // The fleet watches only the namespace and is told its class.
    let deployment = fake.get("deployments", "apps", "web-gantry").unwrap();
    let args: Vec<String> = serde_json::from_value(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .unwrap();
    let joined = args.join(" ");
    assert!(joined.contains("--gateway apps/web"), "{joined}");
    assert!(joined.contains("--gateway-class gantry"), "{joined}");
    assert!(joined.contains("--watch-namespace apps"), "{joined}");
}

#[tokio::test]
async fn a_namespace_scoped_shared_fleet_is_owned_by_the_class_parameters() {
    let fake = ApiServer::start().await;
    for resource in CLUSTER_WIDE {
        fake.forbid(resource, "");
    }
    let mut params = parameters(json!({"topology": "Shared"}));
    params["metadata"]["namespace"] = json!("apps");
    params["metadata"]["uid"] = json!("params-uid");
    fake.apply("gatewayparameters", params);
    fake.apply("gateways", gateway_object());

    let ctx = namespaced_context(&fake, "apps");
    let class = Arc::new(ServedClass::parse("gantry=fleet").unwrap().class("apps"));
    fake.take_requests();
    gatewayclass::reconcile(class, ctx.clone()).await.unwrap();
    let calls = fake.take_requests();
    assert_eq!(refused(&calls), Vec::<String>::new());
    assert!(
        calls.iter().all(|c| c.path.contains("/namespaces/apps/")),
        "{:?}",
        lines(&calls)
    );
    assert!(
        !calls.iter().any(|c| c.path.contains("gatewayclasses")),
        "no GatewayClass read or status written: {:?}",
        lines(&calls)
    );
    let shared = fake.get("deployments", "apps", "gantry-shared").unwrap();
    let owner = &shared["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "GatewayParameters");
    assert_eq!(owner["uid"], "params-uid");
    let reads = fake
        .get("rolebindings", "apps", "gantry-shared-gateway-api")
        .unwrap();
    assert_eq!(reads["roleRef"]["kind"], "Role");
    assert_eq!(
        reads["subjects"][0],
        json!({"kind": "ServiceAccount", "name": "gantry-shared", "namespace": "apps"})
    );
}

/// supportedFeatures lists only what the cluster can use: a kind served at its newer version
/// only (TCPRoute at `v1`, as the v1.6 standard channel installs it) keeps its features; a kind
/// served at no version the proxy reads (UDPRoute) withdraws them.
#[tokio::test]
async fn supported_features_follow_the_kinds_the_cluster_serves() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    fake.unserve_version("tcproutes", "v1alpha2");
    fake.unserve("udproutes");

    let calls = reconcile_class(&fake).await;
    let patch = status_patches(&calls)[0];
    let names: Vec<&str> = patch.body["status"]["supportedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"TCPRoute"), "{names:?}");
    assert!(!names.contains(&"UDPRoute"), "{names:?}");
    assert!(names.contains(&"HTTPRoute"), "{names:?}");
    assert!(names.is_sorted(), "{names:?}");
    let probes: Vec<String> = calls
        .iter()
        .filter(|c| c.path.contains("tcproutes"))
        .map(|c| format!("{} {}", c.line(), c.status))
        .collect();
    assert_eq!(
        probes,
        ["GET /apis/gateway.networking.k8s.io/v1/tcproutes 200"],
        "the newest version is tried first"
    );
}

const SERVICE: &str = "/api/v1/namespaces/apps/services/web-gantry";
const SHARED_SERVICE: &str = "/api/v1/namespaces/gantry-system/services/gantry-shared";

/// The Gateway `apps/web` admitting ListenerSets `from` (Same, All, Selector, None).
fn admitting(from: &str) -> Value {
    let mut gateway = gateway_object();
    gateway["spec"]["allowedListeners"] = json!({"namespaces": {"from": from}});
    gateway
}

/// A ListenerSet `namespace/name` naming the Gateway `apps/web`, with `listeners`.
fn listener_set(namespace: &str, name: &str, listeners: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ListenerSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRef": {"name": "web", "namespace": "apps"}, "listeners": listeners},
    })
}

/// An HTTPS listener on 9443 and an HTTP one on the port the Gateway's own listener uses.
fn team_listeners() -> Value {
    json!([
        {"name": "app", "port": 9443, "protocol": "HTTPS", "hostname": "app.example.com",
         "tls": {"certificateRefs": [{"name": "app-tls"}]}},
        {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "app.example.com"},
    ])
}

/// `name port->targetPort/protocol` of each port of the stored Service at `path`.
fn service_ports(fake: &ApiServer, path: &str) -> Vec<String> {
    fake.at(path).expect(path)["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}->{}/{}",
                p["name"].as_str().unwrap(),
                p["port"],
                p["targetPort"],
                p["protocol"].as_str().unwrap()
            )
        })
        .collect()
}

/// `name containerPort/protocol` of each port of the stored Deployment's proxy container.
fn container_ports(fake: &ApiServer, path: &str) -> Vec<String> {
    fake.at(path).expect(path)["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}/{}",
                p["name"].as_str().unwrap(),
                p["containerPort"],
                p["protocol"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_listener_set_opens_its_ports_on_the_fleet_of_the_gateway_that_admits_it() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    fake.put(GATEWAY, admitting("Same"));
    fake.apply(
        "listenersets",
        listener_set("apps", "team", team_listeners()),
    );

    let calls = reconcile_gateway(&fake).await;
    assert_eq!(
        lines(&calls)[..4],
        [
            format!("GET {CLASS}"),
            format!("GET {GATEWAY}"),
            format!("PATCH {GATEWAY}"),
            format!("GET {LISTENER_SETS}")
        ],
        "the fleet finalizer, then the ListenerSets"
    );
    // Port 80, which the Gateway and the ListenerSet both use, is one Service port; below 1024
    // it is bound at port + 10000 in the pod, 9443 as declared (`gantry_translate::ports`).
    assert_eq!(
        service_ports(&fake, SERVICE),
        ["tcp-80 80->10080/TCP", "tcp-9443 9443->9443/TCP"]
    );
    assert_eq!(
        container_ports(&fake, DEDICATED),
        ["admin 9901/TCP", "tcp-80 10080/TCP", "tcp-9443 9443/TCP"]
    );

    // Deleted: the port goes from the Service and the container (server-side apply removes
    // what the operator stops applying).
    fake.delete("listenersets", "apps", "team");
    reconcile_gateway(&fake).await;
    assert_eq!(service_ports(&fake, SERVICE), ["tcp-80 80->10080/TCP"]);
    assert_eq!(
        container_ports(&fake, DEDICATED),
        ["admin 9901/TCP", "tcp-80 10080/TCP"]
    );
}

#[tokio::test]
async fn a_listener_set_its_gateway_does_not_admit_opens_no_port() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    // No allowedListeners: `from: None`, the default.
    fake.put(GATEWAY, gateway_object());
    fake.apply(
        "listenersets",
        listener_set("apps", "team", team_listeners()),
    );
    let udp = json!([{"name": "dns", "port": 53, "protocol": "UDP"}]);
    fake.apply("listenersets", listener_set("team", "dns", udp));
    reconcile_gateway(&fake).await;
    assert_eq!(service_ports(&fake, SERVICE), ["tcp-80 80->10080/TCP"]);

    // `Same`: the ListenerSet of the Gateway's namespace, not the one in `team`.
    fake.put(GATEWAY, admitting("Same"));
    reconcile_gateway(&fake).await;
    assert_eq!(
        service_ports(&fake, SERVICE),
        ["tcp-80 80->10080/TCP", "tcp-9443 9443->9443/TCP"]
    );

    // `Selector`: by the labels of the ListenerSet's namespace, read only for a selector.
    let mut gateway = admitting("Selector");
    gateway["spec"]["allowedListeners"]["namespaces"]["selector"] =
        json!({"matchLabels": {"listeners": "allowed"}});
    fake.put(GATEWAY, gateway);
    fake.apply(
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    );
    let calls = reconcile_gateway(&fake).await;
    assert!(
        lines(&calls).contains(&"GET /api/v1/namespaces".to_string()),
        "{:?}",
        lines(&calls)
    );
    assert_eq!(service_ports(&fake, SERVICE), ["tcp-80 80->10080/TCP"]);
    fake.apply(
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "team", "labels": {"listeners": "allowed"}}}),
    );
    reconcile_gateway(&fake).await;
    assert_eq!(
        service_ports(&fake, SERVICE),
        ["udp-53 53->10053/UDP", "tcp-80 80->10080/TCP"]
    );
}

#[tokio::test]
async fn a_listener_set_opens_its_ports_on_the_shared_fleet_of_its_class() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(CLASS_PARAMS, parameters(json!({"topology": "Shared"})));
    fake.put(GATEWAY, admitting("All"));
    fake.apply(
        "listenersets",
        listener_set("team", "team", team_listeners()),
    );

    reconcile_class(&fake).await;
    assert_eq!(
        service_ports(&fake, SHARED_SERVICE),
        ["tcp-80 80->10080/TCP", "tcp-9443 9443->9443/TCP"]
    );
    assert_eq!(
        container_ports(&fake, SHARED),
        ["admin 9901/TCP", "tcp-80 10080/TCP", "tcp-9443 9443/TCP"]
    );

    fake.delete("listenersets", "team", "team");
    reconcile_class(&fake).await;
    assert_eq!(
        service_ports(&fake, SHARED_SERVICE),
        ["tcp-80 80->10080/TCP"]
    );
}

/// Names in the GatewayClass's stored `status.supportedFeatures`.
fn supported_features(fake: &ApiServer) -> Vec<String> {
    fake.at(CLASS).unwrap()["status"]["supportedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn without_the_listener_set_crd_fleets_are_rendered_and_the_feature_is_not_advertised() {
    let fake = ApiServer::start().await;
    fake.unserve("listenersets");
    fake.put(CLASS, class(None));
    fake.put(GATEWAY, admitting("Same"));

    // `reconcile_gateway` fails the test on any error; the 404 of the list is all it gets.
    let calls = reconcile_gateway(&fake).await;
    let listed: Vec<String> = calls
        .iter()
        .filter(|c| c.path.contains("listenersets"))
        .map(|c| format!("{} {}", c.line(), c.status))
        .collect();
    assert_eq!(listed, [format!("GET {LISTENER_SETS} 404")]);
    assert_eq!(service_ports(&fake, SERVICE), ["tcp-80 80->10080/TCP"]);

    reconcile_class(&fake).await;
    let features = supported_features(&fake);
    assert!(
        !features.contains(&"ListenerSet".to_string()),
        "{features:?}"
    );
    assert!(features.contains(&"HTTPRoute".to_string()), "{features:?}");

    // Where the kind is served, the same class advertises it.
    let served = ApiServer::start().await;
    served.put(CLASS, class(None));
    reconcile_class(&served).await;
    let features = supported_features(&served);
    assert!(
        features.contains(&"ListenerSet".to_string()),
        "{features:?}"
    );
}

const POOLED_CLASS: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/pooled";
const API_GATEWAY: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/apps/gateways/api";
const POOLED_SERVICE: &str = "/api/v1/namespaces/gantry-system/services/pooled-shared";

/// Both controllers, cluster-wide, in the background; abort the handle to stop them.
fn run_controllers(fake: &ApiServer) -> (Arc<Context>, tokio::task::JoinHandle<()>) {
    let ctx = context(fake);
    let controllers = tokio::spawn(gantry_operator::controller::run::run(ctx.clone()));
    (ctx, controllers)
}

/// The Service port names of the stored Service at `path`, sorted (none while it does not
/// exist).
fn port_names(fake: &ApiServer, path: &str) -> Vec<String> {
    let mut names: Vec<String> = fake
        .at(path)
        .and_then(|s| s["spec"]["ports"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Reconciles that failed, from the operator's metrics: none is expected.
fn reconcile_errors(ctx: &Context) -> Vec<String> {
    ctx.metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("gantry_operator_reconcile_errors_total{"))
        .map(str::to_string)
        .collect()
}

/// Only the watches drive these changes (the controllers' resync is minutes away): a
/// ListenerSet created, moved to another Gateway and deleted re-renders the dedicated fleet of
/// one class and the shared fleet of another.
#[tokio::test]
async fn listener_set_changes_re_render_dedicated_and_shared_fleets() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    let mut pooled = class(Some(class_params_ref()));
    pooled["metadata"]["uid"] = json!("pooled-uid");
    fake.put(POOLED_CLASS, pooled);
    fake.put(CLASS_PARAMS, parameters(json!({"topology": "Shared"})));
    fake.put(GATEWAY, admitting("Same"));
    let mut api = admitting("Same");
    api["metadata"]["uid"] = json!("api-uid");
    api["spec"]["gatewayClassName"] = json!("pooled");
    fake.put(API_GATEWAY, api);

    let (ctx, controllers) = run_controllers(&fake);
    let ports = |path: &'static str, wanted: &'static [&'static str]| {
        let fake = &fake;
        move || port_names(fake, path) == wanted
    };
    until("both fleets", ports(SERVICE, &["tcp-80"])).await;
    until("both fleets", ports(POOLED_SERVICE, &["tcp-80"])).await;
    // Addresses: the Gateways are then reconciled again only when something they depend on
    // changes (no polling for an address).
    for (path, ip) in [(SERVICE, "10.0.0.7"), (POOLED_SERVICE, "10.0.0.8")] {
        let mut service = fake.at(path).unwrap();
        service["spec"]["clusterIP"] = json!(ip);
        fake.put(path, service);
    }
    until("both addresses", || {
        [GATEWAY, API_GATEWAY]
            .iter()
            .all(|g| fake.at(g).unwrap()["status"]["addresses"].is_array())
    })
    .await;

    let mut team = listener_set("apps", "team", team_listeners());
    fake.apply("listenersets", team.clone());
    let dns = json!([{"name": "dns", "port": 53, "protocol": "UDP"}]);
    let mut pooled_set = listener_set("apps", "dns", dns);
    pooled_set["spec"]["parentRef"]["name"] = json!("api");
    fake.apply("listenersets", pooled_set);
    until(
        "9443 on the dedicated fleet",
        ports(SERVICE, &["tcp-80", "tcp-9443"]),
    )
    .await;
    until(
        "53 on the shared fleet",
        ports(POOLED_SERVICE, &["tcp-80", "udp-53"]),
    )
    .await;

    // Moved to the other Gateway: the fleet it left closes the port, the other opens it.
    team["spec"]["parentRef"]["name"] = json!("api");
    fake.apply("listenersets", team);
    until(
        "9443 closed on the dedicated fleet",
        ports(SERVICE, &["tcp-80"]),
    )
    .await;
    until(
        "9443 on the shared fleet",
        ports(POOLED_SERVICE, &["tcp-80", "tcp-9443", "udp-53"]),
    )
    .await;

    fake.delete("listenersets", "apps", "team");
    fake.delete("listenersets", "apps", "dns");
    until(
        "the shared fleet's ports closed",
        ports(POOLED_SERVICE, &["tcp-80"]),
    )
    .await;
    controllers.abort();
    assert_eq!(reconcile_errors(&ctx), Vec::<String>::new());
    assert_eq!(refused(&fake.take_requests()), Vec::<String>::new());
}

/// Without the ListenerSet CRD, the watch and the lists find nothing, say so once, and no
/// reconcile fails: the fleet runs, and the class does not advertise ListenerSet.
#[tokio::test]
async fn without_the_listener_set_crd_the_controllers_run_without_errors() {
    let fake = ApiServer::start().await;
    fake.unserve("listenersets");
    fake.put(CLASS, class(None));
    fake.put(GATEWAY, admitting("Same"));

    let (ctx, controllers) = run_controllers(&fake);
    until("the fleet and the class status", || {
        port_names(&fake, SERVICE) == ["tcp-80"]
            && fake
                .at(CLASS)
                .is_some_and(|c| c["status"]["supportedFeatures"].is_array())
    })
    .await;
    controllers.abort();
    let features = supported_features(&fake);
    assert!(
        !features.contains(&"ListenerSet".to_string()),
        "{features:?}"
    );
    assert_eq!(reconcile_errors(&ctx), Vec::<String>::new());
    let requests = fake.take_requests();
    let unserved: Vec<u16> = requests
        .iter()
        .filter(|r| r.path.contains("listenersets"))
        .map(|r| r.status)
        .collect();
    assert!(
        !unserved.is_empty() && unserved.iter().all(|s| *s == 404),
        "{unserved:?}"
    );
    assert_eq!(refused(&requests), Vec::<String>::new());
}

/// A Namespace labelled after the fact: the Gateway selecting ListenerSet namespaces by that
/// label takes the ListenerSet there, and its fleet opens the port (the Namespace watch).
#[tokio::test]
async fn labelling_a_namespace_opens_the_ports_of_its_listener_sets_on_selecting_gateways() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    let mut gateway = admitting("Selector");
    gateway["spec"]["allowedListeners"]["namespaces"]["selector"] =
        json!({"matchLabels": {"listeners": "allowed"}});
    fake.put(GATEWAY, gateway);
    let team = |labels: Value| {
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "team", "labels": labels}})
    };
    fake.apply("namespaces", team(json!({})));
    fake.apply(
        "listenersets",
        listener_set(
            "team",
            "team",
            json!([{"name": "db", "port": 5432, "protocol": "TCP"}]),
        ),
    );

    let (ctx, controllers) = run_controllers(&fake);
    until("the fleet", || port_names(&fake, SERVICE) == ["tcp-80"]).await;
    let mut service = fake.at(SERVICE).unwrap();
    service["spec"]["clusterIP"] = json!("10.0.0.7");
    fake.put(SERVICE, service);
    until("the address", || {
        fake.at(GATEWAY).unwrap()["status"]["addresses"].is_array()
    })
    .await;

    fake.apply("namespaces", team(json!({"listeners": "allowed"})));
    until("5432 on the fleet", || {
        port_names(&fake, SERVICE) == ["tcp-5432", "tcp-80"]
    })
    .await;
    controllers.abort();
    assert_eq!(reconcile_errors(&ctx), Vec::<String>::new());
}

/// A Gateway moving to the shared fleet removes its dedicated fleet as soon as the shared one
/// is available, driven by the shared Deployment's events (or a short poll while the move is
/// pending), not by the resync minutes later, although it has an address and nothing else
/// about it changes.
#[tokio::test]
async fn a_move_to_the_shared_fleet_completes_when_the_shared_deployment_becomes_available() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(CLASS_PARAMS, parameters(json!({})));
    fake.put(GATEWAY, gateway_object());
    let (ctx, controllers) = run_controllers(&fake);
    until("the dedicated fleet", || fake.at(SERVICE).is_some()).await;
    let mut service = fake.at(SERVICE).unwrap();
    service["spec"]["clusterIP"] = json!("10.0.0.7");
    fake.put(SERVICE, service);
    until("the Gateway's address", || {
        fake.at(GATEWAY).unwrap()["status"]["addresses"][0]["value"] == "10.0.0.7"
    })
    .await;

    fake.put(CLASS_PARAMS, parameters(json!({"topology": "Shared"})));
    until("the shared fleet", || fake.at(SHARED).is_some()).await;
    assert!(
        fake.at(DEDICATED).is_some(),
        "removed before the shared fleet is available"
    );

    let mut deployment = fake.at(SHARED).unwrap();
    let generation = deployment["metadata"]["generation"].as_i64().unwrap();
    deployment["status"] = available_deployment(generation)["status"].clone();
    fake.put(SHARED, deployment);
    until("the dedicated Deployment deleted", || {
        fake.at(DEDICATED)
            .is_some_and(|d| d["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    // Its pods are gone: the garbage collector removes it, and the rest of the fleet follows.
    fake.delete("deployments", "apps", "web-gantry");
    until("the dedicated fleet removed", || {
        fake.at(SERVICE).is_none() && fake.at(LEASE).is_none()
    })
    .await;
    controllers.abort();
    assert_eq!(reconcile_errors(&ctx), Vec::<String>::new());
}

const CLASS_BINDING: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/gantry-proxy-gantry";
const LEADER_BINDING: &str =
    "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/web-gantry-leader-election";
const ACCOUNT: &str = "/api/v1/namespaces/apps/serviceaccounts/web-gantry";

/// Whether the class's ClusterRoleBinding grants the dedicated fleet's ServiceAccount.
fn fleet_bound(fake: &ApiServer) -> bool {
    fake.at(CLASS_BINDING).is_some_and(|b| {
        b["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "web-gantry")
    })
}

/// A deleted Gateway stays (finalizer) until its fleet's pods are gone: the Deployment goes
/// first, in the foreground, while the pods keep their ServiceAccount, RoleBindings, the
/// class's ClusterRoleBinding and their Lease; once the garbage collector has removed it, the
/// rest goes and then the finalizer.
#[tokio::test]
async fn a_deleted_gateway_loses_its_pods_before_their_rbac_and_lease() {
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(None));
    fake.put(GATEWAY, gateway_object());
    let (ctx, controllers) = run_controllers(&fake);
    until("the fleet, its Lease and its finalizer", || {
        fake.at(SERVICE).is_some()
            && fake.at(LEASE).is_some()
            && fleet_bound(&fake)
            && fake.at(GATEWAY).unwrap()["metadata"]["finalizers"]
                == json!(["gantry.dev/fleet-teardown"])
    })
    .await;
    fake.take_requests();

    let gateways: kube::Api<Gateway> = kube::Api::namespaced(client(&fake), "apps");
    gateways
        .delete("web", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    until("the Deployment deleted in the foreground", || {
        fake.at(DEDICATED)
            .is_some_and(|d| d["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    for kept in [SERVICE, LEASE, ACCOUNT, LEADER_BINDING, GATEWAY] {
        assert!(
            fake.at(kept).is_some(),
            "{kept} removed while the pods drain"
        );
    }
    assert!(
        fleet_bound(&fake),
        "the class binding dropped the draining fleet"
    );

    // The pods are gone: the garbage collector removes the Deployment.
    fake.delete("deployments", "apps", "web-gantry");
    until("the Gateway gone", || fake.at(GATEWAY).is_none()).await;
    for gone in [SERVICE, LEASE, ACCOUNT, LEADER_BINDING] {
        assert!(fake.at(gone).is_none(), "{gone} left behind");
    }
    until("the class binding without the fleet", || {
        !fleet_bound(&fake)
    })
    .await;
    let writes: Vec<String> = fake
        .take_requests()
        .iter()
        .filter(|c| c.method != "GET" && !c.path.contains("/events"))
        .map(Recorded::line)
        .collect();
    let at = |line: String| {
        writes
            .iter()
            .position(|w| *w == line)
            .unwrap_or_else(|| panic!("{line} not in {writes:#?}"))
    };
    let workload = at(format!("DELETE {DEDICATED}"));
    let finalizer = at(format!("PATCH {GATEWAY}"));
    for after in [LEASE, LEADER_BINDING, ACCOUNT, SERVICE] {
        let deleted = at(format!("DELETE {after}"));
        assert!(workload < deleted && deleted < finalizer, "{writes:#?}");
    }
    controllers.abort();
    assert_eq!(reconcile_errors(&ctx), Vec::<String>::new());
}

/// `namespace/name` of every RoleBinding of the ACME role.
fn acme_grants(fake: &ApiServer) -> Vec<String> {
    let mut grants: Vec<String> = fake
        .objects("rolebindings")
        .iter()
        .filter(|b| b["metadata"]["labels"]["gantry.dev/grant"] == "acme")
        .map(|b| {
            format!(
                "{}/{}",
                b["metadata"]["namespace"].as_str().unwrap(),
                b["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    grants.sort();
    grants
}

#[tokio::test]
async fn a_fleet_obtaining_its_certificates_is_bound_the_acme_role_where_it_writes_them_and_only_while_it_does()
 {
    const OWN_PARAMS: &str = "/apis/gantry.dev/v1alpha1/namespaces/apps/gatewayparameters/own";
    let fake = ApiServer::start().await;
    fake.put(CLASS, class(Some(class_params_ref())));
    fake.put(
        CLASS_PARAMS,
        parameters(json!({"certificates": {"acme": {
            "directory": "https://acme.example.com/directory",
        }}})),
    );
    fake.put(GATEWAY, admitting("All"));
    fake.apply(
        "listenersets",
        listener_set("team-a", "team", team_listeners()),
    );

    // The fleet's namespace (its ACME state Secret, and the Gateway's), and the namespace of
    // the ListenerSet its Gateway admits.
    reconcile_class(&fake).await;
    assert_eq!(
        acme_grants(&fake),
        [
            "apps/gantry-proxy-apps-web-gantry-acme",
            "team-a/gantry-proxy-apps-web-gantry-acme"
        ]
    );
    let binding = fake
        .get(
            "rolebindings",
            "team-a",
            "gantry-proxy-apps-web-gantry-acme",
        )
        .unwrap();
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gantry-proxy-acme"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "web-gantry", "namespace": "apps"}])
    );
    assert_eq!(
        binding["metadata"]["ownerReferences"][0]["kind"],
        "GatewayClass"
    );

    // The Gateway's own parameters choose cert-manager instead: both bindings go.
    fake.put(
        OWN_PARAMS,
        json!({
            "apiVersion": "gantry.dev/v1alpha1",
            "kind": "GatewayParameters",
            "metadata": {"name": "own", "namespace": "apps"},
            "spec": {"certificates": {"issuerRef": {"name": "letsencrypt"}}},
        }),
    );
    let mut gateway = admitting("All");
    gateway["spec"]["infrastructure"] = json!({"parametersRef":
        {"group": "gantry.dev", "kind": "GatewayParameters", "name": "own"}});
    fake.put(GATEWAY, gateway.clone());
    let calls = reconcile_class(&fake).await;
    assert!(
        lines(&calls).contains(&format!("GET {OWN_PARAMS}")),
        "{:?}",
        lines(&calls)
    );
    assert_eq!(acme_grants(&fake), Vec::<String>::new());
    // The read grants are untouched by it.
    assert!(
        fake.get(
            "rolebindings",
            "team-a",
            "gantry-proxy-apps-web-gantry-secrets"
        )
        .is_some()
    );

    // Its own parameters turn to ACME, and the Gateway no longer admits the ListenerSet: the
    // fleet is bound at home only.
    fake.put(
        OWN_PARAMS,
        json!({
            "apiVersion": "gantry.dev/v1alpha1",
            "kind": "GatewayParameters",
            "metadata": {"name": "own", "namespace": "apps"},
            "spec": {"certificates": {"acme": {"directory": "https://other.example.com/dir"}}},
        }),
    );
    gateway["spec"]["allowedListeners"] = json!({"namespaces": {"from": "Same"}});
    fake.put(GATEWAY, gateway);
    reconcile_class(&fake).await;
    assert_eq!(
        acme_grants(&fake),
        ["apps/gantry-proxy-apps-web-gantry-acme"]
    );
}
