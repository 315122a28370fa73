//! `gantry-proxy`: the command line; everything else lives in the library.

fn main() -> anyhow::Result<()> {
    gantry_proxy::cli::main()
}
