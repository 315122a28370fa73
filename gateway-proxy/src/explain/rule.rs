//! What the chosen rule does with the request: its filters (run for real, so a redirect's
//! `Location` or a CORS preflight is the data plane's own), its policies, its backends with
//! their shares, and the outcomes those make.

use gantry_translate::ir::{
    ClusterIr, HttpFilterIr, HttpRuleIr, LoadBalancerIr, PathModifierIr, SessionPersistenceIr,
};
use http::request::Parts;

use super::report::{
    Answerer, BackendSummary, FilterSummary, Outcome, PolicySummary, UpstreamRequest,
};
use crate::filters::{self, Deferred, FilterContext, LocalAnswer};
use crate::routing::{RouteEntry, Snapshot};
use crate::server::errors::ProxyError;
use crate::server::grpc_status;

/// The rule's part of an explanation.
#[derive(Debug, Default)]
pub struct RuleReport {
    pub filters: Vec<FilterSummary>,
    pub policies: Vec<PolicySummary>,
    pub backends: Vec<BackendSummary>,
    pub upstream_request: Option<UpstreamRequest>,
    pub outcomes: Vec<Outcome>,
}

/// Runs the rule's request filters on `parts` as the pipeline does and sums up the rest.
pub fn report(
    snapshot: &Snapshot,
    entry: &RouteEntry,
    ir: &HttpRuleIr,
    mut parts: Parts,
    context: &FilterContext<'_>,
) -> RuleReport {
    let grpc = grpc_status::is_grpc_request(&parts.headers);
    let mut out = RuleReport {
        filters: ir.filters.iter().map(filter).collect(),
        policies: rule_policies(ir),
        ..RuleReport::default()
    };
    let mut deferred = Deferred::default();
    if let Some(answer) =
        filters::apply_request(&entry.rule.filters, &mut parts, context, &mut deferred)
    {
        out.outcomes.push(local(answer));
        return out;
    }
    out.upstream_request = Some(UpstreamRequest {
        host: filters::host_header(&parts).unwrap_or_default().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
    });
    let total: u64 = ir.backends.iter().map(|b| u64::from(b.weight)).sum();
    for backend in &ir.backends {
        let cluster = backend
            .cluster
            .as_deref()
            .and_then(|name| snapshot.ir.clusters.get(name));
        let share = if total == 0 {
            0.0
        } else {
            f64::from(backend.weight) / total as f64
        };
        out.backends.push(BackendSummary {
            cluster: backend.cluster.clone(),
            weight: backend.weight,
            share,
            endpoints: cluster.map(|c| c.endpoints.clone()).unwrap_or_default(),
            protocol: cluster.map(|c| protocol(c, ir.grpc)),
            filters: backend.filters.iter().map(filter).collect(),
        });
        if let Some(cluster) = cluster {
            out.policies.extend(cluster_policies(cluster));
            if let Some(sp) = &backend.session_persistence {
                out.policies.push(session(sp, Some(cluster.name.clone())));
            }
        }
        if share == 0.0 {
            continue;
        }
        let proxy = |error: ProxyError| Outcome {
            by: Answerer::Proxy,
            kind: kind_of(&error).to_owned(),
            status: Some(error.status().as_u16()),
            grpc_status: grpc.then(|| error.grpc_code().value()),
            share,
            cluster: backend.cluster.clone(),
            location: None,
            message: error.to_string(),
        };
        out.outcomes.push(match cluster {
            // "requests that would have been sent to [an invalid backend] MUST receive a 500
            // status code" (HTTPRoute backendRefs), in proportion to its weight.
            None => Outcome {
                message: "the backendRef is invalid (see the route's ResolvedRefs condition): \
                          its share of requests gets a 500"
                    .to_owned(),
                ..proxy(ProxyError::InvalidBackend)
            },
            Some(c) if c.endpoints.is_empty() => Outcome {
                message: format!("{} has no ready endpoint", c.name),
                ..proxy(ProxyError::NoHealthyUpstream)
            },
            Some(c) => Outcome {
                by: Answerer::Backend,
                kind: "forwarded".to_owned(),
                status: None,
                grpc_status: None,
                share,
                cluster: Some(c.name.clone()),
                location: None,
                message: format!("forwarded to {} ({})", c.name, balancing(c)),
            },
        });
    }
    if out.outcomes.is_empty() {
        // "If no backendRefs or filters are specified that would handle the request, a 500
        // status code MUST be returned."
        let error = ProxyError::NoBackend;
        out.outcomes.push(Outcome {
            by: Answerer::Proxy,
            kind: kind_of(&error).to_owned(),
            status: Some(error.status().as_u16()),
            grpc_status: grpc.then(|| error.grpc_code().value()),
            share: 1.0,
            cluster: None,
            location: None,
            message: "the rule has no backend with weight and no filter that answers: 500"
                .to_owned(),
        });
    }
    out
}

