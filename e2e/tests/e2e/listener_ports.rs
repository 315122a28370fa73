//! A listener whose port cannot be bound: its status says so (`Accepted=False` with
//! `PortUnavailable`, `Programmed=False`), the Gateway's other listener keeps serving, and the
//! port is bound once it is free.

use std::time::Duration;

use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_with_listeners_yaml, get_host,
};
use serde_json::Value;

fn gateway(free: u16, taken: u16) -> String {
    let gateway = gateway_with_listeners_yaml(
        "gw",
        &format!(
            "    - {{name: free, port: {free}, protocol: HTTP}}\n    - {{name: taken, port: {taken}, protocol: HTTP}}\n"
        ),
    );
    format!(
        r#"{gateway}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs: [{{name: web, port: 8080}}]
"#
    )
}

/// The listener's conditions, as `(type, status, reason)`.
fn listener_conditions(statuses: &Value, listener: &str) -> Vec<(String, String, String)> {
    let gateway = statuses
        .as_array()
        .and_then(|a| a.iter().find(|o| o["kind"] == "Gateway"))
        .unwrap_or_else(|| panic!("no Gateway in /status: {statuses:#}"));
    let listeners = gateway["status"]["listeners"]
        .as_array()
        .expect("listeners[]");
    let entry = listeners
        .iter()
        .find(|l| l["name"] == listener)
        .unwrap_or_else(|| panic!("no listener {listener} in {gateway:#}"));
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    entry["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| (text(&c["type"]), text(&c["status"]), text(&c["reason"])))
        .collect()
}

fn has(conditions: &[(String, String, String)], type_: &str, status: &str, reason: &str) -> bool {
    conditions
        .iter()
        .any(|(t, s, r)| t == type_ && s == status && r == reason)
}

#[tokio::test]
async fn a_listener_whose_port_is_taken_is_reported_and_the_others_serve() {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let free = free_port();
    let occupant = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port to hold");
    let taken = occupant.local_addr().expect("its address").port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway(free, taken)),
            ("services.yaml", &services),
        ],
        &[],
    )
    .await;

    let reply = get_host(&format!("http://127.0.0.1:{free}/"), "a.example.com", &[])
        .await
        .expect("an answer");
    assert_eq!(reply.status, 200, "{}", reply.text());

    let statuses = proxy.status().await;
    let taken_conditions = listener_conditions(&statuses, "taken");
    assert!(
        has(&taken_conditions, "Accepted", "False", "PortUnavailable"),
        "{taken_conditions:?}"
    );
    assert!(
        has(&taken_conditions, "Programmed", "False", "Pending"),
        "{taken_conditions:?}"
    );
    let message = statuses.to_string();
    assert!(
        message.contains(&format!(
            "port {taken} cannot be bound on 127.0.0.1:{taken}"
        )),
        "the message names the port and address: {message}"
    );
    let free_conditions = listener_conditions(&statuses, "free");
    assert!(
        has(&free_conditions, "Programmed", "True", "Programmed"),
        "{free_conditions:?}"
    );
    let config = proxy.config().await;
    assert_eq!(config["unboundPorts"][0]["port"], taken, "{config:#}");

    // Freed, the port is bound by the proxy's retry, without any change to the config.
    drop(occupant);
    proxy
        .eventually(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                let conditions = listener_conditions(&proxy.status().await, "taken");
                if has(&conditions, "Programmed", "True", "Programmed")
                    && has(&conditions, "Accepted", "True", "Accepted")
                {
                    Ok(())
                } else {
                    Err(format!("the freed port was never bound: {conditions:?}"))
                }
            },
        )
        .await;
    let reply = get_host(&format!("http://127.0.0.1:{taken}/"), "a.example.com", &[])
        .await
        .expect("an answer");
    assert_eq!(reply.status, 200, "{}", reply.text());
}
