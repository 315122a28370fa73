//! "Programmed means serving": real `gantry-proxy run --kubernetes --fleet` replicas against
//! the in-repo API server, the test playing the kubelet (it creates the fleet's Pods and sets
//! their Ready condition) and the Deployment controller (`spec.replicas`). Each replica reports
//! what it serves on its Pod; the leader says `Programmed=True` only when enough ready
//! replicas serve the Gateway's current generation, and lists their versions.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::objects::{namespace, seed};
use support::{Killed, admin_ready, eventually, free_port, start_backend};

const FLEET_NAMESPACE: &str = "gantry-system";
const FLEET: &str = "gw-gantry";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Pods the kubelet would run for the fleet, Ready or not.
fn pod(name: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": FLEET_NAMESPACE,
                        "labels": {"gantry.dev/fleet": FLEET}},
           "spec": {"containers": [{"name": "proxy", "image": "gantry-proxy"}]},
           "status": {"conditions": [{"type": "Ready",
                                      "status": if ready { "True" } else { "False" }}]}})
}

fn deployment(replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": FLEET, "namespace": FLEET_NAMESPACE},
           "spec": {"replicas": replicas,
                    "selector": {"matchLabels": {"gantry.dev/fleet": FLEET}}}})
}

/// Reads, edits and writes back an object, keeping what others wrote on it (the replicas'
/// reports on their Pods).
fn edit(server: &ApiServer, resource: &str, ns: &str, name: &str, change: impl Fn(&mut Value)) {
    let mut object = server.get(resource, ns, name).unwrap();
    change(&mut object);
    server.apply(resource, object);
}

/// The cluster with a Gateway on `port` and a fleet of `replicas` ready Pods (`proxy-0`, ...)
/// its Deployment wants.
async fn cluster(port: u16, replicas: i32) -> ApiServer {
    let server = ApiServer::start().await;
    seed(&server, port, start_backend().await);
    server.apply("namespaces", namespace(FLEET_NAMESPACE));
    server.apply("deployments", deployment(replicas));
    for i in 0..replicas {
        server.apply("pods", pod(&format!("proxy-{i}"), true));
    }
    server
}

