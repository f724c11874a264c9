//! A string that never leaks through `Debug` or `Serialize`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a non-empty secret prints as.
pub const REDACTED: &str = "<redacted>";

/// A credential: deserializes from a plain YAML string, but `Debug` and `Serialize` print
/// [`REDACTED`] instead of the value (an empty secret prints as `""`, so "unset" stays visible).
/// Read the value with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value. Only call this where the credential is actually used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &str {
        if self.0.is_empty() { "" } else { REDACTED }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.shown(), f)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `key:` with no value is null in YAML: treat it as unset, as Go does.
        Ok(Secret(
            Option::<String>::deserialize(d)?.unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_leaks() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(serde_yaml::to_string(&s).unwrap(), "<redacted>\n");
        assert_eq!(s.expose(), "hunter2");
        let empty = Secret::default();
        assert_eq!(format!("{empty:?}"), "\"\"");
        assert_eq!(serde_yaml::to_string(&empty).unwrap(), "''\n");
    }

    #[test]
    fn deserializes_from_plain_scalars() {
        let s: Secret = serde_yaml::from_str("hunter2").unwrap();
        assert_eq!(s.expose(), "hunter2");
        let s: Secret = serde_yaml::from_str("12345").unwrap();
        assert_eq!(s.expose(), "12345");
        let s: Secret = serde_yaml::from_str("~").unwrap();
        assert!(s.is_empty());
    }
}
