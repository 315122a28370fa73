//! The version skew between the operator and the proxies it renders.
//!
//! Policy (docs/operations.md#upgrades-and-version-skew): a fleet may run the operator's own
//! minor version or the one before it (same major), never a newer one, because the operator
//! renders the command line of its own version and an older proxy understands it only within
//! that window. The version is read from the image tag (`repo:1.4.2`, `repo:v1.4.2`, also before
//! a digest); an image named by digest alone or by a tag that is not a version (`latest`, a
//! branch name) is not judged, and docs say so.

use semver::Version;

/// The operator's own version, which the default proxy image carries too.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version an image reference's tag names, if it names one.
pub fn image_version(image: &str) -> Option<Version> {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    // The tag follows the last ':' after the last '/' (a registry host may have a port).
    let last_segment = without_digest.rsplit('/').next()?;
    let (_, tag) = last_segment.rsplit_once(':')?;
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// Why the fleet may not run `image` under an operator of version `operator`, if it may not.
pub fn unsupported(image: &str, operator: &Version) -> Option<String> {
    let proxy = image_version(image)?;
    let supported = proxy.major == operator.major
        && proxy.minor <= operator.minor
        && operator.minor - proxy.minor <= 1;
    (!supported).then(|| {
        let oldest = operator.minor.saturating_sub(1);
        format!(
            "deployment.image {image} runs gantry-proxy {proxy}, which operator {operator} does not support: fleets may run {major}.{oldest} or {major}.{minor} (the operator's minor version or the one before); upgrade the operator before the proxies, or pin an image in that range",
            major = operator.major,
            minor = operator.minor,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn the_tag_names_the_version() {
        assert_eq!(
            image_version("ghcr.io/gantry-dev/gantry-proxy:1.4.2"),
            Some(v("1.4.2"))
        );
        assert_eq!(
            image_version("registry:5000/gantry-proxy:v1.4.2"),
            Some(v("1.4.2"))
        );
        assert_eq!(
            image_version("gantry-proxy:1.4.2@sha256:0123456789abcdef"),
            Some(v("1.4.2"))
        );
        assert_eq!(image_version("registry:5000/gantry-proxy"), None);
        assert_eq!(image_version("gantry-proxy@sha256:0123456789abcdef"), None);
        assert_eq!(image_version("gantry-proxy:latest"), None);
    }

    #[test]
    fn the_same_or_the_previous_minor_is_supported() {
        let operator = v("1.4.0");
        assert_eq!(unsupported("gantry-proxy:1.4.7", &operator), None);
        assert_eq!(unsupported("gantry-proxy:1.3.0", &operator), None);
        assert_eq!(unsupported("gantry-proxy:latest", &operator), None);
        let old = unsupported("gantry-proxy:1.2.9", &operator).expect("two minors back");
        assert!(old.contains("fleets may run 1.3 or 1.4"), "{old}");
        assert!(
            unsupported("gantry-proxy:1.5.0", &operator).is_some(),
            "newer"
        );
        assert!(
            unsupported("gantry-proxy:2.4.0", &operator).is_some(),
            "other major"
        );
        assert_eq!(unsupported("gantry-proxy:0.0.3", &v("0.0.1")), None);
        assert!(unsupported("gantry-proxy:0.1.0", &v("0.2.5")).is_none());
    }
}
