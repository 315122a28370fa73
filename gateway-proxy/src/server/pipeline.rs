//! The request stack, assembled in one place. Order, outermost first:
//!
//! 1. request ID: `x-request-id` read or generated; sent upstream and echoed on every response
//! 2. request checks (Host, framing, method: 400, 405, 501) and path normalisation (400)
//! 3. route lookup on the snapshot loaded once for this request (404 when nothing matches)
//! 4. the rule's request timeout, or the default one (504), covering everything below up to
//!    response headers
//! 5. hop-by-hop headers removed (an upgrade other than WebSocket with them);
//!    X-Forwarded-For/Proto/Host and `Forwarded` set by the trusted-hops rule
//! 6. the route's SecurityPolicy ([`crate::security`]: 500 for a policy that cannot be used,
//!    403 by client address, 401 for API keys and basic auth; a CORS preflight is left to its
//!    filter), then its RateLimitPolicy ([`super::rate_limits`]: 429, 503 when Redis cannot
//!    count a global rule of a policy that fails closed), then the rule's ExternalAuth
//!    filters ([`crate::filters::ext_auth`]: the
//!    service's denial, or 403/500 when it fails closed; the body read first when one forwards
//!    it, 413 over its `maxSize`), then rule filters (a redirect, a CORS preflight or an HTTPComposition answers here), backend
//!    choice (a session's backend and endpoint when the request resumes one; else by weight:
//!    500), the backend's ExternalAuth filters, then its other filters, the circuit breaker's `maxParallelRequests` (503), the endpoint
//!    (the cluster's load balancer: [`crate::upstream::balancer`])
//! 7. HTTPTransform request body edits (JSON, buffered within `maxBytes`: 413, 400), then
//!    mirrors, with the body buffered only when one of them applies
//! 8. the upstream call under the backendRequest timeout (502, 503, 504), the body under the
//!    body-read timeout (400, 408, 499); with the rule's `retry`, more attempts as it says
//!    ([`super::retry`]; 503 when the Service's retry budget refuses one); only an asked-for
//!    WebSocket `101` is bridged
//! 9. response: hop-by-hop headers removed, CORS headers, response header modifiers, a
//!    consistent hash's new cookie, a new or refreshed session token (Set-Cookie or the session
//!    header), HTTPTransform response body edits; its body tracked by the connection's watchdog
//!    and holding the request's in-flight counts until it ends
//! 10. request ID echoed, metrics recorded, access log written
//!
//! Every failure becomes a response through [`ProxyError`]; none drops the connection. A gRPC
//! request's failure is answered as a gRPC status ([`super::grpc_status`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::Either;
use http::header::{EXPECT, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::Shared;
use super::access_log::Record;
use super::body_transform;
use super::client_body::ClientBody;
use super::errors::ProxyError;
use super::grpc_status;
use super::headers::{
    Forwarding, X_REQUEST_ID, add_forwarded, carried, client_address, ensure_request_id,
    strip_hop_by_hop,
};
use super::listener::ConnectionInfo;
use super::rate_limits;
use super::request_checks;
use super::request_timer::RequestTimer;
use super::retry;
use crate::filters::mirror::{self, Buffered, MIRROR_BODY_LIMIT};
use crate::filters::{self, Deferred, FilterContext, LocalAnswer, ext_auth};
use crate::rate_limit;
use crate::routing::{Lookup, RequestView, Resumed, RouteEntry, Rule, Snapshot};
use crate::security::Checked;
use crate::telemetry::trace::{self, Tracer};
use crate::upstream::balancer::RequestKey;
use crate::upstream::retry::replay::Replayable;
use crate::upstream::session::{self, Token};
use crate::upstream::{self, ProxyBody, upgrade};

/// Serves one request. Never fails: errors are answered.
pub async fn handle(
    shared: &Shared,
    connection: &ConnectionInfo,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let request_id = ensure_request_id(request.headers_mut());
    let grpc = grpc_status::is_grpc_request(request.headers());
    // Tracing, when configured: the request's trace context read, `traceparent` replaced for
    // upstream, and what the span needs copied only when it is sampled.
    let traced = shared
        .tracer
        .as_ref()
        .map(|tracer| Traced::begin(tracer, &mut request));
    let snapshot = shared.snapshot.load_full();
    let mut record = Record::new(shared.options.access_log, &request, started);
    if let Some(traced) = &traced {
        record.set_trace_id(|| trace::hex(&traced.active.trace_id));
    }
    let mut metrics = None;
    let mut response = match route(
        shared,
        &snapshot,
        connection,
        request,
        &request_id,
        &mut record,
        &mut metrics,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => {
            record.set_error(|| error_chain(&error));
            if let Some(traced) = traced.as_ref().filter(|t| t.active.sampled) {
                traced.error.set(Some(error_chain(&error)));
            }
            if let ProxyError::Refused(refusal) = &error {
                shared.metrics.request_rejected(refusal.reason);
            }
            // A misdirected or refused request stays an HTTP answer even for gRPC: it is about
            // the connection or the request's form (open another connection for this host, fix
            // the request), not about the call.
            if grpc && !matches!(error, ProxyError::Misdirected | ProxyError::Refused(_)) {
                record.grpc_status = Some(error.grpc_code().value());
                error.to_grpc_response()
            } else {
                error.to_response()
            }
        }
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID, request_id.clone());
    let elapsed = started.elapsed();
    metrics
        .unwrap_or(&snapshot.ports.unmatched)
        .record(response.status().as_u16(), elapsed);
    record.emit(&response, &request_id, elapsed.as_secs_f64() * 1000.0);
    if let Some(traced) = traced {
        traced.end(connection, &record, response.status().as_u16(), elapsed);
    }
    response
}

/// A request being traced.
struct Traced<'t> {
    tracer: &'t Tracer,
    active: trace::Active,
    /// Method, path and host, copied when sampled.
    facts: Option<(String, String, String)>,
    /// Why the proxy answered itself, when sampled.
    error: std::cell::Cell<Option<String>>,
}

