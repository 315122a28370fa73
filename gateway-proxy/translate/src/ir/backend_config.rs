//! The traffic settings of one cluster (a Service port) from the BackendConfigPolicy that
//! governs it: load balancing, health checks, circuit breaking, upstream connections.
//!
//! Everything is resolved: defaults filled in, durations in whole milliseconds, header names
//! lower-case, every value checked against its range. A cluster no policy governs has no
//! [`BackendConfigIr`] and the data plane uses the values of [`ConnectionIr::DEFAULT`] and
//! round robin, as before policies existed. See `docs/policies.md` for the user-facing rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The response header a request refused by a circuit breaker limit carries (with a 503); its
/// value is the name of the limit, as the API spells it (`maxParallelRequests`, ...).
pub const CIRCUIT_BREAKER_HEADER: &str = "x-gantry-circuit-breaker";

/// The settings of a cluster's governing BackendConfigPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfigIr {
    /// The policy (`namespace/name`).
    pub policy: String,
    /// How a request (an HTTP request; a connection for TCP and TLS routes, a session for
    /// UDP routes) picks an endpoint.
    pub load_balancer: LoadBalancerIr,
    /// Health checking; `None`: every endpoint the EndpointSlices list as ready is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckIr>,
    /// Limits per proxy replica and cluster; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerIr>,
    /// Upstream connection settings.
    pub connection: ConnectionIr,
}

/// A load balancing algorithm with its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum LoadBalancerIr {
    /// Each endpoint in turn. Endpoints of a Service weigh the same (EndpointSlices carry no
    /// weight). A new endpoint's turns ramp up linearly over `slow_start_window_ms`, when set.
    RoundRobin {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slow_start_window_ms: Option<u64>,
    },
    /// An endpoint chosen uniformly at random.
    Random,
    /// Of `choices` endpoints picked at random, the one with the fewest requests in flight
    /// (from this proxy replica); ties go to the first picked. Slow start as for round robin.
    LeastRequest {
        /// Always 2 (power of two choices).
        choices: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slow_start_window_ms: Option<u64>,
    },
    /// Maglev consistent hashing of [`HashKeyIr`].
    ConsistentHash(ConsistentHashIr),
}

/// Maglev consistent hashing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashIr {
    /// What is hashed. A request without it (no such header, cookie or parameter, and no cookie
    /// to set) goes to an endpoint chosen at random.
    pub key: HashKeyIr,
    /// Entries of the Maglev lookup table: a prime from 2 to 5000011.
    pub table_size: u64,
}

/// The input of a consistent hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum HashKeyIr {
    /// The client's IP address (without port), as the proxy's socket sees it.
    #[serde(rename = "SourceIP")]
    SourceIp,
    /// The value of a request header; several values are joined with `,` in order.
    Header {
        /// Lower-case.
        name: String,
    },
    /// The value of a request cookie.
    Cookie {
        name: String,
        /// When set, a request without the cookie is answered with `Set-Cookie: name=<token
        /// of the endpoint chosen>; Max-Age=<seconds>` (no `Max-Age` when 0: a session cookie)
        /// plus `attributes`, so the next requests hash to the same endpoint. `None`: no cookie
        /// is set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
        /// Attribute name to value (empty: the attribute alone, such as `Secure`), in name
        /// order. Checked: names are tokens other than `Max-Age` and `Expires`, values have no
        /// `;` and no control character.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attributes: BTreeMap<String, String>,
    },
    /// The values of query parameters (case-sensitive names, in this order), each parameter's
    /// first value, joined.
    QueryParams { names: Vec<String> },
}

/// Health checking of a cluster's endpoints.
///
/// An endpoint is unhealthy while its active checks say so, or while passive checks eject it.
/// Panic mode: when the healthy endpoints are fewer than `panic_threshold_percent` percent of
/// all (so always when none is healthy, unless the threshold is 0), health is disregarded and
/// every endpoint receives traffic; with a threshold of 0 and no healthy endpoint the answer is
/// 503.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckIr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheckIr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<OutlierDetectionIr>,
    /// 0 to 100.
    pub panic_threshold_percent: u32,
}

