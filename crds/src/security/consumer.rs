//! `Consumer`: an API client, its credentials and its labels.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::SecretObjectReference;

/// Kind name of `Consumer`.
pub const CONSUMER_KIND: &str = "Consumer";

/// An API client. A SecurityPolicy whose `apiKeyAuth.consumerSelector` selects it accepts its
/// keys and maps a request carrying one to it.
///
/// Its labels for policies are `spec.labels`, not `metadata.labels`: the labels a rate limit
/// keys on (`plan: gold`) are part of the client's contract, changed through the same review as
/// its keys, while metadata labels are free for tooling (and select Consumers).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "Consumer",
    plural = "consumers",
    singular = "consumer",
    category = "gateway-api",
    doc = "Consumer is an API client: its API keys, its basic-auth user and its labels.",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSpec {
    #[serde(default)]
    pub credentials: ConsumerCredentials,
    /// Labels later stages key on (rate limits: `plan: gold`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A Consumer's credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerCredentials {
    /// Secrets whose every data value is an API key of this Consumer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub api_keys: Vec<SecretObjectReference>,
    /// The user name this Consumer has in basic-auth htpasswd files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_user: Option<String>,
}

/// Which Consumers of the policy's namespace a policy accepts: those whose `metadata.labels`
/// hold every `matchLabels` pair (an empty map selects every Consumer).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}
