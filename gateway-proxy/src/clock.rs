//! The wall clock, in the format Kubernetes timestamps use.

/// The current time as RFC 3339 with seconds, as in `lastTransitionTime`.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
