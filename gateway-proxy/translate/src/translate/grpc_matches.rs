//! GRPCRouteMatch: method (service and/or method, Exact or RegularExpression) and headers,
//! validated into HTTP matches on the gRPC request path `/{service}/{method}`.
//!
//! A gRPC call is an HTTP/2 `POST` to `/{service}/{method}`, so a GRPCRouteMatch becomes an
//! [`HttpMatchIr`] with method `POST` and a path match:
//!
//! | GRPCMethodMatch | path match |
//! |---|---|
//! | none | `PathPrefix /` (every call) |
//! | Exact, service and method | `Exact /{service}/{method}` |
//! | Exact, service only | `PathPrefix /{service}` (every method of the service) |
//! | Exact, method only | `RegularExpression /[^/]+/{method}` |
//! | RegularExpression | `RegularExpression /(?:{service})/(?:{method})`, `[^/]+` for the absent part |

use gantry_crds::gateway::grpcroutes::{
    GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeadersType, GrpcRouteRulesMatchesMethod,
    GrpcRouteRulesMatchesMethodType,
};

use super::conditions::{self as c, Problem};
use super::matches::{translate_header_matches, valid_regex};
use crate::ir::{HttpMatchIr, PathMatchIr};

/// The method every gRPC call uses.
const GRPC_METHOD: &str = "POST";

/// What GRPCRoute precedence needs of a match beyond the IR: the number of characters of
/// the service and method values as written (0 when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcMatchRank {
    pub service_chars: usize,
    pub method_chars: usize,
}

/// One translated GRPCRouteMatch.
#[derive(Clone, Debug)]
pub struct GrpcMatch {
    pub ir: HttpMatchIr,
    pub rank: GrpcMatchRank,
}

/// The matches of a rule; none means every gRPC call ("If no matches are specified, the
/// implementation MUST match every gRPC request").
pub fn translate_grpc_matches(
    matches: Option<&[GrpcRouteRulesMatches]>,
) -> Result<Vec<GrpcMatch>, Problem> {
    match matches {
        None | Some([]) => Ok(vec![GrpcMatch {
            ir: call(PathMatchIr::default(), Vec::new()),
            rank: GrpcMatchRank::default(),
        }]),
        Some(ms) => ms.iter().map(translate_match).collect(),
    }
}

fn call(path: PathMatchIr, headers: Vec<crate::ir::ValueMatchIr>) -> HttpMatchIr {
    HttpMatchIr {
        path,
        headers,
        query_params: Vec::new(),
        method: Some(GRPC_METHOD.to_owned()),
    }
}

fn translate_match(m: &GrpcRouteRulesMatches) -> Result<GrpcMatch, Problem> {
    let headers = translate_header_matches(m.headers.iter().flatten().map(|h| {
        (
            h.name.as_str(),
            h.value.as_str(),
            h.r#type == Some(GrpcRouteRulesMatchesHeadersType::RegularExpression),
        )
    }))?;
    let (path, rank) = match &m.method {
        None => (PathMatchIr::default(), GrpcMatchRank::default()),
        Some(method) => method_path(method)?,
    };
    Ok(GrpcMatch {
        ir: call(path, headers),
        rank,
    })
}

