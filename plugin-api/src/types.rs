//! The plain data that crosses the boundary: versions, capabilities, descriptors, object specs
//! and receipts. Structs are `#[non_exhaustive]` so that a minor version can add fields; build
//! them with their constructors.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{API_VERSION_MAJOR, API_VERSION_MINOR};

/// A plugin API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ApiVersion {
    pub major: u16,
    pub minor: u16,
}

impl ApiVersion {
    /// The version this crate implements.
    pub const CURRENT: ApiVersion = ApiVersion {
        major: API_VERSION_MAJOR,
        minor: API_VERSION_MINOR,
    };

    pub const fn new(major: u16, minor: u16) -> Self {
        ApiVersion { major, minor }
    }

    /// The versioning rule: a host accepts a plugin built for the same major and the same or an
    /// older minor. A newer minor may call functions the host does not have; another major is
    /// another contract.
    pub fn check_plugin(host: ApiVersion, plugin: ApiVersion) -> Result<(), VersionMismatch> {
        if plugin.major == host.major && plugin.minor <= host.minor {
            Ok(())
        } else {
            Err(VersionMismatch { host, plugin })
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A plugin built for an API version the host does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionMismatch {
    pub host: ApiVersion,
    pub plugin: ApiVersion,
}

impl fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plugin.major != self.host.major {
            write!(
                f,
                "plugin API {} has major version {}, this host speaks only {}.x",
                self.plugin, self.plugin.major, self.host.major
            )
        } else {
            write!(
                f,
                "plugin API {} is newer than this host's {}; upgrade the host or rebuild the plugin against {}",
                self.plugin, self.host, self.host
            )
        }
    }
}

impl std::error::Error for VersionMismatch {}

/// What kind of destination a sink is. The host uses it to choose how to feed the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Takes chunks of any size and manages its own parts: multi-GB objects are never
    /// buffered whole.
    pub streaming: bool,
    /// Wants a finished local file (formats finalised by seeking), not a stream of chunks.
    pub needs_local_file: bool,
    /// A live destination (RTMP-style): no replay, no retry of bytes already sent.
    pub live: bool,
}

impl Capabilities {
    /// No capability set; combine with the builder methods.
    pub const fn none() -> Self {
        Capabilities {
            streaming: false,
            needs_local_file: false,
            live: false,
        }
    }

    pub const fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }

    pub const fn needs_local_file(mut self) -> Self {
        self.needs_local_file = true;
        self
    }

    pub const fn live(mut self) -> Self {
        self.live = true;
        self
    }
}

/// Static facts about a sink plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Descriptor {
    /// The name configs and requests use, e.g. `file`, `s3`, `http-put`. Lower case, `-`.
    pub name: String,
    /// The plugin's own version (semver), shown by `egress validate`.
    pub version: String,
    /// The plugin API version the plugin was built against. Filled by the loaders; plugins
    /// leave the default ([`ApiVersion::CURRENT`]).
    #[serde(default = "current_api")]
    pub api: ApiVersion,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// JSON Schema of the plugin's config (an object schema). Properties marked
    /// `"writeOnly": true` are secrets: the host never prints them.
    #[serde(default = "empty_schema")]
    pub config_schema: Value,
}

fn current_api() -> ApiVersion {
    ApiVersion::CURRENT
}

fn empty_schema() -> Value {
    serde_json::json!({ "type": "object" })
}

impl Descriptor {
    /// A descriptor with no capability and a schema that accepts any object.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Descriptor {
            name: name.into(),
            version: version.into(),
            api: ApiVersion::CURRENT,
            capabilities: Capabilities::none(),
            config_schema: empty_schema(),
        }
    }

    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    pub fn with_config_schema(mut self, schema: Value) -> Self {
        self.config_schema = schema;
        self
    }

    /// Set the API version (loaders do this from what the plugin declared).
    pub fn with_api(mut self, api: ApiVersion) -> Self {
        self.api = api;
        self
    }

    /// Top-level config keys the schema marks `"writeOnly": true` (secrets).
    pub fn secret_fields(&self) -> Vec<String> {
        secret_fields_of(&self.config_schema)
    }
}

/// Top-level properties of a config schema marked `"writeOnly": true`.
pub(crate) fn secret_fields_of(schema: &Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| p.get("writeOnly").and_then(Value::as_bool) == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// What the host asks a sink to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ObjectSpec {
    /// Where the object goes, relative to the sink's configured root: `room/2024/out.mp4`.
    /// Uses `/` as the separator; never absolute; never contains `..`.
    pub key: String,
    /// MIME type, e.g. `video/mp4`; empty when unknown.
    pub content_type: String,
    /// Total size if the host knows it up front (lets sinks size their parts).
    pub expected_size: Option<u64>,
}

impl ObjectSpec {
    pub fn new(key: impl Into<String>) -> Self {
        ObjectSpec {
            key: key.into(),
            content_type: String::new(),
            expected_size: None,
        }
    }

    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    pub fn with_expected_size(mut self, size: u64) -> Self {
        self.expected_size = Some(size);
        self
    }
}

/// Proof that an object is durable at its destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Receipt {
    /// Where the object is now: a path, or a URL such as `s3://bucket/key` or `https://…`.
    pub location: String,
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the bytes written.
    pub sha256: [u8; 32],
}

impl Receipt {
    pub fn new(location: impl Into<String>, size: u64, sha256: [u8; 32]) -> Self {
        Receipt {
            location: location.into(),
            size,
            sha256,
        }
    }

    /// The digest as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioning_rule() {
        let host = ApiVersion::new(1, 2);
        assert!(ApiVersion::check_plugin(host, ApiVersion::new(1, 0)).is_ok());
        assert!(ApiVersion::check_plugin(host, ApiVersion::new(1, 2)).is_ok());
        let newer = ApiVersion::check_plugin(host, ApiVersion::new(1, 3)).unwrap_err();
        assert!(
            newer.to_string().contains("newer than this host's 1.2"),
            "{newer}"
        );
        let major = ApiVersion::check_plugin(host, ApiVersion::new(2, 0)).unwrap_err();
        assert!(major.to_string().contains("only 1.x"), "{major}");
        assert!(ApiVersion::check_plugin(host, ApiVersion::new(0, 9)).is_err());
    }

    #[test]
    fn secret_fields_come_from_write_only() {
        let d = Descriptor::new("x", "1").with_config_schema(serde_json::json!({
            "type": "object",
            "properties": {
                "url": { "type": "string" },
                "authorization": { "type": "string", "writeOnly": true }
            }
        }));
        assert_eq!(d.secret_fields(), vec!["authorization".to_string()]);
    }

    #[test]
    fn receipt_hex() {
        let r = Receipt::new("x", 0, [0xab; 32]);
        assert_eq!(r.sha256_hex(), "ab".repeat(32));
    }
}
