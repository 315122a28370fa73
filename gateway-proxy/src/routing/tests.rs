//! Routing table tests: a table of requests against a hand-built IR.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use super::{CompileError, Lookup, RequestView, Snapshot};
use crate::telemetry::Metrics;
use gantry_translate::ir::{
    ClusterIr, HttpMatchIr, HttpRuleIr, Ir, ListenerIr, PathMatchIr, PortIr, PortProtocol,
    RouteEntryIr, RouteRef, UpstreamProtocol, ValueMatchIr, ValueMatchKind, VirtualHostIr,
};
use gantry_translate::store::ObjectKey;

fn entry(name: &str, matches: HttpMatchIr) -> RouteEntryIr {
    RouteEntryIr {
        route: Arc::new(RouteRef {
            kind: "HTTPRoute".into(),
            namespace: "default".into(),
            name: name.into(),
        }),
        rule_index: 0,
        match_index: 0,
        matches: matches.into(),
        rule: Arc::new(HttpRuleIr::default()),
        security: None,
        rate_limit: None,
    }
}

fn path(p: PathMatchIr) -> HttpMatchIr {
    HttpMatchIr {
        path: p,
        ..Default::default()
    }
}

fn value(name: &str, kind: ValueMatchKind, v: &str) -> ValueMatchIr {
    ValueMatchIr {
        name: name.into(),
        kind,
        value: v.into(),
    }
}

fn vhost(hostname: &str, routes: Vec<RouteEntryIr>) -> VirtualHostIr {
    VirtualHostIr {
        hostname: hostname.into(),
        routes,
    }
}

fn listener(name: &str, hostname: Option<&str>, virtual_hosts: Vec<VirtualHostIr>) -> ListenerIr {
    ListenerIr {
        gateway: ObjectKey::new("default", "gw"),
        name: name.into(),
        hostname: hostname.map(Into::into),
        virtual_hosts,
        tls: None,
        l4_routes: Vec::new(),
        serves_tls_routes: false,
        listener_set: None,
    }
}

fn ir(listeners: Vec<ListenerIr>) -> Ir {
    Ir {
        ports: vec![PortIr {
            port: 8080,
            protocol: PortProtocol::Http,
            listeners,
        }],
        clusters: BTreeMap::new(),
    }
}

