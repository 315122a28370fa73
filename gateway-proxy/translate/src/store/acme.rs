//! Certificates the proxy's ACME client is obtaining: what a listener whose certificate
//! Secret does not exist yet reports instead of "Secret does not exist".

/// A listener certificate Secret being obtained from an ACME CA, or whose order failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeCertificate {
    /// The hostname the certificate is for (the listener's).
    pub hostname: String,
    /// The last order failed (`message` gives the CA's reason and the next attempt).
    pub failed: bool,
    /// What a person reads on the listener's `ResolvedRefs` condition.
    pub message: String,
    /// The listener's port must accept connections while no listener on it is served: the CA
    /// validates TLS-ALPN-01 challenges there (RFC 8737).
    pub needs_tls_port: bool,
}
