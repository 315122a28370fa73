//! The chart's Grafana dashboards (`charts/gantry/dashboards/*.json`) and alert rules
//! (`charts/gantry/alerts/gantry-rules.yaml`) against the real binary: every PromQL expression
//! parses (`promtool check rules`), and every metric it names has series in the `/metrics` of a
//! proxy serving HTTP and HTTPS routes with retries and health checks, carrying every label
//! the expression uses (labels Prometheus adds when it scrapes aside). A panel that names a
//! metric or label the proxy does not export fails here, not on a user's empty graph.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_testkit::certs::{Ca, tls_secret_yaml};
use gantry_testkit::harness::{Proxy, echo_backends, free_port, get, get_host};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Labels a Prometheus scrape adds to every series (target labels of the Kubernetes service
/// discovery the chart's users run), which the proxy itself never exports.
const SCRAPE_LABELS: [&str; 6] = [
    "job",
    "instance",
    "namespace",
    "pod",
    "container",
    "service",
];

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/gantry")
}

/// One PromQL expression and where it comes from.
#[derive(Debug)]
struct Expr {
    origin: String,
    promql: String,
}

/// Every expression of the dashboards' panels, and the metric and label of each
/// `label_values(metric, label)` variable.
fn dashboard_exprs() -> (Vec<Expr>, Vec<(String, String, String)>) {
    let mut exprs = Vec::new();
    let mut variables = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("dashboards"))
        .expect("charts/gantry/dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "dashboards: {files:?}");
    for file in files {
        let name = file
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).expect("dashboard");
        let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
        assert!(dashboard["uid"].is_string(), "{name}: uid");
        let mut ids = BTreeSet::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(panel["id"].as_i64().expect("panel id")),
                "{name}: panel ids are unique"
            );
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {title} uses the dashboard's data source variable"
            );
            for target in panel["targets"].as_array().expect("targets") {
                exprs.push(Expr {
                    origin: format!("{name}: {title}"),
                    promql: target["expr"].as_str().expect("expr").to_owned(),
                });
            }
        }
        for variable in dashboard["templating"]["list"]
            .as_array()
            .expect("templating")
        {
            let Some(query) = variable["definition"].as_str() else {
                continue;
            };
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: variable query {query}"));
            let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
            variables.push((
                format!("{name}: variable {}", variable["name"]),
                metric.trim().to_owned(),
                label.trim().to_owned(),
            ));
        }
    }
    (exprs, variables)
}

fn alert_exprs() -> Vec<Expr> {
    let text = std::fs::read_to_string(chart().join("alerts/gantry-rules.yaml")).expect("rules");
    let rules: Value = serde_saphyr::from_str(&text).expect("rules YAML");
    let mut exprs = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("alert name");
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert}: a summary"
            );
            assert!(
                rule["labels"]["severity"].is_string(),
                "{alert}: a severity"
            );
            exprs.push(Expr {
                origin: format!("alert {alert}"),
                promql: rule["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    assert!(exprs.len() >= 5, "{exprs:?}");
    exprs
}

/// The expression with Grafana's variables replaced, as Prometheus would receive it.
fn as_sent(promql: &str) -> String {
    promql
        .replace("$__rate_interval", "5m")
        .replace("$gateway", ".*")
        .replace("$route", ".*")
        .replace("$cluster", ".*")
}

/// Every `gantry_*` metric name in an expression.
fn metric_names(promql: &str) -> BTreeSet<String> {
    identifiers(promql)
        .filter(|i| i.starts_with("gantry_"))
        .collect()
}

/// Identifiers outside quoted strings.
fn identifiers(promql: &str) -> impl Iterator<Item = String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in promql.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.into_iter()
}

/// The label names an expression uses: in selectors (`{a="x", b=~"y"}`) and in `by (...)` /
/// `without (...)`.
fn label_names(promql: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let chars: Vec<char> = promql.chars().collect();
    let mut i = 0;
    let mut quoted = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == '{' {
            // Label matchers up to the closing brace: `name op "value"`, comma separated.
            let mut j = i + 1;
            let mut name = String::new();
            let mut in_value = false;
            while j < chars.len() && (in_value || chars[j] != '}') {
                let d = chars[j];
                if d == '"' {
                    in_value = !in_value;
                } else if !in_value && (d.is_ascii_alphanumeric() || d == '_') {
                    name.push(d);
                } else if !in_value && "=!~".contains(d) && !name.is_empty() {
                    labels.insert(std::mem::take(&mut name));
                }
                j += 1;
            }
            i = j;
        }
        i += 1;
    }
    let text: String = promql.split_whitespace().collect::<Vec<_>>().join(" ");
    for keyword in ["by", "without"] {
        for (at, _) in text.match_indices(&format!("{keyword} (")) {
            let before = text[..at].chars().last();
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == '_') {
                continue;
            }
            let rest = &text[at + keyword.len() + 2..];
            let list = &rest[..rest.find(')').expect("closing parenthesis")];
            for label in list.split(',') {
                labels.insert(label.trim().to_owned());
            }
        }
    }
    labels
}

