//! OpenTelemetry tracing against the real binary and a real OTLP receiver
//! (`gantry_testkit::otlp`, over HTTP and gRPC): a caller's trace is continued and passed to
//! the backend with the proxy's span as parent, the span carries the HTTP semantic-convention
//! attributes, the access log names the trace, sampling keeps its ratio and follows an
//! unsampled parent, the spans still queued are sent on SIGTERM, and a receiver that is down
//! costs no request.

use gantry_testkit::harness::{Proxy, echo_backends, gateway_yaml, get_host};
use gantry_testkit::otlp;
use gantry_testkit::ports::free_port;

const HOST: &str = "traced.example.com";
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn route() -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: web, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"{HOST}\"]\n  rules:\n\
         \x20   - backendRefs: [{{name: echo, port: 8080}}]\n"
    )
}

async fn serve(args: &[&str]) -> (Proxy, String, std::net::SocketAddr) {
    let (services, backends) = echo_backends(&[("default", "echo")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("route.yaml", &route()),
        ],
        args,
    )
    .await;
    (proxy, format!("http://127.0.0.1:{port}/"), backends[0])
}

/// The `traceparent` the backend received.
fn forwarded(reply: &gantry_testkit::harness::Reply) -> String {
    reply.echo().headers["traceparent"][0].clone()
}

#[tokio::test]
async fn a_callers_trace_is_continued_to_the_backend_and_exported_over_http() {
    let (receiver, spans) = otlp::spawn_http().await.expect("receiver");
    let endpoint = format!("http://{receiver}");
    let (proxy, base, backend) = serve(&[
        "--tracing-endpoint",
        &endpoint,
        "--tracing-service-name",
        "edge",
        // Only the caller's flag decides: an unsampled ratio would drop new traces.
        "--tracing-sampling-ratio",
        "0",
    ])
    .await;
    let incoming = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let reply = get_host(
        &format!("{base}orders"),
        HOST,
        &[("traceparent", &incoming), ("tracestate", "vendor=1")],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
    let sent = forwarded(&reply);
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts[1], PARENT_TRACE, "the same trace upstream: {sent}");
    assert_ne!(
        parts[2], PARENT_SPAN,
        "the proxy's own span is the parent upstream"
    );
    assert_eq!(parts[3], "01");
    assert_eq!(reply.echo().headers["tracestate"], ["vendor=1"]);

    let span = spans.wait_for(1).await.remove(0);
    assert_eq!(span.trace_id, PARENT_TRACE);
    assert_eq!(
        span.parent_span_id, PARENT_SPAN,
        "a child of the caller's span"
    );
    assert_eq!(
        span.span_id, parts[2],
        "the span the backend was told is its parent"
    );
    assert_eq!(span.kind, 2, "SERVER");
    assert_eq!(span.service, "edge");
    assert_eq!(span.name, "GET default/web");
    assert!(span.end >= span.start && span.start > 0);
    assert_eq!(span.attribute("http.request.method"), Some("GET"));
    assert_eq!(span.attribute("url.path"), Some("/orders"));
    assert_eq!(span.attribute("http.response.status_code"), Some("200"));
    assert_eq!(span.attribute("gantry.route"), Some("default/web"));
    assert_eq!(span.attribute("gantry.gateway"), Some("default/gw"));
    assert_eq!(
        span.attribute("gantry.upstream.address"),
        Some(backend.to_string().as_str())
    );
    assert_eq!(span.attribute("server.address"), Some(HOST));
    assert_eq!(span.status, 0);
    assert!(
        proxy
            .log()
            .contains(&format!("trace_id=\"{PARENT_TRACE}\"")),
        "the access log names the trace:\n{}",
        proxy.log()
    );

    // A request the proxy answers itself (no route): a span too, with its reason.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let missing = get_host(
        &base,
        "nowhere.example.com",
        &[("traceparent", &format!("00-{other}-b7ad6b7169203331-01"))],
    )
    .await
    .expect("request");
    assert_eq!(missing.status, 404);
    let all = spans.wait_for(2).await;
    let unrouted = &all[1];
    assert_eq!(unrouted.trace_id, other);
    assert_eq!(unrouted.name, "GET");
    assert_eq!(unrouted.attribute("http.response.status_code"), Some("404"));
    assert_eq!(unrouted.attribute("gantry.route"), None);
    assert!(unrouted.events.iter().any(|e| e == "gantry.proxy_answer"));

    // Without a valid parent, a new trace is sampled by the ratio: 0 here.
    let unsampled = get_host(&base, HOST, &[("traceparent", "garbage")])
        .await
        .expect("request");
    let sent = forwarded(&unsampled);
    assert!(
        sent.ends_with("-00") && !sent.contains(PARENT_TRACE),
        "{sent}"
    );
}

#[tokio::test]
async fn sampling_keeps_its_ratio_over_grpc_and_follows_an_unsampled_parent() {
    let (receiver, spans) = otlp::spawn_grpc().await.expect("receiver");
    let endpoint = format!("http://{receiver}");
    let (proxy, base, _) = serve(&[
        "--tracing-endpoint",
        &endpoint,
        "--tracing-protocol",
        "grpc",
        "--tracing-sampling-ratio",
        "0.25",
    ])
    .await;
    // An unsampled caller: not sampled here either, whatever the ratio.
    let unsampled = get_host(
        &base,
        HOST,
        &[(
            "traceparent",
            &format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00"),
        )],
    )
    .await
    .expect("request");
    assert!(forwarded(&unsampled).ends_with("-00"));
    let mut sampled = 0;
    for _ in 0..400 {
        let reply = get_host(&base, HOST, &[]).await.expect("request");
        assert_eq!(reply.status, 200);
        if forwarded(&reply).ends_with("-01") {
            sampled += 1;
        }
    }
    // Binomial(400, 0.25): mean 100, sd 8.7; five sd either way.
    assert!((57..=143).contains(&sampled), "{sampled} of 400 sampled");
    // Every sampled request's span arrives, and only those: the queue is first in, first out,
    // so the unsampled request's span would have come first.
    proxy.terminate();
    let all = spans.wait_for(sampled).await;
    assert_eq!(all.len(), sampled);
    assert!(all.iter().all(|s| s.trace_id != PARENT_TRACE));
}

#[tokio::test]
async fn a_receiver_that_is_down_costs_no_request() {
    // A port nothing listens on.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let endpoint = format!("http://{gone}");
    let (proxy, base, _) = serve(&["--tracing-endpoint", &endpoint]).await;
    for _ in 0..200 {
        let reply = get_host(&base, HOST, &[]).await.expect("request");
        assert_eq!(reply.status, 200);
    }
    proxy
        .wait_metric(
            "gantry_tracing_spans_total{result=\"export_failed\"}",
            200.0,
        )
        .await;
}
