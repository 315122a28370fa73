//! HTTPComposition: its parts validated into [`CompositionIr`], each backendRef resolved as a
//! backendRef of the route that references the composition.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use gantry_crds::composition::{
    DEFAULT_PART_BYTES, DEFAULT_PART_TIMEOUT, HttpCompositionSpec, MAX_PART_BYTES, OnPartFailure,
    PartMethod,
};
use gantry_crds::gateway::Duration;

use super::backend::{self, BackendRef, Referrer};
use super::conditions::Problem;
use super::template;
use crate::ir::{ClusterIr, CompositionIr, PartIr, SegmentIr};

/// Most parts a composition may have.
const MAX_PARTS: usize = 16;

/// Validates a composition. `Err` is a message naming the bad field; an unresolved backendRef
/// is not an error: its part always fails, and the problem is returned for `ResolvedRefs`.
pub fn translate(
    spec: &HttpCompositionSpec,
    source: String,
    store: &crate::store::Store,
    referrer: Referrer<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<(CompositionIr, Vec<Problem>), String> {
    if spec.parts.is_empty() || spec.parts.len() > MAX_PARTS {
        return Err(format!(
            "parts has {} entries; a composition has 1 to {MAX_PARTS}",
            spec.parts.len()
        ));
    }
    let mut names = BTreeSet::new();
    let mut parts = Vec::with_capacity(spec.parts.len());
    let mut problems = Vec::new();
    for (i, p) in spec.parts.iter().enumerate() {
        let at = format!("parts[{i}]");
        let valid_name = !p.name.is_empty()
            && p.name.len() <= 63
            && p.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(format!(
                "{at}.name {:?} must be 1 to 63 letters, digits, '_' or '-'",
                p.name
            ));
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!("{at}.name {:?} is used by another part", p.name));
        }
        let path = template::parse(&p.path).map_err(|e| format!("{at}.path: {e}"))?;
        if !matches!(path.0.first(), Some(SegmentIr::Literal(l)) if l.starts_with('/')) {
            return Err(format!("{at}.path {:?} must start with '/'", p.path));
        }
        let timeout = p.timeout.as_deref().unwrap_or(DEFAULT_PART_TIMEOUT);
        let timeout_ms = Duration::from_str(timeout)
            .ok()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .filter(|ms| *ms > 0)
            .ok_or_else(|| {
                format!("{at}.timeout {timeout:?} is not a non-zero Gateway API duration such as \"2s\" or \"500ms\"")
            })?;
        let max = p.max_response_bytes.unwrap_or(DEFAULT_PART_BYTES);
        if !(1..=MAX_PART_BYTES).contains(&max) {
            return Err(format!(
                "{at}.maxResponseBytes {max} is not within 1..{MAX_PART_BYTES}"
            ));
        }
        let b = &p.backend_ref;
        let cluster = match backend::resolve(
            store,
            referrer,
            BackendRef {
                group: None,
                kind: None,
                name: &b.name,
                namespace: b.namespace.as_deref(),
                port: Some(b.port),
            },
            clusters,
        ) {
            Ok(name) => Some(name),
            Err(problem) => {
                problems.push(Problem::new(
                    problem.reason,
                    format!(
                        "HTTPComposition {source} {at}.backendRef: {}",
                        problem.message
                    ),
                ));
                None
            }
        };
        parts.push(PartIr {
            name: p.name.clone(),
            cluster,
            method: method(p.method.unwrap_or_default()).to_owned(),
            path,
            timeout_ms,
            max_response_bytes: max.unsigned_abs(),
        });
    }
    Ok((
        CompositionIr {
            source,
            omit_failed: spec.on_part_failure == Some(OnPartFailure::Omit),
            parts,
        },
        problems,
    ))
}

fn method(m: PartMethod) -> &'static str {
    match m {
        PartMethod::Get => "GET",
        PartMethod::Head => "HEAD",
        PartMethod::Options => "OPTIONS",
        PartMethod::Post => "POST",
        PartMethod::Put => "PUT",
        PartMethod::Delete => "DELETE",
        PartMethod::Patch => "PATCH",
    }
}
