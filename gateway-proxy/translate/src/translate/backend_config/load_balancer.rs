//! `spec.loadBalancer` into [`LoadBalancerIr`], with Envoy Gateway's rules.

use std::collections::BTreeMap;

use gantry_crds::backend_config::{
    ConsistentHash, ConsistentHashType, Cookie, LoadBalancer, LoadBalancerType,
};

use super::check::{Check, is_token};
use crate::ir::{ConsistentHashIr, HashKeyIr, LoadBalancerIr};

/// `consistentHash.tableSize` default: the Maglev default.
const DEFAULT_TABLE_SIZE: u64 = 65_537;
/// `consistentHash.tableSize`: "must be prime number limited to 5000011".
const MAX_TABLE_SIZE: u64 = 5_000_011;
/// LeastRequest compares two endpoints chosen at random (power of two choices).
const LEAST_REQUEST_CHOICES: u32 = 2;

/// The load balancer, `RoundRobin` when the policy sets none.
pub fn load_balancer(check: &mut Check, lb: Option<&LoadBalancer>) -> LoadBalancerIr {
    let Some(lb) = lb else {
        return LoadBalancerIr::RoundRobin {
            slow_start_window_ms: None,
        };
    };
    let slow_start_window_ms = lb.slow_start.as_ref().map(|s| match s.window.as_deref() {
        None => {
            check.fail("loadBalancer.slowStart.window is required".to_owned());
            0
        }
        window => check.duration_ms("loadBalancer.slowStart.window", window, 0, 1),
    });
    // Envoy Gateway: "Currently SlowStart is only supported for RoundRobin and LeastRequest
    // load balancers."
    if slow_start_window_ms.is_some()
        && matches!(
            lb.type_,
            LoadBalancerType::Random | LoadBalancerType::ConsistentHash
        )
    {
        check.fail(format!(
            "loadBalancer.slowStart is only supported with RoundRobin and LeastRequest, not {:?}",
            lb.type_
        ));
    }
    if lb.consistent_hash.is_some() && lb.type_ != LoadBalancerType::ConsistentHash {
        check.fail(format!(
            "loadBalancer.consistentHash is set but type is {:?}; it is only read with type ConsistentHash",
            lb.type_
        ));
    }
    match lb.type_ {
        LoadBalancerType::RoundRobin => LoadBalancerIr::RoundRobin {
            slow_start_window_ms,
        },
        LoadBalancerType::Random => LoadBalancerIr::Random,
        LoadBalancerType::LeastRequest => LoadBalancerIr::LeastRequest {
            choices: LEAST_REQUEST_CHOICES,
            slow_start_window_ms,
        },
        LoadBalancerType::ConsistentHash => match &lb.consistent_hash {
            Some(hash) => LoadBalancerIr::ConsistentHash(consistent_hash(check, hash)),
            None => {
                check.fail(
                    "loadBalancer.consistentHash is required with type ConsistentHash".to_owned(),
                );
                LoadBalancerIr::Random
            }
        },
    }
}

