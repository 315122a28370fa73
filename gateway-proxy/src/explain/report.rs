//! What `explain` found, as serde structs: the `--output json` shape, documented in
//! docs/explain.md. Fields are only added, never renamed; optional ones are left out when
//! empty.

use serde::Serialize;

/// Everything `explain` says about one request.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub request: RequestSummary,
    /// The listener that takes the request; absent when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerSummary>,
    /// The route rule and match that answer; absent when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteSummary>,
    /// The rule's filters, in the order they run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSummary>,
    /// Settings that apply to the request besides filters: the rule's timeouts, retry and
    /// session persistence, and the policies of its backends' Services.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySummary>,
    /// The rule's backends with their weights, shares and endpoints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendSummary>,
    /// The request as it would reach a backend, after the rule's filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_request: Option<UpstreamRequest>,
    /// What happens to the request, each outcome with its share of requests (they add up to
    /// 1): forwarded to a backend, or answered by the proxy itself.
    pub outcomes: Vec<Outcome>,
    /// Every other route entry on the listener and every route meant for it that is not
    /// attached, each with why it did not answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// Anything else worth knowing (a `--gateway` that is not the one answering, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestSummary {
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The listener port the request is sent to (as the Gateway declares it).
    pub port: u16,
    /// The host routes are matched on (normalised), once the request passed the proxy's
    /// checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The path routes are matched on (normalised).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The TLS server name the client sends (https only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    pub client_ip: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSummary {
    /// `namespace/name`.
    pub gateway: String,
    /// The listener's name (`namespace/listenerset/name` for a ListenerSet's).
    pub name: String,
    pub port: u16,
    /// `HTTP`, `HTTPS` or `TLS`.
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSummary {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Index in `spec.rules`.
    pub rule: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    /// Index in the rule's `matches`.
    #[serde(rename = "match")]
    pub match_index: usize,
    /// The match, e.g. `PathPrefix /cart, method GET`.
    pub matched: String,
    /// The hostname the entry is served under (listener and route hostnames intersected).
    pub hostname: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterSummary {
    /// The filter type as the API names it (`RequestRedirect`, `URLRewrite`, `CORS`, ...;
    /// `HTTPTransform` and `HTTPComposition` for Gantry's ExtensionRef filters).
    #[serde(rename = "type")]
    pub type_: String,
    pub summary: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    /// `SecurityPolicy`, `timeouts`, `retry`, `sessionPersistence`, `BackendConfigPolicy`,
    /// `BackendTLSPolicy` or `XBackendTrafficPolicy`.
    pub kind: String,
    /// The policy object (`namespace/name`), for policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The backend it applies to (cluster `namespace/service:port`); absent for the rule's
    /// own settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applies_to: Option<String>,
    pub summary: String,
    /// The settings as the routing IR holds them (the shape `GET /config` shows).
    pub settings: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendSummary {
    /// `namespace/service:port`; absent for an invalid backendRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub weight: u32,
    /// The share of requests it receives (weight over the rule's total), 0 to 1.
    pub share: f64,
    /// Ready endpoint addresses.
    pub endpoints: Vec<String>,
    /// `HTTP/1.1` or `h2c`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// backendRef-level filters, run after the rule's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSummary>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRequest {
    /// The Host sent to the backend.
    pub host: String,
    /// Path and query sent to the backend.
    pub path: String,
}

/// Who answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Answerer {
    /// A backend: the request is forwarded.
    Backend,
    /// The route, through a filter: a redirect, a CORS preflight, an HTTPComposition.
    Route,
    /// The proxy itself, because nothing routes the request (404, 421, 500 for an invalid
    /// backend, a refused connection...).
    Proxy,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub by: Answerer,
    /// `forwarded`, `redirect`, `corsPreflight`, `composition`, `noRoute`, `misdirected`,
    /// `invalidBackend`, `noBackend`, `noHealthyUpstream`, `invalidRedirect`, `refused`,
    /// `noListener`, `tlsRefused`, `notHttp`.
    pub kind: String,
    /// The status the client gets, when the proxy or the route answers (absent when a
    /// backend answers, or when no HTTP response is given at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The gRPC status code the proxy answers a gRPC call with instead, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    /// Share of requests, 0 to 1.
    pub share: f64,
    /// The backend cluster (forwarded outcomes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A redirect's `Location`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub message: String,
}

/// Why a route entry, or a route, did not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Why {
    /// None of its hostnames on this listener matches the request's host.
    Hostname,
    /// Its hostname matches, its match does not.
    Match,
    /// It matches too, but the answering entry comes first (the spec's precedence).
    Precedence,
    /// It is not attached to this listener (or not accepted at all).
    NotAttached,
    /// Another listener of the port takes the host (or the SNI).
    Listener,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The rule and match, when the reason is about one entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub reason: Why,
    pub message: String,
}