/// Probes each proxy replica sends to every endpoint of the cluster. A newly listed endpoint
/// counts as healthy until its probes make it unhealthy (EndpointSlices list ready endpoints,
/// which passed their readiness probe), so a new endpoint never waits for a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveHealthCheckIr {
    /// A probe not answered within this failed. At least 1.
    pub timeout_ms: u64,
    /// From the start of one probe of an endpoint to the start of the next. At least 1.
    pub interval_ms: u64,
    /// The first probe of an endpoint starts after a random delay from 0 to this.
    pub initial_jitter_ms: u64,
    /// Failed probes in a row that make a healthy endpoint unhealthy; at least 1.
    pub unhealthy_threshold: u32,
    /// Successful probes in a row that make an unhealthy endpoint healthy; at least 1.
    pub healthy_threshold: u32,
    pub probe: HealthProbeIr,
}

/// What one probe does. Probes use the cluster's transport: TLS when the cluster has
/// `tls`, h2c for an h2c cluster (HTTP and gRPC probes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum HealthProbeIr {
    /// An HTTP request without body; healthy when the response status is in
    /// `expected_statuses`.
    #[serde(rename = "HTTP")]
    Http {
        /// Starts with `/`; no whitespace or control character.
        path: String,
        /// An upper-case method: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE or PATCH.
        method: String,
        /// Sorted, without duplicates, each from 100 to 599.
        expected_statuses: Vec<u16>,
        /// The `Host` (`:authority`) sent: the policy's, or `<service>.<namespace>.svc`.
        hostname: String,
    },
    /// A TCP connection; healthy when it connects and, when `receive` is set, the bytes read
    /// (within the timeout) contain `receive`. `send` is written first when set.
    #[serde(rename = "TCP")]
    Tcp {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "hex_bytes::option"
        )]
        send: Option<Vec<u8>>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "hex_bytes::option"
        )]
        receive: Option<Vec<u8>>,
    },
    /// A `grpc.health.v1.Health/Check` call for `service` (empty: the whole server); healthy
    /// when the answer is `SERVING`.
    #[serde(rename = "GRPC")]
    Grpc { service: String },
}

/// Passive health checking (outlier detection), per proxy replica and cluster.
///
/// Each endpoint counts its consecutive failures. A 5xx response counts for
/// `consecutive_5xx_errors`; a 502, 503 or 504 also for `consecutive_gateway_errors`. A failure
/// of the proxy's side (connect failure or timeout, reset before a response) counts for
/// `consecutive_local_origin_failures` when `split_external_local_origin_errors`, and
/// otherwise as a 503 (both counters). A success resets the counters it would have counted
/// for. A counter reaching its threshold (0 never does) ejects the endpoint, unless the
/// ejected endpoints would then be more than `max_ejection_percent` percent of the cluster's
/// endpoints, rounded down but at least one (so one endpoint of a small cluster can still be
/// ejected); a percentage of 0 ejects nothing. Every `interval_ms` the ejections are reviewed:
/// an endpoint ejected for at least `base_ejection_time_ms` × (its number of ejections)
/// returns, with its counters reset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetectionIr {
    pub consecutive_5xx_errors: u32,
    pub consecutive_gateway_errors: u32,
    pub consecutive_local_origin_failures: u32,
    pub split_external_local_origin_errors: bool,
    /// At least 1.
    pub interval_ms: u64,
    /// At least 1.
    pub base_ejection_time_ms: u64,
    /// 0 to 100.
    pub max_ejection_percent: u32,
}

