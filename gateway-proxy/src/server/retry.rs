//! The attempts of a request whose rule has `retry` (HTTPRoute, GEP-1731).
//!
//! What is retried (HTTPRouteRetry: "Implementations SHOULD retry when a retry stanza is
//! configured and the connection could not be established ..., or the backend explicitly
//! rejected the request before processing it"):
//! - a response whose status is one of the rule's `codes`;
//! - a connection that could not be made (refused, connect timeout, TLS handshake failure);
//! - a connection reset or closed before the response headers. The request may have reached
//!   the backend then: the API says "Implementations SHOULD NOT retry by default on failures
//!   where the request may have been processed ... Implementations that do retry on such
//!   conditions MUST clearly document this behavior, as it is unsafe for non-idempotent
//!   requests". Gantry retries them, for every method; `docs/retries.md` says so;
//! - an attempt that ran out the rule's `backendRequest` timeout ("any retry attempts which
//!   reach the configured BackendRequest timeout duration without a response SHOULD be
//!   canceled if possible and the Gateway SHOULD schedule the next retry attempt").
//!
//! Never retried: anything after response headers went to the client (the loop returns the
//! response and is done), a failure of the client's own body, a WebSocket upgrade.
//!
//! Each attempt has the rule's `backendRequest` timeout; the pipeline's `request` timeout
//! covers every attempt and every backoff ("the entire duration of the initial request and any
//! retry attempts MUST not exceed the Request timeout duration"). A retry goes to an endpoint
//! not tried yet where one exists, after the policy's backoff, only when the cluster's
//! circuit breaker allows another retry in flight (`maxParallelRetries`; else the failed
//! attempt's outcome is the answer) and only when the Service's retry budget has room (else
//! 503). When the attempts run out, the last failure is the answer: the
//! backend's response, or the proxy's error ("the Gateway MUST return an error").

use std::time::Duration;

use http::request::Parts;
use http::uri::Authority;
use http::{Request, Response};

use super::Shared;
use super::access_log::Record;
use super::client_body::Outcome;
use super::errors::ProxyError;
use crate::telemetry::RouteMetrics;
use crate::upstream::health::Outcome as Observed;
use crate::upstream::in_flight::InFlight;
use crate::upstream::retry::replay::{NotReplayable, RETRY_BUFFER_LIMIT, Replayable};
use crate::upstream::retry::{RetryPolicy, RetryReason, SkipReason};
use crate::upstream::{Cluster, ProxyBody, UpstreamBody, Via};

/// Access-log notes for a retry that was not made.
const NOTE_BODY_OVER_LIMIT: &str = "not retried: request body over the 64 KiB retry buffer";
const NOTE_BODY_UNAVAILABLE: &str = "not retried: the failed attempt still held the request body";
const NOTE_BUDGET: &str = "not retried: the Service's retry budget is exhausted (503)";
const NOTE_CIRCUIT_BREAKER: &str = "not retried: the cluster's maxParallelRetries is reached";
const NOTE_ATTEMPTS: &str = "not retried: every attempt the rule allows was made";

const _: () = assert!(
    RETRY_BUFFER_LIMIT == 64 * 1024,
    "NOTE_BODY_OVER_LIMIT names the size"
);

/// One request's upstream, as the attempt loop needs it.
pub(super) struct Upstream<'a> {
    pub shared: &'a Shared,
    pub cluster: &'a Cluster,
    pub via: Via<'a>,
    pub backend_timeout: Option<Duration>,
    pub metrics: &'a RouteMetrics,
}

