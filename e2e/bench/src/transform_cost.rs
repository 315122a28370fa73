//! What HTTPTransform costs: one Gantry in front of a JSON echo backend (`gantry-echo`, which
//! answers with the request it saw, its body included) with four routes loaded in turn by
//! `wrk`: a plain GET, the same GET through header templates (request and response), a plain
//! POST of a JSON body, and the same POST through JSON body edits both ways. CPU time of the
//! proxy per request for each; the header templates' price per request, and the JSON edits'
//! price per KiB of body edited (the request's plus the answer's).
//!
//! Nothing is asserted: timings on a shared machine are not something a test can hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::backend::{self, Echo};
use super::interleave::{self, Runs, summarise};
use super::probe;
use super::process::{Proc, free_port, scratch};
use super::proxy::{self, Setup};
use super::results::TransformCost;
use super::wrk::{self, Counting};

pub const PLAIN_HOST: &str = "plain.bench.example.com";
pub const HEADERS_HOST: &str = "headers.bench.example.com";
pub const JSON_HOST: &str = "json.bench.example.com";
pub const PATH: &str = "/svc";

/// Gantry standalone files: a Gateway on `port`, the JSON echo's Service, the three routes
/// and the two HTTPTransforms.
pub fn config(port: u16, backend: SocketAddr) -> String {
    let route = |name: &str, host: &str, filter: &str| {
        let filters = if filter.is_empty() {
            String::new()
        } else {
            format!(
                "      filters:\n        - type: ExtensionRef\n          extensionRef: {{group: gantry.dev, kind: HTTPTransform, name: {filter}}}\n"
            )
        };
        format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: ["{host}"]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {PATH}}}}}]
{filters}      backendRefs: [{{name: backend, port: 80}}]
"#
        )
    };
    format!(
        r#"{base}---
apiVersion: gantry.dev/v1alpha1
kind: HTTPTransform
metadata: {{name: headers, namespace: default}}
spec:
  request:
    headers:
      set:
        - {{name: x-client, value: "${{client_ip}} via ${{route}}"}}
        - {{name: x-trace, value: "${{request_id}} ${{method}} ${{host}}${{path}}"}}
      add: [{{name: x-user, value: "${{header.user-agent}}"}}]
      remove: [x-secret]
  response:
    headers:
      set: [{{name: x-served-for, value: "${{client_ip}}"}}]
      remove: [x-internal]
---
apiVersion: gantry.dev/v1alpha1
kind: HTTPTransform
metadata: {{name: json, namespace: default}}
spec:
  request:
    body:
      maxBytes: 1048576
      rename: [{{from: /user_id, to: /user/id}}]
      remove: [/password]
      set: [{{pointer: /meta/route, template: "${{route}}"}}]
  response:
    body:
      maxBytes: 1048576
      remove: [/headers]
      rename: [{{from: /path, to: /upstream_path}}]
      set: [{{pointer: /gateway, value: gantry}}]
{plain}{headers}{json}"#,
        base = crate::config::base(port, backend),
        plain = route("plain", PLAIN_HOST, ""),
        headers = route("headers", HEADERS_HOST, "headers"),
        json = route("json", JSON_HOST, "json"),
    )
}

/// A JSON request body of about `kib` KiB.
pub fn body(kib: usize) -> String {
    let pad = "x".repeat((kib * 1024).saturating_sub(64));
    format!(r#"{{"user_id": 7, "password": "hunter2", "pad": "{pad}"}}"#)
}

/// The `wrk` Lua that POSTs `body` as JSON.
fn post_json(body: &str) -> String {
    format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[{body}]==]\n"
    )
}

/// Starts a JSON echo backend and Gantry, and loads the four cases in turn, `repeats` times
/// each, interleaved, with `connections` connections for `duration` per run.
pub fn measure(
    setup: &Setup,
    connections: u32,
    duration: Duration,
    warmup: Duration,
    repeats: usize,
    body_kib: usize,
) -> anyhow::Result<TransformCost> {
    let dir = scratch("transform-cost")?;
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir)?;
    let (mut echo, backend) = backend::start(&setup.bins, Echo::Json)?;
    let port = free_port()?;
    std::fs::write(config_dir.join("config.yaml"), config(port, backend))?;
    let mut command = proxy::gantry_command(setup, &config_dir)?;
    let mut proc = Proc::spawn("gantry", &mut command, Some(&dir.join("stderr.log")))?;
    let started = Instant::now();
    for host in [PLAIN_HOST, HEADERS_HOST, JSON_HOST] {
        probe::wait_for_200(
            port,
            host,
            PATH,
            started,
            Duration::from_secs(60),
            Duration::from_millis(2),
            || {
                echo.check_alive()?;
                proc.check_alive()
            },
        )
        .with_context(|| format!("gantry did not serve {host}"))?;
    }
    let url = format!("http://127.0.0.1:{port}{PATH}");
    let post = post_json(&body(body_kib));
    let cases: [(&str, &str); 4] = [
        (PLAIN_HOST, ""),
        (HEADERS_HOST, ""),
        (PLAIN_HOST, &post),
        (JSON_HOST, &post),
    ];
    let runs = Runs {
        warmup,
        duration,
        repeats,
        rotate: false,
    };
    let samples = interleave::rounds(&mut proc, cases.len(), runs, |i, duration| {
        let (host, prelude) = cases[i];
        wrk::run_with(
            &url,
            host,
            connections,
            duration,
            Counting::Summary,
            prelude,
        )
    })?;
    echo.check_alive()?;
    let _ = std::fs::remove_dir_all(&dir);
    let [plain_get, headers, plain_post, json] = [0, 1, 2, 3].map(|i| summarise(&samples[i]));
    // The answer echoes the request's body as a JSON string: about as large again.
    let kib_edited = (body_kib * 2) as f64;
    Ok(TransformCost {
        connections,
        seconds_per_run: duration.as_secs(),
        repeats: repeats.max(1),
        body_kib,
        header_templates_us_per_request: headers.cpu_us_per_request - plain_get.cpu_us_per_request,
        json_us_per_kib: (json.cpu_us_per_request - plain_post.cpu_us_per_request)
            / kib_edited.max(1.0),
        plain_get,
        headers,
        plain_post,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_loads_and_the_body_has_its_size() {
        let text = config(8080, "127.0.0.1:9000".parse().expect("an address"));
        assert_eq!(text.matches("kind: HTTPRoute").count(), 3);
        assert_eq!(text.matches("\nkind: HTTPTransform\n").count(), 2);
        assert!(text.contains("${client_ip} via ${route}"), "{text}");
        let b = body(4);
        assert!((4 * 1024 - 64..=4 * 1024).contains(&b.len()), "{}", b.len());
        serde_json::from_str::<serde_json::Value>(&b).expect("JSON");
    }
}
