//! Hostile and mistaken config files in standalone mode: each is refused by name (and line),
//! never blocks or exhausts the loader, and the last good configuration keeps serving.

use std::time::Duration;

use gantry_testkit::harness::{
    Proxy, echo_backends, free_port, gateway_with_listeners_yaml, gateway_yaml, get, get_host,
};
use serde_json::Value;

fn route(host_field: &str, host: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  {host_field}: ["{host}"]
  rules:
    - backendRefs: [{{name: web, port: 8080}}]
"#
    )
}

/// A proxy serving `good.example.com` on the returned port.
async fn serving() -> (Proxy, u16) {
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("route.yaml", &route("hostnames", "good.example.com")),
        ],
        &[],
    )
    .await;
    (proxy, port)
}

/// The source's errors in `/config`, once one of them contains `needle`.
async fn error_containing(proxy: &Proxy, needle: &str) -> String {
    proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let Ok(reply) = get(&format!("http://{}/config", proxy.admin)).await else {
                    return Err("admin not up yet".to_owned());
                };
                let config: Value = serde_json::from_slice(&reply.body)
                    .map_err(|e| format!("/config is not JSON: {e}"))?;
                let errors = config["source"]["errors"].as_array().cloned();
                errors
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|e| e.contains(needle))
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no error contains {needle:?} yet: {config}"))
            },
        )
        .await
}

/// Waits until the source reports no error (the refused file is gone).
async fn no_errors(proxy: &Proxy) {
    proxy
        .eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let errors = proxy.config().await["source"]["errors"].clone();
                if errors == serde_json::json!([]) {
                    Ok(())
                } else {
                    Err(format!("errors remain: {errors}"))
                }
            },
        )
        .await;
}

async fn still_serves(port: u16) {
    let reply = get_host(
        &format!("http://127.0.0.1:{port}/"),
        "good.example.com",
        &[],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200, "the last good config keeps serving");
}

fn path_in(proxy: &Proxy, name: &str) -> String {
    proxy.config_dir.path().join(name).display().to_string()
}

#[tokio::test]
async fn a_fifo_is_refused_by_name_and_the_loader_goes_on() {
    let (proxy, port) = serving().await;
    let fifo = path_in(&proxy, "pipe.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let error = error_containing(&proxy, "pipe.yaml").await;
    assert_eq!(
        error,
        format!(
            "{fifo}: not a regular file (a FIFO); config files must be regular files or symlinks to them"
        )
    );
    still_serves(port).await;
    // The loader is not stuck on the FIFO: removing it and changing a file applies.
    let before = proxy.version().await;
    proxy.remove("pipe.yaml");
    proxy.write("route.yaml", &route("hostnames", "next.example.com"));
    proxy.wait_version_above(before).await;
    no_errors(&proxy).await;
}

#[tokio::test]
async fn a_symlink_to_dev_zero_is_refused_by_name() {
    let (proxy, port) = serving().await;
    let link = path_in(&proxy, "zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
    let error = error_containing(&proxy, "zero.yaml").await;
    assert!(
        error.starts_with(&format!("{link}: not a regular file (a character device)")),
        "{error}"
    );
    still_serves(port).await;
    proxy.remove("zero.yaml");
    no_errors(&proxy).await;
}

#[tokio::test]
async fn a_file_over_8_mib_is_refused_by_name() {
    let (proxy, port) = serving().await;
    let big = path_in(&proxy, "big.yaml");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(8 * 1024 * 1024 + 1).expect("set_len");
    drop(file);
    let error = error_containing(&proxy, "big.yaml").await;
    assert_eq!(
        error,
        format!(
            "{big}: 8388609 bytes is larger than the 8388608-byte limit for one config file; split it"
        )
    );
    still_serves(port).await;
}

#[tokio::test]
async fn invalid_utf8_is_refused_naming_the_file_and_line() {
    let (proxy, port) = serving().await;
    let bad = path_in(&proxy, "latin1.yaml");
    std::fs::write(&bad, b"# caf\xe9\nkind: Namespace\n").expect("write");
    let error = error_containing(&proxy, "latin1.yaml").await;
    assert!(
        error.starts_with(&format!(
            "{bad}: not UTF-8 text (invalid byte at line 1, column 6)"
        )),
        "{error}"
    );
    still_serves(port).await;
}

#[tokio::test]
async fn a_misspelt_field_is_refused_with_file_line_and_path() {
    let (proxy, port) = serving().await;
    // `hostnamez` would otherwise be dropped, and the route would match every hostname.
    proxy.write("route.yaml", &route("hostnamez", "typo.example.com"));
    let error = error_containing(&proxy, "hostnamez").await;
    assert!(
        error.starts_with(&format!(
            "{}:6: HTTPRoute default/web: unknown field \"spec.hostnamez\"",
            path_in(&proxy, "route.yaml")
        )),
        "{error}"
    );
    still_serves(port).await;
    let other = get_host(
        &format!("http://127.0.0.1:{port}/"),
        "other.example.com",
        &[],
    )
    .await
    .expect("request");
    assert_eq!(
        other.status, 404,
        "the route did not widen to every hostname"
    );
}

#[tokio::test]
async fn sixty_five_listeners_are_refused_as_the_crd_does() {
    let (proxy, port) = serving().await;
    // Hostnames keep the listeners apart (one port and protocol each would break a CEL rule).
    let listeners: String = (0..65)
        .map(|i| {
            format!(
                "    - name: l{i}\n      port: {port}\n      protocol: HTTP\n      hostname: l{i}.example.com\n"
            )
        })
        .collect();
    proxy.write(
        "gateway.yaml",
        &gateway_with_listeners_yaml("gw", &listeners),
    );
    let error = error_containing(&proxy, "spec.listeners").await;
    assert_eq!(
        error,
        format!(
            "{}:12: Gateway default/gw is invalid: spec.listeners: Too many: 65: must have at most 64 items",
            path_in(&proxy, "gateway.yaml")
        )
    );
    still_serves(port).await;
}
