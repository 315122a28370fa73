//! GatewayParameters `overlays`: free-form patches of rendered objects, applied after render.
//!
//! **Pure**: a patch that cannot be applied, or whose result is not a valid object of its kind,
//! is an error message for `InvalidParameters`; nothing is applied then, so the fleet keeps its
//! last good objects. Three patch types, as `kubectl patch` and Envoy Gateway's
//! `KubernetesPatchSpec` know them:
//! - `StrategicMerge`: Kubernetes strategic merge patch for the fields rendered objects have.
//!   Objects merge; `null` removes a field; lists of keyed items merge by their patch merge key
//!   (the `patchMergeKey` of the Kubernetes API types, [`merge_key`]) and other lists are
//!   replaced; `$patch: delete` on a list item removes the item with its key, `$patch: replace`
//!   on an object replaces it, and a `{"$patch": "replace"}` item replaces the whole list.
//!   Other directives (`$retainKeys`, `$setElementOrder`, `$deleteFromPrimitiveList`) are
//!   refused with a message rather than half applied.
//! - `JSONMerge`: RFC 7386.
//! - `JSONPatch`: RFC 6902 (the `json-patch` crate).

use gantry_crds::params::{Overlay, OverlayType, Overlays};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Map, Value};

use super::kind::Kind;
use super::render::DesiredObject;

/// The overlays of one fleet, class first then Gateway, per kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverlaySet {
    pub deployment: Vec<Overlay>,
    pub daemon_set: Vec<Overlay>,
    pub service: Vec<Overlay>,
    pub horizontal_pod_autoscaler: Vec<Overlay>,
    pub pod_disruption_budget: Vec<Overlay>,
    pub service_account: Vec<Overlay>,
}