impl<'t> Traced<'t> {
    fn begin(tracer: &'t Tracer, request: &mut Request<Incoming>) -> Self {
        let active = tracer.begin(request.headers_mut());
        let facts = active.sampled.then(|| {
            let host = request
                .uri()
                .host()
                .or_else(|| {
                    request
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|v| v.to_str().ok())
                })
                .unwrap_or_default();
            (
                request.method().as_str().to_owned(),
                request.uri().path().to_owned(),
                host.to_owned(),
            )
        });
        Self {
            tracer,
            active,
            facts,
            error: std::cell::Cell::new(None),
        }
    }

    fn end(self, connection: &ConnectionInfo, record: &Record<'_>, status: u16, elapsed: Duration) {
        let Some((method, path, host)) = &self.facts else {
            return;
        };
        let upstream = record.upstream.as_ref().map(http::uri::Authority::as_str);
        let finished = trace::Finished {
            method,
            path,
            scheme: if connection.tls.is_some() {
                "https"
            } else {
                "http"
            },
            host,
            listener_port: connection.port,
            peer: connection.peer,
            status,
            gateway: record.gateway,
            route: record.route,
            upstream,
            attempts: record.attempts,
            error: self.error.take(),
            duration: elapsed,
        };
        self.tracer.end(self.active, &finished);
    }
}

