//! The authenticated caller of one request, kept in the request's `http::Extensions`.

use std::collections::BTreeMap;
use std::sync::Arc;

/// What authentication established about the caller. Absent from a request's extensions when
/// its route has no authentication or the route lets anonymous callers through.
///
/// Cheap to clone: everything is shared with the compiled policy or the verified credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The consumer's name (`namespace/name` of its Consumer object), when the credential
    /// belongs to one.
    pub consumer: Option<Arc<str>>,
    /// The consumer's labels (for example `plan: gold`), empty without a consumer.
    pub labels: Arc<BTreeMap<String, String>>,
    /// The subject the credential names: the API key's or user's name, or a JWT's `sub`.
    pub subject: Option<Arc<str>>,
    /// JWT claims as strings (nested claims by dotted path), empty for other credentials.
    pub claims: Arc<BTreeMap<String, String>>,
}

impl Identity {
    /// The value of one consumer label, such as the plan.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The value of one claim by its dotted path.
    pub fn claim(&self, path: &str) -> Option<&str> {
        self.claims.get(path).map(String::as_str)
    }
}
