//! Parses multi-document Kubernetes YAML into typed Kubernetes and Gateway API objects.
//!
//! Parsing never stops at the first problem: every document is tried, and each problem becomes
//! a [`ParseIssue`] naming the file and line. Unknown kinds are warnings (skipped); malformed
//! documents are errors, and so is a document with a field its type does not have (a typo
//! such as `hostnamez:` would otherwise be dropped silently, as strict field validation in
//! `kubectl` refuses it) or one the Gateway API CRDs' validation would refuse ([`schema`]).
//!
//! [`schema`]: super::schema

use std::fmt;
use std::sync::Arc;

use gantry_crds::backend_config::BackendConfigPolicy;
use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::experimental::tcproutes::TcpRoute;
use gantry_crds::gateway::experimental::udproutes::UdpRoute;
use gantry_crds::gateway::experimental::xbackendtrafficpolicies::XBackendTrafficPolicy;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::grpcroutes::GrpcRoute;
use gantry_crds::gateway::httproutes::HttpRoute;
use gantry_crds::gateway::listenersets::ListenerSet;
use gantry_crds::gateway::referencegrants::ReferenceGrant;
use gantry_crds::gateway::tlsroutes::TlsRoute;
use gantry_crds::params::GatewayParameters;
use gantry_crds::{Consumer, HttpComposition, HttpTransform, RateLimitPolicy, SecurityPolicy};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use serde_saphyr::with_deserializer_from_str;

use super::field_path::{FieldPath, Segment, line_of};
use crate::store::DEFAULT_NAMESPACE;

/// One object read from a file, with where it came from.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub object: Object,
    /// `file:line` of the document's first line.
    pub origin: String,
}

/// Every kind the store holds.
#[derive(Clone, Debug)]
pub enum Object {
    Namespace(Arc<Namespace>),
    GatewayClass(Arc<GatewayClass>),
    Gateway(Arc<Gateway>),
    ListenerSet(Arc<ListenerSet>),
    GatewayParameters(Arc<GatewayParameters>),
    HttpTransform(Arc<HttpTransform>),
    HttpComposition(Arc<HttpComposition>),
    HttpRoute(Arc<HttpRoute>),
    GrpcRoute(Arc<GrpcRoute>),
    TlsRoute(Arc<TlsRoute>),
    TcpRoute(Arc<TcpRoute>),
    UdpRoute(Arc<UdpRoute>),
    ReferenceGrant(Arc<ReferenceGrant>),
    BackendTlsPolicy(Arc<BackendTlsPolicy>),
    XBackendTrafficPolicy(Arc<XBackendTrafficPolicy>),
    BackendConfigPolicy(Arc<BackendConfigPolicy>),
    SecurityPolicy(Arc<SecurityPolicy>),
    RateLimitPolicy(Arc<RateLimitPolicy>),
    Consumer(Arc<Consumer>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
    ConfigMap(Arc<ConfigMap>),
}

/// A problem with one document. Warnings skip the document; errors make the bundle invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseIssue {
    #[error("{origin}: YAML syntax error: {message}")]
    Syntax { origin: String, message: String },
    #[error(
        "{origin}: document has no {field}; every object needs `apiVersion`, `kind` and `metadata.name`"
    )]
    MissingField { origin: String, field: &'static str },
    #[error("{origin}: {kind} {name} does not match its schema: {message}")]
    Invalid {
        origin: String,
        kind: String,
        name: String,
        message: String,
    },
    #[error(
        "{origin}: {kind} {name}: unknown field \"{field}\"; fix its spelling or remove it (the object is not loaded)"
    )]
    UnknownField {
        origin: String,
        kind: String,
        name: String,
        field: String,
    },
    #[error("{origin}: {kind} {name} is invalid: {field}: {message}")]
    Rejected {
        origin: String,
        kind: String,
        name: String,
        field: String,
        message: String,
    },
    #[error("{origin}: skipped {api_version} {kind} {name}: not a kind the proxy reads")]
    UnknownKind {
        origin: String,
        api_version: String,
        kind: String,
        name: String,
    },
}