fn consistent_hash(check: &mut Check, hash: &ConsistentHash) -> ConsistentHashIr {
    let table_size = match hash.table_size {
        None => DEFAULT_TABLE_SIZE,
        Some(n) => match u64::try_from(n) {
            Ok(n) if (2..=MAX_TABLE_SIZE).contains(&n) && is_prime(n) => n,
            _ => {
                check.fail(format!(
                    "loadBalancer.consistentHash.tableSize {n} must be a prime number from 2 to {MAX_TABLE_SIZE} (Maglev)"
                ));
                DEFAULT_TABLE_SIZE
            }
        },
    };
    let field = "loadBalancer.consistentHash";
    let extra = |set: bool, name: &str, check: &mut Check| {
        if set {
            check.fail(format!(
                "{field}.{name} is set but type is {}; it is only read with type {}",
                hash_type_name(hash.type_),
                match name {
                    "header" => "Header",
                    "cookie" => "Cookie",
                    _ => "QueryParams",
                }
            ));
        }
    };
    let t = hash.type_;
    extra(
        hash.header.is_some() && t != ConsistentHashType::Header,
        "header",
        check,
    );
    extra(
        hash.cookie.is_some() && t != ConsistentHashType::Cookie,
        "cookie",
        check,
    );
    extra(
        hash.query_params.is_some() && t != ConsistentHashType::QueryParams,
        "queryParams",
        check,
    );
    let key = match t {
        ConsistentHashType::SourceIp => HashKeyIr::SourceIp,
        ConsistentHashType::Header => {
            let name = match hash.header.as_ref() {
                None => {
                    check.fail(format!("{field}.header is required with type Header"));
                    String::new()
                }
                Some(header) => match header.name.as_deref() {
                    Some(name) if is_token(name) => name.to_ascii_lowercase(),
                    Some(name) => {
                        check.fail(format!(
                            "{field}.header.name {name:?} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
                        ));
                        String::new()
                    }
                    None => {
                        check.fail(format!("{field}.header.name is required"));
                        String::new()
                    }
                },
            };
            HashKeyIr::Header { name }
        }
        ConsistentHashType::Cookie => match hash.cookie.as_ref() {
            None => {
                check.fail(format!("{field}.cookie is required with type Cookie"));
                HashKeyIr::SourceIp
            }
            Some(cookie) => cookie_key(check, cookie),
        },
        ConsistentHashType::QueryParams => {
            let params = hash.query_params.as_deref().unwrap_or_default();
            if params.is_empty() {
                check.fail(format!(
                    "{field}.queryParams needs at least one parameter with type QueryParams"
                ));
            }
            let mut names = Vec::with_capacity(params.len());
            for (i, param) in params.iter().enumerate() {
                match param.name.as_deref() {
                    Some(name) if !name.is_empty() && !name.contains(['&', '=', '#']) => {
                        names.push(name.to_owned());
                    }
                    Some(name) => check.fail(format!(
                        "{field}.queryParams[{i}].name {name:?} must be a non-empty parameter name without '&', '=' or '#'"
                    )),
                    None => check.fail(format!("{field}.queryParams[{i}].name is required")),
                }
            }
            HashKeyIr::QueryParams { names }
        }
    };
    ConsistentHashIr { key, table_size }
}

/// The type as the API spells it.
fn hash_type_name(t: ConsistentHashType) -> &'static str {
    match t {
        ConsistentHashType::SourceIp => "SourceIP",
        ConsistentHashType::Header => "Header",
        ConsistentHashType::Cookie => "Cookie",
        ConsistentHashType::QueryParams => "QueryParams",
    }
}

/// Cookie attributes the proxy writes itself (from `ttl`), which the attributes may not set.
const RESERVED_ATTRIBUTES: [&str; 2] = ["max-age", "expires"];

fn cookie_key(check: &mut Check, cookie: &Cookie) -> HashKeyIr {
    let field = "loadBalancer.consistentHash.cookie";
    let name = match cookie.name.as_deref() {
        // RFC 6265 `cookie-name` is a `token`.
        Some(name) if is_token(name) => name.to_owned(),
        Some(name) => {
            check.fail(format!(
                "{field}.name {name:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"
            ));
            String::new()
        }
        None => {
            check.fail(format!("{field}.name is required"));
            String::new()
        }
    };
    let ttl_ms = cookie
        .ttl
        .as_deref()
        .map(|ttl| check.duration_ms(&format!("{field}.ttl"), Some(ttl), 0, 0));
    let mut attributes = BTreeMap::new();
    for (key, value) in cookie.attributes.iter().flatten() {
        if !is_token(key) {
            check.fail(format!(
                "{field}.attributes key {key:?} is not a cookie attribute name"
            ));
        } else if RESERVED_ATTRIBUTES.contains(&key.to_ascii_lowercase().as_str()) {
            check.fail(format!(
                "{field}.attributes key {key:?} is not allowed; the cookie's lifetime is ttl"
            ));
        } else if value.contains(';') || value.chars().any(char::is_control) {
            check.fail(format!(
                "{field}.attributes[{key}] {value:?} may not contain ';' or control characters"
            ));
        } else {
            attributes.insert(key.clone(), value.clone());
        }
    }
    HashKeyIr::Cookie {
        name,
        ttl_ms,
        attributes,
    }
}

/// Trial division: table sizes are at most 5000011, so at most ~1100 divisions.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let primes: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537) && is_prime(5_000_011));
        assert!(!is_prime(65_536) && !is_prime(1_000_001)); // 101 × 9901
    }
}
