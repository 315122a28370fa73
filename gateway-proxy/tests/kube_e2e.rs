//! The real `gantry-proxy run --kubernetes` binary against the in-repo API server: it becomes
//! ready after the initial sync, serves the cluster's routes, follows a route added later,
//! takes the Lease, writes status, and hands the Lease back on SIGTERM; with the default
//! runtime and with one worker thread (a current-thread runtime).

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};

use support::apiserver::ApiServer;
use support::objects::seed;
use support::{
    Killed, add_route_and_wait_until_served, admin_ready, eventually, free_port, http_get,
    start_backend,
};

#[tokio::test]
async fn the_binary_serves_the_cluster_and_writes_status() {
    serves_the_cluster_and_writes_status(&[], "default").await;
}

/// The same on one worker thread: the watches, the status writer and the Lease share the
/// current-thread runtime with the traffic.
#[tokio::test]
async fn the_binary_serves_the_cluster_and_writes_status_on_one_worker_thread() {
    serves_the_cluster_and_writes_status(&["--worker-threads", "1"], "one-worker").await;
}

async fn serves_the_cluster_and_writes_status(args: &[&str], name: &str) {
    let server = ApiServer::start().await;
    let port = free_port();
    seed(&server, port, start_backend().await);
    let dir = std::env::temp_dir().join(format!("gantry-kube-e2e-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = server.kubeconfig(&dir);
    let admin = free_port();
    let mut proxy = Killed(
        Command::new(env!("CARGO_BIN_EXE_gantry-proxy"))
            .args(["run", "--kubernetes", "--gateway", "default/gw"])
            .args(["--bind-address", "127.0.0.1", "--no-access-log"])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            // A short drain delay: the source (and the Lease) is released when it ends.
            .args(["--drain-delay", "1s"])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", "proxy-0")
            .env("POD_NAMESPACE", "gantry-system")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    eventually(20, "/readyz", || admin_ready(admin)).await;
    assert_eq!(
        http_get(port, "/one").await,
        Some((200, "backend saw /one".to_owned()))
    );

    add_route_and_wait_until_served(&server, port).await;

    eventually(10, "status on the Gateway and both routes", || {
        let s = server.clone();
        async move {
            let programmed = s.get("gateways", "default", "gw").is_some_and(|g| {
                g["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Programmed" && c["status"] == "True")
                }) && g["status"]["listeners"][0]["attachedRoutes"] == 2
            });
            let routes = ["r1", "r2"].iter().all(|r| {
                s.get("httproutes", "default", r).is_some_and(|o| {
                    o["status"]["parents"]
                        .as_array()
                        .is_some_and(|p| p.len() == 1)
                })
            });
            programmed && routes
        }
    })
    .await;
    let lease = server
        .get("leases", "gantry-system", "gantry-proxy-default.gw")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "proxy-0");

    // Kubernetes mode's metrics: leadership, lists, status writes.
    let (code, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for line in [
        r#"gantry_kube_leader{lease="gantry-system/gantry-proxy-default.gw"} 1"#,
        r#"gantry_kube_relists_total{kind="HTTPRoute"} 1"#,
        r#"gantry_kube_status_writes_total{kind="Gateway",result="written"}"#,
        r#"gantry_kube_status_writes_total{kind="HTTPRoute",result="written"}"#,
        r#"gantry_config_stage_duration_seconds_count{stage="translate"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    // SIGTERM: the proxy drains, hands the Lease back and exits cleanly.
    let pid = proxy.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exit = None;
    eventually(10, "the proxy to exit", || {
        exit = proxy.0.try_wait().unwrap();
        let done = exit.is_some();
        async move { done }
    })
    .await;
    assert!(exit.unwrap().success(), "{exit:?}");
    let lease = server
        .get("leases", "gantry-system", "gantry-proxy-default.gw")
        .unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    let _ = std::fs::remove_dir_all(&dir);
}
