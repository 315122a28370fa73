//! TLS listeners of every TLS port, compiled with the snapshot: the ClientHello's SNI picks
//! the listener, and the listener says what to do with the connection.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;

use super::config;
use crate::ir::{Ir, PortProtocol, TlsModeIr};
use crate::routing::host::HostIndex;

/// The TLS listeners of every TLS port.
#[derive(Debug, Default)]
pub struct TlsPorts {
    ports: HashMap<u16, TlsPort>,
}

/// The listeners of one TLS port, most specific hostname first.
#[derive(Debug)]
pub struct TlsPort {
    listeners: Vec<TlsListener>,
    index: HostIndex,
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
    /// Compiles every TLS port of `ir`. Fails only on TLS material the translator let
    /// through but rustls refuses, which keeps the previous configuration serving.
    pub fn compile(ir: &Ir) -> Result<Self, String> {
        let mut ports = HashMap::new();
        for port in ir.ports.iter().filter(|p| p.protocol == PortProtocol::Tls) {
            let mut listeners = Vec::with_capacity(port.listeners.len());
            for listener in &port.listeners {
                let action = match listener.tls.as_deref() {
                    Some(tls) if tls.mode == TlsModeIr::Passthrough => TlsAction::Passthrough,
                    Some(tls) => TlsAction::Terminate(config::server_config(tls).map_err(|e| {
                        format!("listener {}/{}: {e}", listener.gateway, listener.name)
                    })?),
                    None => {
                        return Err(format!(
                            "listener {}/{} on TLS port {} has no TLS settings",
                            listener.gateway, listener.name, port.port
                        ));
                    }
                };
                listeners.push(TlsListener {
                    gateway: Arc::from(listener.gateway.to_string()),
                    name: Arc::from(listener.name.as_str()),
                    action,
                });
            }
            let index = HostIndex::build(port.listeners.iter().map(|l| l.hostname.as_deref()));
            ports.insert(port.port, TlsPort { listeners, index });
        }
        Ok(Self { ports })
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