/// Steps 2 to 4: checks the request, finds the entry and runs the rest under the request
/// timeout.
async fn route<'s>(
    shared: &Shared,
    snapshot: &'s Snapshot,
    connection: &ConnectionInfo,
    request: Request<Incoming>,
    request_id: &HeaderValue,
    record: &mut Record<'s>,
    metrics: &mut Option<&'s crate::telemetry::RouteMetrics>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    // One request at a time on the connection: it may use the connection's request timer.
    let http1 = parts.version < http::Version::HTTP_2;
    // One valid Host (HTTP/2's `:authority`, an absolute-form target's authority or the
    // header), a method and framing the proxy serves; then the path routes are matched on.
    let host = request_checks::prepare(&mut parts, &shared.options.http.paths)?;
    record.set_host(&host);
    // ACME HTTP-01 (RFC 8555 §8.3): a token this proxy, or one sharing its ACME directory,
    // published is answered on plain HTTP before routes are matched, so no route shadows it.
    // Other paths and unknown tokens route as usual (cert-manager's solver routes answer
    // theirs).
    if connection.tls.is_none()
        && let Some(challenges) = &shared.acme
        && let Some(answer) = crate::acme::http01::answer(challenges, &parts)
    {
        return Ok(answer);
    }
    let table = snapshot
        .port(connection.port)
        .ok_or_else(|| ProxyError::NoRoute)?;
    let view = RequestView {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    // On a TLS connection the listener is the one the SNI selected; a Host that belongs to
    // another listener of the port is misdirected (421).
    let found = match &connection.tls {
        Some(tls) => table.lookup_on_listener(&tls.gateway, &tls.listener, &host, &view),
        None => table.lookup(&host, &view),
    };
    let (listener, entry) = match found {
        Lookup::NoListener => return Err(ProxyError::NoRoute),
        Lookup::Misdirected => return Err(ProxyError::Misdirected),
        Lookup::NoRoute(listener) => {
            *metrics = Some(&listener.unmatched);
            return Err(ProxyError::NoRoute);
        }
        Lookup::Route(listener, entry) => (listener, entry),
    };
    *metrics = Some(&entry.metrics);
    record.gateway = Some(&listener.gateway);
    record.route = Some(&entry.route);
    record.route_kind = Some(&entry.route_kind);
    let arrived = record.arrived;
    // On the heap: the future holds every step's state (some kilobytes), and on the stack it
    // would be copied whole each time it moves into `within`, the timeout and the caller's
    // future; boxed, only a pointer moves. One allocation against several large copies.
    let forward = Box::pin(forward(
        shared,
        snapshot,
        connection,
        &listener.gateway,
        entry,
        &host,
        parts,
        body,
        request_id,
        record,
    ));
    // A route's own timeout, or the proxy's default when it sets none ("0s" disables both).
    let request_timeout = match entry.rule.request_timeout {
        Some(limit) if limit.is_zero() => None,
        Some(limit) => Some(limit),
        None => shared.options.http.default_request_timeout,
    };
    // Counted from the request's arrival: GEP-1742's request timeout covers the whole of it,
    // from the Gateway receiving the request to the response. One too long to add to the clock
    // (an enormous `--default-request-timeout`) is no limit.
    let mut response = within(
        request_timeout.and_then(|limit| arrived.checked_add(limit)),
        forward,
        || ProxyError::RequestTimeout,
        http1.then_some(&connection.request_timer),
    )
    .await?;
    if let Some(headers) = record.rate_limit_headers.take() {
        headers.add_to(response.headers_mut());
    }
    if let Some(cookie) = record.set_cookie.take() {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Steps 5 to 9.
#[allow(clippy::too_many_arguments)] // Each argument is a distinct piece of request context.
async fn forward<'s>(
    shared: &Shared,
    snapshot: &'s Snapshot,
    connection: &ConnectionInfo,
    gateway: &Arc<str>,
    entry: &'s RouteEntry,
    host: &str,
    mut parts: Parts,
    body: Incoming,
    request_id: &HeaderValue,
    record: &mut Record<'s>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let rule = &entry.rule;
    // What the request carries of the headers removed or rewritten below, found in one pass.
    let carried = carried(&parts.headers);
    // WebSocket only (RFC 6455 over HTTP/1.1), and not on GRPCRoute rules; any other
    // `Upgrade` (h2c, which RFC 9113 §3.1 removed, or anything else) is dropped and the request
    // served as an ordinary one.
    let upgrade = carried
        .upgrade
        .then(|| upgrade::requested(&parts))
        .flatten()
        .filter(|_| !rule.grpc);
    let downstream_upgrade = upgrade.and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let upgrade = upgrade.filter(|_| downstream_upgrade.is_some());
    if carried.hop_by_hop {
        strip_hop_by_hop(&mut parts.headers, upgrade.is_some());
    }
    // hyper already answered `Expect: 100-continue` when the body was first read.
    if carried.expect {
        parts.headers.remove(EXPECT);
    }
    let scheme = if connection.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let forwarding = Forwarding {
        client: connection.peer.ip(),
        client_value: connection.forwarded_for.clone(),
        scheme,
        trusted_hops: shared.options.http.trusted_proxy_hops,
    };
    add_forwarded(&mut parts.headers, &forwarding, carried);
    let mut body = RequestBody::Incoming(body);
    let auth = Auth {
        shared,
        snapshot,
        connection,
        gateway,
        route: &entry.route,
        scheme,
        request_id,
    };
    // The route's SecurityPolicy, after routing and before any filter answers or calls
    // upstream; a CORS preflight (which carries no credentials) is answered by its filter.
    // Its `extAuth` goes last, once every other mechanism passed.
    let mut identity = None;
    if let Some(guard) = &entry.security
        && !filters::cors::is_preflight_for(&rule.filters, &parts)
    {
        let client = |p: &Parts| client_address(&p.headers, &forwarding);
        let checked = if guard.is_immediate() {
            guard.check_now(&mut parts, client)
        } else {
            Box::pin(guard.check(&mut parts, client)).await
        };
        match checked {
            Ok(Checked::Pass(caller)) => identity = caller,
            Ok(Checked::Answer(answer)) => return Ok(answer.map(upstream::full)),
            Err(denial) => {
                shared.metrics.security_denied(&entry.route, denial.reason);
                return Err(ProxyError::Denied(denial));
            }
        }
        // A session an `oidc` policy refreshed: its cookie goes on the response.
        if let Some(cookie) = parts
            .extensions
            .remove::<crate::security::oidc::SetCookie>()
        {
            record.set_cookie = Some(cookie.0);
        }
        if let Some(ext_auth) = guard.ext_auth()
            && let Some(answer) = Box::pin(auth.run_policy(ext_auth, &mut parts, &mut body)).await?
        {
            return Ok(answer);
        }
    }
    // The route's RateLimitPolicy, once the Consumer is known and before anything answers or
    // calls upstream.
    if let Some(limiter) = &entry.rate_limit {
        let facts = rate_limit::Facts {
            parts: &parts,
            now: record.arrived,
            client: client_address(&parts.headers, &forwarding),
            route: &entry.route,
            identity: identity.as_ref(),
        };
        let buckets = &snapshot.rate_limit_buckets;
        // A policy counted only on this replica has nothing to wait for, nor has a global one
        // whose takes this replica's reserves hand out: no future to build.
        let global = shared.global_rate_limits.as_deref();
        let checked = match limiter.check_now(buckets, global, &facts) {
            Ok(checked) => checked,
            Err(pending) => Box::pin(limiter.resume(buckets, global, &facts, pending)).await,
        };
        record.rate_limit_headers = rate_limits::outcome(shared, entry, limiter, checked)?;
    }

    // The rule's ExternalAuth filters (GEP-1494) decide before its other filters run, on the
    // request as the client sent it.
    if filters::authorizations(&rule.filters).next().is_some()
        && let Some(answer) = Box::pin(auth.run(&rule.filters, &mut parts, &mut body)).await?
    {
        return Ok(answer);
    }

    let context = FilterContext {
        scheme,
        listener_port: connection.port,
        host,
        matched_prefix: entry.matcher.prefix(),
        client: connection.peer.ip(),
        route: &entry.route,
    };
    let head_request = parts.method == Method::HEAD;
    let mut deferred = Deferred::default();
    if let Some(answer) = filters::apply_request(&rule.filters, &mut parts, &context, &mut deferred)
    {
        let local = Local {
            shared,
            snapshot,
            gateway,
            parts: &parts,
        };
        return Box::pin(local_response(local, answer, &deferred)).await;
    }
    // A session the request resumes picks the backend and endpoint; otherwise the weights
    // and the cluster's rotation do, and a backend with session persistence starts a session.
    let key = &shared.options.http.session_key;
    // The wall clock is read for session tokens only (`Backend::session` names one of the
    // rule's).
    let (now, resumed) = if rule.sessions.is_empty() {
        (0, None)
    } else {
        let now = session::now();
        let resumed = rule.resume(&parts.headers, key, now, |name| {
            snapshot.cluster(name).map(|c| &**c)
        });
        (now, resumed)
    };
    let backend = match &resumed {
        Some(Resumed::Kept { backend, .. } | Resumed::Moved { backend }) => *backend,
        None => rule.choose_backend().ok_or_else(|| ProxyError::NoBackend)?,
    };
    let cluster_name = backend
        .cluster
        .as_deref()
        .ok_or_else(|| ProxyError::InvalidBackend)?;
    if filters::authorizations(&backend.filters).next().is_some()
        && let Some(answer) = Box::pin(auth.run(&backend.filters, &mut parts, &mut body)).await?
    {
        return Ok(answer);
    }
    if let Some(answer) =
        filters::apply_request(&backend.filters, &mut parts, &context, &mut deferred)
    {
        let local = Local {
            shared,
            snapshot,
            gateway,
            parts: &parts,
        };
        return Box::pin(local_response(local, answer, &deferred)).await;
    }
    let cluster = snapshot
        .cluster(cluster_name)
        .ok_or_else(|| ProxyError::InvalidBackend)?;
    // A BackendConfigPolicy's `maxParallelRequests`: over it, 503 at once. The counts taken
    // here are held until the response body ends.
    let mut in_flight = cluster.admit().map_err(|limit| {
        shared
            .metrics
            .circuit_breaker
            .rejected(&cluster.name, limit);
        // `admit` refuses only for `maxParallelRequests`.
        ProxyError::CircuitBreaker(upstream::limits::Overflow {
            limit: upstream::limits::Limit::MaxParallelRequests,
        })
    })?;
    let mut balancer_cookie = None;
    let (endpoint, session_write) = match resumed {
        Some(Resumed::Kept {
            session,
            endpoint,
            token,
            ..
        }) => {
            let refresh = rule
                .sessions
                .get(session)
                .is_some_and(|s| s.config.needs_refresh(&token, now));
            let write = refresh.then_some((
                session,
                Token {
                    last_seen: now,
                    ..token
                },
            ));
            in_flight.set_endpoint(cluster.track(endpoint));
            (endpoint, write)
        }
        _ => {
            let key = RequestKey {
                client: connection.peer.ip(),
                headers: Some(&parts.headers),
                query: parts.uri.query(),
            };
            let picked = cluster
                .pick_for(&key)
                .ok_or_else(|| ProxyError::NoHealthyUpstream)?;
            let (endpoint, endpoint_id) = (picked.endpoint, picked.id);
            in_flight.set_endpoint(picked.slot);
            balancer_cookie = picked.set_cookie;
            let write = backend.session.map(|session| {
                (
                    session,
                    Token {
                        issued: now,
                        last_seen: now,
                        cluster: backend.cluster_id,
                        endpoint: endpoint_id,
                    },
                )
            });
            (endpoint, write)
        }
    };
    record.upstream = Some(endpoint.clone());
    let picked = endpoint.clone();

    // A body that breaks or stalls is the client's failure, answered as such, not a 502.
    let (body, has_body, client_body, read) = match body {
        // Read whole already (for an ExternalAuth filter's `forwardBody`).
        RequestBody::Read(bytes) => (
            upstream::full(bytes.clone()),
            !bytes.is_empty(),
            None,
            Some(bytes),
        ),
        RequestBody::Incoming(body) if !body.is_end_stream() => {
            let (body, outcome) = ClientBody::new(
                body,
                parts.version,
                shared.options.http.request_body_timeout,
            );
            (upstream::stream(body), true, Some(outcome), None)
        }
        RequestBody::Incoming(body) => (upstream::stream(body), false, None, None),
    };
    let body = if deferred.request_body.is_empty() {
        match read {
            Some(bytes) => Outgoing::Buffered(bytes),
            None => Outgoing::Stream(body),
        }
    } else {
        match Box::pin(body_transform::request(
            &mut parts.headers,
            body,
            has_body,
            &deferred.request_body,
            client_body.as_ref(),
        ))
        .await?
        {
            Ok(bytes) => Outgoing::Buffered(bytes),
            Err(body) => Outgoing::Stream(body),
        }
    };
    let body = if deferred.mirrors.is_empty() {
        body
    } else {
        Box::pin(mirror_and_buffer(
            shared, snapshot, rule, gateway, &deferred, &parts, body,
        ))
        .await
    };
    let via = cluster.via(gateway, rule.upstream_protocol(cluster));
    let mut response = match (&rule.retry, upgrade) {
        // Step 8 with `retry`: attempts until one is not retried (see `retry`). A body is kept
        // for replay only when there is one, and lazily.
        (Some(policy), None) => {
            let replayable = match body {
                Outgoing::Buffered(bytes) => Replayable::Full(bytes),
                Outgoing::Stream(_) if !has_body => Replayable::Empty,
                Outgoing::Stream(body) => Replayable::stream(body),
            };
            let upstream = retry::Upstream {
                shared,
                cluster,
                via,
                backend_timeout: rule.backend_timeout,
                metrics: &entry.metrics,
            };
            Box::pin(retry::send(
                upstream,
                policy,
                endpoint,
                parts,
                replayable,
                client_body.as_ref(),
                &mut in_flight,
                record,
            ))
            .await?
        }
        _ => {
            record.attempts = 1;
            entry.metrics.upstream_attempt();
            let request = Request::from_parts(parts, body.into_body());
            let failed = |error| match client_body.as_ref().and_then(|outcome| outcome.get()) {
                Some(&failure) => ProxyError::ClientBody(failure),
                None => ProxyError::from(error),
            };
            // The send's future is made where it is awaited: made first and awaited later, it
            // would be copied whole at each move (`gantry-bench --instructions-only`). Under a
            // time limit it is boxed, like `forward`'s: the timeout would otherwise take (copy)
            // the whole of it.
            let sent = match rule.backend_timeout {
                Some(limit) => {
                    let send = Box::pin(async {
                        let sent = shared.upstreams.send_via(via, endpoint, request).await;
                        sent.map_err(failed)
                    });
                    let deadline = Instant::now().checked_add(limit);
                    within(deadline, send, || ProxyError::BackendTimeout, None).await
                }
                None => {
                    let sent = shared.upstreams.send_via(via, endpoint, request).await;
                    sent.map_err(failed)
                }
            };
            retry::observe(cluster, endpoint, &sent);
            sent?
        }
    };

    // Only the upgrade the client asked for and the route allows is bridged; an upstream that
    // switches protocols unasked is answered 502, so no tunnel opens around routing.
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match (upgrade, downstream_upgrade) {
            (Some(asked), Some(downstream)) if upgrade::accepts(response.headers(), asked) => {
                // Closed when the drain delay ends, like every other connection; the drain
                // waits for it meanwhile.
                let drain = shared.drain.watcher();
                let until = drain.clone().into_signaled();
                upgrade::bridge(downstream, &mut response, until, drain);
            }
            _ => return Err(ProxyError::UnexpectedUpgrade),
        }
    }
    strip_hop_by_hop(response.headers_mut(), switching);
    deferred.apply_response(response.headers_mut());
    if let Some(cookie) = balancer_cookie {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, cookie);
    }
    // A retry answered by another endpoint moves the session there: the next request goes
    // where this one was served.
    let session_write = match (&record.upstream, backend.session) {
        (Some(served), Some(session)) if *served != picked => Some((
            session,
            Token {
                issued: now,
                last_seen: now,
                cluster: backend.cluster_id,
                endpoint: upstream::session::id(served.as_str()),
            },
        )),
        _ => session_write,
    };
    if let Some((index, token)) = session_write
        && let Some(s) = rule.sessions.get(index)
    {
        let sealed = key.seal(&s.config, &token);
        let path = entry.matcher.cookie_path();
        if let Some((name, value)) =
            s.config
                .write(&sealed, &token, now, Some(path), connection.tls.is_some())
        {
            // A backend's own cookies stay; a session header is the proxy's.
            if name == http::header::SET_COOKIE {
                response.headers_mut().append(name, value);
            } else {
                response.headers_mut().insert(name, value);
            }
        }
    }
    let response = if deferred.response_body.is_empty() {
        response.map(|body| upstream::stream(connection.activity.track(body)))
    } else {
        let edited = Box::pin(body_transform::response(
            response.map(upstream::stream),
            &deferred.response_body,
            head_request,
            &shared.metrics,
        ))
        .await;
        edited.map(|body| upstream::stream(connection.activity.track(body)))
    };
    if in_flight.is_empty() {
        return Ok(response);
    }
    Ok(response.map(|body| upstream::stream(in_flight.hold(body))))
}

