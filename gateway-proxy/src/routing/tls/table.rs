//! TLS listeners of every TLS port, compiled with the snapshot: the ClientHello's SNI picks
//! the listener, and the listener says what to do with the connection.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;

use super::config;
use crate::routing::host::HostIndex;
use gantry_translate::ir::{Ir, ListenerTlsIr, PortProtocol, TlsModeIr};

/// The TLS listeners of every TLS port.
#[derive(Debug, Default)]
pub struct TlsPorts {
    pub(crate) ports: HashMap<u16, TlsPort>,
    /// Compiled configurations by `(gateway, listener)`, with the IR they came from: the next
    /// compile reuses those whose IR did not change (a route change does not rebuild them).
    pub(crate) configs: HashMap<ListenerKey, (Arc<ListenerTlsIr>, Arc<ServerConfig>)>,
}

/// `(gateway, listener name)`.
type ListenerKey = (Arc<str>, Arc<str>);

/// The listeners of one TLS port, most specific hostname first.
#[derive(Debug)]
pub struct TlsPort {
    pub(crate) listeners: Vec<TlsListener>,
    pub(crate) index: HostIndex,
}

/// One HTTPS or TLS listener.
#[derive(Debug)]
pub struct TlsListener {
    /// `namespace/name` of the Gateway.
    pub gateway: Arc<str>,
    pub name: Arc<str>,
    pub action: TlsAction,
}

/// What a connection whose SNI selected the listener gets.
#[derive(Debug)]
pub enum TlsAction {
    /// A handshake with the listener's precompiled configuration, then HTTP.
    Terminate(Arc<ServerConfig>),
    /// The encrypted stream, ClientHello included, forwarded as it is.
    Passthrough,
}

impl TlsPorts {
    /// Compiles every TLS port of `ir`, reusing the configurations of `previous` whose
    /// listener TLS is unchanged. Fails only on TLS material the translator let through but
    /// rustls refuses, which keeps the previous configuration serving.
    pub fn compile(ir: &Ir, previous: Option<&TlsPorts>) -> Result<Self, String> {
        let mut ports = HashMap::new();
        let mut configs = HashMap::new();
        for port in ir.ports.iter().filter(|p| p.protocol == PortProtocol::Tls) {
            let mut listeners = Vec::with_capacity(port.listeners.len());
            for listener in &port.listeners {
                let key: ListenerKey = (
                    Arc::from(listener.gateway.to_string()),
                    Arc::from(listener.name.as_str()),
                );
                let action = match &listener.tls {
                    Some(tls) if tls.mode == TlsModeIr::Passthrough => TlsAction::Passthrough,
                    Some(tls) => {
                        let reused = previous
                            .and_then(|p| p.configs.get(&key))
                            .filter(|(ir, _)| ir == tls)
                            .map(|(_, config)| config.clone());
                        let config = match reused {
                            Some(config) => config,
                            None => config::server_config(tls).map_err(|e| {
                                format!("listener {}/{}: {e}", listener.gateway, listener.name)
                            })?,
                        };
                        configs.insert(key.clone(), (tls.clone(), config.clone()));
                        TlsAction::Terminate(config)
                    }
                    None => {
                        return Err(format!(
                            "listener {}/{} on TLS port {} has no TLS settings",
                            listener.gateway, listener.name, port.port
                        ));
                    }
                };
                listeners.push(TlsListener {
                    gateway: key.0,
                    name: key.1,
                    action,
                });
            }
            let index = HostIndex::build(port.listeners.iter().map(|l| l.hostname.as_deref()));
            ports.insert(port.port, TlsPort { listeners, index });
        }
        Ok(Self { ports, configs })
    }

    pub fn port(&self, port: u16) -> Option<&TlsPort> {
        self.ports.get(&port)
    }
}

