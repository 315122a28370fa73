//! Where the admin endpoints are served: `/healthz`, `/readyz` and `/metrics` on `--admin-addr`
//! (in the cluster, the pod IP, where probes and scrapers reach it); `/status` and `/config`
//! only on the debug address (`--admin-debug-addr`, the loopback interface in the cluster), or
//! on the admin address when that is itself a loopback address. 127.0.0.2 stands in for the
//! pod IP: a second address of the host, distinct from the 127.0.0.1 the debug listener binds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use gantry_proxy::serve::{Running, ServeOptions, start};
use gantry_proxy::server::DataPlaneOptions;
use gantry_proxy::source::FileSource;
use gantry_testkit::harness::tempdir::TempDir;
use gantry_translate::translate::TranslateOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` at `addr`: the status code and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (code, body)
}

async fn proxy(dir: &TempDir, admin: SocketAddr, debug: Option<SocketAddr>) -> Running {
    let source = FileSource {
        dir: dir.path().to_path_buf(),
        options: TranslateOptions::default(),
        addresses: Vec::new(),
    };
    start(
        source,
        ServeOptions {
            admin_addr: admin,
            admin_debug_addr: debug,
            dataplane: DataPlaneOptions {
                bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port_offset: 0,
                drain_timeout: Duration::from_secs(1),
                access_log: false,
                l4: Default::default(),
                http: Default::default(),
                connections: Default::default(),
            },
            drain_delay: Duration::ZERO,
            explainer: None,
            tracing: None,
            acme: None,
            acme_cluster: None,
            rate_limit_redis: None,
        },
    )
    .await
    .expect("the proxy starts")
}

fn at(ip: [u8; 4]) -> SocketAddr {
    SocketAddr::from((ip, 0))
}

#[tokio::test]
async fn pod_ip_serves_probes_and_metrics_and_only_loopback_serves_status_and_config() {
    let dir = TempDir::new("gantry-admin");
    let running = proxy(&dir, at([127, 0, 0, 2]), Some(at([127, 0, 0, 1]))).await;
    let pod = running.admin_addr;
    let debug = running
        .admin_debug_addr
        .expect("a debug listener of its own");
    assert_eq!(pod.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(debug.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));

    assert_eq!(get(pod, "/healthz").await.0, 200);
    let (code, metrics) = get(pod, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("gantry_config_version"), "{metrics}");
    let readyz = get(pod, "/readyz").await.0;
    assert!(readyz == 200 || readyz == 503, "/readyz answers: {readyz}");
    for path in [
        "/config",
        "/status",
        "/ui",
        "/ui/routes",
        "/ui/assets/app.js",
    ] {
        let (code, body) = get(pod, path).await;
        assert_eq!(code, 404, "{path} on the pod IP: {body}");
        assert!(body.contains("--admin-debug-addr"), "{body}");
        assert!(!body.contains("\"ir\""), "{body}");
        let (code, body) = get(debug, path).await;
        assert_eq!(code, 200, "{path} on loopback: {body}");
        if !path.starts_with("/ui") {
            assert!(body.starts_with(['{', '[']), "{path} is JSON: {body}");
        }
    }
    let (code, page) = get(debug, "/ui/backends").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("/ui/assets/app.js"),
        "every view is the page: {page}"
    );
    assert_eq!(get(debug, "/ui/nothing-here").await.0, 404);
    // Nothing of the debug listener is reachable on the pod IP's port either way round.
    assert_ne!(pod.port(), 0);
    assert_eq!(get(debug, "/healthz").await.0, 200);
}

#[tokio::test]
async fn an_admin_address_reachable_from_outside_serves_no_status_or_config_by_default() {
    let dir = TempDir::new("gantry-admin");
    // Every interface, as an older operator rendered it: not loopback, so no debug endpoints.
    let running = proxy(&dir, at([0, 0, 0, 0]), None).await;
    assert_eq!(running.admin_debug_addr, None);
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, running.admin_addr.port()));
    assert_eq!(get(admin, "/metrics").await.0, 200);
    assert_eq!(get(admin, "/config").await.0, 404);
    assert_eq!(get(admin, "/status").await.0, 404);
    assert_eq!(get(admin, "/ui").await.0, 404);
}

#[tokio::test]
async fn a_loopback_admin_address_serves_everything_as_in_standalone_mode() {
    let dir = TempDir::new("gantry-admin");
    let running = proxy(&dir, at([127, 0, 0, 2]), None).await;
    assert_eq!(running.admin_debug_addr, None);
    assert_eq!(get(running.admin_addr, "/config").await.0, 200);
    assert_eq!(get(running.admin_addr, "/status").await.0, 200);
}

#[tokio::test]
async fn naming_the_admin_address_as_the_debug_address_serves_everything_there() {
    let dir = TempDir::new("gantry-admin");
    let running = proxy(&dir, at([0, 0, 0, 0]), Some(at([0, 0, 0, 0]))).await;
    assert_eq!(running.admin_debug_addr, None, "one listener");
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, running.admin_addr.port()));
    assert_eq!(get(admin, "/config").await.0, 200);
}
