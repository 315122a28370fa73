//! A reference model of HTTPRoute matching, checked against the real thing.
//!
//! A [`Scenario`] (HTTPRoutes on one listener, and one request) is decoded from bytes, so the
//! proptest in `route_matching.rs` and the `route_matching` fuzz target share it. [`check`]
//! loads it as YAML, translates it, compiles the snapshot, looks the request up, and compares
//! the route and rule chosen with [`Scenario::expected`]: the Gateway API precedence written
//! out directly, with no index or cache.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::fmt::Write as _;
use std::sync::Arc;

use gantry_proxy::routing::{Lookup, RequestView, Snapshot};
use gantry_proxy::telemetry::Metrics;
use gantry_translate::store::load::load_store;
use gantry_translate::translate::{TranslateOptions, translate};

const PORT: u16 = 8080;
const HOSTNAMES: [&str; 5] = [
    "a.example.com",
    "*.example.com",
    "*.a.example.com",
    "x.a.example.com",
    "b.example.com",
];
const HOSTS: [&str; 4] = [
    "a.example.com",
    "x.a.example.com",
    "b.example.com",
    "example.com",
];
const PATH_VALUES: [&str; 6] = ["/", "/a", "/a/", "/a/b", "/ab", "/b"];
const REQUEST_PATHS: [&str; 7] = ["/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/b"];
const METHODS: [&str; 2] = ["GET", "POST"];
const HEADERS: [(&str, &str); 4] = [("x-a", "1"), ("x-a", "2"), ("x-b", "1"), ("x-b", "2")];
const QUERIES: [(&str, &str); 2] = [("q", "1"), ("q", "2")];

/// Reads choices from fuzz bytes; past the end every choice is 0.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        usize::from(b) % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(&'static str),
    Prefix(&'static str),
}

#[derive(Clone, Debug)]
pub struct Match {
    pub path: PathMatch,
    pub method: Option<&'static str>,
    pub headers: Vec<(&'static str, &'static str)>,
    pub query: Vec<(&'static str, &'static str)>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// Empty: the default match, PathPrefix `/`.
    pub matches: Vec<Match>,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub namespace: &'static str,
    pub name: String,
    /// Day of January 2024, or none.
    pub created: Option<u8>,
    pub hostnames: Vec<&'static str>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub host: &'static str,
    pub path: &'static str,
    pub method: &'static str,
    pub headers: Vec<(&'static str, &'static str)>,
    pub query: Option<(&'static str, &'static str)>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub routes: Vec<Route>,
    pub request: Request,
}

/// Distinct items of `from` (by `same`), chosen by `c`, at most `max`.
fn subset<T: Copy>(
    c: &mut Choices<'_>,
    from: &[T],
    max: usize,
    same: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    let n = c.pick(max + 1);
    let mut out: Vec<T> = Vec::new();
    for _ in 0..n {
        let item = from[c.pick(from.len())];
        if !out.iter().any(|o| same(o, &item)) {
            out.push(item);
        }
    }
    out
}