impl ParseIssue {
    /// Warnings skip a document without making the bundle invalid.
    pub fn is_warning(&self) -> bool {
        matches!(self, Self::UnknownKind { .. })
    }
}

/// The header every Kubernetes object shares; read first to pick the type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: HeaderMeta,
}

#[derive(Default, Deserialize)]
struct HeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
}

/// Parses every document of `text`. `origin` names the source (usually a file path).
pub fn parse_documents(text: &str, origin: &str) -> (Vec<Parsed>, Vec<ParseIssue>) {
    parse_documents_with(text, origin, CrdValidation::On)
}

/// Whether objects are checked against the Gateway API CRDs' validation ([`super::schema`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrdValidation {
    /// As the API server checks them: what it would refuse is an error. Standalone mode.
    #[default]
    On,
    /// Only the types are checked: for the translator's golden cases, which also cover objects
    /// an API server with older CRDs admits, so the translator's own handling stays tested.
    Off,
}

/// [`parse_documents`], choosing whether the CRDs' validation applies.
pub fn parse_documents_with(
    text: &str,
    origin: &str,
    validation: CrdValidation,
) -> (Vec<Parsed>, Vec<ParseIssue>) {
    let mut objects = Vec::new();
    let mut issues = Vec::new();
    for doc in split_documents(text) {
        let at = format!("{origin}:{}", doc.first_line);
        match parse_document(doc, origin, &at, validation) {
            Ok(Some(object)) => objects.push(Parsed { object, origin: at }),
            Ok(None) => {}
            Err(found) => issues.extend(found),
        }
    }
    (objects, issues)
}

/// One YAML document of a multi-document stream, with its position.
struct Document<'a> {
    text: &'a str,
    /// 1-based line of the document's first line in the whole stream.
    first_line: usize,
}

/// Splits a stream at `---` lines. A `---` (or `...`) at column 0 always starts or ends a
/// document in YAML, so splitting the text keeps each document's line numbers exact, and a
/// broken document does not hide the ones after it.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            content == m || (content.starts_with(m) && content[m.len()..].starts_with([' ', '\t']))
        };
        if is_marker("---") || is_marker("...") {
            docs.push(Document {
                text: &text[start..offset],
                first_line,
            });
            // A `--- value` line carries content; keep it by blanking only the marker.
            start = offset;
            first_line = index + 1;
            if is_marker("...") {
                start = offset + line.len();
                first_line = index + 2;
            }
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        first_line,
    });
    docs
}