/// `/metrics`: each series name with the label names its samples carry.
fn exported(metrics: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').expect("closing brace")];
            let mut rest = body;
            while let Some((name, after)) = rest.split_once("=\"") {
                labels.insert(name.trim_start_matches(',').to_owned());
                // Skip the quoted value (escaped quotes included).
                let mut escaped = false;
                let close = after
                    .char_indices()
                    .find(|&(_, c)| {
                        let end = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        end
                    })
                    .map(|(i, _)| i)
                    .expect("closing quote");
                rest = &after[close + 1..];
            }
        }
    }
    series
}

/// `promtool check rules` over every expression, each as a recording rule.
fn promtool_accepts(exprs: &[Expr]) {
    let dir = gantry_testkit::harness::tempdir::TempDir::new("gantry-dashboards");
    let file = dir.path().join("exprs.yaml");
    let mut yaml = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let promql = serde_json::to_string(&as_sent(&expr.promql)).expect("a JSON string");
        yaml.push_str(&format!(
            "      - record: gantry:dashboard_check:{i}\n        expr: {promql}\n"
        ));
    }
    std::fs::write(&file, yaml).expect("writing the rules file");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian package prometheus, installed by .ci/install)");
    assert!(
        out.status.success(),
        "promtool refuses an expression: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(chart().join("alerts/gantry-rules.yaml"))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool refuses the alert rules: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

const HOST: &str = "shop.example.com";

/// A proxy whose `/metrics` has a series for everything the dashboards show: HTTP and HTTPS
/// traffic, a failing route with retries, a rejected request, a failed TLS handshake, a
/// Service with health checks, and a TCP route.
async fn busy_proxy() -> Proxy {
    let ca = Ca::new("dashboards CA");
    let leaf = ca.server(&[HOST]);
    let (services, _) = echo_backends(&[("default", "web")]).await;
    let (http, https, tcp) = (free_port(), free_port(), free_port());
    let gateway = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: gantry
  listeners:
    - {{name: http, port: {http}, protocol: HTTP}}
    - name: https
      port: {https}
      protocol: HTTPS
      hostname: {HOST}
      tls: {{certificateRefs: [{{kind: Secret, name: shop-tls}}]}}
    - {{name: tcp, port: {tcp}, protocol: TCP, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gantry}}
spec: {{controllerName: gantry.dev/gateway-controller}}
"#
    );
    let routes = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{HOST}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /flaky}}}}]
      retry: {{codes: [503], attempts: 1, backoff: 1ms}}
      backendRefs: [{{name: web, port: 8080}}]
    - backendRefs: [{{name: web, port: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: raw, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: web, port: 8080}}]}}]
---
apiVersion: gantry.dev/v1alpha1
kind: BackendConfigPolicy
metadata: {{name: web, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: web}}]
  healthCheck:
    active: {{type: HTTP, interval: 100ms, timeout: 1s, http: {{path: /_echo/health}}}}