/// The route name of the entry that serves the request, or "404".
fn route_for(
    snapshot: &Snapshot,
    host: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> String {
    let uri: http::Uri = uri.parse().unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut map = HeaderMap::new();
    for (name, v) in headers {
        map.append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let view = RequestView {
        method: &method,
        path: uri.path(),
        query: uri.query(),
        headers: &map,
    };
    let host = super::normalize_host(host);
    match snapshot.port(8080).unwrap().lookup(&host, &view) {
        Lookup::Route(_, entry) => entry.route.trim_start_matches("default/").to_owned(),
        Lookup::NoRoute(_) | Lookup::NoListener => "404".into(),
        Lookup::Misdirected => "421".into(),
    }
}

fn compile(ir: Ir) -> Snapshot {
    Snapshot::compile(Arc::new(ir), 1, &Metrics::new(), None).unwrap()
}

#[test]
fn match_table() {
    use PathMatchIr::{Exact, Prefix, RegularExpression};
    use ValueMatchKind::{Exact as Is, RegularExpression as Re};
    let snapshot = compile(ir(vec![listener(
        "http",
        None,
        vec![vhost(
            "*",
            vec![
                entry("exact", path(Exact("/exact".into()))),
                entry(
                    "header",
                    HttpMatchIr {
                        path: Prefix("/h".into()),
                        headers: vec![value("x-env", Is, "canary")],
                        ..Default::default()
                    },
                ),
                entry(
                    "header-re",
                    HttpMatchIr {
                        path: Prefix("/h".into()),
                        headers: vec![value("x-env", Re, "prod-[0-9]+")],
                        ..Default::default()
                    },
                ),
                entry(
                    "query",
                    HttpMatchIr {
                        path: Prefix("/q".into()),
                        query_params: vec![value("v", Is, "a b")],
                        ..Default::default()
                    },
                ),
                entry(
                    "query-re",
                    HttpMatchIr {
                        path: Prefix("/q".into()),
                        query_params: vec![value("v", Re, "[0-9]+")],
                        ..Default::default()
                    },
                ),
                entry(
                    "post",
                    HttpMatchIr {
                        path: Prefix("/m".into()),
                        method: Some("POST".into()),
                        ..Default::default()
                    },
                ),
                entry("regex", path(RegularExpression("/r/[a-z]+".into()))),
                entry("foo", path(Prefix("/foo/".into()))),
                entry("foo-bar", path(Prefix("/foo/bar".into()))),
                entry("root", path(Prefix("/".into()))),
            ],
        )],
    )]));
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("GET", "/exact", &[], "exact"),
        ("GET", "/exact/", &[], "root"),
        ("GET", "/exactly", &[], "root"),
        // Segment rule; the trailing slash of `/foo/` is ignored.
        ("GET", "/foo", &[], "foo"),
        ("GET", "/foo/", &[], "foo"),
        ("GET", "/foo/x", &[], "foo"),
        ("GET", "/foobar", &[], "root"),
        // IR order wins over path length: `foo` comes before `foo-bar`.
        ("GET", "/foo/bar", &[], "foo"),
        // Regex: anchored full match.
        ("GET", "/r/abc", &[], "regex"),
        ("GET", "/r/abc1", &[], "root"),
        ("GET", "/x/r/abc", &[], "root"),
        // Headers: case-insensitive names, exact and regex values, repeated values joined.
        ("GET", "/h", &[("X-Env", "canary")], "header"),
        ("GET", "/h", &[("x-env", "Canary")], "root"),
        ("GET", "/h", &[("x-env", "prod-12")], "header-re"),
        ("GET", "/h", &[("x-env", "prod-12x")], "root"),
        (
            "GET",
            "/h",
            &[("x-env", "canary"), ("x-env", "other")],
            "root",
        ),
        // Query: first value, percent-decoded.
        ("GET", "/q?v=a%20b", &[], "query"),
        ("GET", "/q?x=1&v=42&v=a%20b", &[], "query-re"),
        ("GET", "/q?V=42", &[], "root"),
        // Method.
        ("POST", "/m", &[], "post"),
        ("GET", "/m", &[], "root"),
    ];
    for (method, uri, headers, want) in cases {
        assert_eq!(
            route_for(&snapshot, "any.host", method, uri, headers),
            *want,
            "{method} {uri} {headers:?}"
        );
    }
}

#[test]
fn hostname_selection() {
    let any = |name: &str| vec![entry(name, path(PathMatchIr::Prefix("/".into())))];
    let only_api = vec![entry("wild-api", path(PathMatchIr::Prefix("/api".into())))];
    let snapshot = compile(ir(vec![
        listener(
            "exact",
            Some("foo.example.com"),
            vec![vhost("foo.example.com", any("exact"))],
        ),
        listener(
            "wildcard",
            Some("*.example.com"),
            vec![
                vhost("bar.example.com", any("bar")),
                vhost(
                    "baz.example.com",
                    vec![entry("baz", path(PathMatchIr::Prefix("/baz".into())))],
                ),
                vhost("*.a.example.com", any("deep")),
                vhost("*.example.com", only_api),
            ],
        ),
        listener("default", None, vec![vhost("*", any("star"))]),
    ]));
    let cases = [
        ("foo.example.com", "/", "exact"),
        ("FOO.example.com:8080", "/", "exact"),
        ("bar.example.com", "/", "bar"),
        ("x.a.example.com", "/", "deep"),
        ("other.example.com", "/api/v1", "wild-api"),
        // Within a listener, less specific virtual hosts are tried after more specific ones.
        ("baz.example.com", "/baz", "baz"),
        ("baz.example.com", "/api/v1", "wild-api"),
        ("baz.example.com", "/other", "404"),
        // No fallback across listeners: the listener the host selects answers, or 404.
        ("other.example.com", "/", "404"),
        ("example.com", "/", "star"),
        ("unknown.org", "/", "star"),
        ("", "/", "star"),
    ];
    for (host, uri, want) in cases {
        assert_eq!(
            route_for(&snapshot, host, "GET", uri, &[]),
            want,
            "{host}{uri}"
        );
    }
}

#[test]
fn no_listener_for_host() {
    let snapshot = compile(ir(vec![listener(
        "only",
        Some("foo.example.com"),
        vec![vhost(
            "foo.example.com",
            vec![entry("r", path(PathMatchIr::Prefix("/".into())))],
        )],
    )]));
    let view_headers = HeaderMap::new();
    let view = RequestView {
        method: &Method::GET,
        path: "/",
        query: None,
        headers: &view_headers,
    };
    assert!(matches!(
        snapshot
            .port(8080)
            .unwrap()
            .lookup("bar.example.com", &view),
        Lookup::NoListener
    ));
}

#[test]
fn bad_regex_is_a_compile_error() {
    let bad = ir(vec![listener(
        "l",
        None,
        vec![vhost(
            "*",
            vec![entry(
                "r",
                path(PathMatchIr::RegularExpression("/(".into())),
            )],
        )],
    )]);
    let err = Snapshot::compile(Arc::new(bad), 1, &Metrics::new(), None).unwrap_err();
    assert!(matches!(err, CompileError::Regex { .. }), "{err}");
}

#[test]
fn endpoint_only_changes_reuse_port_tables() {
    let metrics = Metrics::new();
    let mut ir = ir(vec![listener(
        "l",
        None,
        vec![vhost(
            "*",
            vec![entry("r", path(PathMatchIr::Prefix("/".into())))],
        )],
    )]);
    let cluster = |endpoints: Vec<String>| ClusterIr {
        name: "default/svc:80".into(),
        service: ObjectKey::new("default", "svc"),
        port: 80,
        protocol: UpstreamProtocol::Http1,
        endpoints,
        tls: None,
        retry_budget: None,
        backend_config: None,
    };
    ir.clusters
        .insert("default/svc:80".into(), cluster(vec!["10.0.0.1:80".into()]));
    let first = Snapshot::compile(Arc::new(ir.clone()), 1, &metrics, None).unwrap();
    ir.clusters.insert(
        "default/svc:80".into(),
        cluster(vec!["10.0.0.1:80".into(), "10.0.0.2:80".into()]),
    );
    let second = Snapshot::compile(Arc::new(ir.clone()), 2, &metrics, Some(&first)).unwrap();
    assert!(Arc::ptr_eq(&first.ports, &second.ports));
    assert_eq!(
        second.cluster("default/svc:80").unwrap().endpoints().len(),
        2
    );
    ir.ports[0].listeners[0].virtual_hosts[0].routes[0].rule_index = 1;
    let third = Snapshot::compile(Arc::new(ir), 3, &metrics, Some(&second)).unwrap();
    assert!(!Arc::ptr_eq(&second.ports, &third.ports));
}

#[test]
fn removed_routes_lose_their_series_and_kept_ones_keep_counting() {
    let metrics = Metrics::new();
    let routes = |names: &[&str]| {
        names
            .iter()
            .map(|n| entry(n, path(PathMatchIr::Prefix(format!("/{n}")))))
            .collect::<Vec<_>>()
    };
    let first_ir = ir(vec![listener(
        "l",
        None,
        vec![vhost("*", routes(&["a", "b"]))],
    )]);
    let first = Snapshot::compile(Arc::new(first_ir), 1, &metrics, None).unwrap();
    let second_ir = ir(vec![listener(
        "l",
        None,
        vec![vhost("*", routes(&["a", "c"]))],
    )]);
    let second = Snapshot::compile(Arc::new(second_ir), 2, &metrics, Some(&first)).unwrap();
    first.forget_removed_routes(&second, &metrics);
    let record = |snapshot: &Snapshot, path: &str| {
        let headers = HeaderMap::new();
        let view = RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &headers,
        };
        if let Lookup::Route(_, entry) = snapshot.port(8080).unwrap().lookup("h", &view) {
            entry
                .metrics
                .record(200, std::time::Duration::from_millis(1));
        }
    };
    record(&first, "/a");
    record(&second, "/a");
    assert!(
        !metrics.encode().contains("default/c"),
        "no series before traffic"
    );
    record(&second, "/c");
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"gantry_requests_total{gateway="default/gw",route="default/a",route_kind="HTTPRoute",status_class="2xx"} 2"#
        ),
        "{text}"
    );
    assert!(!text.contains("default/b"), "{text}");
    assert!(text.contains("default/c"), "{text}");
}

