//! A compiled route rule: filters, weighted backends and timeouts, shared by its entries.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::uri::Authority;

use super::CompileError;
use crate::filters::Filter;
use crate::upstream::Cluster;
use crate::upstream::retry::RetryPolicy;
use crate::upstream::session::{self, SessionConfig, SessionKey, Token};
use gantry_translate::ir::{HttpRuleIr, UpstreamProtocol};

/// One rule, ready to serve.
#[derive(Debug)]
pub struct Rule {
    pub name: Option<String>,
    pub filters: Vec<Filter>,
    pub backends: Vec<Backend>,
    total_weight: u64,
    /// Whole request to response headers.
    pub request_timeout: Option<Duration>,
    /// One upstream attempt.
    pub backend_timeout: Option<Duration>,
    /// HTTPRoute `retry`; `None` sends one attempt.
    pub retry: Option<RetryPolicy>,
    /// Whether a RequestRedirect answers every request of the rule.
    pub redirects: bool,
    /// A GRPCRoute rule: backends are spoken to with HTTP/2.
    pub grpc: bool,
    /// Session persistence: the rule's own (one, for every backend) or its backends'
    /// policies' (one per distinct configuration).
    pub sessions: Vec<RuleSession>,
}

/// One session configuration of a rule and the backends it covers.
#[derive(Debug)]
pub struct RuleSession {
    pub config: SessionConfig,
    /// Indexes into [`Rule::backends`].
    pub backends: Vec<usize>,
}

/// A session a request's token resumes.
#[derive(Debug)]
pub enum Resumed<'r, 'c> {
    /// Its endpoint is still there.
    Kept {
        session: usize,
        backend: &'r Backend,
        endpoint: &'c Authority,
        token: Token,
    },
    /// Its backend is there but its endpoint is gone: another endpoint of the backend takes
    /// the session, and the new one is written back.
    Moved { backend: &'r Backend },
}

/// One weighted backendRef.
#[derive(Debug)]
pub struct Backend {
    pub weight: u32,
    /// `None` for an invalid reference: its share of requests gets a 500.
    pub cluster: Option<Arc<str>>,
    pub filters: Vec<Filter>,
    /// [`session::id`] of the cluster name, what a session token names.
    pub cluster_id: u64,
    /// The index in [`Rule::sessions`] of the session persistence that covers it.
    pub session: Option<usize>,
}

impl Rule {
    pub fn compile(ir: &HttpRuleIr) -> Result<Self, CompileError> {
        let filters = compile_filters(&ir.filters)?;
        let mut sessions: Vec<RuleSession> = Vec::new();
        if let Some(sp) = &ir.session_persistence {
            sessions.push(RuleSession {
                config: SessionConfig::compile(sp).map_err(CompileError::Session)?,
                backends: Vec::new(),
            });
        }
        let mut backends = Vec::with_capacity(ir.backends.len());
        for (index, b) in ir.backends.iter().enumerate() {
            let session = match (&ir.session_persistence, &b.session_persistence) {
                (Some(_), _) => Some(0),
                (None, Some(sp)) => {
                    let config = SessionConfig::compile(sp).map_err(CompileError::Session)?;
                    match sessions.iter().position(|s| s.config == config) {
                        Some(i) => Some(i),
                        None => {
                            sessions.push(RuleSession {
                                config,
                                backends: Vec::new(),
                            });
                            Some(sessions.len() - 1)
                        }
                    }
                }
                (None, None) => None,
            };
            if let Some(s) = session.and_then(|i| sessions.get_mut(i)) {
                s.backends.push(index);
            }
            backends.push(Backend {
                weight: b.weight,
                cluster: b.cluster.as_deref().map(Arc::from),
                filters: compile_filters(&b.filters)?,
                cluster_id: b.cluster.as_deref().map_or(0, session::id),
                session,
            });
        }
        let redirects = filters.iter().any(|f| matches!(f, Filter::Redirect(_)));
        Ok(Self {
            name: ir.name.clone(),
            total_weight: backends.iter().map(|b| u64::from(b.weight)).sum(),
            filters,
            backends,
            request_timeout: ir.timeouts.request_ms.map(Duration::from_millis),
            backend_timeout: ir.timeouts.backend_request_ms.map(Duration::from_millis),
            retry: ir.retry.as_ref().map(RetryPolicy::compile),
            redirects,
            grpc: ir.grpc,
            sessions,
        })
    }