impl Scenario {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let c = &mut Choices(bytes);
        let routes = (0..=c.pick(4))
            .map(|i| Route {
                namespace: ["default", "other"][c.pick(2)],
                name: format!("r{}", c.pick(4) * 10 + i),
                created: [None, Some(1), Some(2), Some(3)][c.pick(4)],
                hostnames: subset(c, &HOSTNAMES, 2, |a, b| a == b),
                rules: (0..=c.pick(3))
                    .map(|_| Rule {
                        matches: (0..c.pick(4))
                            .map(|_| {
                                let value = PATH_VALUES[c.pick(PATH_VALUES.len())];
                                Match {
                                    path: if c.pick(2) == 0 {
                                        PathMatch::Exact(value)
                                    } else {
                                        PathMatch::Prefix(value)
                                    },
                                    method: [None, Some("GET"), Some("POST")][c.pick(3)],
                                    headers: subset(c, &HEADERS, 2, |a, b| a.0 == b.0),
                                    query: subset(c, &QUERIES, 1, |a, b| a.0 == b.0),
                                }
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let request = Request {
            host: HOSTS[c.pick(HOSTS.len())],
            path: REQUEST_PATHS[c.pick(REQUEST_PATHS.len())],
            method: METHODS[c.pick(METHODS.len())],
            headers: subset(c, &HEADERS, 2, |a, b| a.0 == b.0),
            query: [None, Some(QUERIES[0]), Some(QUERIES[1])][c.pick(3)],
        };
        Self { routes, request }
    }

    /// The objects of the scenario as one YAML stream.
    pub fn yaml(&self) -> String {
        let mut y = format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gantry}}
spec: {{controllerName: {}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: gantry
  listeners:
  - {{name: http, port: {PORT}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
",
            gantry_crds::CONTROLLER_NAME
        );
        for route in self.unique_routes() {
            let _ = write!(
                y,
                "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {}
  namespace: {}
",
                route.name, route.namespace
            );
            if let Some(day) = route.created {
                let _ = writeln!(y, "  creationTimestamp: \"2024-01-0{day}T00:00:00Z\"");
            }
            y.push_str("spec:\n  parentRefs: [{name: gw, namespace: default}]\n");
            if !route.hostnames.is_empty() {
                let _ = writeln!(y, "  hostnames: {:?}", route.hostnames);
            }
            y.push_str("  rules:\n");
            for rule in &route.rules {
                y.push_str("  - backendRefs: [{name: svc, port: 80}]\n");
                if rule.matches.is_empty() {
                    continue;
                }
                y.push_str("    matches:\n");
                for m in &rule.matches {
                    let (kind, value) = match m.path {
                        PathMatch::Exact(v) => ("Exact", v),
                        PathMatch::Prefix(v) => ("PathPrefix", v),
                    };
                    let _ = writeln!(y, "    - path: {{type: {kind}, value: \"{value}\"}}");
                    if let Some(method) = m.method {
                        let _ = writeln!(y, "      method: {method}");
                    }
                    if !m.headers.is_empty() {
                        y.push_str("      headers:\n");
                        for (n, v) in &m.headers {
                            let _ = writeln!(y, "      - {{name: {n}, value: \"{v}\"}}");
                        }
                    }
                    if !m.query.is_empty() {
                        y.push_str("      queryParams:\n");
                        for (n, v) in &m.query {
                            let _ = writeln!(y, "      - {{name: {n}, value: \"{v}\"}}");
                        }
                    }
                }
            }
        }
        y
    }

    /// Routes with a repeated `namespace/name` are left out after the first (a config
    /// directory cannot hold both).
    fn unique_routes(&self) -> Vec<&Route> {
        let mut seen = Vec::new();
        self.routes
            .iter()
            .filter(|r| {
                let key = (r.namespace, r.name.as_str());
                let first = !seen.contains(&key);
                seen.push(key);
                first
            })
            .collect()
    }

    /// `namespace/name` and rule index of the rule the spec says serves the request, if any.
    ///
    /// Hostnames: the route hostnames that match the host are tried from the most specific
    /// (the exact name, then wildcards by decreasing length, then routes with no hostname);
    /// within one, every match of every route with that hostname is ordered by the spec's
    /// precedence (Exact path, longest prefix, method, most headers, most query parameters,
    /// oldest route, `namespace/name`, rule order, match order) and the first that holds wins.
    pub fn expected(&self) -> Option<(String, usize)> {
        let routes = self.unique_routes();
        let host = self.request.host;
        let mut tiers: Vec<Option<&str>> = routes
            .iter()
            .flat_map(|r| r.hostnames.iter().copied())
            .filter(|h| hostname_matches(h, host))
            .map(Some)
            .collect();
        // Exact before wildcards, longer wildcards first.
        tiers.sort_by_key(|h| (h.is_some_and(|h| !h.starts_with('*')), h.map(str::len)));
        tiers.reverse();
        tiers.dedup();
        tiers.push(None);
        let default = [Match {
            path: PathMatch::Prefix("/"),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }];
        for tier in tiers {
            let mut entries = Vec::new();
            for route in routes.iter().filter(|r| match tier {
                Some(h) => r.hostnames.contains(&h),
                None => r.hostnames.is_empty(),
            }) {
                for (ri, rule) in route.rules.iter().enumerate() {
                    let matches = if rule.matches.is_empty() {
                        &default[..]
                    } else {
                        &rule.matches[..]
                    };
                    for (mi, m) in matches.iter().enumerate() {
                        entries.push((*route, ri, mi, m));
                    }
                }
            }
            entries.sort_by_key(|(route, ri, mi, m)| {
                let path = match m.path {
                    PathMatch::Exact(v) => (0, Reverse(v.len())),
                    PathMatch::Prefix(v) => (1, Reverse(v.len())),
                };
                (
                    path,
                    m.method.is_none(),
                    Reverse(m.headers.len()),
                    Reverse(m.query.len()),
                    (route.created.is_none(), route.created),
                    (route.namespace, route.name.clone()),
                    *ri,
                    *mi,
                )
            });
            if let Some((route, ri, _, _)) = entries.iter().find(|(_, _, _, m)| self.holds(m)) {
                return Some((format!("{}/{}", route.namespace, route.name), *ri));
            }
        }
        None
    }

    fn holds(&self, m: &Match) -> bool {
        let r = &self.request;
        let path = match m.path {
            PathMatch::Exact(v) => r.path == v,
            PathMatch::Prefix(v) => {
                let key = v.trim_end_matches('/');
                r.path == key || r.path.starts_with(&format!("{key}/"))
            }
        };
        path && m.method.is_none_or(|method| method == r.method)
            && m.headers.iter().all(|h| r.headers.contains(h))
            && m.query.iter().all(|q| r.query == Some(*q))
    }
}

/// `*.example.com` matches any host with at least one label before `.example.com`.
fn hostname_matches(hostname: &str, host: &str) -> bool {
    match hostname.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => hostname == host,
    }
}

/// `gantry-proxy explain` on the scenario: the route and rule it reports must be the ones the
/// data plane's lookup picks and the model expects, and each other entry that matches must be
/// reported as losing on precedence, never on its match.
pub fn check_explain(scenario: &Scenario) -> Result<(), String> {
    use gantry_proxy::explain::{Loaded, Query, Why, explain_loaded};
    let yaml = scenario.yaml();
    let (store, _) =
        load_store([("scenario.yaml", yaml.as_str())]).map_err(|e| format!("{e:?}\n{yaml}"))?;
    let translation = translate(&store, &TranslateOptions::default());
    let snapshot = Snapshot::compile(Arc::new(translation.ir.clone()), 1, &Metrics::new(), None)
        .map_err(|e| format!("compile: {e}\n{yaml}"))?;
    let r = &scenario.request;
    let query = Query {
        method: r.method.to_owned(),
        url: format!(
            "http://{}:{PORT}{}{}",
            r.host,
            r.path,
            r.query
                .map(|(n, v)| format!("?{n}={v}"))
                .unwrap_or_default()
        ),
        headers: r.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect(),
        sni: None,
        client_ip: None,
    };
    let loaded = Loaded {
        store: &store,
        translation: &translation,
        snapshot: &snapshot,
    };
    let explained = explain_loaded(&loaded, &query, None).map_err(|e| e.to_string())?;
    let got = explained
        .route
        .as_ref()
        .map(|route| (format!("{}/{}", route.namespace, route.name), route.rule));
    let expected = scenario.expected();
    if got != expected {
        return Err(format!(
            "request {r:?}\nexplain reports {got:?}, the spec says {expected:?}\n{}\n{yaml}",
            explained.render(gantry_proxy::explain::Output::Text)
        ));
    }
    if !explained.notes.is_empty() {
        return Err(format!("notes: {:?}\n{yaml}", explained.notes));
    }
    // A losing entry whose match holds in the model lost on hostname tier or precedence.
    for c in &explained.candidates {
        let (Some(rule), Some(m)) = (c.rule, c.match_index) else {
            continue;
        };
        let Some(route) = scenario
            .unique_routes()
            .into_iter()
            .find(|x| x.namespace == c.namespace && x.name == c.name)
        else {
            return Err(format!("explain names an unknown route {c:?}"));
        };
        let default = Match {
            path: PathMatch::Prefix("/"),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        };
        let matches = &route.rules[rule].matches;
        let spec_match = if matches.is_empty() {
            &default
        } else {
            &matches[m]
        };
        let hostname_ok = route.hostnames.is_empty()
            || route.hostnames.iter().any(|h| hostname_matches(h, r.host));
        let holds = hostname_ok && scenario.holds(spec_match);
        let said_holds = c.reason == Why::Precedence;
        if holds != said_holds {
            return Err(format!(
                "request {r:?}\nexplain says {c:?}, but the model says the match {}\n{yaml}",
                if holds { "holds" } else { "does not hold" }
            ));
        }
    }
    Ok(())
}

/// Translates and compiles the scenario and compares the lookup with the model.
pub fn check(scenario: &Scenario) -> Result<(), String> {
    let yaml = scenario.yaml();
    let (store, _) =
        load_store([("scenario.yaml", yaml.as_str())]).map_err(|e| format!("{e:?}\n{yaml}"))?;
    let ir = translate(&store, &TranslateOptions::default()).ir;
    let metrics = Metrics::new();
    let snapshot = Snapshot::compile(Arc::new(ir), 1, &metrics, None)
        .map_err(|e| format!("compile: {e}\n{yaml}"))?;
    let r = &scenario.request;
    let mut headers = http::HeaderMap::new();
    for (n, v) in &r.headers {
        headers.insert(*n, http::HeaderValue::from_static(v));
    }
    let method: http::Method = r.method.parse().map_err(|e| format!("{e}"))?;
    let query = r.query.map(|(n, v)| format!("{n}={v}"));
    let view = RequestView {
        method: &method,
        path: r.path,
        query: query.as_deref(),
        headers: &headers,
    };
    let got = match snapshot.port(PORT).map(|t| t.lookup(r.host, &view)) {
        Some(Lookup::Route(_, entry)) => Some((entry.route.to_string(), entry.rule_index)),
        _ => None,
    };
    let expected = scenario.expected();
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "request {r:?}\nthe proxy chose {got:?}, the spec says {expected:?}\n{yaml}"
        ))
    }
}
