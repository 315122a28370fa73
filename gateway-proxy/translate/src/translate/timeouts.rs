//! HTTPRoute rule `timeouts`: GEP-2257 durations in, milliseconds out.

use std::str::FromStr;

use gantry_crds::gateway::Duration;
use gantry_crds::gateway::httproutes::HttpRouteRulesTimeouts;

use super::conditions::{self as c, Problem};
use crate::ir::TimeoutsIr;

/// Parses `request` and `backendRequest`. A zero `request` disables the timeout, proxy default
/// included, and is kept as `0`; a zero `backendRequest` is `None`.
/// HTTPRouteTimeouts: "the value of BackendRequest must be no more than the value of the
/// Request timeout", so a larger `backendRequest` makes the rule invalid.
pub fn translate_timeouts(t: Option<&HttpRouteRulesTimeouts>) -> Result<TimeoutsIr, Problem> {
    let Some(t) = t else {
        return Ok(TimeoutsIr::default());
    };
    let request_ms = parse("request", t.request.as_deref())?;
    let backend_request_ms =
        parse("backendRequest", t.backend_request.as_deref())?.filter(|&ms| ms > 0);
    if let (Some(request), Some(backend)) = (request_ms, backend_request_ms)
        && request > 0
        && backend > request
    {
        return Err(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!(
                "timeouts.backendRequest ({}) is longer than timeouts.request ({}); it must not be",
                t.backend_request.as_deref().unwrap_or_default(),
                t.request.as_deref().unwrap_or_default()
            ),
        ));
    }
    Ok(TimeoutsIr {
        request_ms,
        backend_request_ms,
    })
}

fn parse(field: &str, value: Option<&str>) -> Result<Option<u64>, Problem> {
    let Some(value) = value else { return Ok(None) };
    let d = Duration::from_str(value).map_err(|e| {
        Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!("timeouts.{field} {value:?} is not a Gateway API duration such as \"10s\", \"500ms\" or \"1h2m\": {e}"),
        )
    })?;
    Ok(Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}
