//! Hostnames: validity, listener × route intersection, and most-specific-first ordering.

use std::cmp::Ordering;

/// The hostname that matches every host (a listener or route without hostnames).
pub const ANY: &str = "*";

/// Whether `name` is a valid Gateway API `Hostname`: an RFC 1123 DNS name, optionally with a
/// leading `*.` wildcard label, and not an IP address.
pub fn is_valid(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || rest.len() > 253 || rest.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    rest.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
    })
}

fn wildcard_suffix(name: &str) -> Option<&str> {
    name.strip_prefix("*.")
}

/// Whether `pattern` (exact, `*.suffix` or `*`) matches every host `name` stands for.
/// `*.example.com` covers `foo.example.com`, `a.b.example.com` and `*.foo.example.com`, but
/// not `example.com` (the wildcard label stands for at least one label).
pub fn covers(pattern: &str, name: &str) -> bool {
    if pattern == ANY || pattern == name {
        return true;
    }
    match wildcard_suffix(pattern) {
        Some(suffix) => {
            let name = wildcard_suffix(name).map_or(name, |s| s);
            name.len() > suffix.len()
                && name.ends_with(suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
        }
        None => false,
    }
}

/// The hostnames a route serves on a listener: each route hostname intersected with the
/// listener hostname, keeping the more specific of the two (HTTPRoute `spec.hostnames`: "If
/// both the Listener and HTTPRoute have specified hostnames, any HTTPRoute hostnames that do
/// not match the Listener hostname MUST be ignored"). An empty result means no intersection
/// (`NoMatchingListenerHostname`). Without route hostnames the listener's hostname (or `*`)
/// is used.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    intersections(listener, route).map(str::to_owned).collect()
}

/// [`intersect`] without copying the names: each effective hostname once, in route order.
pub fn intersections<'a>(
    listener: Option<&'a str>,
    route: &'a [String],
) -> impl Iterator<Item = &'a str> + 'a {
    let listener = listener.unwrap_or(ANY);
    let effective = move |r: &'a String| -> Option<&'a str> {
        if covers(listener, r) {
            Some(r.as_str())
        } else if covers(r, listener) {
            Some(listener)
        } else {
            None
        }
    };
    let no_route_hostnames = route.is_empty().then_some(listener);
    no_route_hostnames
        .into_iter()
        .chain(route.iter().enumerate().filter_map(move |(i, r)| {
            let h = effective(r)?;
            // A route lists at most 16 hostnames: looking back is cheaper than a set.
            (!route[..i]
                .iter()
                .any(|earlier| effective(earlier) == Some(h)))
            .then_some(h)
        }))
}

/// Orders hostnames most specific first: exact names before wildcards, wildcards with more
/// labels after the `*` first (Gateway `spec.listeners`: "the higher the number of dots in
/// the hostname to the right of the wildcard character, the higher the precedence"), then
/// longer names, and `*` last. Ties break alphabetically so the order is total.
pub fn most_specific_first(a: &str, b: &str) -> Ordering {
    specificity(a).cmp(&specificity(b)).then_with(|| a.cmp(b))
}

/// The sort key of [`most_specific_first`] without the alphabetical tie-break, for callers
/// that compute it once per name instead of once per comparison.
pub fn specificity(h: &str) -> (u8, usize, usize) {
    if h == ANY {
        (2, 0, 0)
    } else if let Some(suffix) = wildcard_suffix(h) {
        (1, usize::MAX - dots(suffix), usize::MAX - h.len())
    } else {
        (0, usize::MAX - dots(h), usize::MAX - h.len())
    }
}

/// The labels of a hostname less one. Counted byte by byte: `str::matches` took some 500
/// instructions per hostname, for every hostname of every translation.
fn dots(h: &str) -> usize {
    h.bytes().filter(|&b| b == b'.').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn intersection_table() {
        let cases: &[(Option<&str>, &[&str], &[&str])] = &[
            (None, &[], &["*"]),
            (None, &["a.example.com"], &["a.example.com"]),
            (Some("a.example.com"), &[], &["a.example.com"]),
            (
                Some("a.example.com"),
                &["a.example.com"],
                &["a.example.com"],
            ),
            (
                Some("a.example.com"),
                &["*.example.com"],
                &["a.example.com"],
            ),
            (Some("a.example.com"), &["b.example.com"], &[]),
            (Some("a.example.com"), &["*.a.example.com"], &[]),
            (
                Some("*.example.com"),
                &["a.example.com"],
                &["a.example.com"],
            ),
            (
                Some("*.example.com"),
                &["x.y.example.com"],
                &["x.y.example.com"],
            ),
            (Some("*.example.com"), &["example.com"], &[]),
            (
                Some("*.example.com"),
                &["*.example.com"],
                &["*.example.com"],
            ),
            (
                Some("*.example.com"),
                &["*.a.example.com"],
                &["*.a.example.com"],
            ),
            (
                Some("*.a.example.com"),
                &["*.example.com"],
                &["*.a.example.com"],
            ),
            (Some("*.example.com"), &["*.example.net"], &[]),
            (
                Some("*.example.com"),
                &["foo.example.net", "foo.example.com"],
                &["foo.example.com"],
            ),
            (Some("*.example.com"), &["badexample.com"], &[]),
        ];
        for (listener, route, want) in cases {
            assert_eq!(
                intersect(*listener, &hosts(route)),
                hosts(want),
                "listener {listener:?} route {route:?}"
            );
        }
    }

    #[test]
    fn ordering() {
        let mut v = vec![
            "*",
            "*.example.com",
            "b.com",
            "*.a.example.com",
            "a.example.com",
            "*.com",
        ];
        v.sort_by(|a, b| most_specific_first(a, b));
        assert_eq!(
            v,
            [
                "a.example.com",
                "b.com",
                "*.a.example.com",
                "*.example.com",
                "*.com",
                "*"
            ]
        );
    }

    #[test]
    fn validity() {
        for ok in ["example.com", "*.example.com", "a-b.c", "localhost"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "*",
            "1.2.3.4",
            "Example.com",
            "a..b",
            "-a.com",
            "*.*.com",
            "a.*.com",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
