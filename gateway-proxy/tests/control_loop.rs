//! The control loop's bookkeeping: what `gantry_config_*` count and which version `/config`
//! and the gauge show, through applies, rejected compiles and port rebinds.

// Harness helpers outside #[test] functions panic on purpose: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use gantry_testkit::ports::free_port;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use gantry_proxy::control::ControlLoop;
use gantry_proxy::server::{DataPlane, DataPlaneOptions};
use gantry_proxy::source::SourceUpdate;
use gantry_proxy::telemetry::Metrics;
use gantry_translate::store::load::load_store;
use gantry_translate::translate::TranslateOptions;

fn control() -> (ControlLoop, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let dataplane = Arc::new(DataPlane::new(
        DataPlaneOptions {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_offset: 0,
            drain_timeout: Duration::from_secs(1),
            access_log: false,
            l4: Default::default(),
            http: Default::default(),
        },
        metrics.clone(),
    ));
    (
        ControlLoop::new(TranslateOptions::default(), dataplane, metrics.clone()),
        metrics,
    )
}

/// A Gateway listening on `port`, one route to Service `web`, whose endpoint is `address`.
fn objects(port: u16, address: &str) -> SourceUpdate {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gantry}}
spec: {{controllerName: gantry.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: gantry
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: ["{address}"]}}]
"#
    );
    let (store, warnings) = load_store([("test.yaml", yaml)]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    SourceUpdate::Objects {
        store: Arc::new(store),
        warnings: Vec::new(),
    }
}

fn gauge(metrics: &Metrics) -> i64 {
    metrics.config_version.get()
}

#[tokio::test]
async fn an_applied_configuration_is_counted_once() {
    let (mut control, metrics) = control();
    control.apply(objects(free_port(), "127.0.0.1")).await;
    let view = control.published().view();
    assert_eq!(view.version, 1);
    assert_eq!(metrics.config_reloads.get(), 1);
    assert_eq!(gauge(&metrics), 1);

    // Another configuration: one more.
    control.apply(objects(free_port(), "127.0.0.2")).await;
    assert_eq!(control.published().view().version, 2);
    assert_eq!(metrics.config_reloads.get(), 2);
    assert_eq!(gauge(&metrics), 2);
    assert_eq!(metrics.config_reloads_rejected.get(), 0);
}

#[tokio::test]
async fn a_configuration_that_does_not_compile_is_rejected_once() {
    let (mut control, metrics) = control();
    control.apply(objects(free_port(), "127.0.0.1")).await;
    // The translator passes EndpointSlice addresses through; the data plane's compile refuses
    // one that is no address, and the configuration in use keeps serving.
    control.apply(objects(free_port(), "not an address")).await;
    let view = control.published().view();
    assert_eq!(metrics.config_reloads_rejected.get(), 1);
    assert_eq!(metrics.config_reloads.get(), 1);
    assert_eq!(view.version, 1);
    assert_eq!(gauge(&metrics), 1);
    assert!(
        view.source
            .errors
            .iter()
            .any(|e| e.contains("not an address")),
        "{:?}",
        view.source
    );
}

#[tokio::test]
async fn binding_ports_again_is_not_a_new_configuration() {
    let (mut control, metrics) = control();
    let occupant = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken = occupant.local_addr().unwrap().port();
    control.apply(objects(taken, "127.0.0.1")).await;
    let view = control.published().view();
    assert_eq!(view.unbound_ports.len(), 1, "{:?}", view.unbound_ports);
    assert_eq!((view.version, gauge(&metrics)), (1, 1));

    // Still taken: nothing changes, and the gauge stays on the version `/config` shows.
    control.rebind().await;
    let view = control.published().view();
    assert_eq!(view.unbound_ports.len(), 1);
    assert_eq!((view.version, gauge(&metrics)), (1, 1));
    assert_eq!(metrics.config_reloads.get(), 1);

    // Freed: bound, the listener's status changes, the configuration is the same one.
    drop(occupant);
    control.rebind().await;
    let view = control.published().view();
    assert!(view.unbound_ports.is_empty(), "{:?}", view.unbound_ports);
    assert_eq!((view.version, gauge(&metrics)), (1, 1));
    assert_eq!(metrics.config_reloads.get(), 1);
    let text = serde_json::to_string(&*view.statuses).unwrap();
    assert!(!text.contains("PortUnavailable"), "{text}");
}
