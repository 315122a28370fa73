//! Certificate rotation: a new Secret is used by every handshake after it is applied, while
//! a load loop of new connections sees no failure and an open connection carries on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gantry_testkit::certs::{Ca, tls_secret_yaml};
use gantry_testkit::harness::{Proxy, echo_backends, free_port, gateway_with_listeners_yaml};
use gantry_testkit::tls_client::{HttpOverTls, TlsClient, served_by};

const HOST: &str = "rotate.example.com";

fn config(port: u16) -> String {
    let listeners = format!(
        r#"    - name: https
      port: {port}
      protocol: HTTPS
      hostname: {HOST}
      tls:
        certificateRefs: [{{name: rotating}}]
"#
    );
    let gateway = gateway_with_listeners_yaml("gw", &listeners);
    format!(
        r#"{gateway}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs: [{{name: app, port: 8080}}]
"#
    )
}

/// Counts of the load loop.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Requests whose handshake presented the new certificate.
    on_new: AtomicU64,
}

#[tokio::test]
async fn a_rotated_certificate_is_used_by_new_handshakes_with_no_failed_request() {
    let ca = Ca::new("rotation CA");
    let old = ca.server(&[HOST]);
    let new = ca.server(&[HOST]);
    let (services, _) = echo_backends(&[("default", "app")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &config(port)),
            ("secret.yaml", &tls_secret_yaml("default", "rotating", &old)),
            ("services.yaml", &services),
        ],
        &[],
    )
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let client = TlsClient::new(ca.roots());
    let new_der = new.chain()[0].clone();

    // A connection opened before the rotation, kept across it.
    let before = client.connect(addr, HOST).await.expect("TLS handshake");
    assert_eq!(before.server_certificate(), Some(old.chain()[0].clone()));
    let mut kept = HttpOverTls::open(before).await.expect("HTTP over TLS");
    assert!(served_by(
        &kept.get(HOST, "/").await.expect("request over TLS"),
        "app"
    ));

    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (load, stop, client, new_der) =
            (load.clone(), stop.clone(), client.clone(), new_der.clone());
        workers.push(tokio::spawn(async move {
            // Bounded: stops when told, or after 5,000 requests.
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let result = async {
                    let connection = client.connect(addr, HOST).await?;
                    let fresh = connection.server_certificate() == Some(new_der.clone());
                    let reply = HttpOverTls::open(connection).await?.get(HOST, "/").await?;
                    anyhow::ensure!(served_by(&reply, "app"), "unexpected reply {reply:?}");
                    Ok(fresh)
                }
                .await;
                match result {
                    Ok(fresh) => {
                        load.ok.fetch_add(1, Ordering::Relaxed);
                        if fresh {
                            load.on_new.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(error) => {
                        eprintln!("request failed: {error:#}");
                        load.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // Let the load run on the old certificate, then rotate.
    let progress = |counter: &'static str, count: &AtomicU64, want: u64| {
        let n = count.load(Ordering::Relaxed);
        if n >= want {
            Ok(())
        } else {
            Err(format!("{counter}: {n} of {want} requests"))
        }
    };
    let every = Duration::from_millis(10);
    proxy
        .eventually(Duration::from_secs(20), every, || async {
            progress("load loop made no progress", &load.ok, 20)
        })
        .await;
    let version = proxy.version().await;
    proxy.write("secret.yaml", &tls_secret_yaml("default", "rotating", &new));
    proxy.wait_version_above(version).await;
    // Keep the load going until plenty of requests were served on the new certificate.
    proxy
        .eventually(Duration::from_secs(20), every, || async {
            progress("new certificate never presented", &load.on_new, 50)
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("load worker");
    }

    assert_eq!(
        load.failed.load(Ordering::Relaxed),
        0,
        "log:\n{}",
        proxy.log()
    );
    // The connection opened before the rotation still serves, on its old handshake.
    assert!(served_by(
        &kept.get(HOST, "/").await.expect("request over TLS"),
        "app"
    ));
    // And every new handshake now presents the new certificate.
    let after = client.connect(addr, HOST).await.expect("TLS handshake");
    assert_eq!(after.server_certificate(), Some(new_der));
}
