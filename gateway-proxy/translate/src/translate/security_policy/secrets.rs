//! Secrets a SecurityPolicy or Consumer references: in its own namespace, or across namespaces
//! where a ReferenceGrant permits (the referrer's kind as `from`).

use std::collections::BTreeMap;

use gantry_crds::security::SecretObjectReference;
use k8s_openapi::ByteString;

use crate::store::{ObjectKey, Store};
use crate::translate::reference_grant::{self, From, To};

/// The data of the referenced Secret, or a message naming what is wrong.
pub fn data<'s>(
    store: &'s Store,
    from_kind: &str,
    from_namespace: &str,
    r: &SecretObjectReference,
) -> Result<&'s BTreeMap<String, ByteString>, String> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err(format!(
            "reference {} has group {group:?} and kind {kind}; only core Secrets can be referenced",
            r.name
        ));
    }
    let namespace = r.namespace.as_deref().unwrap_or(from_namespace);
    let key = ObjectKey::new(namespace, r.name.as_str());
    let permitted = reference_grant::permits(
        store,
        &From {
            group: gantry_crds::GROUP,
            kind: from_kind,
            namespace: from_namespace,
        },
        &To {
            group: "",
            kind: "Secret",
            namespace,
            name: &r.name,
        },
    );
    if !permitted {
        return Err(format!(
            "Secret {key} is in another namespace and no ReferenceGrant there permits a {from_kind} of namespace {from_namespace} to reference it"
        ));
    }
    static EMPTY: BTreeMap<String, ByteString> = BTreeMap::new();
    match store.secrets.get(&key) {
        Some(secret) => Ok(secret.data.as_ref().unwrap_or(&EMPTY)),
        None => Err(format!("Secret {key} does not exist")),
    }
}
