//! [`SinkError`]: one opaque error type for every sink, classified by what the host should do.

use std::error::Error as StdError;
use std::fmt;

/// Why a sink operation failed, classified by what the host should do about it.
///
/// The kind is deliberately private (as in `hyper::Error`): ask with [`is_retryable`],
/// [`is_permanent`], [`is_auth`] and [`is_config`]. Exactly one of them is true. New kinds can
/// then be added in a minor version without breaking plugins that match on the old ones.
///
/// * **retryable**: transient; the same operation may succeed later (timeouts, 5xx, resets).
///   The sink has already spent its own retry budget when it returns this.
/// * **permanent**: will fail again (bad request, invalid key, object too large).
/// * **auth**: credentials are missing, wrong, or lack a permission.
/// * **config**: the plugin's config is invalid; [`field`] names the key at fault.
///
/// [`is_retryable`]: SinkError::is_retryable
/// [`is_permanent`]: SinkError::is_permanent
/// [`is_auth`]: SinkError::is_auth
/// [`is_config`]: SinkError::is_config
/// [`field`]: SinkError::field
pub struct SinkError {
    kind: Kind,
    message: String,
    field: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The classification. Its numeric values are the C ABI status codes (`EGRESS_ERR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Retryable = 1,
    Permanent = 2,
    Auth = 3,
    Config = 4,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Retryable => "retryable error",
            Kind::Permanent => "permanent error",
            Kind::Auth => "auth error",
            Kind::Config => "config error",
        }
    }
}

impl SinkError {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        SinkError {
            kind,
            message: message.into(),
            field: None,
            source: None,
        }
    }

    /// A transient failure: the same operation may succeed later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(Kind::Retryable, message)
    }

    /// A failure that will happen again.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(Kind::Permanent, message)
    }

    /// Missing, wrong or insufficient credentials.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(Kind::Auth, message)
    }

    /// An invalid config, not tied to one field.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config, message)
    }

    /// An invalid config value at `field` (a dotted path such as `retry.max_attempts`).
    pub fn config_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(Kind::Config, message);
        e.field = Some(field.into()).filter(|f: &String| !f.is_empty());
        e
    }

    /// Attach the underlying cause (kept for `source()`; not sent across the C or WASM boundary).
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == Kind::Retryable
    }

    pub fn is_permanent(&self) -> bool {
        self.kind == Kind::Permanent
    }

    pub fn is_auth(&self) -> bool {
        self.kind == Kind::Auth
    }

    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }

    /// The human-readable message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For config errors, the dotted path of the field at fault.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The same error with `prefix: ` before its message (adds context while keeping the kind).
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Rebuild an error from its parts (how errors come back across the C and WASM boundaries).
    pub(crate) fn from_parts(kind: Kind, message: String, field: Option<String>) -> Self {
        SinkError {
            kind,
            message,
            field: field.filter(|f| !f.is_empty()),
            source: None,
        }
    }
}

impl fmt::Debug for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SinkError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(field) = &self.field {
            d.field("field", field);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.label())?;
        if let Some(field) = &self.field {
            write!(f, " at {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl StdError for SinkError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_predicate_holds() {
        for e in [
            SinkError::retryable("r"),
            SinkError::permanent("p"),
            SinkError::auth("a"),
            SinkError::config("c"),
            SinkError::config_field("x", "c"),
        ] {
            let n = [
                e.is_retryable(),
                e.is_permanent(),
                e.is_auth(),
                e.is_config(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            assert_eq!(n, 1, "{e:?}");
        }
    }

    #[test]
    fn display_names_kind_and_field() {
        assert_eq!(
            SinkError::config_field("url", "must be http(s)").to_string(),
            "config error at url: must be http(s)"
        );
        assert_eq!(
            SinkError::retryable("503").context("part 3").to_string(),
            "retryable error: part 3: 503"
        );
        assert_eq!(SinkError::config_field("", "x").field(), None);
    }

    #[test]
    fn keeps_source() {
        let io = std::io::Error::other("disk");
        let e = SinkError::permanent("write failed").with_source(io);
        assert_eq!(e.source().map(ToString::to_string).as_deref(), Some("disk"));
    }
}
