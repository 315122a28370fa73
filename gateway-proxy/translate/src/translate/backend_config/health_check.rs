//! `spec.healthCheck` into [`HealthCheckIr`], with Envoy Gateway's defaults and rules.

use base64::Engine;
use gantry_crds::backend_config::{
    ActiveHealthCheck, ActiveHealthCheckPayload, ActiveHealthCheckPayloadType,
    ActiveHealthCheckerType, HealthCheck, HttpActiveHealthChecker, PassiveHealthCheck,
};

use super::check::Check;
use crate::ir::{ActiveHealthCheckIr, HealthCheckIr, HealthProbeIr, OutlierDetectionIr};
use crate::translate::hostname;

// Envoy Gateway's defaults (`+kubebuilder:default`), and Envoy's panic threshold.
const DEFAULT_TIMEOUT_MS: u64 = 1_000;
const DEFAULT_INTERVAL_MS: u64 = 3_000;
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
const DEFAULT_PANIC_THRESHOLD: u32 = 50;
const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
const DEFAULT_CONSECUTIVE_GATEWAY_ERRORS: u32 = 0;
const DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES: u32 = 5;
const DEFAULT_PASSIVE_INTERVAL_MS: u64 = 3_000;
const DEFAULT_BASE_EJECTION_TIME_MS: u64 = 30_000;
const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;
const DEFAULT_EXPECTED_STATUS: u16 = 200;

/// Methods an HTTP probe may use: a probe sends no body and expects no tunnel.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
];

/// A probe's `Host` when the policy sets none is filled in per cluster: `<service>.<namespace>
/// .svc`. This marks it until then.
pub const HOSTNAME_OF_SERVICE: &str = "";

pub fn health_check(check: &mut Check, hc: &HealthCheck) -> HealthCheckIr {
    HealthCheckIr {
        active: hc.active.as_ref().map(|a| active(check, a)),
        passive: hc.passive.as_ref().map(|p| passive(check, p)),
        panic_threshold_percent: check.integer(
            "healthCheck.panicThreshold",
            hc.panic_threshold,
            DEFAULT_PANIC_THRESHOLD,
            0,
            100,
        ),
    }
}

fn active(check: &mut Check, a: &ActiveHealthCheck) -> ActiveHealthCheckIr {
    let field = "healthCheck.active";
    let timeout_ms = check.duration_ms(
        &format!("{field}.timeout"),
        a.timeout.as_deref(),
        DEFAULT_TIMEOUT_MS,
        1,
    );
    let interval_ms = check.duration_ms(
        &format!("{field}.interval"),
        a.interval.as_deref(),
        DEFAULT_INTERVAL_MS,
        1,
    );
    let initial_jitter_ms = check.duration_ms(
        &format!("{field}.initialJitter"),
        a.initial_jitter.as_deref(),
        0,
        0,
    );
    let unhealthy_threshold = check.integer(
        &format!("{field}.unhealthyThreshold"),
        a.unhealthy_threshold,
        DEFAULT_UNHEALTHY_THRESHOLD,
        1,
        u32::MAX,
    );
    let healthy_threshold = check.integer(
        &format!("{field}.healthyThreshold"),
        a.healthy_threshold,
        DEFAULT_HEALTHY_THRESHOLD,
        1,
        u32::MAX,
    );
    // Envoy Gateway: "If Health Checker type is HTTP, http field needs to be set"; tcp and
    // grpc only with their type (tcp may be left out: a connect-only probe).
    let wrong = |set: bool, name: &str, want: &str, check: &mut Check| {
        if set {
            check.fail(format!(
                "{field}.{name} is set but type is {}; it is only read with type {want}",
                type_name(a.type_)
            ));
        }
    };
    wrong(
        a.http.is_some() && a.type_ != ActiveHealthCheckerType::Http,
        "http",
        "HTTP",
        check,
    );
    wrong(
        a.tcp.is_some() && a.type_ != ActiveHealthCheckerType::Tcp,
        "tcp",
        "TCP",
        check,
    );
    wrong(
        a.grpc.is_some() && a.type_ != ActiveHealthCheckerType::Grpc,
        "grpc",
        "GRPC",
        check,
    );
    let probe = match a.type_ {
        ActiveHealthCheckerType::Http => match &a.http {
            Some(http) => http_probe(check, http),
            None => {
                check.fail(format!("{field}.http is required with type HTTP"));
                HealthProbeIr::Tcp {
                    send: None,
                    receive: None,
                }
            }
        },
        ActiveHealthCheckerType::Tcp => {
            let tcp = a.tcp.as_ref();
            HealthProbeIr::Tcp {
                send: tcp
                    .and_then(|t| t.send.as_ref())
                    .map(|p| payload(check, &format!("{field}.tcp.send"), p)),
                receive: tcp
                    .and_then(|t| t.receive.as_ref())
                    .map(|p| payload(check, &format!("{field}.tcp.receive"), p)),
            }
        }
        ActiveHealthCheckerType::Grpc => HealthProbeIr::Grpc {
            service: a
                .grpc
                .as_ref()
                .and_then(|g| g.service.clone())
                .unwrap_or_default(),
        },
    };
    ActiveHealthCheckIr {
        timeout_ms,
        interval_ms,
        initial_jitter_ms,
        unhealthy_threshold,
        healthy_threshold,
        probe,
    }
}

