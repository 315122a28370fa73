//! A text summary of a compiled [`Snapshot`] that covers every routing decision, for comparing snapshots.
//!
//! Two snapshots with the same summary route every request and connection the same way: the
//! same ports, listeners and their hostname indexes, virtual hosts and route entries in order
//! (matchers, rules with filters, backends, weights and timeouts), path indexes, L4 routes by
//! SNI and their backends, TLS listeners with their compiled server configurations, clusters
//! with endpoints and the TLS settings their clients were built from, and the metric series the
//! snapshot holds (not which entry records into which series). Hash maps are listed in key
//! order. Left out: the IR the snapshot was compiled from (an input, not a decision), its
//! version, round-robin cursors and metric values (state, which requests change). TLS
//! configurations are shown by their `Debug` form, which shows certificates and the subjects
//! of client-validation roots but no private key, and holds handshake state (a compression
//! cache) that is empty until the first handshake.
//!
//! It is what the data plane's differential test compares: a snapshot compiled after another
//! (reusing its tables, TLS configurations and upstream clients) against one compiled from
//! nothing. Nothing on the request path uses it.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::host::HostIndex;
use super::path::PathIndex;
use super::snapshot::Snapshot;
use super::tls::{TlsAction, TlsPorts};

impl Snapshot {
    /// The summary described in the module documentation, one decision per line.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        describe_ports(self, &mut out);
        describe_l4(self, &mut out);
        describe_tls(&self.tls, &mut out);
        describe_clusters(self, &mut out);
        let series: Vec<_> = {
            let mut keys: Vec<_> = self.ports.series.keys().collect();
            keys.sort();
            keys
        };
        for (gateway, kind, route) in series {
            line(
                &mut out,
                0,
                format_args!("series {gateway:?} {kind:?} {route:?}"),
            );
        }
        out
    }
}

fn line(out: &mut String, depth: usize, text: std::fmt::Arguments<'_>) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    // Writing to a String cannot fail.
    let _ = out.write_fmt(text);
    out.push('\n');
}

fn sorted<K: Ord, V, S>(map: &std::collections::HashMap<K, V, S>) -> BTreeMap<&K, &V> {
    map.iter().collect()
}

fn host_index(index: &HostIndex) -> String {
    format!(
        "exact {:?} wildcard {:?} any {:?}",
        sorted(&index.exact),
        sorted(&index.wildcard),
        index.any
    )
}

fn path_index(index: &PathIndex) -> String {
    format!(
        "exact {:?} prefix {:?} regex {:?}",
        sorted(&index.exact),
        sorted(&index.prefix),
        index.regex
    )
}

fn describe_ports(snapshot: &Snapshot, out: &mut String) {
    for (port, table) in sorted(&snapshot.ports.tables) {
        line(
            out,
            0,
            format_args!("port {port} (table of port {})", table.port),
        );
        line(
            out,
            1,
            format_args!("listeners by host: {}", host_index(&table.index)),
        );
        for (l, listener) in table.listeners.iter().enumerate() {
            line(
                out,
                1,
                format_args!("listener {l}: {}/{}", listener.gateway, listener.name),
            );
            line(
                out,
                2,
                format_args!("virtual hosts by host: {}", host_index(&listener.index)),
            );
            for (v, vhost) in listener.virtual_hosts.iter().enumerate() {
                line(out, 2, format_args!("virtual host {v}"));
                line(
                    out,
                    3,
                    format_args!(
                        "entries by path: {}",
                        vhost
                            .paths
                            .as_deref()
                            .map_or_else(|| "none (tried in turn)".to_owned(), path_index)
                    ),
                );
                for (e, entry) in vhost.entries.iter().enumerate() {
                    line(
                        out,
                        3,
                        format_args!(
                            "entry {e}: {} {} rule {}",
                            entry.route_kind, entry.route, entry.rule_index
                        ),
                    );
                    line(out, 4, format_args!("match {:?}", entry.matcher));
                    line(out, 4, format_args!("rule {:?}", entry.rule));
                }
            }
        }
    }
}

fn describe_l4(snapshot: &Snapshot, out: &mut String) {
    let l4 = &snapshot.ports.l4;
    for (port, table) in sorted(&l4.ports).into_iter().chain(sorted(&l4.udp_ports)) {
        line(out, 0, format_args!("l4 port {port} {:?}", table.protocol));
        for (l, listener) in table.listeners.iter().enumerate() {
            line(
                out,
                1,
                format_args!(
                    "listener {l}: {}/{} serves TLS routes {}",
                    listener.gateway, listener.name, listener.serves_tls_routes
                ),
            );
            line(
                out,
                2,
                format_args!(
                    "hostnames: {} owned by routes {:?}",
                    host_index(&listener.index),
                    listener.owners
                ),
            );
            for (r, route) in listener.routes.iter().enumerate() {
                line(out, 2, format_args!("route {r}: {route:?}"));
            }
        }
    }
}

fn describe_tls(tls: &TlsPorts, out: &mut String) {
    for (port, table) in sorted(&tls.ports) {
        line(out, 0, format_args!("tls port {port}"));
        line(
            out,
            1,
            format_args!("listeners by SNI: {}", host_index(&table.index)),
        );
        for (l, listener) in table.listeners.iter().enumerate() {
            let action = match &listener.action {
                TlsAction::Passthrough => "passthrough".to_owned(),
                TlsAction::Terminate(config) => format!("terminate with {config:?}"),
            };
            line(
                out,
                1,
                format_args!(
                    "listener {l}: {}/{} {action}",
                    listener.gateway, listener.name
                ),
            );
        }
    }
    // What the next compile may reuse, and the settings it checks before reusing.
    for ((gateway, listener), (ir, config)) in sorted(&tls.configs) {
        line(
            out,
            0,
            format_args!("tls config {gateway}/{listener}: for {ir:?} is {config:?}"),
        );
    }
}

fn describe_clusters(snapshot: &Snapshot, out: &mut String) {
    for (name, cluster) in sorted(&snapshot.clusters) {
        line(
            out,
            0,
            format_args!(
                "cluster {name}: {} {:?} endpoints {:?}",
                cluster.name,
                cluster.protocol,
                cluster
                    .endpoints()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
        );
        if let Some(tls) = cluster.tls() {
            line(
                out,
                1,
                format_args!("tls built from {:?}", tls.built_from()),
            );
        }
        if let Some(budget) = cluster.budget() {
            line(
                out,
                1,
                format_args!("retry budget built from {:?}", budget.settings()),
            );
        }
    }
}