fn parse_document(
    doc: Document<'_>,
    origin: &str,
    at: &str,
    validation: CrdValidation,
) -> Result<Option<Object>, Vec<ParseIssue>> {
    let line_offset = doc.first_line as u64 - 1;
    let render = |err: &serde_saphyr::Error| {
        err.render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
            line_offset: line_offset,
            source_name: Some(origin),
        })
    };
    let value: Option<serde_json::Value> = serde_saphyr::from_str(doc.text).map_err(|e| {
        vec![ParseIssue::Syntax {
            origin: at.to_owned(),
            message: render(&e),
        }]
    })?;
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let header = Header::deserialize(&value).map_err(|e| {
        vec![ParseIssue::Syntax {
            origin: at.to_owned(),
            message: format!("not a Kubernetes object: {e}"),
        }]
    })?;
    let missing = |field| {
        vec![ParseIssue::MissingField {
            origin: at.to_owned(),
            field,
        }]
    };
    let api_version = header.api_version.ok_or_else(|| missing("apiVersion"))?;
    let kind = header.kind.ok_or_else(|| missing("kind"))?;
    let name = header
        .metadata
        .name
        .ok_or_else(|| missing("metadata.name"))?;
    let display_name = match &header.metadata.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    };
    let typed = TypedDoc {
        text: doc.text,
        origin,
        first_line: doc.first_line,
        at,
        kind: &kind,
        name: &display_name,
        render: &render,
    };
    let object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => Object::Namespace(typed.parse(&value)?),
        ("v1", "Service") => Object::Service(typed.parse(&value)?),
        ("v1", "Secret") => Object::Secret(super::secret::merge_string_data(typed.parse(&value)?)),
        ("v1", "ConfigMap") => Object::ConfigMap(typed.parse(&value)?),
        ("discovery.k8s.io/v1", "EndpointSlice") => Object::EndpointSlice(typed.parse(&value)?),
        (GW_V1 | GW_V1BETA1, "GatewayClass") => Object::GatewayClass(typed.parse(&value)?),
        (GW_V1 | GW_V1BETA1, "Gateway") => Object::Gateway(typed.parse(&value)?),
        (GW_V1 | GW_V1BETA1, "HTTPRoute") => Object::HttpRoute(typed.parse(&value)?),
        (GW_V1, "GRPCRoute") => Object::GrpcRoute(typed.parse(&value)?),
        (GW_V1 | GW_V1ALPHA2 | GW_V1ALPHA3, "TLSRoute") => Object::TlsRoute(typed.parse(&value)?),
        (GW_V1 | GW_V1ALPHA2, "TCPRoute") => Object::TcpRoute(typed.parse(&value)?),
        (GW_V1 | GW_V1ALPHA2, "UDPRoute") => Object::UdpRoute(typed.parse(&value)?),
        (GW_V1, "ListenerSet") | (GWX_V1ALPHA1, "XListenerSet") => {
            Object::ListenerSet(typed.parse(&value)?)
        }
        ("gantry.dev/v1alpha1", "GatewayParameters") => {
            Object::GatewayParameters(typed.parse(&value)?)
        }
        ("gantry.dev/v1alpha1", "HTTPTransform") => Object::HttpTransform(typed.parse(&value)?),
        ("gantry.dev/v1alpha1", "HTTPComposition") => Object::HttpComposition(typed.parse(&value)?),
        (GWX_V1ALPHA1, "XBackendTrafficPolicy") => {
            Object::XBackendTrafficPolicy(typed.parse(&value)?)
        }
        ("gantry.dev/v1alpha1", "BackendConfigPolicy") => {
            Object::BackendConfigPolicy(typed.parse(&value)?)
        }
        ("gantry.dev/v1alpha1", "SecurityPolicy") => Object::SecurityPolicy(typed.parse(&value)?),
        ("gantry.dev/v1alpha1", "RateLimitPolicy") => Object::RateLimitPolicy(typed.parse(&value)?),
        ("gantry.dev/v1alpha1", "Consumer") => Object::Consumer(typed.parse(&value)?),
        (GW_V1 | GW_V1BETA1, "ReferenceGrant") => Object::ReferenceGrant(typed.parse(&value)?),
        (GW_V1 | GW_V1ALPHA3, "BackendTLSPolicy") => Object::BackendTlsPolicy(typed.parse(&value)?),
        _ => {
            return Err(vec![ParseIssue::UnknownKind {
                origin: at.to_owned(),
                api_version,
                kind,
                name: display_name,
            }]);
        }
    };
    let violations = match validation {
        CrdValidation::On => super::schema::validate(&kind, &value),
        CrdValidation::Off => Vec::new(),
    };
    if !violations.is_empty() {
        return Err(violations
            .into_iter()
            .map(|v| ParseIssue::Rejected {
                origin: typed.origin_of(&v.field),
                kind: kind.clone(),
                name: display_name.clone(),
                field: v.field.to_string(),
                message: v.message,
            })
            .collect());
    }
    Ok(Some(object))
}

const GW_V1: &str = "gateway.networking.k8s.io/v1";
const GW_V1BETA1: &str = "gateway.networking.k8s.io/v1beta1";
const GW_V1ALPHA2: &str = "gateway.networking.k8s.io/v1alpha2";
const GW_V1ALPHA3: &str = "gateway.networking.k8s.io/v1alpha3";
/// The experimental group (`XListenerSet` is ListenerSet's name there; the fields are the same).
const GWX_V1ALPHA1: &str = "gateway.networking.x-k8s.io/v1alpha1";

/// A document whose kind is known, ready to be deserialised into its type.
struct TypedDoc<'a> {
    text: &'a str,
    /// The file, and the line of the document's first line in it.
    origin: &'a str,
    first_line: usize,
    /// `file:line` of the document.
    at: &'a str,
    kind: &'a str,
    name: &'a str,
    render: &'a dyn Fn(&serde_saphyr::Error) -> String,
}