/// A request body on its way upstream.
/// The client's request body before it is sent on.
enum RequestBody {
    /// Not read yet.
    Incoming(Incoming),
    /// Read whole, for an ExternalAuth filter that forwards it.
    Read(bytes::Bytes),
}

impl RequestBody {
    /// The whole body, read now if it was not yet: 413 when it is larger than `limit`, the
    /// client's error (400, 408, 499) when it breaks.
    async fn read(
        &mut self,
        version: http::Version,
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<bytes::Bytes, ProxyError> {
        let incoming = match std::mem::replace(self, Self::Read(bytes::Bytes::new())) {
            Self::Read(bytes) => {
                let over = bytes.len() > limit;
                *self = Self::Read(bytes.clone());
                return if over {
                    Err(ProxyError::BodyTooLarge(limit))
                } else {
                    Ok(bytes)
                };
            }
            Self::Incoming(body) if body.is_end_stream() => return Ok(bytes::Bytes::new()),
            Self::Incoming(body) => body,
        };
        let (body, outcome) = ClientBody::new(incoming, version, timeout);
        match mirror::buffer(upstream::stream(body), limit).await {
            Buffered::Complete(bytes) => match outcome.get() {
                Some(&failure) => Err(ProxyError::ClientBody(failure)),
                None => {
                    *self = Self::Read(bytes.clone());
                    Ok(bytes)
                }
            },
            Buffered::Streaming(_) => Err(match outcome.get() {
                Some(&failure) => ProxyError::ClientBody(failure),
                None => ProxyError::BodyTooLarge(limit),
            }),
        }
    }
}

/// What the ExternalAuth filters of a request need.
struct Auth<'a> {
    shared: &'a Shared,
    snapshot: &'a Snapshot,
    connection: &'a ConnectionInfo,
    gateway: &'a Arc<str>,
    route: &'a str,
    scheme: &'static str,
    /// The request's `x-request-id`, as `handle` found or made it.
    request_id: &'a HeaderValue,
}

