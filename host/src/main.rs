//! `egress`: a drop-in replacement for LiveKit's Go egress service.
//!
//! Sub-commands:
//! * `egress [--config F | --config-body YAML]`: run the service (the default).
//! * `egress validate [--config F | --config-body YAML]`: print the resolved config with
//!   secrets redacted and the active plugins (name, version, API, source), or the errors, and
//!   exit non-zero on errors.

use egress_host::config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "egress",
    version,
    about = "LiveKit egress worker (Rust, plugin-based)"
)]
struct Cli {
    #[command(flatten)]
    source: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the YAML comes from. The body wins over the file, as in the Go egress.
#[derive(clap::Args, Debug, Clone, Default)]
struct ConfigArgs {
    /// Path of the YAML config file.
    #[arg(long = "config", env = "EGRESS_CONFIG_FILE", global = true)]
    config_file: Option<PathBuf>,
    /// The YAML config itself (wins over --config).
    #[arg(
        long = "config-body",
        env = "EGRESS_CONFIG_BODY",
        global = true,
        hide_env_values = true
    )]
    config_body: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a config: print it resolved (secrets redacted) or print its errors.
    Validate,
    /// Run one egress (started by the service, not by hand).
    #[command(hide = true)]
    RunHandler,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let source = config::ConfigSource {
        body: cli.source.config_body.filter(|b| !b.trim().is_empty()),
        file: cli.source.config_file,
    };
    match cli.command {
        // The config, then its plugins loaded as the service would load them.
        Some(Command::Validate) => {
            config::validate_command_with(&source, egress_host::plugins::validate_plugins)
        }
        Some(Command::RunHandler) => match config::load(&source) {
            Ok(loaded) => {
                egress_host::service::logging::init(&loaded.config.logging);
                egress_host::process::handler::main(loaded.config)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        None => {
            let loaded = match config::load(&source) {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            egress_host::service::logging::init(&loaded.config.logging);
            for w in &loaded.warnings {
                tracing::warn!("config: {w}");
            }
            match tokio::runtime::Runtime::new() {
                Ok(rt) => rt.block_on(egress_host::service::run(loaded.config, source)),
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