/// Limits per proxy replica and cluster. A request over a limit is answered 503 at once, with
/// [`CIRCUIT_BREAKER_HEADER`] naming the limit; nothing is queued beyond
/// `max_pending_requests`. A retry over `max_parallel_retries` is not made (the response that
/// would have been retried is returned, as when a rule's attempts are exhausted). A limit of 0
/// lets nothing through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerIr {
    /// Connections open to the cluster's endpoints at once.
    pub max_connections: u32,
    /// Requests waiting for a connection at once.
    pub max_pending_requests: u32,
    /// Requests in flight at once.
    pub max_parallel_requests: u32,
    /// Retries in flight at once.
    pub max_parallel_retries: u32,
    /// Requests one connection carries before it is closed; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
}

/// How connections to the cluster's endpoints are made and kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionIr {
    /// A connection attempt taking longer fails. At least 1.
    pub connect_timeout_ms: u64,
    /// A pooled connection idle this long is closed. At least 1.
    pub idle_timeout_ms: u64,
    /// A connection this old is closed once its requests finish; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration_ms: Option<u64>,
    /// TCP keepalive probes; `None`: the operating system's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepaliveIr>,
    /// Streams one HTTP/2 connection carries at once; `None`: as many as the endpoint allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_concurrent_streams: Option<u32>,
}

impl ConnectionIr {
    /// The data plane's settings for clusters without a policy, and a policy's defaults.
    pub const DEFAULT: Self = Self {
        connect_timeout_ms: 5_000,
        idle_timeout_ms: 90_000,
        max_connection_duration_ms: None,
        tcp_keepalive: None,
        http2_max_concurrent_streams: None,
    };
}

/// TCP keepalive (`SO_KEEPALIVE`, `TCP_KEEPCNT`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepaliveIr {
    /// 1 to 127.
    pub probes: u32,
    /// Whole seconds, 1 to 32767.
    pub idle_time_secs: u32,
    /// Whole seconds, 1 to 32767.
    pub interval_secs: u32,
}

/// Bytes as lower-case hex in JSON (`GET /config`, goldens).
mod hex_bytes {
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(bytes) => {
                    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    s.serialize_some(&text)
                }
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            let Some(text) = Option::<String>::deserialize(d)? else {
                return Ok(None);
            };
            if text.len() % 2 != 0 || !text.is_ascii() {
                return Err(serde::de::Error::custom("not an even number of hex digits"));
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_json_with_payloads_as_hex() {
        let ir = BackendConfigIr {
            policy: "ns/p".to_owned(),
            load_balancer: LoadBalancerIr::ConsistentHash(ConsistentHashIr {
                key: HashKeyIr::Cookie {
                    name: "c".to_owned(),
                    ttl_ms: Some(0),
                    attributes: BTreeMap::from([("Secure".to_owned(), String::new())]),
                },
                table_size: 65_537,
            }),
            health_check: Some(HealthCheckIr {
                active: Some(ActiveHealthCheckIr {
                    timeout_ms: 1_000,
                    interval_ms: 3_000,
                    initial_jitter_ms: 0,
                    unhealthy_threshold: 3,
                    healthy_threshold: 1,
                    probe: HealthProbeIr::Tcp {
                        send: Some(b"PING\r\n".to_vec()),
                        receive: Some(vec![0x00, 0xff]),
                    },
                }),
                passive: None,
                panic_threshold_percent: 50,
            }),
            circuit_breaker: None,
            connection: ConnectionIr::DEFAULT,
        };
        let json = serde_json::to_value(&ir).unwrap_or_default();
        assert_eq!(
            json["healthCheck"]["active"]["probe"],
            serde_json::json!({"type": "TCP", "send": "50494e470d0a", "receive": "00ff"})
        );
        assert_eq!(json["loadBalancer"]["type"], "ConsistentHash");
        assert_eq!(json["loadBalancer"]["key"]["ttlMs"], 0);
        let back: Result<BackendConfigIr, _> = serde_json::from_value(json);
        assert_eq!(back.ok(), Some(ir));
        let odd = serde_json::json!({"type": "TCP", "send": "abc"});
        assert!(serde_json::from_value::<HealthProbeIr>(odd).is_err());
    }
}