impl Auth<'_> {
    /// Asks `check`'s service about the request: its body read first (up to the check's
    /// `forward_body`) when the check forwards it (413 over it, a body error as the body's).
    async fn ask(
        &self,
        check: &ext_auth::ExternalAuth,
        parts: &mut Parts,
        body: &mut RequestBody,
    ) -> Result<Result<ext_auth::Verdict, ext_auth::Failure>, ProxyError> {
        let forwarded = if check.forward_body > 0 {
            Some(
                body.read(
                    parts.version,
                    check.forward_body,
                    self.shared.options.http.request_body_timeout,
                )
                .await?,
            )
        } else {
            None
        };
        let cluster = check.cluster().and_then(|name| self.snapshot.cluster(name));
        let call = ext_auth::Call {
            upstreams: &self.shared.upstreams,
            gateway: self.gateway,
            client: self.connection.peer,
            scheme: self.scheme,
            request_id: self.request_id.to_str().unwrap_or_default(),
        };
        Ok(check.check(cluster, &call, parts, forwarded.as_ref()).await)
    }

    /// Asks a SecurityPolicy's `extAuth` service: its denial is the answer; a check that
    /// cannot be made refuses the request (403), or with `failOpen` lets it through, counted
    /// and logged (the log names the policy, route and cause, never a credential). A backendRef
    /// that does not resolve never passes (the policy is refused whole by the translator).
    async fn run_policy(
        &self,
        ext_auth: &crate::security::ExtAuth,
        parts: &mut Parts,
        body: &mut RequestBody,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        match self.ask(&ext_auth.check, parts, body).await? {
            Ok(ext_auth::Verdict::Allow) => Ok(None),
            Ok(ext_auth::Verdict::Deny(answer)) => {
                self.shared
                    .metrics
                    .security_denied(self.route, "external_auth");
                Ok(Some(answer))
            }
            Err(failure) if ext_auth.fail_open && failure.cause != ext_auth::Cause::Unresolved => {
                self.shared
                    .metrics
                    .security_fail_open(self.route, failure.cause.label());
                tracing::warn!(
                    route = self.route,
                    policy = %ext_auth.policy,
                    reason = failure.cause.label(),
                    request_id = self.request_id.to_str().unwrap_or_default(),
                    message = %failure.message,
                    "external authorization failed open: the request goes on unchecked"
                );
                Ok(None)
            }
            Err(failure) => {
                self.shared
                    .metrics
                    .security_denied(self.route, "external_auth_error");
                Err(ProxyError::Denied(crate::security::Denial {
                    status: failure.status,
                    reason: "external_auth_error",
                    message: failure.refusal(),
                    challenge: None,
                }))
            }
        }
    }

    /// Runs the ExternalAuth filters of `filters` in order: the first denial is the answer;
    /// a check that cannot be made refuses the request (fail closed).
    async fn run(
        &self,
        filters: &[filters::Filter],
        parts: &mut Parts,
        body: &mut RequestBody,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        for auth in filters::authorizations(filters) {
            match self.ask(auth, parts, body).await? {
                Ok(ext_auth::Verdict::Allow) => {}
                Ok(ext_auth::Verdict::Deny(answer)) => {
                    self.shared
                        .metrics
                        .security_denied(self.route, "external_auth");
                    return Ok(Some(answer));
                }
                Err(failure) => {
                    self.shared
                        .metrics
                        .security_denied(self.route, "external_auth_error");
                    return Err(ProxyError::Denied(crate::security::Denial {
                        status: failure.status,
                        reason: "external_auth_error",
                        message: failure.refusal(),
                        challenge: None,
                    }));
                }
            }
        }
        Ok(None)
    }
}

