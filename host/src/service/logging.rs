//! Structured logs with tracing. `logging.level` takes the Go egress's values
//! (debug|info|warn|error); `RUST_LOG`, when set, overrides it for finer filtering.

use tracing_subscriber::EnvFilter;

use crate::config::LoggingConfig;

pub fn init(logging: &LoggingConfig) {
    let level = match logging.level.as_str() {
        "debug" => "debug",
        "warn" => "warn",
        "error" => "error",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Our crates at the configured level; chatty dependencies quieter. chromiumoxide 0.9
        // warns on every CDP field newer Chromium sends that it does not know.
        EnvFilter::new(format!(
            "{level},hyper=warn,redis=warn,tower_http=warn,chromiumoxide::handler=error,chromiumoxide::conn=error"
        ))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if logging.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("warning: logging already initialised: {e}");
    }
}