/// GRPCMethodMatch's validation rules: "One or both of 'service' or 'method' must be
/// specified" ("At least one of Service and Method MUST be a non-empty string"); with type
/// Exact (the default) the service must match `^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`
/// and the method `^[A-Za-z_][A-Za-z_0-9]*$`. RegularExpression values must compile (RE2
/// syntax; the `regex` crate's is the same family).
fn method_path(m: &GrpcRouteRulesMatchesMethod) -> Result<(PathMatchIr, GrpcMatchRank), Problem> {
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    let rank = GrpcMatchRank {
        service_chars: service.map_or(0, str::len),
        method_chars: method.map_or(0, str::len),
    };
    if service.is_none() && method.is_none() {
        return Err(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            "a method match needs a service, a method or both; remove the empty `method` \
             match to match every call",
        ));
    }
    let regex = m.r#type == Some(GrpcRouteRulesMatchesMethodType::RegularExpression);
    let path = if regex {
        let part = |what, value: Option<&str>| -> Result<String, Problem> {
            match value {
                Some(v) => Ok(format!("(?:{})", valid_regex(what, v.to_owned())?)),
                None => Ok("[^/]+".to_owned()),
            }
        };
        PathMatchIr::RegularExpression(format!(
            "/{}/{}",
            part("service", service)?,
            part("method", method)?
        ))
    } else {
        if let Some(s) = service
            && !valid_service(s)
        {
            return Err(Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!(
                    "service {s:?} is not a valid gRPC service name for an Exact match \
                     (like `package.Service`); use type RegularExpression for a pattern"
                ),
            ));
        }
        if let Some(v) = method
            && !valid_method(v)
        {
            return Err(Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!(
                    "method {v:?} is not a valid gRPC method name for an Exact match \
                     (letters, digits and '_', not starting with a digit); use type \
                     RegularExpression for a pattern"
                ),
            ));
        }
        match (service, method) {
            (Some(s), Some(v)) => PathMatchIr::Exact(format!("/{s}/{v}")),
            (Some(s), None) => PathMatchIr::Prefix(format!("/{s}")),
            (None, Some(v)) => PathMatchIr::RegularExpression(format!("/[^/]+/{v}")),
            (None, None) => PathMatchIr::default(),
        }
    };
    Ok((path, rank))
}

fn is_identifier_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_identifier(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(|b| is_identifier_start(*b))
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// `^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`.
fn valid_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty() && s.split('.').all(is_identifier)
}

/// `^[A-Za-z_][A-Za-z_0-9]*$`.
fn valid_method(s: &str) -> bool {
    is_identifier(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(
        kind: Option<GrpcRouteRulesMatchesMethodType>,
        service: Option<&str>,
        method: Option<&str>,
    ) -> Result<GrpcMatch, Problem> {
        translate_match(&GrpcRouteRulesMatches {
            headers: None,
            method: Some(GrpcRouteRulesMatchesMethod {
                method: method.map(str::to_owned),
                service: service.map(str::to_owned),
                r#type: kind,
            }),
        })
    }

    #[test]
    fn method_matches_become_paths() {
        let exact = Some(GrpcRouteRulesMatchesMethodType::Exact);
        let regex = Some(GrpcRouteRulesMatchesMethodType::RegularExpression);
        let cases = [
            (
                exact.clone(),
                Some("pkg.Echo"),
                Some("Hello"),
                PathMatchIr::Exact("/pkg.Echo/Hello".into()),
            ),
            (
                None,
                Some("pkg.Echo"),
                None,
                PathMatchIr::Prefix("/pkg.Echo".into()),
            ),
            (
                exact,
                None,
                Some("Hello"),
                PathMatchIr::RegularExpression("/[^/]+/Hello".into()),
            ),
            (
                regex.clone(),
                Some(r"pkg\..*"),
                Some("H.*"),
                PathMatchIr::RegularExpression(r"/(?:pkg\..*)/(?:H.*)".into()),
            ),
            (
                regex,
                None,
                Some("Bye|Hello"),
                PathMatchIr::RegularExpression("/[^/]+/(?:Bye|Hello)".into()),
            ),
        ];
        for (kind, service, name, want) in cases {
            let m = method(kind, service, name).expect("valid");
            assert_eq!(m.ir.path, want, "{service:?} {name:?}");
            assert_eq!(m.ir.method.as_deref(), Some("POST"));
            assert_eq!(m.rank.service_chars, service.map_or(0, str::len));
        }
    }

    #[test]
    fn invalid_method_matches() {
        assert!(method(None, None, None).is_err());
        assert!(method(None, Some(""), Some("")).is_err());
        assert!(method(None, Some(".*"), None).is_err());
        assert!(method(None, Some("pkg..Echo"), None).is_err());
        assert!(method(None, None, Some("Say-Hello")).is_err());
        assert!(method(None, None, Some("1abc")).is_err());
        assert!(
            method(
                Some(GrpcRouteRulesMatchesMethodType::RegularExpression),
                Some("("),
                None
            )
            .is_err()
        );
        assert!(method(None, Some(".pkg.v1.Echo_2"), None).is_ok());
    }

    #[test]
    fn no_matches_match_every_call() {
        let all = translate_grpc_matches(None).expect("valid");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].ir.path, PathMatchIr::Prefix("/".into()));
        assert_eq!(all[0].ir.method.as_deref(), Some("POST"));
    }
}
