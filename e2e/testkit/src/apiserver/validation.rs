//! The object validation of kube-apiserver that the operator depends on: a write that leaves an
//! invalid object is refused with `422 Invalid` and the apiserver's message, whether it is real
//! or a dry run (`dryRun=All`). Only the rules Gantry's rendered objects can break through
//! GatewayParameters overlays are checked: container names are RFC 1123 labels.

use serde_json::Value;

/// The apiserver's message for an invalid object, if `object` is one.
pub fn invalid(resource: &str, object: &Value) -> Option<String> {
    let (kind, containers) = match resource {
        "deployments" => ("Deployment.apps", "spec.template.spec"),
        "daemonsets" => ("DaemonSet.apps", "spec.template.spec"),
        "pods" => ("Pod", "spec"),
        _ => return None,
    };
    let pointer = format!("/{}", containers.replace('.', "/"));
    let spec = object.pointer(&pointer)?;
    let mut causes = Vec::new();
    for list in ["initContainers", "containers"] {
        for (index, container) in spec[list].as_array().into_iter().flatten().enumerate() {
            let name = container["name"].as_str().unwrap_or_default();
            if !is_dns1123_label(name) {
                causes.push(format!(
                    "{containers}.{list}[{index}].name: Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                ));
            }
        }
    }
    (!causes.is_empty()).then(|| {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        format!("{kind} {name:?} is invalid: {}", causes.join(", "))
    })
}

fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_names_must_be_dns_labels() {
        let deployment = |name: &str| {
            json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {
                "containers": [{"name": "proxy"}, {"name": name}]
            }}}})
        };
        assert_eq!(invalid("deployments", &deployment("log-shipper")), None);
        let message = invalid("deployments", &deployment("Log_Shipper")).expect("invalid");
        assert!(
            message.starts_with(
                "Deployment.apps \"web\" is invalid: spec.template.spec.containers[1].name: Invalid value: \"Log_Shipper\": a lowercase RFC 1123 label"
            ),
            "{message}"
        );
        assert_eq!(invalid("services", &deployment("Log_Shipper")), None);
    }
}
