//! The request path normaliser: never panics, and what it returns is normal — normalising it
//! again changes nothing, it starts with `/`, has no dot segment, no `//` when slashes merge,
//! and no percent-encoded unreserved character.
#![no_main]

use gantry_proxy::routing::normalize::{EscapedSlashes, PathOptions, normalize_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let options = PathOptions {
        merge_slashes: flags & 1 == 0,
        escaped_slashes: if flags & 2 == 0 {
            EscapedSlashes::Reject
        } else {
            EscapedSlashes::Keep
        },
    };
    let Ok(normal) = normalize_path(path, &options) else {
        return;
    };
    if normal == "*" {
        return;
    }
    assert!(normal.starts_with('/'), "{path:?} → {normal:?}");
    for segment in normal.split('/') {
        assert!(segment != "." && segment != "..", "{path:?} → {normal:?}");
    }
    if options.merge_slashes {
        assert!(!normal.contains("//"), "{path:?} → {normal:?}");
    }
    let bytes = normal.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("two hex digits");
            let c = u8::from_str_radix(hex, 16).expect("hex");
            let unreserved = c.is_ascii_alphanumeric() || b"-._~".contains(&c);
            assert!(!unreserved, "{path:?} → {normal:?} keeps %{hex}");
        }
    }
    let again = normalize_path(&normal, &options);
    assert_eq!(again.as_deref(), Ok(&*normal), "not idempotent for {path:?}");
});
