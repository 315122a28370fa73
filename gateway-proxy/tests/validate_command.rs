//! `gantry-proxy validate DIR`, run as a user runs it: the real binary on real files.

use std::path::Path;
use std::process::{Command, Output};

use gantry_testkit::harness::tempdir::TempDir;

/// Writes `text` as `name` in the config directory `dir`.
fn write(dir: &TempDir, name: &str, text: &str) {
    std::fs::write(dir.path().join(name), text).expect("write config file");
}

fn validate(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry-proxy"))
        .arg("validate")
        .arg(dir)
        .args(extra)
        .output()
        .expect("gantry-proxy runs")
}

const GATEWAY: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: gantry
spec:
  controllerName: gantry.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
spec:
  gatewayClassName: gantry
  listeners:
  - name: http
    port: 8080
    protocol: HTTP
";

/// A document's line is the line of its `---` marker.
const BROKEN_ROUTE: &str = "\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: default
spec:
  parentRefs:
  - name: gw
  rules:
  - backendRefs:
    - name: ghost
      port: 80
";

#[test]
fn the_quick_start_is_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let out = validate(&examples, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout, "0 errors, 0 warnings\n");
}

#[test]
fn a_route_with_a_missing_backend_is_an_error_naming_file_line_and_reason() {
    let dir = TempDir::new("gantry-validate");
    write(&dir, "all.yaml", &format!("{GATEWAY}{BROKEN_ROUTE}"));
    let out = validate(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let routes = dir.path().join("all.yaml");
    let line = GATEWAY.lines().count() + 1;
    let expected = format!(
        "error: {}:{line}: HTTPRoute default/shop (parent Gateway default/gw): ResolvedRefs=False \
         BackendNotFound: ",
        routes.display()
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.ends_with("1 error, 0 warnings\n"), "{stdout}");

    // The same as JSON, for tools.
    let out = validate(dir.path(), &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("validate --output json prints JSON");
    assert_eq!(report["errors"], 1);
    assert_eq!(report["warnings"], 0);
    let finding = &report["findings"][0];
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["origin"], format!("{}:{line}", routes.display()));
    assert_eq!(finding["object"]["kind"], "HTTPRoute");
    assert_eq!(finding["object"]["name"], "shop");
    assert_eq!(finding["condition"]["type"], "ResolvedRefs");
    assert_eq!(finding["condition"]["status"], "False");
    assert_eq!(finding["condition"]["reason"], "BackendNotFound");
}

#[test]
fn a_listener_conflict_is_an_error_on_the_listener() {
    let dir = TempDir::new("gantry-validate");
    let conflicting = format!(
        "{GATEWAY}  - name: other
    port: 8080
    protocol: TCP
"
    );
    write(&dir, "gateway.yaml", &conflicting);
    let out = validate(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Gateway default/gw (listener http): Conflicted=True ProtocolConflict"),
        "{stdout}"
    );
}

#[test]
fn a_route_for_no_served_gateway_is_a_warning_only() {
    let dir = TempDir::new("gantry-validate");
    write(&dir, "gateway.yaml", GATEWAY);
    write(
        &dir,
        "routes.yaml",
        &BROKEN_ROUTE.replace("- name: gw", "- name: elsewhere"),
    );
    let out = validate(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "warning: {}:1: HTTPRoute default/shop: no parentRef names a Gateway",
            dir.path().join("routes.yaml").display()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("0 errors, 1 warning\n"), "{stdout}");
}

#[test]
fn unparsable_yaml_is_an_error_and_nothing_is_translated() {
    let dir = TempDir::new("gantry-validate");
    write(&dir, "gateway.yaml", GATEWAY);
    write(&dir, "bad.yaml", "kind: HTTPRoute\nmetadata: [unclosed\n");
    let out = validate(dir.path(), &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let message = report["findings"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(&format!("{}:", dir.path().join("bad.yaml").display())),
        "{message}"
    );
}

#[test]
fn an_unreadable_directory_is_an_error() {
    let out = validate(Path::new("/nonexistent/gantry-validate"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("error: reading /nonexistent"));
}
