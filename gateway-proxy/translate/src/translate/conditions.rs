//! Condition types and reasons, in the Gateway API's own words, and a helper to build them.

use std::borrow::Cow;

use crate::status::Condition;

// Condition types.
pub const ACCEPTED: &str = "Accepted";
pub const PROGRAMMED: &str = "Programmed";
pub const RESOLVED_REFS: &str = "ResolvedRefs";
pub const CONFLICTED: &str = "Conflicted";
pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";
pub const INSECURE_FRONTEND_VALIDATION_MODE: &str = "InsecureFrontendValidationMode";

// GatewayClass and Gateway reasons.
pub const REASON_ACCEPTED: &str = "Accepted";
pub const REASON_PROGRAMMED: &str = "Programmed";
pub const REASON_INVALID: &str = "Invalid";
/// Listener `Programmed=False`: "the Listener is waiting for some resources" (here, its
/// certificate from an ACME CA).
pub const REASON_PENDING: &str = "Pending";
pub const REASON_LISTENERS_NOT_VALID: &str = "ListenersNotValid";
pub const REASON_CONFIGURATION_CHANGED: &str = "ConfigurationChanged";
pub const REASON_INVALID_PARAMETERS: &str = "InvalidParameters";
pub const REASON_UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
pub const REASON_ADDRESS_NOT_USABLE: &str = "AddressNotUsable";
pub const REASON_ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";

// ListenerSet reasons.
pub const REASON_NOT_ALLOWED: &str = "NotAllowed";
pub const REASON_PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";
pub const REASON_PARENT_NOT_PROGRAMMED: &str = "ParentNotProgrammed";

// Listener reasons.
pub const REASON_NO_CONFLICTS: &str = "NoConflicts";
pub const REASON_HOSTNAME_CONFLICT: &str = "HostnameConflict";
pub const REASON_PROTOCOL_CONFLICT: &str = "ProtocolConflict";
pub const REASON_UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
pub const REASON_PORT_UNAVAILABLE: &str = "PortUnavailable";
pub const REASON_RESOLVED_REFS: &str = "ResolvedRefs";
pub const REASON_INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
pub const REASON_INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
pub const REASON_INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
pub const REASON_INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";
pub const REASON_NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";

// Route reasons.
pub const REASON_NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
pub const REASON_NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
pub const REASON_NO_MATCHING_PARENT: &str = "NoMatchingParent";
pub const REASON_UNSUPPORTED_VALUE: &str = "UnsupportedValue";
pub const REASON_INCOMPATIBLE_FILTERS: &str = "IncompatibleFilters";
pub const REASON_REF_NOT_PERMITTED: &str = "RefNotPermitted";
pub const REASON_INVALID_KIND: &str = "InvalidKind";
pub const REASON_BACKEND_NOT_FOUND: &str = "BackendNotFound";

/// A reason and a message a person can act on: why something is not fine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    /// Borrowed when the message is a constant, as the conditions made from it are.
    pub message: Cow<'static, str>,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// `type=True` with `reason`.
pub fn ok(
    type_: &'static str,
    reason: &'static str,
    message: impl Into<Cow<'static, str>>,
    generation: i64,
) -> Condition {
    Condition::new(type_, true, reason, message, generation)
}

/// `type=False` with the problem's reason and message.
pub fn not_ok(type_: &'static str, problem: &Problem, generation: i64) -> Condition {
    Condition::new(
        type_,
        false,
        problem.reason,
        problem.message.clone(),
        generation,
    )
}