/// Sends the request, then retries it as `policy` says. `first` is the endpoint already chosen.
#[allow(clippy::too_many_arguments)] // Each argument is a distinct piece of request context.
pub(super) async fn send(
    upstream: Upstream<'_>,
    policy: &RetryPolicy,
    first: &Authority,
    parts: Parts,
    mut body: Replayable,
    client_body: Option<&Outcome>,
    in_flight: &mut InFlight,
    record: &mut Record<'_>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let mut tried: Vec<Authority> = Vec::new();
    let mut endpoint = first.clone();
    let mut retry = 0;
    loop {
        record.attempts += 1;
        let request = Request::from_parts(copy_parts(&parts), body.next_attempt());
        let outcome = attempt(&upstream, &endpoint, request, client_body).await;
        let reason = match &outcome {
            Ok(response) if policy.retries_status(response.status().as_u16()) => {
                RetryReason::Status
            }
            Ok(_) => return outcome,
            Err(ProxyError::UpstreamConnect(_)) => RetryReason::ConnectFailure,
            Err(ProxyError::UpstreamReset(_)) => RetryReason::Reset,
            Err(ProxyError::BackendTimeout) => RetryReason::BackendTimeout,
            Err(_) => return outcome,
        };
        if retry >= policy.attempts {
            skip(
                &upstream,
                record,
                SkipReason::AttemptsExhausted,
                NOTE_ATTEMPTS,
            );
            return outcome;
        }
        retry += 1;
        let wait = policy.backoff(retry);
        let resume = tokio::time::Instant::now() + wait;
        // The failed attempt hands the body back while the backoff runs.
        if let Err(why) = body.recover(wait).await {
            let note = match why {
                NotReplayable::OverLimit => NOTE_BODY_OVER_LIMIT,
                NotReplayable::Unavailable => NOTE_BODY_UNAVAILABLE,
            };
            skip(&upstream, record, SkipReason::BodyNotReplayable, note);
            return outcome;
        }
        // A BackendConfigPolicy's `maxParallelRetries`: over it, the response that would have
        // been retried is the answer.
        if let Err(limit) = upstream.cluster.admit_retry(in_flight) {
            let metrics = &upstream.shared.metrics.circuit_breaker;
            metrics.rejected(&upstream.cluster.name, limit);
            skip(
                &upstream,
                record,
                SkipReason::CircuitBreaker,
                NOTE_CIRCUIT_BREAKER,
            );
            return outcome;
        }
        if let Some(budget) = upstream.cluster.budget()
            && !budget.try_retry()
        {
            skip(&upstream, record, SkipReason::BudgetExhausted, NOTE_BUDGET);
            return Err(ProxyError::RetryBudgetExhausted);
        }
        // The failed response's body is dropped unread: its connection is not reused.
        drop(outcome);
        upstream.metrics.retry(reason);
        tried.push(endpoint.clone());
        let Some(next) = upstream.cluster.pick_other(&tried) else {
            return Err(ProxyError::NoHealthyUpstream);
        };
        endpoint = next.clone();
        in_flight.set_endpoint(upstream.cluster.track(&endpoint));
        record.upstream = Some(endpoint.clone());
        // `recover` may have waited part of the backoff already.
        tokio::time::sleep_until(resume).await;
    }
}

/// One attempt under the `backendRequest` timeout. A failure of the client's body is the
/// client's error, never the upstream's.
async fn attempt(
    upstream: &Upstream<'_>,
    endpoint: &Authority,
    request: Request<ProxyBody>,
    client_body: Option<&Outcome>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    upstream.metrics.upstream_attempt();
    if let Some(budget) = upstream.cluster.budget() {
        budget.record_request();
    }
    let send = upstream
        .shared
        .upstreams
        .send_via(upstream.via, endpoint, request);
    let sent = async {
        send.await.map_err(
            |error| match client_body.and_then(|outcome| outcome.get()) {
                Some(&failure) => ProxyError::ClientBody(failure),
                None => ProxyError::from(error),
            },
        )
    };
    let outcome = match upstream.backend_timeout {
        Some(limit) => tokio::time::timeout(limit, sent)
            .await
            .unwrap_or(Err(ProxyError::BackendTimeout)),
        None => sent.await,
    };
    observe(upstream.cluster, endpoint, &outcome);
    outcome
}

/// Tells the cluster's outlier detection (BackendConfigPolicy passive health checks) how an
/// attempt on `endpoint` ended: a response's status, or a failure of the proxy's side (no
/// connection, a reset, the backendRequest timeout). A failure of the client's body is not the
/// endpoint's.
pub(super) fn observe<B>(
    cluster: &Cluster,
    endpoint: &Authority,
    outcome: &Result<Response<B>, ProxyError>,
) {
    if !cluster.has_health_checks() {
        return;
    }
    let outcome = match outcome {
        Ok(response) => Observed::Status(response.status().as_u16()),
        Err(
            ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamReset(_)
            | ProxyError::BackendTimeout,
        ) => Observed::LocalFailure,
        // The client's body, a circuit breaker limit: not the endpoint's doing.
        Err(_) => return,
    };
    cluster.observe(endpoint, outcome);
}

fn skip(upstream: &Upstream<'_>, record: &mut Record<'_>, reason: SkipReason, note: &'static str) {
    upstream.metrics.retry_skipped(reason);
    record.retry = Some(note);
}

/// What every attempt sends: method, target, version and headers (extensions stay behind).
fn copy_parts(parts: &Parts) -> Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}