fn type_name(t: ActiveHealthCheckerType) -> &'static str {
    match t {
        ActiveHealthCheckerType::Http => "HTTP",
        ActiveHealthCheckerType::Tcp => "TCP",
        ActiveHealthCheckerType::Grpc => "GRPC",
    }
}

fn http_probe(check: &mut Check, http: &HttpActiveHealthChecker) -> HealthProbeIr {
    let field = "healthCheck.active.http";
    let path = match http.path.as_deref() {
        Some(path)
            if path.starts_with('/')
                && path.len() <= 1024
                && !path.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            path.to_owned()
        }
        Some(path) => {
            check.fail(format!(
                "{field}.path {path:?} must start with '/', have at most 1024 characters and no whitespace"
            ));
            String::new()
        }
        None => {
            check.fail(format!("{field}.path is required"));
            String::new()
        }
    };
    let method = match http.method.as_deref() {
        None => "GET".to_owned(),
        Some(m) if METHODS.contains(&m) => m.to_owned(),
        Some(m) => {
            check.fail(format!(
                "{field}.method {m:?} is not one of {}",
                METHODS.join(", ")
            ));
            String::new()
        }
    };
    let mut expected_statuses = Vec::new();
    match http.expected_statuses.as_deref() {
        None => expected_statuses.push(DEFAULT_EXPECTED_STATUS),
        Some([]) => check.fail(format!(
            "{field}.expectedStatuses is empty; leave it out for 200, or list the healthy statuses"
        )),
        Some(statuses) => {
            for &status in statuses {
                match u16::try_from(status) {
                    Ok(s) if (100..=599).contains(&s) => expected_statuses.push(s),
                    _ => check.fail(format!(
                        "{field}.expectedStatuses {status} is not an HTTP status from 100 to 599"
                    )),
                }
            }
        }
    }
    expected_statuses.sort_unstable();
    expected_statuses.dedup();
    let hostname = match http.hostname.as_deref() {
        None => HOSTNAME_OF_SERVICE.to_owned(),
        // A precise name or an IP address: it is sent as it is.
        Some(h)
            if (hostname::is_valid(h) && !h.starts_with('*'))
                || h.parse::<std::net::IpAddr>().is_ok() =>
        {
            h.to_owned()
        }
        Some(h) => {
            check.fail(format!(
                "{field}.hostname {h:?} is not a DNS name without wildcard or an IP address"
            ));
            String::new()
        }
    };
    HealthProbeIr::Http {
        path,
        method,
        expected_statuses,
        hostname,
    }
}

fn payload(check: &mut Check, field: &str, p: &ActiveHealthCheckPayload) -> Vec<u8> {
    match p.type_ {
        ActiveHealthCheckPayloadType::Text => {
            if p.binary.is_some() {
                check.fail(format!("{field}.binary is set but type is Text"));
            }
            match p.text.as_deref() {
                Some(text) if !text.is_empty() => text.as_bytes().to_vec(),
                _ => {
                    check.fail(format!(
                        "{field}.text is required (not empty) with type Text"
                    ));
                    Vec::new()
                }
            }
        }
        ActiveHealthCheckPayloadType::Binary => {
            if p.text.is_some() {
                check.fail(format!("{field}.text is set but type is Binary"));
            }
            let decoded = p
                .binary
                .as_deref()
                .map(|b| base64::engine::general_purpose::STANDARD.decode(b));
            match decoded {
                Some(Ok(bytes)) if !bytes.is_empty() => bytes,
                Some(Ok(_)) | None => {
                    check.fail(format!(
                        "{field}.binary is required (not empty) with type Binary"
                    ));
                    Vec::new()
                }
                Some(Err(e)) => {
                    check.fail(format!("{field}.binary is not base64: {e}"));
                    Vec::new()
                }
            }
        }
    }
}

fn passive(check: &mut Check, p: &PassiveHealthCheck) -> OutlierDetectionIr {
    let field = "healthCheck.passive";
    OutlierDetectionIr {
        consecutive_5xx_errors: check.integer(
            &format!("{field}.consecutive5XxErrors"),
            p.consecutive_5xx_errors,
            DEFAULT_CONSECUTIVE_5XX,
            0,
            u32::MAX,
        ),
        consecutive_gateway_errors: check.integer(
            &format!("{field}.consecutiveGatewayErrors"),
            p.consecutive_gateway_errors,
            DEFAULT_CONSECUTIVE_GATEWAY_ERRORS,
            0,
            u32::MAX,
        ),
        consecutive_local_origin_failures: check.integer(
            &format!("{field}.consecutiveLocalOriginFailures"),
            p.consecutive_local_origin_failures,
            DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES,
            0,
            u32::MAX,
        ),
        split_external_local_origin_errors: p.split_external_local_origin_errors.unwrap_or(false),
        interval_ms: check.duration_ms(
            &format!("{field}.interval"),
            p.interval.as_deref(),
            DEFAULT_PASSIVE_INTERVAL_MS,
            1,
        ),
        base_ejection_time_ms: check.duration_ms(
            &format!("{field}.baseEjectionTime"),
            p.base_ejection_time.as_deref(),
            DEFAULT_BASE_EJECTION_TIME_MS,
            1,
        ),
        max_ejection_percent: check.integer(
            &format!("{field}.maxEjectionPercent"),
            p.max_ejection_percent,
            DEFAULT_MAX_EJECTION_PERCENT,
            0,
            100,
        ),
    }
}
