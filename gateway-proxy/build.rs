//! Release builds of `gantry-proxy` place the code it runs together.
//!
//! `link/order.txt` lists the functions the proxy runs (serving first, then start-up), made by
//! `link/update-order.sh`. Linked in that order they share about 4 MiB of pages; in the
//! compiler's order they are spread over the 40 MB of code, and the pages the kernel maps in
//! for them (with its fault-around, 64 KiB at a time) kept 12 to 14 MiB of the binary
//! resident in every proxy (docs/benchmarks.md, "Code pages").
//!
//! The list goes to the linker as LLD's `--symbol-ordering-file`. Rust links with its own LLD
//! on `x86_64-unknown-linux-gnu` (the default since Rust 1.90), so only that target gets it,
//! in release builds, and not when `RUSTFLAGS` chooses the linker or its features: another
//! linker would refuse the option. Names the build does not have are skipped without a
//! warning; the program is the same either way, only laid out differently.

use std::path::Path;

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let own_linker = ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|flag| flags.contains(flag));
    if !release || target != "x86_64-unknown-linux-gnu" || own_linker || !order.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=gantry-proxy=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=gantry-proxy=-Wl,--no-warn-symbol-ordering");
}
