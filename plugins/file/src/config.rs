//! The `file` sink's config.

use std::path::PathBuf;

use egress_plugin_api::{SinkError, Value, config};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Root directory; object keys are paths below it.
    pub directory: PathBuf,
    /// Create the root and missing parent directories of objects.
    pub create_directories: bool,
    /// fsync the file before the rename and the directory after it. Turning it off trades
    /// durability on power loss for speed (tests, tmpfs).
    pub fsync: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            directory: PathBuf::from("."),
            create_directories: true,
            fsync: true,
        }
    }
}

impl FileConfig {
    pub fn parse(value: &Value) -> Result<Self, SinkError> {
        let c: FileConfig = config::parse(value)?;
        if c.directory.as_os_str().is_empty() {
            return Err(config::invalid("directory", "must not be empty"));
        }
        Ok(c)
    }
}

pub(crate) fn schema() -> Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "file sink",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "directory": {
                "type": "string",
                "default": ".",
                "description": "Root directory; object keys are paths below it."
            },
            "create_directories": {
                "type": "boolean",
                "default": true,
                "description": "Create the root and missing parent directories."
            },
            "fsync": {
                "type": "boolean",
                "default": true,
                "description": "fsync the file before the atomic rename and the directory after it."
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_errors() {
        assert_eq!(
            FileConfig::parse(&Value::Null).unwrap(),
            FileConfig::default()
        );
        let c = FileConfig::parse(&json!({"directory": "/x", "fsync": false})).unwrap();
        assert_eq!((c.directory, c.fsync), (PathBuf::from("/x"), false));
        let e = FileConfig::parse(&json!({"directory": ""})).unwrap_err();
        assert_eq!(e.field(), Some("directory"));
        let e = FileConfig::parse(&json!({"dir": "/x"})).unwrap_err();
        assert_eq!((e.is_config(), e.field()), (true, Some("dir")));
        let e = FileConfig::parse(&json!({"fsync": "yes"})).unwrap_err();
        assert_eq!(e.field(), Some("fsync"));
    }
}