#[test]
fn a_change_to_one_virtual_host_recompiles_only_that_one() {
    let metrics = Metrics::new();
    let build = |b_path: &str| {
        ir(vec![listener(
            "l",
            None,
            vec![
                vhost(
                    "a.example.com",
                    vec![entry("a", path(PathMatchIr::Prefix("/a".into())))],
                ),
                vhost(
                    "b.example.com",
                    vec![entry("b", path(PathMatchIr::Prefix(b_path.into())))],
                ),
            ],
        )])
    };
    let entry_of = |snapshot: &Snapshot, host: &str, path: &str| -> Option<usize> {
        let headers = HeaderMap::new();
        let view = RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &headers,
        };
        match snapshot.port(8080).unwrap().lookup(host, &view) {
            Lookup::Route(_, entry) => Some(std::ptr::from_ref(entry) as usize),
            _ => None,
        }
    };
    let first = Snapshot::compile(Arc::new(build("/b")), 1, &metrics, None).unwrap();
    let second = Snapshot::compile(Arc::new(build("/b2")), 2, &metrics, Some(&first)).unwrap();
    // The unchanged virtual host is the very same compiled table.
    let a = entry_of(&first, "a.example.com", "/a");
    assert!(a.is_some());
    assert_eq!(a, entry_of(&second, "a.example.com", "/a"));
    // The changed one is compiled anew and serves the new path.
    assert_eq!(entry_of(&second, "b.example.com", "/b"), None);
    assert!(entry_of(&second, "b.example.com", "/b2").is_some());
    // Reused entries keep their metric series across the change.
    first.forget_removed_routes(&second, &metrics);
    if let Lookup::Route(_, entry) = second.port(8080).unwrap().lookup(
        "a.example.com",
        &RequestView {
            method: &Method::GET,
            path: "/a",
            query: None,
            headers: &HeaderMap::new(),
        },
    ) {
        entry
            .metrics
            .record(200, std::time::Duration::from_millis(1));
    }
    assert!(metrics.encode().contains(r#"route="default/a""#));
}

/// Every entry of a compilation shares one `Arc` per route kind (10,000 routes would otherwise
/// hold 10,000 copies of "HTTPRoute").
#[test]
fn entries_share_their_route_kind() {
    let snapshot = compile(ir(vec![listener(
        "l",
        None,
        vec![
            vhost(
                "a.example.com",
                vec![entry("a", path(PathMatchIr::Prefix("/a".into())))],
            ),
            vhost(
                "b.example.com",
                vec![entry("b", path(PathMatchIr::Prefix("/b".into())))],
            ),
        ],
    )]));
    let listener = &snapshot.port(8080).unwrap().listeners()[0];
    let kinds: Vec<&Arc<str>> = listener
        .virtual_hosts
        .iter()
        .flat_map(|v| v.entries.iter().map(|e| &e.route_kind))
        .collect();
    assert_eq!(kinds.len(), 2);
    assert_eq!(&**kinds[0], "HTTPRoute");
    assert!(Arc::ptr_eq(kinds[0], kinds[1]));
}

/// A virtual host of fewer than five entries has no path index and tries its entries in turn:
/// the same four entries answer the same with and without an index (a fifth entry that matches
/// nothing makes the second one indexed).
#[test]
fn small_virtual_hosts_without_a_path_index_answer_as_indexed_ones() {
    use PathMatchIr::{Exact, Prefix, RegularExpression};
    let four = vec![
        entry("exact", path(Exact("/a/b".into()))),
        entry("prefix", path(Prefix("/a".into()))),
        entry("regex", path(RegularExpression("/r[0-9]+".into()))),
        entry("root", path(Prefix("/".into()))),
    ];
    let mut five = four.clone();
    five.push(entry("never", path(Exact("/never".into()))));
    let small = compile(ir(vec![listener("l", None, vec![vhost("*", four)])]));
    let indexed = compile(ir(vec![listener("l", None, vec![vhost("*", five)])]));
    let vhost_of = |s: &Snapshot| {
        s.port(8080).unwrap().listeners()[0].virtual_hosts[0]
            .paths
            .is_some()
    };
    assert!(!vhost_of(&small));
    assert!(vhost_of(&indexed));
    for uri in [
        "/a/b", "/a/b/", "/a", "/a/c", "/ab", "/r12", "/r", "/", "/x/y",
    ] {
        assert_eq!(
            route_for(&small, "h.example.com", "GET", uri, &[]),
            route_for(&indexed, "h.example.com", "GET", uri, &[]),
            "{uri}"
        );
    }
    assert_eq!(route_for(&small, "h", "GET", "/a/b", &[]), "exact");
    assert_eq!(route_for(&small, "h", "GET", "/a/c", &[]), "prefix");
    assert_eq!(route_for(&small, "h", "GET", "/r7", &[]), "regex");
    assert_eq!(route_for(&small, "h", "GET", "/ab", &[]), "root");
}
