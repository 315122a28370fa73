//! What the API server would refuse: the Gateway API CRDs' OpenAPI validation (list sizes,
//! string lengths and patterns, number ranges) and the CEL rules that change behaviour, applied
//! to standalone YAML so that a file the cluster would reject is rejected here too.
//!
//! The limits are those of the upstream CRDs of Gateway API v1.5 (the version of the
//! `gateway-api` crate); the generated CRDs under `charts/gantry/gateway-api-crds/` do not
//! carry them. Validation runs on the document as parsed (a JSON value), so every violation
//! names the field path the API server would name.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::field_path::FieldPath;

/// One reason the API server would refuse an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: FieldPath,
    pub message: String,
}

/// A rule on the value at a path.
#[derive(Clone, Copy)]
enum Rule {
    MinItems(usize),
    MaxItems(usize),
    MaxProperties(usize),
    MinLength(usize),
    MaxLength(usize),
    Pattern(&'static LazyLock<Regex>, &'static str),
    Range(i64, i64),
}

/// `(path, rule)`: the path's `[*]` steps apply the rule to every item.
type Check = (&'static str, Rule);

use Rule::{MaxItems, MaxLength, MaxProperties, MinItems, MinLength, Pattern, Range};

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| {
            #[allow(clippy::expect_used)] // a constant pattern, checked by the tests
            Regex::new($re).expect("valid pattern")
        });
    };
}