/// The `kind` of an outcome the proxy answers.
pub fn kind_of(error: &ProxyError) -> &'static str {
    match error {
        ProxyError::NoRoute => "noRoute",
        ProxyError::Misdirected => "misdirected",
        ProxyError::InvalidBackend => "invalidBackend",
        ProxyError::NoBackend => "noBackend",
        ProxyError::InvalidRedirect => "invalidRedirect",
        ProxyError::NoHealthyUpstream => "noHealthyUpstream",
        ProxyError::Refused(_) => "refused",
        _ => "error",
    }
}

fn local(answer: LocalAnswer<'_>) -> Outcome {
    let outcome = |kind: &str, status, message: String| Outcome {
        by: Answerer::Route,
        kind: kind.to_owned(),
        status: Some(status),
        grpc_status: None,
        share: 1.0,
        cluster: None,
        location: None,
        message,
    };
    match answer {
        LocalAnswer::Redirect(redirect) => match redirect.location {
            Some(location) => {
                let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
                Outcome {
                    location: Some(location.clone()),
                    ..outcome(
                        "redirect",
                        redirect.status.as_u16(),
                        format!(
                            "RequestRedirect: {} to {location}",
                            redirect.status.as_u16()
                        ),
                    )
                }
            }
            None => {
                let error = ProxyError::InvalidRedirect;
                Outcome {
                    by: Answerer::Proxy,
                    ..outcome(
                        kind_of(&error),
                        error.status().as_u16(),
                        "the redirect's Location is not a valid header value: 500".to_owned(),
                    )
                }
            }
        },
        LocalAnswer::Preflight(headers) => {
            let names: Vec<String> = headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            outcome(
                "corsPreflight",
                200,
                format!(
                    "CORS preflight answered by the proxy ({})",
                    names.join("; ")
                ),
            )
        }
        LocalAnswer::Compose(_) => {
            let mut o = outcome(
                "composition",
                200,
                "HTTPComposition: the proxy calls its parts and joins their answers".to_owned(),
            );
            o.status = None;
            o
        }
    }
}

