//! Log setup: human-readable text or JSON lines, filtered by `--log-level` / `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Output format of logs and access logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The target access-log lines are emitted under; filter it with `RUST_LOG=access=off`.
pub const ACCESS_LOG_TARGET: &str = "access";

/// Installs the global subscriber. `level` is a `RUST_LOG`-style directive used when `RUST_LOG`
/// is not set.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second call (tests) finds a subscriber already installed; that is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Access-log lines are written by their own writer, in the same format, when this filter
    // lets the `access` target through at INFO.
    super::access_log::configure(format);
}