impl TypedDoc<'_> {
    /// Deserialises through a JSON value first (one YAML parse for the whole document); only
    /// when that fails is the text parsed again straight into `T`, which accepts the same
    /// input YAML scalars can express and reports the error with its line and column. Every
    /// field `T` does not read is an error naming its path and line.
    fn parse<T: DeserializeOwned>(
        &self,
        value: &serde_json::Value,
    ) -> Result<Arc<T>, Vec<ParseIssue>> {
        let mut unknown = Vec::new();
        let parsed = serde_ignored::deserialize(value, |path| {
            unknown.push(FieldPath::from_ignored(&path));
        })
        .or_else(|_| {
            unknown.clear();
            with_deserializer_from_str(self.text, |de| {
                serde_ignored::deserialize(de, |path| {
                    unknown.push(FieldPath::from_ignored(&path));
                })
            })
        });
        let object = parsed.map_err(|e| {
            vec![ParseIssue::Invalid {
                origin: self.at.to_owned(),
                kind: self.kind.to_owned(),
                name: self.name.to_owned(),
                message: (self.render)(&e),
            }]
        })?;
        // `apiVersion` and `kind` are read by the header, not by every type.
        unknown.retain(|path| {
            !matches!(path.0.as_slice(), [Segment::Key(k)] if k == "apiVersion" || k == "kind")
        });
        if unknown.is_empty() {
            return Ok(Arc::new(object));
        }
        Err(unknown
            .into_iter()
            .map(|field| ParseIssue::UnknownField {
                origin: self.origin_of(&field),
                kind: self.kind.to_owned(),
                name: self.name.to_owned(),
                field: field.to_string(),
            })
            .collect())
    }

    /// `file:line` of the field at `path`, or of the document when it cannot be found.
    fn origin_of(&self, path: &FieldPath) -> String {
        match line_of(self.text, path) {
            Some(line) => format!("{}:{}", self.origin, line + self.first_line as u64 - 1),
            None => self.at.to_owned(),
        }
    }
}

impl Object {
    /// The Kubernetes kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Namespace(_) => "Namespace",
            Self::GatewayClass(_) => "GatewayClass",
            Self::Gateway(_) => "Gateway",
            Self::ListenerSet(_) => "ListenerSet",
            Self::GatewayParameters(_) => "GatewayParameters",
            Self::HttpTransform(_) => "HTTPTransform",
            Self::HttpComposition(_) => "HTTPComposition",
            Self::HttpRoute(_) => "HTTPRoute",
            Self::GrpcRoute(_) => "GRPCRoute",
            Self::TlsRoute(_) => "TLSRoute",
            Self::TcpRoute(_) => "TCPRoute",
            Self::UdpRoute(_) => "UDPRoute",
            Self::ReferenceGrant(_) => "ReferenceGrant",
            Self::BackendTlsPolicy(_) => "BackendTLSPolicy",
            Self::XBackendTrafficPolicy(_) => "XBackendTrafficPolicy",
            Self::BackendConfigPolicy(_) => "BackendConfigPolicy",
            Self::SecurityPolicy(_) => "SecurityPolicy",
            Self::RateLimitPolicy(_) => "RateLimitPolicy",
            Self::Consumer(_) => "Consumer",
            Self::Service(_) => "Service",
            Self::EndpointSlice(_) => "EndpointSlice",
            Self::Secret(_) => "Secret",
            Self::ConfigMap(_) => "ConfigMap",
        }
    }

    fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Namespace(o) => &o.metadata,
            Self::GatewayClass(o) => &o.metadata,
            Self::Gateway(o) => &o.metadata,
            Self::ListenerSet(o) => &o.metadata,
            Self::GatewayParameters(o) => &o.metadata,
            Self::HttpTransform(o) => &o.metadata,
            Self::HttpComposition(o) => &o.metadata,
            Self::HttpRoute(o) => &o.metadata,
            Self::GrpcRoute(o) => &o.metadata,
            Self::TlsRoute(o) => &o.metadata,
            Self::TcpRoute(o) => &o.metadata,
            Self::UdpRoute(o) => &o.metadata,
            Self::ReferenceGrant(o) => &o.metadata,
            Self::BackendTlsPolicy(o) => &o.metadata,
            Self::XBackendTrafficPolicy(o) => &o.metadata,
            Self::BackendConfigPolicy(o) => &o.metadata,
            Self::SecurityPolicy(o) => &o.metadata,
            Self::RateLimitPolicy(o) => &o.metadata,
            Self::Consumer(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::EndpointSlice(o) => &o.metadata,
            Self::Secret(o) => &o.metadata,
            Self::ConfigMap(o) => &o.metadata,
        }
    }

    /// `name` for cluster-scoped kinds, `namespace/name` (default namespace filled in)
    /// otherwise.
    pub fn key_string(&self) -> String {
        let meta = self.metadata();
        let name = meta.name.clone().unwrap_or_default();
        match self {
            Self::Namespace(_) | Self::GatewayClass(_) => name,
            _ => {
                let ns = meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                format!("{ns}/{name}")
            }
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.key_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents_and_reports_lines() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: gantry
  listeners:
  - name: http
    port: eighty
    protocol: HTTP
---
key: [unclosed
";
        let (objects, issues) = parse_documents(text, "a.yaml");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].origin, "a.yaml:1");
        assert_eq!(issues.len(), 3, "{issues:#?}");
        assert!(
            matches!(&issues[0], ParseIssue::UnknownKind { origin, .. } if origin == "a.yaml:5")
        );
        let invalid = issues[1].to_string();
        assert!(
            invalid.contains("a.yaml:10") && invalid.contains("Gateway gw"),
            "{invalid}"
        );
        assert!(
            invalid.contains("line 19"),
            "line of the bad port: {invalid}"
        );
        assert!(
            matches!(&issues[2], ParseIssue::Syntax { .. }),
            "{:?}",
            issues[2]
        );
    }

    #[test]
    fn an_unknown_field_is_an_error_naming_file_line_and_path() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: apps
