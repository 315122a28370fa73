//! ExtensionRef filters: Gantry's own kinds, `gantry.dev` HTTPTransform and HTTPComposition,
//! looked up in the route's namespace (the field is a `LocalObjectReference`).
//!
//! HTTPRouteFilter `type`: "If a reference to a custom filter type cannot be resolved, the
//! filter MUST NOT be skipped. Instead, requests that would have been processed by that filter
//! MUST receive a HTTP error response." So every failure here leaves the rule in place
//! answering 500, and the route says why in `ResolvedRefs=False`: `InvalidKind` for a group
//! or kind Gantry does not know ("a reference to an unknown or unsupported Group and/or
//! Kind"), `BackendNotFound` for a missing object ("a reference to a resource that does not
//! exist"), `UnsupportedValue` for an object whose spec cannot be applied.

use std::collections::BTreeMap;

use gantry_crds::{GROUP, HTTP_COMPOSITION_KIND, HTTP_TRANSFORM_KIND};

use super::backend::Referrer;
use super::conditions::{self as c, Problem};
use super::{composition, transform};
use crate::ir::{ClusterIr, HttpFilterIr};
use crate::store::{ObjectKey, Store};

/// The filter an ExtensionRef names, with the problems of its backendRefs (which do not stop
/// it from applying); `Err` when it cannot apply at all.
pub fn resolve(
    group: &str,
    kind: &str,
    name: &str,
    store: &Store,
    referrer: Referrer<'_>,
    clusters: &mut BTreeMap<String, ClusterIr>,
) -> Result<(HttpFilterIr, Vec<Problem>), Problem> {
    let key = ObjectKey::new(referrer.namespace, name);
    let shown = format!("ExtensionRef {group}/{kind} {key}");
    let missing = || {
        Problem::new(
            c::REASON_BACKEND_NOT_FOUND,
            format!("{shown} does not exist"),
        )
    };
    let invalid =
        |message: String| Problem::new(c::REASON_UNSUPPORTED_VALUE, format!("{shown}: {message}"));
    match (group, kind) {
        (GROUP, HTTP_TRANSFORM_KIND) => {
            let object = store.http_transforms.get(&key).ok_or_else(missing)?;
            let ir = transform::translate(&object.spec, key.to_string()).map_err(invalid)?;
            Ok((HttpFilterIr::Transform(Box::new(ir)), Vec::new()))
        }
        (GROUP, HTTP_COMPOSITION_KIND) => {
            if referrer.kind != "HTTPRoute" {
                return Err(invalid(format!(
                    "an HTTPComposition answers HTTP requests with JSON; a {} cannot use it",
                    referrer.kind
                )));
            }
            let object = store.http_compositions.get(&key).ok_or_else(missing)?;
            let (ir, problems) =
                composition::translate(&object.spec, key.to_string(), store, referrer, clusters)
                    .map_err(invalid)?;
            Ok((HttpFilterIr::Composition(ir), problems))
        }
        _ => Err(Problem::new(
            c::REASON_INVALID_KIND,
            format!(
                "{shown}: this proxy implements ExtensionRef filters of group {GROUP}, kinds {HTTP_TRANSFORM_KIND} and {HTTP_COMPOSITION_KIND}"
            ),
        )),
    }
}