/// A replica of the fleet running as Pod `pod`, listening on `address`.
async fn replica(server: &ApiServer, pod: &str, address: &str, flags: &[&str]) -> Killed {
    // One kubeconfig per API server: the tests of this file run side by side.
    let dir = std::env::temp_dir().join(format!(
        "gantry-kube-programmed-{}-{}",
        std::process::id(),
        server.addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = server.kubeconfig(&dir);
    let admin = free_port();
    let proxy = Killed(
        Command::new(env!("CARGO_BIN_EXE_gantry-proxy"))
            .args(["run", "--kubernetes", "--gateway", "default/gw"])
            .args(["--bind-address", address, "--no-access-log"])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--fleet", FLEET])
            .args(flags)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", FLEET_NAMESPACE)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    eventually(20, "/readyz", || admin_ready(admin)).await;
    proxy
}

/// The Gateway's condition `type`: (status, reason, message, observedGeneration).
fn condition(server: &ApiServer, type_: &str) -> Option<(String, String, String, i64)> {
    let gateway = server.get("gateways", "default", "gw")?;
    let conditions = gateway["status"]["conditions"].as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["message"].as_str()?.to_owned(),
        c["observedGeneration"].as_i64()?,
    ))
}

/// Waits until the Gateway's condition `type` is `(status, reason, message)` for `generation`;
/// panics with the last one seen after 30 s.
async fn until(
    server: &ApiServer,
    type_: &str,
    (status, reason, message): (&str, &str, &str),
    generation: i64,
) {
    let want = (
        status.to_owned(),
        reason.to_owned(),
        message.to_owned(),
        generation,
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let seen = condition(server, type_);
        if seen.as_ref() == Some(&want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {type_} to be {want:?}; last seen {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The report a replica of `version` serving `default/gw` at `generation` puts on its Pod.
fn report(version: &str, generation: i64) -> Value {
    json!({"version": version, "gateways": {"default/gw": generation}})
}

fn minor_versions_ahead(n: u64) -> String {
    let mut parts = VERSION.split('.').map(|p| p.parse::<u64>().unwrap());
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    format!("{major}.{}.0", minor + n)
}

#[tokio::test]
async fn programmed_waits_for_the_desired_ready_replicas_to_serve_the_generation() {
    let port = free_port();
    let server = cluster(port, 2).await;

    // One replica of two serves; the other Pod is Ready but reports nothing yet.
    let _a = replica(&server, "proxy-0", "127.0.0.1", &[]).await;
    until(
        &server,
        "Programmed",
        (
            "False",
            "Pending",
            "1 of 2 ready replicas serve generation 1 (1 reports nothing); 2 required",
        ),
        1,
    )
    .await;
    let one = format!("{VERSION} ×1");
    until(
        &server,
        "gantry.dev/ProxyVersions",
        ("True", "Consistent", &one),
        1,
    )
    .await;

    let b = replica(&server, "proxy-1", "127.0.0.2", &[]).await;
    until(
        &server,
        "Programmed",
        (
            "True",
            "Programmed",
            "Gateway is programmed: 2 of 2 ready replicas serve generation 1; 2 required",
        ),
        1,
    )
    .await;
    let two = format!("{VERSION} ×2");
    until(
        &server,
        "gantry.dev/ProxyVersions",
        ("True", "Consistent", &two),
        1,
    )
    .await;

    // A replica that stops applying configuration (its Pod still Ready, its report old) holds
    // a new generation back.
    drop(b);
    edit(&server, "gateways", "default", "gw", |gw| {
        gw["spec"]["infrastructure"] = json!({"labels": {"tier": "edge"}});
    });
    until(
        &server,
        "Programmed",
        (
            "False",
            "Pending",
            "1 of 2 ready replicas serve generation 2 (1 serves 1); 2 required",
        ),
        2,
    )
    .await;

    // The Deployment scaled down (an autoscaler would): one replica is all it wants.
    edit(&server, "deployments", FLEET_NAMESPACE, FLEET, |d| {
        d["spec"]["replicas"] = json!(1);
    });
    until(
        &server,
        "Programmed",
        (
            "True",
            "Programmed",
            "Gateway is programmed: 1 of 2 ready replicas serve generation 2 (1 serves 1); 1 required",
        ),
        2,
    )
    .await;

    // A replica one minor version ahead is supported and counted; two ahead is neither.
    edit(&server, "deployments", FLEET_NAMESPACE, FLEET, |d| {
        d["spec"]["replicas"] = json!(2);
    });
    let newer = minor_versions_ahead(1);
    edit(&server, "pods", FLEET_NAMESPACE, "proxy-1", |p| {
        p["metadata"]["annotations"]["gantry.dev/serving"] = json!(report(&newer, 2).to_string());
    });
    until(
        &server,
        "Programmed",
        (
            "True",
            "Programmed",
            "Gateway is programmed: 2 of 2 ready replicas serve generation 2; 2 required",
        ),
        2,
    )
    .await;
    // Most common first, then by version.
    let skewed = format!("{VERSION} ×1, {newer} ×1");
    until(
        &server,
        "gantry.dev/ProxyVersions",
        ("True", "Skewed", &skewed),
        2,
    )
    .await;
    let far = minor_versions_ahead(2);
    edit(&server, "pods", FLEET_NAMESPACE, "proxy-1", |p| {
        p["metadata"]["annotations"]["gantry.dev/serving"] = json!(report(&far, 2).to_string());
    });
    until(
        &server,
        "Programmed",
        (
            "False",
            "Pending",
            "1 of 2 ready replicas serve generation 2 (1 runs an unsupported version); 2 required",
        ),
        2,
    )
    .await;
    let unsupported = format!("{VERSION} ×1, {far} ×1");
    until(
        &server,
        "gantry.dev/ProxyVersions",
        ("True", "UnsupportedSkew", &unsupported),
        2,
    )
    .await;

    // A Pod that is not Ready does not count even when it reports the generation.
    edit(&server, "pods", FLEET_NAMESPACE, "proxy-1", |p| {
        p["metadata"]["annotations"]["gantry.dev/serving"] = json!(report(VERSION, 2).to_string());
        p["status"]["conditions"][0]["status"] = json!("False");
    });
    until(
        &server,
        "Programmed",
        (
            "False",
            "Pending",
            "1 of 1 ready replicas serve generation 2; 2 required",
        ),
        2,
    )
    .await;
}

#[tokio::test]
async fn a_replica_that_never_catches_up_turns_pending_into_no_resources() {
    let port = free_port();
    let server = cluster(port, 2).await;
    let _a = replica(
        &server,
        "proxy-0",
        "127.0.0.1",
        &["--programmed-timeout", "1s"],
    )
    .await;
    until(
        &server,
        "Programmed",
        (
            "False",
            "NoResources",
            "1 of 2 ready replicas serve generation 1 (1 reports nothing); 2 required",
        ),
        1,
    )
    .await;
    // The replica's own report is on its Pod.
    let pod = server.get("pods", FLEET_NAMESPACE, "proxy-0").unwrap();
    let annotation = pod["metadata"]["annotations"]["gantry.dev/serving"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(annotation).unwrap(),
        report(VERSION, 1)
    );
}

#[tokio::test]
async fn min_replicas_lowers_the_bar_and_unreadable_pods_are_named() {
    let port = free_port();
    let server = cluster(port, 3).await;
    // As RBAC answers a fleet whose role lacks the Pods grant.
    server.forbid("pods", FLEET_NAMESPACE);
    let _a = replica(
        &server,
        "proxy-0",
        "127.0.0.1",
        &["--programmed-min-replicas", "1"],
    )
    .await;
    eventually(30, "Programmed to name the unreadable Pods", || {
        let seen = condition(&server, "Programmed");
        let done = seen.is_some_and(|(status, reason, message, _)| {
            status == "False"
                && reason == "Pending"
                && message.starts_with("the fleet's Pods cannot be read")
        });
        async move { done }
    })
    .await;
    server.allow("pods", FLEET_NAMESPACE);
    until(
        &server,
        "Programmed",
        (
            "True",
            "Programmed",
            "Gateway is programmed: 1 of 3 ready replicas serve generation 1 (2 report nothing); 1 required",
        ),
        1,
    )
    .await;
}
