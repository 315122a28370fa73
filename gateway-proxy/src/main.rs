//! `gantry-proxy`: the command line; everything else lives in the library.

/// mimalloc rather than the system allocator: request handling and translation allocate and
/// free from many threads, where glibc's malloc spends much of its time consolidating.
#[global_allocator]
static ALLOCATOR: gantry_allocator::Mimalloc = gantry_allocator::Mimalloc;

fn main() -> anyhow::Result<()> {
    gantry_proxy::cli::main()
}