"#
    );
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway),
            (
                "secrets.yaml",
                &tls_secret_yaml("default", "shop-tls", &leaf),
            ),
            ("services.yaml", &services),
            ("routes.yaml", &routes),
        ],
        &[],
    )
    .await;

    let base = format!("http://127.0.0.1:{http}");
    let ok = get_host(&format!("{base}/"), HOST, &[])
        .await
        .expect("GET /");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let failing = get_host(&format!("{base}/flaky"), HOST, &[("x-echo-status", "503")])
        .await
        .expect("GET /flaky");
    assert_eq!(failing.status, 503);
    // An escaped slash is refused before routing (RejectRequest, the default).
    let refused = get_host(&format!("{base}/a%2Fb"), HOST, &[])
        .await
        .expect("GET");
    assert_eq!(refused.status, 400);
    let tls = gantry_testkit::tls_client::TlsClient::new(ca.roots());
    let secure = tls
        .get(SocketAddr::from(([127, 0, 0, 1], https)), HOST, HOST, "/")
        .await
        .expect("GET over TLS");
    assert_eq!(secure.status, 200);
    // Not TLS at all on the HTTPS port: a handshake error.
    let mut plain = TcpStream::connect(("127.0.0.1", https))
        .await
        .expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    drop(plain);
    // Through the TCP route, so its counters move too.
    let raw = get(&format!("http://127.0.0.1:{tcp}/"))
        .await
        .expect("GET over TCP");
    assert_eq!(raw.status, 200);
    let admin = proxy.admin;
    proxy
        .eventually(
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(50),
            || async move {
                let text = get(&format!("http://{admin}/metrics"))
                    .await
                    .map(|r| r.text())
                    .unwrap_or_default();
                let series = exported(&text);
                if series.contains_key("gantry_health_check_probes_total")
                    && series.contains_key("gantry_tls_handshake_errors_total")
                {
                    Ok(())
                } else {
                    Err("no health probe or handshake error counted yet".to_owned())
                }
            },
        )
        .await;
    proxy
}

#[tokio::test]
async fn every_dashboard_and_alert_expression_names_what_the_proxy_exports() {
    let (mut exprs, variables) = dashboard_exprs();
    exprs.extend(alert_exprs());
    promtool_accepts(&exprs);

    let proxy = busy_proxy().await;
    let text = get(&format!("http://{}/metrics", proxy.admin))
        .await
        .expect("GET /metrics")
        .text();
    let series = exported(&text);
    let mut problems = Vec::new();
    let mut check = |origin: &str, metric: &str, labels: &BTreeSet<String>| {
        let Some(exported_labels) = series.get(metric) else {
            problems.push(format!("{origin}: no series {metric} in /metrics"));
            return;
        };
        for label in labels {
            if !SCRAPE_LABELS.contains(&label.as_str()) && !exported_labels.contains(label) {
                problems.push(format!(
                    "{origin}: {metric} has no label {label} (it has {exported_labels:?})"
                ));
            }
        }
    };
    for expr in &exprs {
        let metrics = metric_names(&expr.promql);
        assert!(
            !metrics.is_empty(),
            "{}: names no gantry metric",
            expr.origin
        );
        let labels = label_names(&expr.promql);
        for metric in &metrics {
            check(&expr.origin, metric, &labels);
        }
    }
    for (origin, selector, label) in &variables {
        let labels: BTreeSet<String> = label_names(selector)
            .into_iter()
            .chain([label.clone()])
            .collect();
        for metric in metric_names(selector) {
            check(origin, &metric, &labels);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_expression_reader_finds_metrics_and_labels() {
    let promql = r#"histogram_quantile(0.99, sum by (route, le) (rate(gantry_request_duration_seconds_bucket{gateway=~"$gateway",status_class!="5xx"}[5m]))) / on() group_left sum without (pod) (gantry_x_total{a="b,c=d"})"#;
    assert_eq!(
        metric_names(promql),
        BTreeSet::from([
            "gantry_request_duration_seconds_bucket".to_owned(),
            "gantry_x_total".to_owned()
        ])
    );
    assert_eq!(
        label_names(promql),
        ["a", "gateway", "le", "pod", "route", "status_class"]
            .map(str::to_owned)
            .into()
    );
    let series = exported(
        "# TYPE gantry_requests_total counter\ngantry_requests_total{gateway=\"a/b\",route=\"x,\\\"y\"} 3\ngantry_config_version 2\n",
    );
    assert_eq!(
        series["gantry_requests_total"],
        ["gateway", "route"].map(str::to_owned).into()
    );
    assert!(series["gantry_config_version"].is_empty());
}