impl TlsPort {
    /// The listener for a ClientHello's server name (lower case, no trailing dot): the most
    /// specific hostname that matches, as for HTTP (Gateway `listeners[].hostname`: "TLS:
    /// The Listener Hostname MUST match the SNI"). Without SNI only a listener without a
    /// hostname matches.
    pub fn select(&self, server_name: Option<&str>) -> Option<&TlsListener> {
        self.index
            .lookup(server_name.unwrap_or(""))
            .and_then(|i| self.listeners.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::{CertificateIr, ListenerIr, PemCertificates, PortIr, PrivateKeyPem};
    use gantry_translate::store::ObjectKey;

    fn certificate(name: &str) -> CertificateIr {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        CertificateIr {
            secret: ObjectKey::new("default", name),
            dns_names: vec![name.to_owned()],
            chain: PemCertificates(cert.pem()),
            private_key: PrivateKeyPem::new(key.serialize_pem()),
            not_after: 0,
        }
    }

    fn ir(listeners: &[(&str, Option<&str>, &CertificateIr)]) -> Ir {
        let listeners = listeners
            .iter()
            .map(|(name, hostname, cert)| ListenerIr {
                gateway: ObjectKey::new("default", "gw"),
                name: (*name).to_owned(),
                hostname: hostname.map(str::to_owned),
                virtual_hosts: Vec::new(),
                tls: Some(Arc::new(ListenerTlsIr {
                    mode: TlsModeIr::Terminate,
                    certificates: vec![(*cert).clone()],
                    client_validation: None,
                })),
                l4_routes: Vec::new(),
                serves_tls_routes: false,
                listener_set: None,
            })
            .collect();
        Ir {
            ports: vec![PortIr {
                port: 443,
                protocol: PortProtocol::Tls,
                listeners,
            }],
            clusters: Default::default(),
        }
    }

    fn config<'a>(ports: &'a TlsPorts, sni: Option<&str>) -> Option<&'a Arc<ServerConfig>> {
        match &ports.port(443)?.select(sni)?.action {
            TlsAction::Terminate(config) => Some(config),
            TlsAction::Passthrough => None,
        }
    }

    #[test]
    fn sni_selects_the_most_specific_listener_and_no_sni_only_the_catch_all() {
        let (a, any) = (certificate("a.example.com"), certificate("any.example.com"));
        let ports = TlsPorts::compile(
            &ir(&[
                ("a", Some("a.example.com"), &a),
                ("wild", Some("*.example.com"), &any),
            ]),
            None,
        )
        .expect("compiles");
        let port = ports.port(443).expect("TLS port");
        assert_eq!(
            port.select(Some("a.example.com")).map(|l| &*l.name),
            Some("a")
        );
        assert_eq!(
            port.select(Some("b.example.com")).map(|l| &*l.name),
            Some("wild")
        );
        assert!(port.select(Some("example.org")).is_none());
        assert!(port.select(None).is_none());
        let with_default = TlsPorts::compile(&ir(&[("any", None, &any)]), None).expect("compiles");
        assert!(
            with_default
                .port(443)
                .and_then(|p| p.select(None))
                .is_some()
        );
    }

    #[test]
    fn unchanged_listeners_keep_their_config_and_changed_ones_get_a_new_one() {
        let (a, b) = (certificate("a.example.com"), certificate("b.example.com"));
        let first = TlsPorts::compile(
            &ir(&[
                ("a", Some("a.example.com"), &a),
                ("b", Some("b.example.com"), &b),
            ]),
            None,
        )
        .expect("compiles");
        let rotated = certificate("b.example.com");
        let second = TlsPorts::compile(
            &ir(&[
                ("a", Some("a.example.com"), &a),
                ("b", Some("b.example.com"), &rotated),
            ]),
            Some(&first),
        )
        .expect("compiles");
        let same = |sni| {
            Arc::ptr_eq(
                config(&first, Some(sni)).expect("first"),
                config(&second, Some(sni)).expect("second"),
            )
        };
        assert!(
            same("a.example.com"),
            "an unchanged listener is not rebuilt"
        );
        assert!(
            !same("b.example.com"),
            "a rotated certificate gets a new config"
        );
    }
}
