//! Follows `parametersRef`s to GatewayParameters and says precisely what is wrong with a bad one.

use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::{GATEWAY_PARAMETERS_KIND, GROUP, GatewayParameters};
use kube::{Api, Client};

use super::Error;
use crate::infra::apply::is_not_found;

/// A parametersRef that cannot be used; the message goes into an InvalidParameters condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// The class's GatewayParameters, if it has a parametersRef.
/// `Ok(Err(_))` is a bad reference (a status), `Err(_)` a failed API call (a retry).
pub async fn for_class(
    client: &Client,
    class: &GatewayClass,
) -> Result<Result<Option<GatewayParameters>, Invalid>, Error> {
    let Some(reference) = class.spec.parameters_ref.as_ref() else {
        return Ok(Ok(None));
    };
    if let Err(invalid) = check_kind(&reference.group, &reference.kind) {
        return Ok(Err(invalid));
    }
    let Some(namespace) = reference.namespace.as_deref() else {
        return Ok(Err(Invalid(format!(
            "parametersRef to GatewayParameters {} has no namespace; GatewayParameters is \
             namespaced, so set spec.parametersRef.namespace",
            reference.name
        ))));
    };
    fetch(client, namespace, &reference.name).await
}

/// The Gateway's own GatewayParameters (`spec.infrastructure.parametersRef`, same namespace).
pub async fn for_gateway(
    client: &Client,
    gateway: &Gateway,
) -> Result<Result<Option<GatewayParameters>, Invalid>, Error> {
    let Some(reference) = gateway
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    else {
        return Ok(Ok(None));
    };
    if let Err(invalid) = check_kind(&reference.group, &reference.kind) {
        return Ok(Err(invalid));
    }
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    fetch(client, &namespace, &reference.name).await
}

fn check_kind(group: &str, kind: &str) -> Result<(), Invalid> {
    if group == GROUP && kind == GATEWAY_PARAMETERS_KIND {
        Ok(())
    } else {
        Err(Invalid(format!(
            "parametersRef must refer to {GROUP}/{GATEWAY_PARAMETERS_KIND}, not {}/{kind}",
            if group.is_empty() { "core" } else { group }
        )))
    }
}

async fn fetch(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Result<Option<GatewayParameters>, Invalid>, Error> {
    let api: Api<GatewayParameters> = Api::namespaced(client.clone(), namespace);
    match api.get(name).await {
        Ok(params) => Ok(Ok(Some(params))),
        Err(e) if is_not_found(&e) => Ok(Err(Invalid(format!(
            "GatewayParameters {namespace}/{name} named by parametersRef does not exist"
        )))),
        Err(e) => Err(Error::kube(
            format!("reading GatewayParameters {namespace}/{name}"),
            e,
        )),
    }
}
