//! Building status conditions and deciding whether a status write is needed at all.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition the operator wants on an object, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Condition type.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// Reason (the spec's words).
    pub reason: &'static str,
    /// Message.
    pub message: String,
    /// `metadata.generation` it was computed from.
    pub observed_generation: Option<i64>,
}

impl Wanted {
    fn status_str(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }

    /// Whether `existing` already says the same (timestamps aside).
    pub fn matches(&self, existing: &Condition) -> bool {
        existing.type_ == self.type_
            && existing.status == self.status_str()
            && existing.reason == self.reason
            && existing.message == self.message
            && existing.observed_generation == self.observed_generation
    }

    /// The condition to write. `lastTransitionTime` only moves when the status flips
    /// (metav1.Condition: "the last time the condition transitioned from one status to another").
    pub fn to_condition(&self, existing: Option<&Condition>) -> Condition {
        let last_transition_time = existing
            .filter(|c| c.status == self.status_str())
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
        Condition {
            type_: self.type_.to_string(),
            status: self.status_str().to_string(),
            reason: self.reason.to_string(),
            message: self.message.clone(),
            observed_generation: self.observed_generation,
            last_transition_time,
        }
    }
}

/// The existing condition of `type_` in `conditions`.
pub fn find<'a>(conditions: Option<&'a Vec<Condition>>, type_: &str) -> Option<&'a Condition> {
    conditions?.iter().find(|c| c.type_ == type_)
}