enum Outgoing {
    /// Read whole (for mirrors).
    Buffered(bytes::Bytes),
    /// Streamed as it arrives.
    Stream(ProxyBody),
}

impl Outgoing {
    fn into_body(self) -> ProxyBody {
        match self {
            Self::Buffered(bytes) => upstream::full(bytes),
            Self::Stream(body) => body,
        }
    }
}

/// Step 7: when mirrors apply, buffers the body (unless an HTTPTransform already did) and
/// sends each mirror its copy; otherwise the body goes on as it is.
async fn mirror_and_buffer(
    shared: &Shared,
    snapshot: &Snapshot,
    rule: &Rule,
    gateway: &Arc<str>,
    deferred: &Deferred<'_>,
    parts: &Parts,
    body: Outgoing,
) -> Outgoing {
    let clusters: Vec<_> = deferred
        .mirrors
        .iter()
        .filter_map(|m| m.cluster.as_deref().and_then(|name| snapshot.cluster(name)))
        .collect();
    if clusters.is_empty() {
        return body;
    }
    let buffered = match body {
        Outgoing::Buffered(bytes) => Buffered::Complete(bytes),
        Outgoing::Stream(body) => mirror::buffer(body, MIRROR_BODY_LIMIT).await,
    };
    match buffered {
        Buffered::Complete(bytes) => {
            for cluster in clusters {
                let protocol = rule.upstream_protocol(cluster);
                mirror::spawn(
                    &shared.upstreams,
                    cluster.clone(),
                    protocol,
                    gateway.clone(),
                    parts,
                    bytes.clone(),
                );
            }
            Outgoing::Buffered(bytes)
        }
        Buffered::Streaming(body) => {
            tracing::debug!("request body over the mirror limit; not mirrored");
            Outgoing::Stream(body)
        }
    }
}

