//! ListenerSets (GEP-1713) as the running proxy serves them: a ListenerSet's listeners take
//! traffic on their own ports, hostnames and certificates (a Secret in the ListenerSet's
//! namespace); deleting the ListenerSet closes its port; a ListenerSet listener on the
//! Gateway's own port and hostname is `Conflicted` in `/status` while the Gateway's listener
//! keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use gantry_testkit::certs::{Ca, tls_secret_yaml};
use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_with_listeners_yaml, get_host, namespace_yaml,
};
use gantry_testkit::tls_client::{HttpOverTls, TlsClient, served_by};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const EVERY: Duration = Duration::from_millis(50);

/// The Gateway `default/gw` with one HTTP listener `web` on `port` (hostname `hostname`, if
/// any) that allows ListenerSets from every namespace, and a route from it to `gw-backend`.
fn gateway(port: u16, hostname: Option<&str>) -> String {
    let hostname = hostname.map_or(String::new(), |h| format!("      hostname: {h}\n"));
    let gateway = gateway_with_listeners_yaml(
        "gw",
        &format!("    - name: web\n      port: {port}\n      protocol: HTTP\n{hostname}"),
    );
    format!(
        r#"{gateway}  allowedListeners:
    namespaces: {{from: All}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: gw-route, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs: [{{name: gw-backend, port: 8080}}]
"#
    )
}

/// ListenerSet `team/apps` with `listeners` (YAML list items indented by four spaces), and a
/// route in `team` to `ls-backend` whose parentRef is the ListenerSet.
fn listener_set(listeners: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: apps, namespace: team}}
spec:
  parentRef: {{name: gw, namespace: default}}
  listeners:
{listeners}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: ls-route, namespace: team}}
spec:
  parentRefs: [{{group: gateway.networking.k8s.io, kind: ListenerSet, name: apps}}]
  rules:
    - backendRefs: [{{name: ls-backend, port: 8080}}]
"#
    )
}

fn object<'a>(statuses: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    statuses
        .as_array()?
        .iter()
        .find(|o| o["kind"] == kind && o["name"] == name)
}

/// `(type, status, reason)` of the named listener of a Gateway or ListenerSet in `/status`.
fn listener_conditions(
    statuses: &Value,
    kind: &str,
    name: &str,
    listener: &str,
) -> Vec<(String, String, String)> {
    let Some(entry) = object(statuses, kind, name).and_then(|o| {
        o["status"]["listeners"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == listener)
    }) else {
        return Vec::new();
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    entry["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (text(&c["type"]), text(&c["status"]), text(&c["reason"])))
        .collect()
}

fn has(conditions: &[(String, String, String)], type_: &str, status: &str, reason: &str) -> bool {
    conditions
        .iter()
        .any(|(t, s, r)| t == type_ && s == status && r == reason)
}

/// Which backend answers `GET http://127.0.0.1:port/` with `host`, or why none does.
async fn answered_by(port: u16, host: &str) -> Result<String, String> {
    match get_host(&format!("http://127.0.0.1:{port}/"), host, &[]).await {
        Ok(reply) if reply.status == 200 => Ok(reply.echo().name),
        Ok(reply) => Err(format!("status {}: {}", reply.status, reply.text())),
        Err(e) => Err(format!("no answer: {e}")),
    }
}

#[tokio::test]
async fn a_listener_set_listener_serves_its_port_and_hostname_and_goes_with_its_file() {
    let (services, _) = echo_backends(&[("default", "gw-backend"), ("team", "ls-backend")]).await;
    let (gw_port, ls_port) = (free_port(), free_port());
    let set = listener_set(&format!(
        "    - {{name: app, port: {ls_port}, protocol: HTTP, hostname: app.example.com}}\n"
    ));
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway(gw_port, None)),
            ("services.yaml", &services),
            ("listener-set.yaml", &set),
        ],
        &[],
    )
    .await;

    assert_eq!(
        answered_by(ls_port, "app.example.com").await,
        Ok("ls-backend".into())
    );
    // The listener's hostname: another Host finds no listener, so no route.
    let other = get_host(
        &format!("http://127.0.0.1:{ls_port}/"),
        "x.example.com",
        &[],
    )
    .await
    .expect("an answer");
    assert_eq!(other.status, 404, "{}", other.text());
    // The Gateway's own listener serves only routes attached to the Gateway.
    assert_eq!(
        answered_by(gw_port, "app.example.com").await,
        Ok("gw-backend".into())
    );
    let statuses = proxy.status().await;
    let gw = object(&statuses, "Gateway", "gw").expect("the Gateway in /status");
    assert_eq!(gw["status"]["attachedListenerSets"], 1, "{gw:#}");
    let set = object(&statuses, "ListenerSet", "apps").expect("the ListenerSet in /status");
    assert_eq!(
        set["status"]["listeners"][0]["attachedRoutes"], 1,
        "{set:#}"
    );
    assert!(
        has(
            &listener_conditions(&statuses, "ListenerSet", "apps", "app"),
            "Programmed",
            "True",
            "Programmed"
        ),
        "{set:#}"
    );

    // Detached: the port closes (new connections are refused; a kept-alive one finds no
    // listener, 404), the Gateway counts no ListenerSet, its own port still serves.
    proxy.remove("listener-set.yaml");
    proxy
        .eventually(WAIT, EVERY, || async {
            match tokio::net::TcpStream::connect(("127.0.0.1", ls_port)).await {
                Err(_) => Ok(()),
                Ok(_) => Err(format!("port {ls_port} still accepts connections")),
            }
        })
        .await;
    match get_host(
        &format!("http://127.0.0.1:{ls_port}/"),
        "app.example.com",
        &[],
    )
    .await
    {
        Err(_) => {}
        Ok(reply) => assert_eq!(reply.status, 404, "{}", reply.text()),
    }
    let statuses = proxy.status().await;
    assert!(
        object(&statuses, "ListenerSet", "apps").is_none(),
        "{statuses:#}"
    );
    let gw = object(&statuses, "Gateway", "gw").expect("the Gateway in /status");
    assert_eq!(gw["status"]["attachedListenerSets"], 0, "{gw:#}");
    assert_eq!(
        answered_by(gw_port, "a.example.com").await,
        Ok("gw-backend".into())
    );
}

