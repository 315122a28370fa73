//! What the reconcilers read besides their own objects, at each reconcile (in the operator's
//! namespace scope): the ReferenceGrants, BackendTLSPolicies and ListenerSets that decide which
//! namespaces' Secrets and ConfigMaps fleets read and which ports they open, and the Namespaces
//! whose labels a Gateway's `allowedListeners` selector reads. A kind whose CRD is not installed
//! is empty.

use std::collections::BTreeSet;
use std::sync::Arc;

use gantry_crds::gateway::backendtlspolicies::BackendTlsPolicy;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::listenersets::ListenerSet;
use gantry_crds::gateway::referencegrants::ReferenceGrant;
use gantry_translate::listener_sets::{parent_gateway, selects_namespaces_by_label};
use gantry_translate::store::{ObjectKey, Store};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

use super::{Context, Error};
use crate::infra::apply::is_not_found;

/// The ReferenceGrants, BackendTLSPolicies and ListenerSets (their listener certificates and
/// ports) that decide, with `gateways`, which namespaces' Secrets and ConfigMaps the fleets may
/// read and which ports they open; the Namespaces too when one of `gateways` selects
/// ListenerSets by namespace label.
pub async fn reference_objects(ctx: &Context, gateways: &[Gateway]) -> Result<Store, Error> {
    let mut store = Store::default();
    for grant in list_optional::<ReferenceGrant>(ctx, "ReferenceGrant").await? {
        store.reference_grants.insert(key(&grant), Arc::new(grant));
    }
    for policy in list_optional::<BackendTlsPolicy>(ctx, "BackendTLSPolicy").await? {
        store
            .backend_tls_policies
            .insert(key(&policy), Arc::new(policy));
    }
    add_listener_sets(ctx, gateways, &mut store).await?;
    Ok(store)
}

/// The ListenerSets that may add listeners to `gateways`, with the Namespaces when one of
/// `gateways` selects ListenerSets by namespace label.
pub async fn listener_set_objects(ctx: &Context, gateways: &[Gateway]) -> Result<Store, Error> {
    let mut store = Store::default();
    add_listener_sets(ctx, gateways, &mut store).await?;
    Ok(store)
}

async fn add_listener_sets(
    ctx: &Context,
    gateways: &[Gateway],
    store: &mut Store,
) -> Result<(), Error> {
    for set in list_optional::<ListenerSet>(ctx, "ListenerSet").await? {
        store.listener_sets.insert(key(&set), Arc::new(set));
    }
    // Namespace labels only where a selector reads them, and never in a namespace-scoped
    // install: its fleets cannot read Namespaces, so there a selector admits nothing.
    let selecting: BTreeSet<ObjectKey> = gateways
        .iter()
        .filter(|g| selects_namespaces_by_label(g))
        .map(key)
        .collect();
    let needed = store
        .listener_sets
        .iter()
        .any(|(k, set)| parent_gateway(k, set).is_some_and(|p| selecting.contains(&p)));
    if needed && ctx.namespace().is_none() {
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube("listing Namespaces", e))?;
        for namespace in list.items {
            let name = namespace.metadata.name.clone().unwrap_or_default();
            store.namespaces.insert(name, Arc::new(namespace));
        }
    }
    Ok(())
}

/// The store key of an object.
pub fn key<K: kube::Resource>(object: &K) -> ObjectKey {
    ObjectKey::new(
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default(),
    )
}

/// Every object of an optional kind; none when the kind is not served (said once).
async fn list_optional<K>(ctx: &Context, kind: &'static str) -> Result<Vec<K>, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = match ctx.namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) if is_not_found(&e) => {
            ctx.not_served(kind);
            Ok(Vec::new())
        }
        Err(e) => Err(Error::kube(format!("listing {kind} objects"), e)),
    }
}