/// What a filter's own answer may need: an HTTPComposition calls upstreams.
struct Local<'a> {
    shared: &'a Shared,
    snapshot: &'a Snapshot,
    gateway: &'a Arc<str>,
    parts: &'a Parts,
}

/// A filter's own answer: a redirect, a CORS preflight (`200`, no body) or a composed JSON
/// answer, with the response work of the filters before it.
async fn local_response(
    local: Local<'_>,
    answer: LocalAnswer<'_>,
    deferred: &Deferred<'_>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let mut response = Response::new(upstream::empty());
    match answer {
        LocalAnswer::Compose(composition) => {
            let upstream = filters::composition::Upstream {
                upstreams: &local.shared.upstreams,
                gateway: local.gateway,
                clusters: |name: &str| local.snapshot.cluster(name),
            };
            response = composition.answer(local.parts, upstream).await;
            deferred.apply_response(response.headers_mut());
            if !deferred.response_body.is_empty() {
                response = body_transform::response(
                    response,
                    &deferred.response_body,
                    local.parts.method == Method::HEAD,
                    &local.shared.metrics,
                )
                .await;
            }
            return Ok(response);
        }
        LocalAnswer::Redirect(redirect) => {
            let location = redirect.location.ok_or(ProxyError::InvalidRedirect)?;
            *response.status_mut() = redirect.status;
            response.headers_mut().insert(LOCATION, location);
        }
        LocalAnswer::Preflight(headers) => {
            *response.status_mut() = filters::cors::PREFLIGHT_STATUS;
            filters::cors::apply_headers(&headers, response.headers_mut());
        }
    }
    deferred.apply_response(response.headers_mut());
    Ok(response)
}

/// Runs `future` until `deadline`, when there is one: on `timer`, an HTTP/1.1 connection's
/// request timer, when given and free, or else on a timer of its own. The error is made by a
/// function, only on a timeout: a request served in time builds and drops no `ProxyError`
/// (for the same reason this path's `Option`s become errors with `ok_or_else`).
async fn within<T>(
    deadline: Option<Instant>,
    future: impl Future<Output = Result<T, ProxyError>> + Unpin,
    on_timeout: fn() -> ProxyError,
    timer: Option<&RequestTimer>,
) -> Result<T, ProxyError> {
    let Some(deadline) = deadline else {
        return future.await;
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    match timer.and_then(|timer| timer.take(deadline)) {
        // The request's future is polled first, as `tokio::time::timeout` does.
        Some(held) => match futures::future::select(future, held).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(on_timeout()),
        },
        None => tokio::time::timeout_at(deadline, future)
            .await
            .unwrap_or_else(|_| Err(on_timeout())),
    }
}

/// The error and its causes, for the log.
fn error_chain(error: &ProxyError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
