//! Config errors (fatal) and warnings (printed, then ignored).

use std::fmt;
use std::path::PathBuf;

/// Why the config could not be loaded. `Display` prints one problem per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither a body nor a file was given (Go: `missing config`).
    #[error("missing config: set EGRESS_CONFIG_BODY, EGRESS_CONFIG_FILE or --config")]
    Missing,
    /// The config file could not be read.
    #[error("could not read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or not a YAML mapping (Go: `could not parse config`).
    #[error("could not parse config: {message}")]
    Syntax { message: String },
    /// The YAML is well formed but wrong: every problem found, in key order.
    /// `warnings` are the warnings collected before the errors were found (unknown keys, …).
    #[error("{}", Lines(issues))]
    Invalid {
        issues: Vec<ConfigIssue>,
        warnings: Vec<ConfigWarning>,
    },
}

impl ConfigError {
    /// Every problem as its own message (what `Display` prints, split into lines).
    pub fn messages(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { issues, .. } => issues.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }

    /// Warnings found before the config was rejected (empty unless `Invalid`).
    pub fn warnings(&self) -> &[ConfigWarning] {
        match self {
            ConfigError::Invalid { warnings, .. } => warnings,
            _ => &[],
        }
    }
}

struct Lines<'a>(&'a [ConfigIssue]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// One problem in an otherwise parseable config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigIssue {
    /// A value of the wrong type or form, found while deserializing (so it has a position).
    #[error("config error{}{}: {message}", At(path), Location(*line, *column))]
    WrongType {
        /// Dotted key path, e.g. `redis.db`; empty for the document itself.
        path: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A required key is empty; `env` names the variable that would satisfy it.
    #[error("missing required key {key}{}", EnvHint(env.as_deref(), hint.as_deref()))]
    MissingKey {
        key: String,
        env: Option<String>,
        hint: Option<String>,
    },
    /// A value that has the right type but is not allowed.
    #[error("invalid value for {key}: {message}")]
    InvalidValue { key: String, message: String },
    /// Two keys that may not both be set.
    #[error("conflicting keys {first} and {second}: {message}")]
    Conflict {
        first: String,
        second: String,
        message: String,
    },
}

struct At<'a>(&'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " at {}", self.0)
        }
    }
}

struct Location(Option<usize>, Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(column)) => write!(f, " (line {line}, column {column})"),
            (Some(line), None) => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

struct EnvHint<'a>(Option<&'a str>, Option<&'a str>);

impl fmt::Display for EnvHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(env), _) => write!(f, " (or set {env})"),
            (None, Some(hint)) => write!(f, " ({hint})"),
            (None, None) => Ok(()),
        }
    }
}

/// Something worth telling the operator that does not stop the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A key this service does not know; it is ignored (Go ignores unknown keys too).
    UnknownKey { path: String },
    /// An old key that still works; `hint` says what to write instead.
    Deprecated { key: String, hint: String },
    /// A key that is given but has no effect.
    Ignored { key: String, reason: String },
    /// A value replaced by a default (as the Go egress does silently) or that looks wrong.
    Value { key: String, message: String },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey { path } => write!(f, "unknown key {path} (ignored)"),
            ConfigWarning::Deprecated { key, hint } => write!(f, "{key} is deprecated, {hint}"),
            ConfigWarning::Ignored { key, reason } => write!(f, "{key} is ignored: {reason}"),
            ConfigWarning::Value { key, message } => write!(f, "{key}: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays() {
        let wrong = ConfigIssue::WrongType {
            path: "health_port".into(),
            line: Some(7),
            column: Some(14),
            message: "invalid type: string \"abc\", expected u16".into(),
        };
        assert_eq!(
            wrong.to_string(),
            "config error at health_port (line 7, column 14): invalid type: string \"abc\", expected u16"
        );
        let root = ConfigIssue::WrongType {
            path: String::new(),
            line: Some(1),
            column: Some(1),
            message: "x".into(),
        };
        assert_eq!(root.to_string(), "config error (line 1, column 1): x");
        let missing = ConfigIssue::MissingKey {
            key: "api_key".into(),
            env: Some("LIVEKIT_API_KEY".into()),
            hint: None,
        };
        assert_eq!(
            missing.to_string(),
            "missing required key api_key (or set LIVEKIT_API_KEY)"
        );
        let redis = ConfigIssue::MissingKey {
            key: "redis.address".into(),
            env: None,
            hint: None,
        };
        let err = ConfigError::Invalid {
            issues: vec![missing, redis],
            warnings: vec![],
        };
        assert_eq!(
            err.to_string(),
            "missing required key api_key (or set LIVEKIT_API_KEY)\nmissing required key redis.address"
        );
        assert_eq!(err.messages().len(), 2);
        assert!(
            ConfigError::Missing
                .to_string()
                .starts_with("missing config")
        );
        assert_eq!(
            ConfigWarning::UnknownKey {
                path: "room_only".into()
            }
            .to_string(),
            "unknown key room_only (ignored)"
        );
    }
}