impl OverlaySet {
    /// The overlays of merged parameters, in the order they were merged.
    pub fn from_levels<'a>(levels: impl IntoIterator<Item = &'a Overlays>) -> Self {
        let mut set = Self::default();
        for level in levels {
            let extend = |to: &mut Vec<Overlay>, from: &Option<Vec<Overlay>>| {
                to.extend(from.iter().flatten().cloned());
            };
            extend(&mut set.deployment, &level.deployment);
            extend(&mut set.daemon_set, &level.daemon_set);
            extend(&mut set.service, &level.service);
            extend(
                &mut set.horizontal_pod_autoscaler,
                &level.horizontal_pod_autoscaler,
            );
            extend(&mut set.pod_disruption_budget, &level.pod_disruption_budget);
            extend(&mut set.service_account, &level.service_account);
        }
        set
    }

    /// Whether objects of `kind` are patched.
    pub fn patches(&self, kind: Kind) -> bool {
        !self.for_kind(kind).is_empty()
    }

    fn for_kind(&self, kind: Kind) -> &[Overlay] {
        match kind {
            Kind::Deployment => &self.deployment,
            Kind::DaemonSet => &self.daemon_set,
            Kind::Service => &self.service,
            Kind::HorizontalPodAutoscaler => &self.horizontal_pod_autoscaler,
            Kind::PodDisruptionBudget => &self.pod_disruption_budget,
            Kind::ServiceAccount => &self.service_account,
            _ => &[],
        }
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.deployment.is_empty()
            && self.daemon_set.is_empty()
            && self.service.is_empty()
            && self.horizontal_pod_autoscaler.is_empty()
            && self.pod_disruption_budget.is_empty()
            && self.service_account.is_empty()
    }

    /// Problems with the patches themselves, before any object exists: a StrategicMerge or
    /// JSONMerge value that is not an object, a JSONPatch value that is not a list of
    /// operations.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, overlays) in [
            ("deployment", &self.deployment),
            ("daemonSet", &self.daemon_set),
            ("service", &self.service),
            ("horizontalPodAutoscaler", &self.horizontal_pod_autoscaler),
            ("podDisruptionBudget", &self.pod_disruption_budget),
            ("serviceAccount", &self.service_account),
        ] {
            for (index, overlay) in overlays.iter().enumerate() {
                let at = format!("overlays.{field}[{index}]");
                match overlay.type_.unwrap_or_default() {
                    OverlayType::StrategicMerge | OverlayType::JsonMerge
                        if !overlay.value.is_object() =>
                    {
                        problems.push(format!("{at}.value must be an object for this type"));
                    }
                    OverlayType::JsonPatch => {
                        if let Err(error) =
                            serde_json::from_value::<json_patch::Patch>(overlay.value.clone())
                        {
                            problems.push(format!(
                                "{at}.value is not a JSON patch (a list of operations): {error}"
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        problems
    }
}

/// Applies the overlays to every object of a kind they name, or says why one cannot be.
pub fn apply(
    objects: Vec<DesiredObject>,
    overlays: &OverlaySet,
) -> Result<Vec<DesiredObject>, String> {
    if overlays.is_empty() {
        return Ok(objects);
    }
    objects
        .into_iter()
        .map(|mut object| {
            for (index, overlay) in overlays.for_kind(object.kind).iter().enumerate() {
                let at = format!("overlay {index} of {:?} {}", object.kind, object.name);
                let before = std::mem::take(&mut object.body);
                object.body = patch(&before, overlay).map_err(|e| format!("{at}: {e}"))?;
                check(&object, &before).map_err(|e| format!("{at}: {e}"))?;
            }
            Ok(object)
        })
        .collect()
}

/// One patch applied to one body.
fn patch(body: &Value, overlay: &Overlay) -> Result<Value, String> {
    match overlay.type_.unwrap_or_default() {
        OverlayType::StrategicMerge => strategic_merge(body, &overlay.value, ""),
        OverlayType::JsonMerge => {
            let mut out = body.clone();
            json_patch::merge(&mut out, &overlay.value);
            Ok(out)
        }
        OverlayType::JsonPatch => {
            let operations: json_patch::Patch = serde_json::from_value(overlay.value.clone())
                .map_err(|e| format!("not a JSON patch: {e}"))?;
            let mut out = body.clone();
            json_patch::patch(&mut out, &operations).map_err(|e| e.to_string())?;
            Ok(out)
        }
    }
}

/// The patched object is still the object it was (identity and selector: the operator finds
/// and prunes by them), and a valid one of its kind.
fn check(object: &DesiredObject, before: &Value) -> Result<(), String> {
    let body = &object.body;
    let resource = object.kind.api_resource();
    let text = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
    let same = text("/apiVersion") == Some(resource.api_version.as_str())
        && text("/kind") == Some(resource.kind.as_str())
        && text("/metadata/name") == Some(object.name.as_str())
        && text("/metadata/namespace") == object.namespace.as_deref();
    if !same {
        return Err(
            "an overlay may not change an object's apiVersion, kind, name or namespace".into(),
        );
    }
    if body.pointer("/spec/selector") != before.pointer("/spec/selector") {
        return Err("an overlay may not change spec.selector: the fleet is found by it".into());
    }
    fn typed<T: serde::de::DeserializeOwned>(body: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(body.clone())
            .map(|_| ())
            .map_err(|e| format!("the patched object is not valid: {e}"))
    }
    match object.kind {
        Kind::Deployment => typed::<Deployment>(body),
        Kind::DaemonSet => typed::<DaemonSet>(body),
        Kind::Service => typed::<Service>(body),
        Kind::HorizontalPodAutoscaler => typed::<HorizontalPodAutoscaler>(body),
        Kind::PodDisruptionBudget => typed::<PodDisruptionBudget>(body),
        Kind::ServiceAccount => typed::<ServiceAccount>(body),
        _ => Ok(()),
    }
}

/// The patch merge key of a list field, as the Kubernetes API types declare it
/// (`+patchMergeKey`) for the fields of the objects the operator renders. `path` is the
/// dotted path of the list's parent, to tell a Service's ports from a container's.
fn merge_key(path: &str, field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ownerReferences" => "uid",
        "ports" if path.ends_with("spec") && !path.contains("containers") => "port",
        "ports" => "containerPort",
        _ => return None,
    })
}

fn directive(value: &Value) -> Option<&str> {
    value.get("$patch").and_then(Value::as_str)
}

/// Strategic merge of `patch` into `base` at `path`.
fn strategic_merge(base: &Value, patch: &Value, path: &str) -> Result<Value, String> {
    let Some(patch_map) = patch.as_object() else {
        return Ok(patch.clone());
    };
    match directive(patch) {
        Some("replace") => {
            let mut out = patch_map.clone();
            out.remove("$patch");
            return Ok(Value::Object(out));
        }
        Some("delete") => return Ok(Value::Null),
        Some("merge") | None => {}
        Some(other) => return Err(format!("{path}: unknown $patch directive {other:?}")),
    }
    let mut out = base.as_object().cloned().unwrap_or_default();
    for (key, value) in patch_map {
        if key == "$patch" {
            continue;
        }
        if key.starts_with('$') {
            return Err(format!(
                "{path}: the {key} directive is not supported; use a JSONPatch overlay"
            ));
        }
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            Value::Null => {
                out.remove(key);
            }
            Value::Object(_) => {
                let merged = strategic_merge(out.get(key).unwrap_or(&Value::Null), value, &here)?;
                if merged.is_null() {
                    out.remove(key);
                } else {
                    out.insert(key.clone(), merged);
                }
            }
            Value::Array(items) => {
                let merged = merge_list(out.get(key), items, path, key, &here)?;
                out.insert(key.clone(), merged);
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

fn merge_list(
    base: Option<&Value>,
    items: &[Value],
    parent: &str,
    field: &str,
    here: &str,
) -> Result<Value, String> {
    if items.iter().any(|i| directive(i) == Some("replace")) {
        let kept = items
            .iter()
            .filter(|i| directive(i) != Some("replace"))
            .cloned();
        return Ok(Value::Array(kept.collect()));
    }
    let Some(key) = merge_key(parent, field) else {
        return Ok(Value::Array(items.to_vec()));
    };
    let mut out: Vec<Value> = base.and_then(Value::as_array).cloned().unwrap_or_default();
    for (index, item) in items.iter().enumerate() {
        let Some(id) = item.get(key) else {
            return Err(format!(
                "{here}[{index}] has no {key}, the key its list merges by"
            ));
        };
        let position = out
            .iter()
            .position(|existing| existing.get(key) == Some(id));
        match (directive(item), position) {
            (Some("delete"), Some(at)) => {
                out.remove(at);
            }
            (Some("delete"), None) => {}
            (_, Some(at)) => {
                out[at] = strategic_merge(&out[at], item, &format!("{here}[{index}]"))?;
            }
            (_, None) => {
                let mut fresh = Map::new();
                fresh.extend(
                    item.as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| *k != "$patch")
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                out.push(Value::Object(fresh));
            }
        }
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn overlay(type_: OverlayType, value: Value) -> Overlay {
        Overlay {
            type_: Some(type_),
            value,
        }
    }

    fn deployment() -> DesiredObject {
        DesiredObject {
            kind: Kind::Deployment,
            namespace: Some("apps".into()),
            name: "web-gantry".into(),
            body: json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web-gantry", "namespace": "apps", "labels": {"a": "1"}},
                "spec": {
                    "selector": {"matchLabels": {"gantry.dev/fleet": "web-gantry"}},
                    "template": {
                        "metadata": {"labels": {"gantry.dev/fleet": "web-gantry"}},
                        "spec": {"containers": [{
                            "name": "proxy",
                            "image": "gantry-proxy:test",
                            "args": ["run"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 10080, "name": "tcp-80"}],
                        }]}
                    }
                }
            }),
        }
    }

    fn set(deployment: Vec<Overlay>) -> OverlaySet {
        OverlaySet {
            deployment,
            ..OverlaySet::default()
        }
    }

    fn container(objects: &[DesiredObject]) -> &Value {
        &objects[0].body["spec"]["template"]["spec"]["containers"][0]
    }

    #[test]
    fn strategic_merge_merges_keyed_lists_and_replaces_others() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{
                "name": "proxy",
                "args": ["run", "--extra"],
                "env": [{"name": "B", "value": "two"}, {"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}],
                "ports": [{"containerPort": 9000, "name": "extra"}],
            }, {"name": "sidecar", "image": "sidecar:1"}],
            "nodeSelector": {"pool": "edge"},
        }}}, "metadata": {"labels": {"a": null, "b": "2"}}});
        let out = apply(
            vec![deployment()],
            &set(vec![overlay(OverlayType::StrategicMerge, patch)]),
        )
        .expect("applies");
        let proxy = container(&out);
        assert_eq!(proxy["image"], "gantry-proxy:test", "untouched fields stay");
        assert_eq!(
            proxy["args"],
            json!(["run", "--extra"]),
            "plain lists are replaced"
        );
        assert_eq!(
            proxy["env"],
            json!([{"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            proxy["ports"],
            json!([{"containerPort": 10080, "name": "tcp-80"}, {"containerPort": 9000, "name": "extra"}])
        );
        let spec = &out[0].body["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][1]["name"], "sidecar");
        assert_eq!(spec["nodeSelector"], json!({"pool": "edge"}));
        assert_eq!(out[0].body["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn a_replace_item_replaces_the_whole_list() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "x:1"}
        ]}}}});
        let out = apply(
            vec![deployment()],
            &set(vec![overlay(OverlayType::StrategicMerge, patch)]),
        )
        .expect("applies");
        assert_eq!(
            out[0].body["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "x:1"}])
        );
    }

    #[test]
    fn json_merge_and_json_patch_apply_in_order() {
        let out = apply(
            vec![deployment()],
            &set(vec![
                overlay(OverlayType::JsonMerge, json!({"spec": {"minReadySeconds": 5}})),
                overlay(
                    OverlayType::JsonPatch,
                    json!([{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--x"},
                           {"op": "replace", "path": "/spec/minReadySeconds", "value": 7}]),
                ),
            ]),
        )
        .expect("applies");
        assert_eq!(out[0].body["spec"]["minReadySeconds"], 7);
        assert_eq!(container(&out)["args"], json!(["run", "--x"]));
    }

    #[test]
    fn a_patch_that_breaks_the_object_is_refused_with_the_reason() {
        let wrong_type = apply(
            vec![deployment()],
            &set(vec![overlay(
                OverlayType::StrategicMerge,
                json!({"spec": {"replicas": "three"}}),
            )]),
        )
        .expect_err("refused");
        assert!(
            wrong_type.starts_with(
                "overlay 0 of Deployment web-gantry: the patched object is not valid:"
            ),
            "{wrong_type}"
        );
        let renamed = apply(
            vec![deployment()],
            &set(vec![overlay(
                OverlayType::JsonMerge,
                json!({"metadata": {"name": "other"}}),
            )]),
        )
        .expect_err("refused");
        assert!(renamed.contains("may not change an object's apiVersion, kind, name or namespace"));
        let bad_path = apply(
            vec![deployment()],
            &set(vec![overlay(
                OverlayType::JsonPatch,
                json!([{"op": "remove", "path": "/spec/nothing"}]),
            )]),
        )
        .expect_err("refused");
        assert!(
            bad_path.starts_with("overlay 0 of Deployment web-gantry:"),
            "{bad_path}"
        );
        let unkeyed = apply(
            vec![deployment()],
            &set(vec![overlay(
                OverlayType::StrategicMerge,
                json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            )]),
        )
        .expect_err("refused");
        assert!(
            unkeyed.contains("has no name, the key its list merges by"),
            "{unkeyed}"
        );
        let directive = apply(
            vec![deployment()],
            &set(vec![overlay(
                OverlayType::StrategicMerge,
                json!({"spec": {"$retainKeys": ["replicas"]}}),
            )]),
        )
        .expect_err("refused");
        assert!(
            directive.contains("$retainKeys directive is not supported"),
            "{directive}"
        );
    }

    #[test]
    fn malformed_patches_are_found_before_any_object() {
        let overlays = OverlaySet {
            service: vec![overlay(OverlayType::StrategicMerge, json!([1]))],
            deployment: vec![overlay(OverlayType::JsonPatch, json!({"op": "add"}))],
            ..OverlaySet::default()
        };
        let problems = overlays.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("overlays.deployment[0].value is not a JSON patch"));
        assert_eq!(
            problems[1],
            "overlays.service[0].value must be an object for this type"
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let service = DesiredObject {
            kind: Kind::Service,
            namespace: Some("apps".into()),
            name: "web-gantry".into(),
            body: json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web-gantry", "namespace": "apps"},
                "spec": {"ports": [{"name": "tcp-80", "port": 80, "targetPort": 10080}]}}),
        };
        let overlays = OverlaySet {
            service: vec![overlay(
                OverlayType::StrategicMerge,
                json!({"spec": {"ports": [{"port": 80, "appProtocol": "http"}]}}),
            )],
            ..OverlaySet::default()
        };
        let out = apply(vec![service], &overlays).expect("applies");
        assert_eq!(
            out[0].body["spec"]["ports"],
            json!([{"name": "tcp-80", "port": 80, "targetPort": 10080, "appProtocol": "http"}])
        );
    }
}