spec:
  parentRefs:
  - name: gw
  hostnamez:
  - app.example
  rules:
  - backendRefs:
    - name: web
      port: 80
      wieght: 2
";
        let (objects, issues) = parse_documents(text, "routes.yaml");
        assert_eq!(objects.len(), 1, "only the Namespace loads");
        let messages: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "routes.yaml:14: HTTPRoute apps/web: unknown field \"spec.hostnamez\"; fix its spelling or remove it (the object is not loaded)",
                "routes.yaml:20: HTTPRoute apps/web: unknown field \"spec.rules[0].backendRefs[0].wieght\"; fix its spelling or remove it (the object is not loaded)",
            ]
        );
        assert!(issues.iter().all(|i| !i.is_warning()));
    }

    #[test]
    fn unknown_fields_of_core_kinds_are_errors_too() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels: {a: b}\nspec:\n  ports:\n  - port: 80\n    targetPrt: 8080\n";
        let (_, issues) = parse_documents(text, "svc.yaml");
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0]
                .to_string()
                .starts_with("svc.yaml:9: Service s: unknown field \"spec.ports[0].targetPrt\""),
            "{}",
            issues[0]
        );
    }

    #[test]
    fn known_fields_of_every_kind_are_not_reported() {
        let text = "\
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: a, annotations: {x: y}}
type: kubernetes.io/tls
data: {tls.crt: YQ==}
stringData: {tls.key: b}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
status:
  conditions: []
";
        let (objects, issues) = parse_documents(text, "a.yaml");
        assert_eq!(issues, []);
        assert_eq!(objects.len(), 2);
    }

    #[test]
    fn an_object_the_crds_refuse_is_an_error_naming_the_field_and_its_line() {
        let listeners: String = (0..65)
            .map(|i| {
                format!(
                    "  - name: l{i}\n    port: {}\n    protocol: HTTP\n",
                    1000 + i
                )
            })
            .collect();
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  gatewayClassName: gantry\n  listeners:\n{listeners}"
        );
        let (objects, issues) = parse_documents(&text, "gw.yaml");
        assert!(objects.is_empty());
        let messages: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "gw.yaml:7: Gateway gw is invalid: spec.listeners: Too many: 65: must have at most 64 items"
            ]
        );
    }
}
