//! A compiled route rule: filters, weighted backends and timeouts, shared by its entries.

use std::sync::Arc;
use std::time::Duration;

use super::CompileError;
use crate::filters::Filter;
use crate::upstream::Cluster;
use crate::upstream::retry::RetryPolicy;
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
}

/// One weighted backendRef.
#[derive(Debug)]
pub struct Backend {
    pub weight: u32,
    /// `None` for an invalid reference: its share of requests gets a 500.
    pub cluster: Option<Arc<str>>,
    pub filters: Vec<Filter>,
}

impl Rule {
    pub fn compile(ir: &HttpRuleIr) -> Result<Self, CompileError> {
        let filters = compile_filters(&ir.filters)?;
        let backends = ir
            .backends
            .iter()
            .map(|b| {
                Ok(Backend {
                    weight: b.weight,
                    cluster: b.cluster.as_deref().map(Arc::from),
                    filters: compile_filters(&b.filters)?,
                })
            })
            .collect::<Result<Vec<_>, CompileError>>()?;
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
        })
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