pattern!(
    HOSTNAME,
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
);
pattern!(
    PRECISE_HOSTNAME,
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
);
pattern!(
    SECTION_NAME,
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
);
pattern!(NAMESPACE, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
pattern!(KIND, r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$");
pattern!(
    GROUP,
    r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
);
pattern!(HEADER_NAME, r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$");
pattern!(
    PROTOCOL,
    r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$"
);
pattern!(
    CONTROLLER_NAME,
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
);
pattern!(
    PATH_CHARACTERS,
    r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
);

const HOSTNAME_RULES: [Rule; 3] = [
    MinLength(1),
    MaxLength(253),
    Pattern(
        &HOSTNAME,
        "a lowercase RFC 1123 hostname, optionally prefixed by `*.`",
    ),
];
const PRECISE_HOSTNAME_RULES: [Rule; 3] = [
    MinLength(1),
    MaxLength(253),
    Pattern(&PRECISE_HOSTNAME, "a lowercase RFC 1123 hostname"),
];
const SECTION_NAME_RULES: [Rule; 3] = [
    MinLength(1),
    MaxLength(253),
    Pattern(&SECTION_NAME, "a lowercase RFC 1123 subdomain"),
];
const NAMESPACE_RULES: [Rule; 3] = [
    MinLength(1),
    MaxLength(63),
    Pattern(&NAMESPACE, "a lowercase RFC 1123 label"),
];
const KIND_RULES: [Rule; 3] = [
    MinLength(1),
    MaxLength(63),
    Pattern(&KIND, "a kind: letters, digits and `-`"),
];
const GROUP_RULES: [Rule; 2] = [
    MaxLength(253),
    Pattern(&GROUP, "empty or a lowercase RFC 1123 subdomain"),
];
const OBJECT_NAME_RULES: [Rule; 2] = [MinLength(1), MaxLength(253)];
const HEADER_NAME_RULES: [Rule; 3] = [
    MinLength(1),
    MaxLength(256),
    Pattern(&HEADER_NAME, "an HTTP header name (RFC 7230 token)"),
];
const PORT_RULES: [Rule; 1] = [Range(1, 65535)];

/// The checks every object reference of a route (`parentRefs[*]`, `backendRefs[*]`) has.
fn reference_checks(prefix: &str, with_weight: bool, out: &mut Vec<(String, Rule)>) {
    let mut add = |field: &str, rules: &[Rule]| {
        for rule in rules {
            out.push((format!("{prefix}.{field}"), *rule));
        }
    };
    add("group", &GROUP_RULES);
    add("kind", &KIND_RULES);
    add("name", &OBJECT_NAME_RULES);
    add("namespace", &NAMESPACE_RULES);
    add("port", &PORT_RULES);
    if with_weight {
        add("weight", &[Range(0, 1_000_000)]);
    } else {
        add("sectionName", &SECTION_NAME_RULES);
    }
}

/// The header modifier filter's checks (request and response, rule and backendRef level).
fn header_filter_checks(prefix: &str, out: &mut Vec<(String, Rule)>) {
    for list in ["set", "add"] {
        out.push((format!("{prefix}.{list}"), MaxItems(16)));
        for rule in HEADER_NAME_RULES {
            out.push((format!("{prefix}.{list}[*].name"), rule));
        }
        out.push((format!("{prefix}.{list}[*].value"), MinLength(1)));
        out.push((format!("{prefix}.{list}[*].value"), MaxLength(4096)));
    }
    out.push((format!("{prefix}.remove"), MaxItems(16)));
    for rule in HEADER_NAME_RULES {
        out.push((format!("{prefix}.remove[*]"), rule));
    }
}

fn filter_checks(prefix: &str, out: &mut Vec<(String, Rule)>) {
    out.push((prefix.to_owned(), MaxItems(16)));
    header_filter_checks(&format!("{prefix}[*].requestHeaderModifier"), out);
    header_filter_checks(&format!("{prefix}[*].responseHeaderModifier"), out);
    for filter in ["requestRedirect", "urlRewrite"] {
        for rule in PRECISE_HOSTNAME_RULES {
            out.push((format!("{prefix}[*].{filter}.hostname"), rule));
        }
        for field in ["replaceFullPath", "replacePrefixMatch"] {
            out.push((
                format!("{prefix}[*].{filter}.path.{field}"),
                MaxLength(1024),
            ));
        }
    }
    out.push((format!("{prefix}[*].requestRedirect.port"), Range(1, 65535)));
    reference_checks(&format!("{prefix}[*].requestMirror.backendRef"), false, out);
}

/// The checks every route kind shares: parentRefs and hostnames.
fn route_checks(out: &mut Vec<(String, Rule)>, hostnames_required: bool) {
    out.push(("spec.parentRefs".to_owned(), MaxItems(32)));
    reference_checks("spec.parentRefs[*]", false, out);
    if hostnames_required {
        out.push(("spec.hostnames".to_owned(), MinItems(1)));
    }
    out.push(("spec.hostnames".to_owned(), MaxItems(16)));
    for rule in HOSTNAME_RULES {
        out.push(("spec.hostnames[*]".to_owned(), rule));
    }
}

fn checks_for(kind: &str) -> Vec<(String, Rule)> {
    let mut out: Vec<(String, Rule)> = Vec::new();
    let add = |out: &mut Vec<(String, Rule)>, checks: &[Check]| {
        out.extend(checks.iter().map(|(p, r)| ((*p).to_owned(), *r)));
    };
    match kind {
        "GatewayClass" => add(
            &mut out,
            &[
                ("spec.controllerName", MinLength(1)),
                ("spec.controllerName", MaxLength(253)),
                (
                    "spec.controllerName",
                    Pattern(
                        &CONTROLLER_NAME,
                        "a domain-prefixed path such as example.com/bar",
                    ),
                ),
                ("spec.description", MaxLength(64)),
            ],
        ),
        "Gateway" => {
            add(
                &mut out,
                &[
                    ("spec.gatewayClassName", MinLength(1)),
                    ("spec.gatewayClassName", MaxLength(253)),
                    ("spec.addresses", MaxItems(16)),
                    ("spec.listeners", MinItems(1)),
                    ("spec.listeners", MaxItems(64)),
                    ("spec.listeners[*].port", Range(1, 65535)),
                    ("spec.listeners[*].protocol", MinLength(1)),
                    ("spec.listeners[*].protocol", MaxLength(255)),
                    (
                        "spec.listeners[*].protocol",
                        Pattern(
                            &PROTOCOL,
                            "a protocol name such as HTTP or example.com/proto",
                        ),
                    ),
                    ("spec.listeners[*].allowedRoutes.kinds", MaxItems(8)),
                    ("spec.listeners[*].tls.certificateRefs", MaxItems(64)),
                    ("spec.listeners[*].tls.options", MaxProperties(16)),
                    ("spec.infrastructure.labels", MaxProperties(8)),
                    ("spec.infrastructure.annotations", MaxProperties(8)),
                ],
            );
            for rule in SECTION_NAME_RULES {
                out.push(("spec.listeners[*].name".to_owned(), rule));
            }
            for rule in HOSTNAME_RULES {
                out.push(("spec.listeners[*].hostname".to_owned(), rule));
            }
            reference_checks("spec.listeners[*].tls.certificateRefs[*]", false, &mut out);
        }
        "HTTPRoute" => {
            route_checks(&mut out, false);
            add(
                &mut out,
                &[
                    ("spec.rules", MaxItems(16)),
                    ("spec.rules[*].matches", MaxItems(64)),
                    ("spec.rules[*].matches[*].path.value", MaxLength(1024)),
                    ("spec.rules[*].matches[*].headers", MaxItems(16)),
                    ("spec.rules[*].matches[*].headers[*].value", MinLength(1)),
                    ("spec.rules[*].matches[*].headers[*].value", MaxLength(4096)),
                    ("spec.rules[*].matches[*].queryParams", MaxItems(16)),
                    (
                        "spec.rules[*].matches[*].queryParams[*].value",
                        MinLength(1),
                    ),
                    (
                        "spec.rules[*].matches[*].queryParams[*].value",
                        MaxLength(1024),
                    ),
                    ("spec.rules[*].backendRefs", MaxItems(16)),
                ],
            );
            for rule in HEADER_NAME_RULES {
                out.push(("spec.rules[*].matches[*].headers[*].name".to_owned(), rule));
                out.push((
                    "spec.rules[*].matches[*].queryParams[*].name".to_owned(),
                    rule,
                ));
            }
            for rule in SECTION_NAME_RULES {
                out.push(("spec.rules[*].name".to_owned(), rule));
            }
            filter_checks("spec.rules[*].filters", &mut out);
            filter_checks("spec.rules[*].backendRefs[*].filters", &mut out);
            reference_checks("spec.rules[*].backendRefs[*]", true, &mut out);
        }
        "GRPCRoute" => {
            route_checks(&mut out, false);
            add(
                &mut out,
                &[
                    ("spec.rules", MaxItems(16)),
                    ("spec.rules[*].matches", MaxItems(64)),
                    ("spec.rules[*].matches[*].method.service", MaxLength(1024)),
                    ("spec.rules[*].matches[*].method.method", MaxLength(1024)),
                    ("spec.rules[*].matches[*].headers", MaxItems(16)),
                    ("spec.rules[*].matches[*].headers[*].value", MinLength(1)),
                    ("spec.rules[*].matches[*].headers[*].value", MaxLength(4096)),
                    ("spec.rules[*].backendRefs", MaxItems(16)),
                ],
            );
            for rule in HEADER_NAME_RULES {
                out.push(("spec.rules[*].matches[*].headers[*].name".to_owned(), rule));
            }
            filter_checks("spec.rules[*].filters", &mut out);
            filter_checks("spec.rules[*].backendRefs[*].filters", &mut out);
            reference_checks("spec.rules[*].backendRefs[*]", true, &mut out);
        }
        "TLSRoute" | "TCPRoute" | "UDPRoute" => {
            route_checks(&mut out, false);
            add(
                &mut out,
                &[
                    ("spec.rules", MinItems(1)),
                    ("spec.rules", MaxItems(16)),
                    ("spec.rules[*].backendRefs", MinItems(1)),
                    ("spec.rules[*].backendRefs", MaxItems(16)),
                ],
            );
            reference_checks("spec.rules[*].backendRefs[*]", true, &mut out);
        }
        "ReferenceGrant" => add(
            &mut out,
            &[
                ("spec.from", MinItems(1)),
                ("spec.from", MaxItems(16)),
                ("spec.to", MinItems(1)),
                ("spec.to", MaxItems(16)),
            ],
        ),
        "BackendTLSPolicy" => {
            add(
                &mut out,
                &[
                    ("spec.targetRefs", MinItems(1)),
                    ("spec.targetRefs", MaxItems(16)),
                    ("spec.validation.caCertificateRefs", MaxItems(8)),
                    ("spec.validation.subjectAltNames", MaxItems(5)),
                ],
            );
            for rule in PRECISE_HOSTNAME_RULES {
                out.push(("spec.validation.hostname".to_owned(), rule));
            }
        }
        _ => {}
    }
    out
}

/// The Gateway API kinds, whose names the API server checks as RFC 1123 subdomains.
fn is_gateway_api(kind: &str) -> bool {
    matches!(
        kind,
        "GatewayClass"
            | "Gateway"
            | "HTTPRoute"
            | "GRPCRoute"
            | "TLSRoute"
            | "TCPRoute"
            | "UDPRoute"
            | "ReferenceGrant"
            | "BackendTLSPolicy"
    )
}

/// Every violation of `value`, a document of kind `kind`, in document order of the checks.
pub fn validate(kind: &str, value: &Value) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut meta: Vec<(String, Rule)> = vec![("metadata.name".to_owned(), MaxLength(253))];
    if is_gateway_api(kind) {
        meta.push((
            "metadata.name".to_owned(),
            Pattern(&SECTION_NAME, "a lowercase RFC 1123 subdomain"),
        ));
    }
    for rule in NAMESPACE_RULES {
        meta.push(("metadata.namespace".to_owned(), rule));
    }
    for (path, rule) in meta.iter().chain(checks_for(kind).iter()) {
        let steps: Vec<&str> = path.split('.').collect();
        each_at(value, &steps, FieldPath::default(), &mut |field, found| {
            if let Some(message) = check(*rule, found) {
                violations.push(Violation { field, message });
            }
        });
    }
    cel_rules(kind, value, &mut violations);
    violations
}

/// Calls `f` with every value at `steps` (a step ending in `[*]` walks every item).
fn each_at(value: &Value, steps: &[&str], at: FieldPath, f: &mut dyn FnMut(FieldPath, &Value)) {
    let Some((step, rest)) = steps.split_first() else {
        if !value.is_null() {
            f(at, value);
        }
        return;
    };
    let (key, every) = match step.strip_suffix("[*]") {
        Some(key) => (key, true),
        None => (*step, false),
    };
    let Some(child) = value.get(key) else { return };
    let at = at.key(key);
    if !every {
        return each_at(child, rest, at, f);
    }
    if let Some(items) = child.as_array() {
        for (i, item) in items.iter().enumerate() {
            each_at(item, rest, at.index(i), f);
        }
    }
}

/// The API server's message when `value` breaks `rule`, in its words.
fn check(rule: Rule, value: &Value) -> Option<String> {
    let chars = || value.as_str().map(|s| s.chars().count());
    match rule {
        MinItems(n) => {
            let len = value.as_array()?.len();
            (len < n).then(|| format!("Invalid value: {len}: must have at least {n} items"))
        }
        MaxItems(n) => {
            let len = value.as_array()?.len();
            (len > n).then(|| format!("Too many: {len}: must have at most {n} items"))
        }
        MaxProperties(n) => {
            let len = value.as_object()?.len();
            (len > n).then(|| format!("Too many: {len}: must have at most {n} items"))
        }
        MinLength(n) => (chars()? < n)
            .then(|| format!("Invalid value: {value}: should be at least {n} chars long")),
        MaxLength(n) => {
            let len = chars()?;
            (len > n).then(|| format!("Too long: may not be more than {n} bytes (is {len})"))
        }
        Pattern(re, what) => {
            let s = value.as_str()?;
            (!re.is_match(s)).then(|| {
                format!(
                    "Invalid value: {value}: should match '{}' ({what})",
                    re.as_str()
                )
            })
        }
        Range(min, max) => {
            let n = value.as_i64()?;
            if n < min {
                Some(format!(
                    "Invalid value: {n}: should be greater than or equal to {min}"
                ))
            } else if n > max {
                Some(format!(
                    "Invalid value: {n}: should be less than or equal to {max}"
                ))
            } else {
                None
            }
        }
    }
}

/// The CEL rules of the CRDs that the translator would otherwise resolve its own way.
fn cel_rules(kind: &str, value: &Value, out: &mut Vec<Violation>) {
    let spec = FieldPath::default().key("spec");
    let items = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    match kind {
        "Gateway" => {
            let listeners = spec.key("listeners");
            let list = items(value.pointer("/spec/listeners"));
            let mut names = HashSet::new();
            let mut combinations = HashSet::new();
            for (i, l) in list.iter().enumerate() {
                let at = listeners.index(i);
                let str_of = |k: &str| l.get(k).and_then(Value::as_str);
                let protocol = str_of("protocol").unwrap_or_default();
                if let Some(name) = str_of("name")
                    && !names.insert(name)
                {
                    out.push(Violation {
                        field: listeners.clone(),
                        message: format!(
                            "Invalid value: \"array\": Listener name must be unique within the Gateway (\"{name}\" repeats)"
                        ),
                    });
                }
                let combination = (
                    l.get("port").and_then(Value::as_i64),
                    protocol,
                    str_of("hostname").unwrap_or_default(),
                );
                if !combinations.insert(combination) {
                    out.push(Violation {
                        field: at.clone(),
                        message: "Invalid value: \"array\": Combination of port, protocol and hostname must be unique for each listener".to_owned(),
                    });
                }
                if matches!(protocol, "HTTP" | "TCP" | "UDP")
                    && l.get("tls").is_some_and(|t| !t.is_null())
                {
                    out.push(Violation {
                        field: at.key("tls"),
                        message: "Invalid value: \"object\": tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']".to_owned(),
                    });
                }
                if matches!(protocol, "TCP" | "UDP")
                    && l.get("hostname").is_some_and(|h| !h.is_null())
                {
                    out.push(Violation {
                        field: at.key("hostname"),
                        message: "Invalid value: \"object\": hostname must not be specified for protocols ['TCP', 'UDP']".to_owned(),
                    });
                }
            }
        }
        "HTTPRoute" | "GRPCRoute" => {
            let rules = items(value.pointer("/spec/rules"));
            let total: usize = rules.iter().map(|r| items(r.get("matches")).len()).sum();
            if total > 128 {
                out.push(Violation {
                    field: spec.key("rules"),
                    message: format!("Invalid value: \"array\": While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128 (it is {total})"),
                });
            }
            let mut names = HashSet::new();
            for (i, rule) in rules.iter().enumerate() {
                let at = spec.key("rules").index(i);
                if let Some(name) = rule.get("name").and_then(Value::as_str)
                    && !names.insert(name.to_owned())
                {
                    out.push(Violation {
                        field: spec.key("rules"),
                        message: format!("Invalid value: \"array\": Rule name must be unique within the route (\"{name}\" repeats)"),
                    });
                }
                filter_rules(&items(rule.get("filters")), &at.key("filters"), out);
                if kind == "HTTPRoute" {
                    for (m, matched) in items(rule.get("matches")).iter().enumerate() {
                        if let Some(path) = matched.get("path") {
                            path_match_rules(path, &at.key("matches").index(m).key("path"), out);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// A filter type appears at most once per list, and redirect excludes rewrite.
fn filter_rules(filters: &[Value], at: &FieldPath, out: &mut Vec<Violation>) {
    let count = |t: &str| {
        filters
            .iter()
            .filter(|f| f.get("type").and_then(Value::as_str) == Some(t))
            .count()
    };
    if count("RequestRedirect") > 0 && count("URLRewrite") > 0 {
        out.push(Violation {
            field: at.clone(),
            message: "Invalid value: \"array\": May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both".to_owned(),
        });
    }
    for t in [
        "CORS",
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
    ] {
        if count(t) > 1 {
            out.push(Violation {
                field: at.clone(),
                message: format!("Invalid value: \"array\": {t} filter cannot be repeated"),
            });
        }
    }
}

/// The CRD's rules on an `Exact` or `PathPrefix` path value.
fn path_match_rules(path: &Value, at: &FieldPath, out: &mut Vec<Violation>) {
    let kind = path
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("PathPrefix");
    let Some(value) = path.get("value").and_then(Value::as_str) else {
        return;
    };
    if !matches!(kind, "Exact" | "PathPrefix") {
        return;
    }
    let broken = if !value.starts_with('/') {
        Some(
            "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
        )
    } else if value.contains("//") {
        Some("must not contain '//' when type one of ['Exact', 'PathPrefix']")
    } else if value.contains("/./") {
        Some("must not contain '/./' when type one of ['Exact', 'PathPrefix']")
    } else if value.contains("/../") {
        Some("must not contain '/../' when type one of ['Exact', 'PathPrefix']")
    } else if value.contains("%2f") || value.contains("%2F") {
        Some("must not contain '%2f' or '%2F' when type one of ['Exact', 'PathPrefix']")
    } else if value.contains('#') {
        Some("must not contain '#' when type one of ['Exact', 'PathPrefix']")
    } else if value.ends_with("/..") {
        Some("must not end with '/..' when type one of ['Exact', 'PathPrefix']")
    } else if value.ends_with("/.") {
        Some("must not end with '/.' when type one of ['Exact', 'PathPrefix']")
    } else if !PATH_CHARACTERS.is_match(value) {
        Some(
            "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']",
        )
    } else {
        None
    };
    if let Some(message) = broken {
        out.push(Violation {
            field: at.clone(),
            message: format!("Invalid value: \"object\": {message}"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listeners(n: usize) -> Value {
        let list: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("l{i}"), "port": 1000 + i, "protocol": "HTTP"}))
            .collect();
        json!({"metadata": {"name": "gw"}, "spec": {"gatewayClassName": "c", "listeners": list}})
    }

    #[test]
    fn sixty_four_listeners_pass_and_sixty_five_do_not() {
        assert_eq!(validate("Gateway", &listeners(64)), []);
        let violations = validate("Gateway", &listeners(65));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field.to_string(), "spec.listeners");
        assert_eq!(
            violations[0].message,
            "Too many: 65: must have at most 64 items"
        );
    }

    #[test]
    fn every_pattern_compiles() {
        for re in [
            &HOSTNAME,
            &PRECISE_HOSTNAME,
            &SECTION_NAME,
            &NAMESPACE,
            &KIND,
            &GROUP,
            &HEADER_NAME,
            &PROTOCOL,
            &CONTROLLER_NAME,
            &PATH_CHARACTERS,
        ] {
            LazyLock::force(re);
        }
    }

    #[test]
    fn route_limits_and_patterns_name_the_field() {
        let hostnames: Vec<String> = (0..17).map(|i| format!("h{i}.example")).collect();
        let route = json!({
            "metadata": {"name": "r"},
            "spec": {
                "hostnames": hostnames,
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/a//b"}}],
                     "backendRefs": [{"name": "s", "port": 70000}]},
                    {"filters": [{"type": "RequestRedirect"}, {"type": "URLRewrite"}]}
                ]
            }
        });
        let fields: Vec<String> = validate("HTTPRoute", &route)
            .iter()
            .map(|v| format!("{}: {}", v.field, v.message))
            .collect();
        assert_eq!(
            fields,
            [
                "spec.hostnames: Too many: 17: must have at most 16 items",
                "spec.rules[0].backendRefs[0].port: Invalid value: 70000: should be less than or equal to 65535",
                "spec.rules[0].matches[0].path: Invalid value: \"object\": must not contain '//' when type one of ['Exact', 'PathPrefix']",
                "spec.rules[1].filters: Invalid value: \"array\": May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
            ]
        );
    }

    #[test]
    fn listener_cel_rules() {
        let gw = json!({"metadata": {"name": "gw"}, "spec": {"gatewayClassName": "c", "listeners": [
            {"name": "a", "port": 80, "protocol": "HTTP"},
            {"name": "a", "port": 80, "protocol": "HTTP"},
            {"name": "t", "port": 81, "protocol": "TCP", "hostname": "x.example"},
            {"name": "u", "port": 82, "protocol": "HTTP", "hostname": "*.Example.com"}
        ]}});
        let fields: Vec<String> = validate("Gateway", &gw)
            .iter()
            .map(|v| v.field.to_string())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.listeners[3].hostname",
                "spec.listeners",
                "spec.listeners[1]",
                "spec.listeners[2].hostname"
            ]
        );
    }
}