fn protocol(cluster: &ClusterIr, grpc: bool) -> String {
    let protocol = if grpc {
        gantry_translate::ir::UpstreamProtocol::H2c
    } else {
        cluster.protocol
    };
    serde_json::to_value(protocol)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn balancing(cluster: &ClusterIr) -> String {
    let lb = match cluster.backend_config.as_ref().map(|c| &c.load_balancer) {
        None => return "round robin".to_owned(),
        Some(lb) => lb,
    };
    match lb {
        LoadBalancerIr::RoundRobin { .. } => "round robin".to_owned(),
        LoadBalancerIr::Random => "random".to_owned(),
        LoadBalancerIr::LeastRequest { .. } => "least request".to_owned(),
        LoadBalancerIr::ConsistentHash(hash) => format!(
            "consistent hash on {}",
            serde_json::to_string(&hash.key).unwrap_or_default()
        ),
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A filter's type and a one-line summary.
pub fn filter(ir: &HttpFilterIr) -> FilterSummary {
    let path = |p: &PathModifierIr| match p {
        PathModifierIr::ReplaceFullPath(v) => format!("path {v}"),
        PathModifierIr::ReplacePrefixMatch(v) => format!("matched prefix replaced by {v}"),
    };
    let (type_, summary) = match ir {
        HttpFilterIr::RequestHeaderModifier(m) | HttpFilterIr::ResponseHeaderModifier(m) => {
            let mut parts = Vec::new();
            for h in &m.set {
                parts.push(format!("set {}: {}", h.name, h.value));
            }
            for h in &m.add {
                parts.push(format!("add {}: {}", h.name, h.value));
            }
            for name in &m.remove {
                parts.push(format!("remove {name}"));
            }
            let type_ = match ir {
                HttpFilterIr::RequestHeaderModifier(_) => "RequestHeaderModifier",
                _ => "ResponseHeaderModifier",
            };
            (type_, parts.join(", "))
        }
        HttpFilterIr::RequestRedirect(r) => {
            let mut parts = vec![format!("{}", r.status_code)];
            if let Some(s) = &r.scheme {
                parts.push(format!("scheme {s}"));
            }
            if let Some(h) = &r.hostname {
                parts.push(format!("hostname {h}"));
            }
            if let Some(p) = r.port {
                parts.push(format!("port {p}"));
            }
            if let Some(p) = &r.path {
                parts.push(path(p));
            }
            ("RequestRedirect", parts.join(", "))
        }
        HttpFilterIr::UrlRewrite(r) => {
            let mut parts = Vec::new();
            if let Some(h) = &r.hostname {
                parts.push(format!("hostname {h}"));
            }
            if let Some(p) = &r.path {
                parts.push(path(p));
            }
            ("URLRewrite", parts.join(", "))
        }
        HttpFilterIr::RequestMirror(m) => (
            "RequestMirror",
            format!(
                "{} of requests to {}",
                if m.numerator == m.denominator {
                    "all".to_owned()
                } else {
                    format!("{}/{}", m.numerator, m.denominator)
                },
                m.cluster
                    .as_deref()
                    .unwrap_or("an invalid backend (nothing is mirrored)")
            ),
        ),
        HttpFilterIr::ExternalAuth(a) => (
            "ExternalAuth",
            format!(
                "{} check by {}{}{}, before the other filters",
                match a.protocol {
                    gantry_translate::ir::ExternalAuthProtocol::Http => "HTTP",
                    gantry_translate::ir::ExternalAuthProtocol::Grpc => "gRPC",
                },
                a.cluster
                    .as_deref()
                    .unwrap_or("an invalid backend (every request is refused with 500)"),
                if a.path_prefix.is_empty() {
                    String::new()
                } else {
                    format!(" under {}", a.path_prefix)
                },
                if a.forward_body_max_bytes > 0 {
                    format!(
                        ", with up to {} bytes of the body",
                        a.forward_body_max_bytes
                    )
                } else {
                    String::new()
                }
            ),
        ),
        HttpFilterIr::Cors(c) => (
            "CORS",
            format!(
                "origins {}; methods {}",
                list(&c.allow_origins),
                list(&c.allow_methods)
            ),
        ),
        HttpFilterIr::Transform(t) => ("HTTPTransform", t.source.clone()),
        HttpFilterIr::Composition(c) => ("HTTPComposition", json(c).to_string()),
    };
    FilterSummary {
        type_: type_.to_owned(),
        summary,
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn rule_policies(ir: &HttpRuleIr) -> Vec<PolicySummary> {
    let mut out = Vec::new();
    if !ir.timeouts.is_empty() {
        let mut parts = Vec::new();
        if let Some(ms) = ir.timeouts.request_ms {
            parts.push(if ms == 0 {
                "request: none (0s)".to_owned()
            } else {
                format!("request {ms}ms")
            });
        }
        if let Some(ms) = ir.timeouts.backend_request_ms {
            parts.push(format!("backendRequest {ms}ms"));
        }
        out.push(PolicySummary {
            kind: "timeouts".to_owned(),
            name: None,
            applies_to: None,
            summary: parts.join(", "),
            settings: json(&ir.timeouts),
        });
    }
    if let Some(retry) = &ir.retry {
        out.push(PolicySummary {
            kind: "retry".to_owned(),
            name: None,
            applies_to: None,
            summary: format!(
                "{} attempt(s) after the first, on {}, backoff {}ms",
                retry.attempts,
                if retry.codes.is_empty() {
                    "connection failures".to_owned()
                } else {
                    format!(
                        "{} and connection failures",
                        retry
                            .codes
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                retry.backoff_ms
            ),
            settings: json(retry),
        });
    }
    if let Some(sp) = &ir.session_persistence {
        out.push(session(sp, None));
    }
    out
}

/// The SecurityPolicy governing the entry (checked before the filters; not evaluated here).
pub fn security(ir: &gantry_translate::ir::SecurityIr) -> PolicySummary {
    let summary = match &ir.refuse {
        Some(message) => format!("refuses every request with 500: {message}"),
        None => {
            let mut parts = Vec::new();
            if ir.authorization.is_some() {
                parts.push("client address rules");
            }
            if ir.api_key_auth.is_some() {
                parts.push("API key");
            }
            if ir.basic_auth.is_some() {
                parts.push("basic auth");
            }
            if ir.jwt.is_some() {
                parts.push("JWT");
            }
            if ir.oidc.is_some() {
                parts.push("an OpenID Connect login");
            }
            format!("requires {}", parts.join(", "))
        }
    };
    PolicySummary {
        kind: "SecurityPolicy".to_owned(),
        name: Some(ir.policy.to_string()),
        applies_to: None,
        summary,
        settings: json(ir),
    }
}

fn session(sp: &SessionPersistenceIr, applies_to: Option<String>) -> PolicySummary {
    let from_policy = !sp.from_rule();
    PolicySummary {
        kind: if from_policy {
            "XBackendTrafficPolicy".to_owned()
        } else {
            "sessionPersistence".to_owned()
        },
        name: from_policy.then(|| sp.source.clone()),
        applies_to,
        summary: format!(
            "session persistence: {} {:?}",
            serde_json::to_value(sp.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            sp.name
        ),
        settings: json(sp),
    }
}

fn cluster_policies(cluster: &ClusterIr) -> Vec<PolicySummary> {
    let mut out = Vec::new();
    let applies_to = Some(cluster.name.clone());
    if let Some(config) = &cluster.backend_config {
        let mut parts = vec![balancing(cluster)];
        if config.health_check.is_some() {
            parts.push("health checks".to_owned());
        }
        if config.circuit_breaker.is_some() {
            parts.push("circuit breaker".to_owned());
        }
        parts.push(format!(
            "connect timeout {}ms",
            config.connection.connect_timeout_ms
        ));
        out.push(PolicySummary {
            kind: "BackendConfigPolicy".to_owned(),
            name: Some(config.policy.clone()),
            applies_to: applies_to.clone(),
            summary: parts.join(", "),
            settings: json(config.as_ref()),
        });
    }
    if let Some(tls) = &cluster.tls {
        out.push(PolicySummary {
            kind: "BackendTLSPolicy".to_owned(),
            name: Some(tls.policy.to_string()),
            applies_to: applies_to.clone(),
            summary: format!("TLS to the backend, server name {}", tls.sni),
            settings: json(tls.as_ref()),
        });
    }
    if let Some(budget) = &cluster.retry_budget {
        out.push(PolicySummary {
            kind: "XBackendTrafficPolicy".to_owned(),
            name: Some(budget.policy.clone()),
            applies_to,
            summary: format!(
                "retry budget: {}% of requests per {}ms, at least {} per {}ms",
                budget.percent,
                budget.interval_ms,
                budget.min_retry_count,
                budget.min_retry_interval_ms
            ),
            settings: json(budget),
        });
    }
    out
}