    /// The session a request's token resumes, if it carries a valid, unexpired one of this
    /// rule whose backend the rule still has (whatever its weight: GEP-1619, "the persistence
    /// to a single backend MUST be maintained across services, even if the weight is set to
    /// 0"). `clusters` finds a cluster of the snapshot by name.
    pub fn resume<'r, 'c>(
        &'r self,
        headers: &HeaderMap,
        key: &SessionKey,
        now: u64,
        clusters: impl Fn(&str) -> Option<&'c Cluster>,
    ) -> Option<Resumed<'r, 'c>> {
        for (index, s) in self.sessions.iter().enumerate() {
            for value in s.config.values(headers) {
                let Some(token) = key
                    .open(&s.config, value)
                    .filter(|t| s.config.fresh(t, now))
                else {
                    continue;
                };
                let Some(backend) = s
                    .backends
                    .iter()
                    .filter_map(|&b| self.backends.get(b))
                    .find(|b| b.cluster.is_some() && b.cluster_id == token.cluster)
                else {
                    continue;
                };
                let Some(cluster) = backend.cluster.as_deref().and_then(&clusters) else {
                    continue;
                };
                return Some(match cluster.endpoint_by_id(token.endpoint) {
                    Some(endpoint) => Resumed::Kept {
                        session: index,
                        backend,
                        endpoint,
                        token,
                    },
                    None => Resumed::Moved { backend },
                });
            }
        }
        None
    }

    /// How to speak to `cluster` for this rule: a GRPCRoute rule always uses HTTP/2 (gRPC
    /// needs it: trailers, streams), otherwise the Service port's `appProtocol` decides.
    pub fn upstream_protocol(&self, cluster: &Cluster) -> UpstreamProtocol {
        if self.grpc {
            UpstreamProtocol::H2c
        } else {
            cluster.protocol
        }
    }

    /// A backend chosen in proportion to the weights, invalid ones included; a weight of 0 is
    /// never chosen. `None` when no backend has weight.
    pub fn choose_backend(&self) -> Option<&Backend> {
        match self.backends.as_slice() {
            [] => None,
            [only] => (only.weight > 0).then_some(only),
            backends => {
                if self.total_weight == 0 {
                    return None;
                }
                let mut ticket = fastrand::u64(0..self.total_weight);
                backends.iter().find(|b| {
                    let weight = u64::from(b.weight);
                    if ticket < weight {
                        true
                    } else {
                        ticket -= weight;
                        false
                    }
                })
            }
        }
    }
}

fn compile_filters(
    filters: &[gantry_translate::ir::HttpFilterIr],
) -> Result<Vec<Filter>, CompileError> {
    filters
        .iter()
        .map(|f| Filter::compile(f).map_err(CompileError::Filter))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::BackendIr;

    fn backend(weight: u32, cluster: Option<&str>) -> BackendIr {
        BackendIr {
            weight,
            cluster: cluster.map(Into::into),
            filters: vec![],
            session_persistence: None,
        }
    }

    #[test]
    fn weighted_choice_includes_invalid_backends_and_skips_zero() {
        let rule = Rule::compile(&HttpRuleIr {
            backends: vec![
                backend(1, Some("a")),
                backend(0, Some("zero")),
                backend(1, None),
            ],
            ..Default::default()
        })
        .unwrap();
        let mut valid = 0;
        let mut invalid = 0;
        for _ in 0..4_000 {
            match rule.choose_backend().unwrap().cluster.as_deref() {
                Some("a") => valid += 1,
                None => invalid += 1,
                other => panic!("chose {other:?}"),
            }
        }
        assert!((1_500..2_500).contains(&valid), "{valid}");
        assert!((1_500..2_500).contains(&invalid), "{invalid}");
    }

    #[test]
    fn no_weight_means_no_backend() {
        let rule = Rule::compile(&HttpRuleIr {
            backends: vec![backend(0, Some("a"))],
            ..Default::default()
        })
        .unwrap();
        assert!(rule.choose_backend().is_none());
        let rule = Rule::compile(&HttpRuleIr::default()).unwrap();
        assert!(rule.choose_backend().is_none());
    }
}
