//! `apiKeyAuth`: the keys of the `credentialRefs` Secrets (each data key a client ID, each
//! value its key, as in Envoy Gateway) and of the selected Consumers, as SHA-256 digests.

use gantry_crds::SecurityPolicy;
use gantry_crds::security::ApiKeyAuth;

use super::{Labels, secrets};
use crate::ir::{ApiClientIr, ApiKeyAuthIr, ConsumerIr, KeySourceIr};
use crate::store::{ObjectKey, Store};

/// One Consumer a policy selects, with its keys read.
#[derive(Debug)]
pub struct SelectedConsumer {
    pub ir: ConsumerIr,
    /// `(key, secret)` per API key (the Secret's name and data key, for messages).
    pub keys: Vec<Vec<u8>>,
    pub basic_auth_user: Option<String>,
}

/// The Consumers a policy selects (`consumerSelector` over its namespace), and the problems
/// with their Secrets.
#[derive(Debug, Default)]
pub struct Consumers {
    pub selected: Vec<SelectedConsumer>,
    pub problems: Vec<String>,
}

impl Consumers {
    pub fn select(store: &Store, policy_key: &ObjectKey, policy: &SecurityPolicy) -> Self {
        let Some(selector) = &policy.spec.consumer_selector else {
            return Self::default();
        };
        let mut out = Self::default();
        for (key, consumer) in store
            .consumers
            .range(ObjectKey::new(policy_key.namespace.as_str(), "")..)
            .take_while(|(k, _)| k.namespace == policy_key.namespace)
        {
            let labels = consumer.metadata.labels.clone().unwrap_or_default();
            if !selector
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            {
                continue;
            }
            let mut keys = Vec::new();
            for r in &consumer.spec.credentials.api_keys {
                match secrets::data(store, "Consumer", &key.namespace, r) {
                    Ok(data) => keys.extend(data.values().map(|v| v.0.clone())),
                    Err(message) => out.problems.push(format!("Consumer {key}: {message}")),
                }
            }
            out.selected.push(SelectedConsumer {
                ir: ConsumerIr {
                    name: key.to_string(),
                    labels: Labels::clone(&consumer.spec.labels),
                },
                keys,
                basic_auth_user: consumer.spec.credentials.basic_auth_user.clone(),
            });
        }
        out
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn validate(
    store: &Store,
    key: &ObjectKey,
    auth: &ApiKeyAuth,
    consumers: &Consumers,
) -> Result<ApiKeyAuthIr, Vec<String>> {
    let mut problems = consumers.problems.clone();
    let mut clients = Vec::new();
    for r in &auth.credential_refs {
        match secrets::data(store, "SecurityPolicy", &key.namespace, r) {
            Ok(data) => clients.extend(data.iter().map(|(id, value)| ApiClientIr {
                client_id: id.clone(),
                key_sha256: sha256_hex(&value.0),
                consumer: None,
            })),
            Err(message) => problems.push(message),
        }
    }
    for consumer in &consumers.selected {
        clients.extend(consumer.keys.iter().map(|k| ApiClientIr {
            client_id: consumer.ir.name.clone(),
            key_sha256: sha256_hex(k),
            consumer: Some(consumer.ir.clone()),
        }));
    }
    let mut extract_from = Vec::new();
    for e in &auth.extract_from {
        for h in &e.headers {
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => extract_from.push(KeySourceIr::Header(name.as_str().to_owned())),
                Err(_) => problems.push(format!("extractFrom header {h:?} is not a header name")),
            }
        }
        extract_from.extend(e.params.iter().cloned().map(KeySourceIr::Param));
        extract_from.extend(e.cookies.iter().cloned().map(KeySourceIr::Cookie));
    }
    if extract_from.is_empty() {
        problems.push("apiKeyAuth.extractFrom names no header, param or cookie".to_owned());
    }
    let forward_client_id_header = header(
        "apiKeyAuth.forwardClientIDHeader",
        auth.forward_client_id_header.as_deref(),
        &mut problems,
    );
    clients.sort_by(|a, b| (&a.key_sha256, &a.client_id).cmp(&(&b.key_sha256, &b.client_id)));
    for pair in clients.windows(2) {
        if pair[0].key_sha256 == pair[1].key_sha256 && pair[0].client_id != pair[1].client_id {
            problems.push(format!(
                "clients {} and {} have the same API key; a key must name one client",
                pair[0].client_id, pair[1].client_id
            ));
        }
    }
    clients.dedup_by(|a, b| a.key_sha256 == b.key_sha256);
    if !problems.is_empty() {
        return Err(problems);
    }
    clients.sort_by(|a, b| (&a.client_id, &a.key_sha256).cmp(&(&b.client_id, &b.key_sha256)));
    Ok(ApiKeyAuthIr {
        extract_from,
        clients,
        forward_client_id_header,
    })
}

/// A header name the policy sets upstream, lower-case.
pub fn header(field: &str, name: Option<&str>, problems: &mut Vec<String>) -> Option<String> {
    let name = name?;
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(n) => Some(n.as_str().to_owned()),
        Err(_) => {
            problems.push(format!("{field} {name:?} is not a header name"));
            None
        }
    }
}
