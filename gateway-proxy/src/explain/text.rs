//! An explanation as text for people, or as JSON for tools.

use std::fmt::Write as _;

use super::report::{Answerer, Explanation, Why};

/// How `explain` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Sections for people.
    #[default]
    Text,
    /// One JSON object (docs/explain.md describes it).
    Json,
}

impl Explanation {
    pub fn render(&self, output: Output) -> String {
        match output {
            Output::Json => {
                let mut text = serde_json::to_string_pretty(self)
                    .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
                text.push('\n');
                text
            }
            Output::Text => self.text(),
        }
    }

    fn text(&self) -> String {
        let mut t = String::new();
        let r = &self.request;
        let _ = write!(t, "request:  {} {}://", r.method, r.scheme);
        let _ = write!(t, "{}", r.host.as_deref().unwrap_or("?"));
        let _ = write!(t, ":{}{}", r.port, r.path.as_deref().unwrap_or(""));
        if let Some(q) = &r.query {
            let _ = write!(t, "?{q}");
        }
        if let Some(sni) = &r.sni {
            let _ = write!(t, " (SNI {sni})");
        }
        t.push('\n');
        if let Some(l) = &self.listener {
            let _ = writeln!(
                t,
                "listener: {} of Gateway {} (port {} {}, hostname {})",
                l.name,
                l.gateway,
                l.port,
                l.protocol,
                l.hostname.as_deref().unwrap_or("*")
            );
        }
        if let Some(route) = &self.route {
            let _ = write!(
                t,
                "route:    {} {}/{} rule {}",
                route.kind, route.namespace, route.name, route.rule
            );
            if let Some(name) = &route.rule_name {
                let _ = write!(t, " ({name})");
            }
            let _ = writeln!(
                t,
                " match {}: {} (hostname {})",
                route.match_index, route.matched, route.hostname
            );
        }
        if !self.filters.is_empty() {
            t.push_str("filters:\n");
            for f in &self.filters {
                let _ = writeln!(t, "  - {}: {}", f.type_, f.summary);
            }
        }
        if !self.policies.is_empty() {
            t.push_str("policies:\n");
            for p in &self.policies {
                let _ = write!(t, "  - {}", p.kind);
                if let Some(name) = &p.name {
                    let _ = write!(t, " {name}");
                }
                if let Some(to) = &p.applies_to {
                    let _ = write!(t, " (on {to})");
                }
                let _ = writeln!(t, ": {}", p.summary);
            }
        }
        if !self.backends.is_empty() {
            t.push_str("backends:\n");
            for b in &self.backends {
                let _ = writeln!(
                    t,
                    "  - {} weight {} ({:.1}%), endpoints: {}",
                    b.cluster.as_deref().unwrap_or("<invalid backendRef>"),
                    b.weight,
                    b.share * 100.0,
                    if b.endpoints.is_empty() {
                        "none".to_owned()
                    } else {
                        b.endpoints.join(", ")
                    }
                );
                for f in &b.filters {
                    let _ = writeln!(t, "      filter {}: {}", f.type_, f.summary);
                }
            }
        }
        if let Some(up) = &self.upstream_request {
            let _ = writeln!(t, "upstream: Host {} path {}", up.host, up.path);
        }
        t.push_str("answer:\n");
        for o in &self.outcomes {
            let who = match o.by {
                Answerer::Backend => "backend",
                Answerer::Route => "route",
                Answerer::Proxy => "proxy",
            };
            let _ = write!(t, "  - {:.1}% {who}", o.share * 100.0);
            if let Some(status) = o.status {
                let _ = write!(t, " {status}");
            }
            if let Some(code) = o.grpc_status {
                let _ = write!(t, " (grpc-status {code})");
            }
            let _ = writeln!(t, ": {}", o.message);
        }
        if !self.candidates.is_empty() {
            t.push_str("other candidates:\n");
            for c in &self.candidates {
                let why = match c.reason {
                    Why::Hostname => "hostname",
                    Why::Match => "match",
                    Why::Precedence => "precedence",
                    Why::NotAttached => "not attached",
                    Why::Listener => "listener",
                };
                let _ = write!(t, "  - {} ", c.kind);
                if !c.namespace.is_empty() {
                    let _ = write!(t, "{}/", c.namespace);
                }
                let _ = write!(t, "{}", c.name);
                if let (Some(rule), Some(m)) = (c.rule, c.match_index) {
                    let _ = write!(t, " rule {rule} match {m}");
                }
                if let Some(matched) = &c.matched {
                    let _ = write!(t, " [{matched}]");
                }
                let _ = writeln!(t, ": {why}: {}", c.message);
            }
        }
        for note in &self.notes {
            let _ = writeln!(t, "note: {note}");
        }
        t
    }
}
