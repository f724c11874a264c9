//! The service config: the Go egress YAML format, loaded, resolved and validated.
//!
//! * [`load`] reads the YAML from [`ConfigSource`] (the body wins over the file, as in Go), applies
//!   env fallbacks (`LIVEKIT_*`, `AWS_*`, `AZURE_*`, `GOOGLE_APPLICATION_CREDENTIALS`), maps
//!   legacy keys, applies the Go defaults and validates. It returns every problem it finds.
//! * [`validate_command`] is `egress validate`.
//! * [`ServiceConfig::to_redacted_yaml`] prints the resolved config without secrets.
//!
//! Secrets are [`Secret`]s: read them with `.expose()`; `Debug` and `Serialize` redact them.

pub mod defaults;
pub mod duration;
pub mod env;
mod error;
mod model;
mod plugin_config;
mod raw;
mod resolve;
mod secret;

use std::path::PathBuf;
use std::process::ExitCode;

pub use env::{EmptyEnv, Env, ProcessEnv};
pub use error::{ConfigError, ConfigIssue, ConfigWarning};
pub use model::{
    AliOssConfig, AudioTempoController, AzureConfig, CpuCostConfig, DebugConfig, GcpConfig,
    ImagesConfig, LatencyConfig, LoggingConfig, MemorySource, PluginEntry, PluginSource,
    ProxyConfig, RedisConfig, S3Config, SegmentsConfig, ServiceConfig, SessionLimits,
    StorageConfig, StreamReconnect, StreamsConfig, TestOverrides, TlsConfig, WasmSandbox,
};
pub use plugin_config::redact as redact_plugin_config;
pub use secret::{REDACTED, Secret};

use raw::RawConfig;
use resolve::Resolver;

/// Where the YAML comes from. A non-empty `body` wins over `file`.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub body: Option<String>,
    pub file: Option<PathBuf>,
}

/// A loaded config and what is worth telling the operator about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: ServiceConfig,
    pub warnings: Vec<ConfigWarning>,
}

/// Load the config from `source`, with env fallbacks from the process environment.
pub fn load(source: &ConfigSource) -> Result<Loaded, ConfigError> {
    load_with_env(source, &ProcessEnv)
}

/// [`load`] with an injected environment.
pub fn load_with_env(source: &ConfigSource, env: &dyn Env) -> Result<Loaded, ConfigError> {
    let yaml = read_source(source)?;
    parse(&yaml, env)
}

/// The YAML text: the body if it is non-empty, else the file; neither is an error.
pub fn read_source(source: &ConfigSource) -> Result<String, ConfigError> {
    if let Some(body) = source.body.as_ref().filter(|b| !b.trim().is_empty()) {
        return Ok(body.clone());
    }
    match source.file.as_ref().filter(|f| !f.as_os_str().is_empty()) {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        }),
        None => Err(ConfigError::Missing),
    }
}

/// Parse, resolve and validate YAML text.
pub fn parse(yaml: &str, env: &dyn Env) -> Result<Loaded, ConfigError> {
    // Syntax and shape first, so that later errors are all about keys and values.
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| ConfigError::Syntax {
        message: e.to_string(),
    })?;
    match value {
        serde_yaml::Value::Null | serde_yaml::Value::Mapping(_) => {}
        other => {
            return Err(ConfigError::Syntax {
                message: format!(
                    "expected a mapping of keys to values, found {}",
                    kind(&other)
                ),
            });
        }
    }

    let mut unknown = Vec::new();
    let result = {
        let mut on_ignored = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
        let de = serde_yaml::Deserializer::from_str(yaml);
        let de = serde_ignored::Deserializer::new(de, &mut on_ignored);
        serde_path_to_error::deserialize::<_, RawConfig>(de)
    };
    let warnings: Vec<ConfigWarning> = unknown
        .into_iter()
        .map(|path| ConfigWarning::UnknownKey { path })
        .collect();
    let raw = match result {
        Ok(raw) => raw,
        Err(e) => {
            return Err(ConfigError::Invalid {
                issues: vec![wrong_type(&e)],
                warnings,
            });
        }
    };

    let mut resolver = Resolver::new(env, warnings);
    let config = resolver.resolve(raw);
    if resolver.issues.is_empty() {
        Ok(Loaded {
            config,
            warnings: resolver.warnings,
        })
    } else {
        Err(ConfigError::Invalid {
            issues: resolver.issues,
            warnings: resolver.warnings,
        })
    }
}

/// `egress validate`: warnings to stderr, then the redacted config to stdout (exit 0), or the
/// errors to stderr (exit 2).
pub fn validate_command(source: &ConfigSource) -> ExitCode {
    validate_command_with(source, |_| Ok(String::new()))
}

/// [`validate_command`] with a further check of the loaded config (the plugins): its text is
/// printed after the config, its errors fail validation like config errors. The check may
/// adjust the config before it is printed (redact what plugins declare secret).
pub fn validate_command_with(
    source: &ConfigSource,
    check: impl FnOnce(&mut ServiceConfig) -> Result<String, Vec<String>>,
) -> ExitCode {
    match load(source) {
        Ok(mut loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            match check(&mut loaded.config) {
                Ok(extra) => {
                    print!("{}{extra}", loaded.config.to_redacted_yaml());
                    ExitCode::SUCCESS
                }
                Err(messages) => {
                    for message in messages {
                        eprintln!("error: {message}");
                    }
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            for w in e.warnings() {
                eprintln!("warning: {w}");
            }
            for message in e.messages() {
                eprintln!("error: {message}");
            }
            ExitCode::from(2)
        }
    }
}

fn kind(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// `redis.foo`, `cpu_cost.x`, `list[2].y`: the path of an ignored key, without the `?` markers
/// serde_ignored adds for `Option` layers.
fn ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// A deserialization error as an issue naming the key path, line and column.
fn wrong_type(e: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigIssue {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let inner = e.inner();
    let location = inner.location();
    let mut message = inner.to_string();
    // serde_yaml appends " at line L column C" and prefixes its own "path: "; we print both
    // ourselves.
    if let Some(loc) = &location {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    if let Some((prefix, rest)) = message.split_once(": ")
        && (prefix == path || !prefix.contains(char::is_whitespace))
    {
        message = rest.to_string();
    }
    ConfigIssue::WrongType {
        path,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message,
    }
}

#[cfg(test)]
mod tests;