#[tokio::test]
async fn a_listener_set_terminates_tls_with_a_certificate_of_its_own_namespace() {
    let (services, _) = echo_backends(&[("default", "gw-backend"), ("team", "ls-backend")]).await;
    let ca = Ca::new("listener-set-ca");
    let leaf = ca.server(&["secure.example.com"]);
    let port = free_port();
    let set = listener_set(&format!(
        "    - name: secure\n      port: {port}\n      protocol: HTTPS\n      hostname: secure.example.com\n      tls:\n        certificateRefs: [{{name: team-cert}}]\n"
    ));
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway(free_port(), None)),
            ("services.yaml", &services),
            ("listener-set.yaml", &set),
            ("secret.yaml", &tls_secret_yaml("team", "team-cert", &leaf)),
            ("namespaces.yaml", &namespace_yaml("team", &[])),
        ],
        &[],
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let connection = TlsClient::new(ca.roots())
        .connect(addr, "secure.example.com")
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}\n{}", proxy.log()));
    assert_eq!(
        connection.server_certificate(),
        leaf.chain().first().cloned(),
        "the ListenerSet's certificate"
    );
    let mut http = HttpOverTls::open(connection).await.expect("HTTP over TLS");
    let reply = http
        .get("secure.example.com", "/")
        .await
        .expect("request over TLS");
    assert!(served_by(&reply, "ls-backend"), "{reply:?}");
}

#[tokio::test]
async fn a_listener_set_listener_on_the_gateway_port_and_hostname_is_conflicted_and_the_gateway_serves()
 {
    let (services, _) = echo_backends(&[("default", "gw-backend"), ("team", "ls-backend")]).await;
    let port = free_port();
    let other_port = free_port();
    let set = listener_set(&format!(
        "    - {{name: clash, port: {port}, protocol: HTTP, hostname: foo.example.com}}\n    - {{name: fine, port: {other_port}, protocol: HTTP}}\n"
    ));
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway(port, Some("foo.example.com"))),
            ("services.yaml", &services),
            ("listener-set.yaml", &set),
        ],
        &[],
    )
    .await;

    let statuses = proxy.status().await;
    let clash = listener_conditions(&statuses, "ListenerSet", "apps", "clash");
    assert!(
        has(&clash, "Conflicted", "True", "HostnameConflict"),
        "{clash:?}"
    );
    assert!(
        has(&clash, "Accepted", "False", "HostnameConflict"),
        "{clash:?}"
    );
    assert!(
        has(&clash, "Programmed", "False", "HostnameConflict"),
        "{clash:?}"
    );
    let web = listener_conditions(&statuses, "Gateway", "gw", "web");
    assert!(has(&web, "Conflicted", "False", "NoConflicts"), "{web:?}");
    assert!(has(&web, "Programmed", "True", "Programmed"), "{web:?}");
    // The Gateway's own listener keeps the port and hostname; the ListenerSet's other
    // listener serves.
    assert_eq!(
        answered_by(port, "foo.example.com").await,
        Ok("gw-backend".into())
    );
    assert_eq!(
        answered_by(other_port, "foo.example.com").await,
        Ok("ls-backend".into())
    );
    let set = object(&statuses, "ListenerSet", "apps").expect("the ListenerSet");
    assert_eq!(set["status"]["conditions"][0]["status"], "True", "{set:#}");
}
