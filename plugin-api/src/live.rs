//! Live destinations (since API 1.2): [`LiveFactory`] (a configured transport that connects to
//! stream URLs) and [`LiveSession`] (one publish to one URL), with the data that crosses:
//! [`LiveDescriptor`], [`LiveFormat`] and [`LiveChunk`].
//!
//! A live destination is the transport half of a stream output. The host muxes the encoded
//! media into the destination's [`LiveFormat`] (FLV tags or MPEG-TS packets) and owns
//! everything every destination shares: the reconnect policy (jittered backoff, the give-up
//! window), the keyframe gate after each (re)connect, `StreamInfo` status, metrics and URL
//! redaction. The plugin owns only the wire: connect, publish, send bytes, close. Unlike a sink
//! it has no receipt and no replay: bytes are sent once, as they come.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SinkError;
use crate::types::{ApiVersion, secret_fields_of};

/// How the host frames the media it sends to a live destination.
///
/// * [`Flv`](LiveFormat::Flv): one FLV tag per [`LiveChunk`]: the 11-byte tag header and the
///   tag body, without the FLV file header and without the 4-byte `PreviousTagSize` that
///   follows each tag in a file. On every connect the host first sends the stream headers (the
///   `onMetaData` script tag, the AVC sequence header, the AAC sequence header, each flagged
///   [`header`](LiveChunk::header)), then media starting with a video keyframe. Tag timestamps
///   start at 0 on every session.
/// * [`MpegTs`](LiveFormat::MpegTs): whole 188-byte transport stream packets, typically 7 per
///   chunk (1316 bytes, one SRT/UDP payload); the first chunk of a session starts with PAT and
///   PMT (flagged `header`), then media from a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LiveFormat {
    Flv,
    MpegTs,
}

impl LiveFormat {
    /// The name used in descriptors, JSON and `egress validate`: `flv`, `mpegts`.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveFormat::Flv => "flv",
            LiveFormat::MpegTs => "mpegts",
        }
    }
}

impl fmt::Display for LiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Static facts about a live destination plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LiveDescriptor {
    /// The plugin's name (`rtmp`, `srt`); lower case, `-`.
    pub name: String,
    /// The plugin's own version (semver), shown by `egress validate`.
    pub version: String,
    /// The plugin API version it was built against; filled by the loaders.
    #[serde(default = "current_api")]
    pub api: ApiVersion,
    /// The URL schemes it serves, lower case without `://`: `["rtmp", "rtmps"]`. One scheme
    /// has one destination: two active plugins claiming one scheme fail start-up.
    pub schemes: Vec<String>,
    /// What the host sends it.
    pub format: LiveFormat,
    /// JSON Schema of the plugin's config (`"writeOnly": true` marks secrets).
    #[serde(default = "empty_schema")]
    pub config_schema: Value,
}

fn current_api() -> ApiVersion {
    ApiVersion::CURRENT
}

fn empty_schema() -> Value {
    serde_json::json!({ "type": "object" })
}

impl LiveDescriptor {
    /// A descriptor serving no scheme yet (add them with [`with_schemes`](Self::with_schemes))
    /// and accepting any config object.
    pub fn new(name: impl Into<String>, version: impl Into<String>, format: LiveFormat) -> Self {
        LiveDescriptor {
            name: name.into(),
            version: version.into(),
            api: ApiVersion::CURRENT,
            schemes: Vec::new(),
            format,
            config_schema: empty_schema(),
        }
    }

    pub fn with_schemes<S: Into<String>>(mut self, schemes: impl IntoIterator<Item = S>) -> Self {
        self.schemes = schemes
            .into_iter()
            .map(|s| s.into().to_ascii_lowercase())
            .collect();
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

/// One piece of the stream, borrowed for the duration of [`LiveSession::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveChunk<'a> {
    /// One FLV tag, or whole TS packets (see [`LiveFormat`]).
    pub data: &'a [u8],
    /// Presentation time relative to the session's first chunk (FLV: the tag's timestamp).
    pub pts: Duration,
    /// The chunk starts a video keyframe (an IDR frame, or the TS packets carrying its start).
    pub keyframe: bool,
    /// Stream headers: codec configuration, metadata, PAT/PMT. Resent on every connect.
    pub header: bool,
}

impl<'a> LiveChunk<'a> {
    /// A media chunk that is neither a keyframe nor a header.
    pub fn new(data: &'a [u8], pts: Duration) -> Self {
        LiveChunk {
            data,
            pts,
            keyframe: false,
            header: false,
        }
    }

    pub fn keyframe(mut self, keyframe: bool) -> Self {
        self.keyframe = keyframe;
        self
    }

    pub fn header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }
}

/// How a live destination plugin describes itself and builds its [`LiveFactory`] from a
/// config. Implement it (with [`LiveFactory`]) and export the type with
/// [`export_live!`](crate::export_live). Since API 1.2.
///
/// `describe`, `validate` and `create` are pure, as for sinks: no file system, network or
/// credential look-up, so that `egress validate` can run them anywhere.
pub trait LivePlugin: LiveFactory + Sized {
    /// Static facts: name, version, schemes, format and the JSON Schema of the config.
    fn describe() -> LiveDescriptor;

    /// Check `config` without side effects (default: build a factory and drop it).
    fn validate(config: &Value) -> Result<(), SinkError> {
        Self::create(config).map(drop)
    }

    /// Build a factory from a config that passed [`validate`](Self::validate). No I/O.
    fn create(config: &Value) -> Result<Self, SinkError>;
}

/// A configured live destination: connects to stream URLs of its schemes.
///
/// Many sessions may be open at once (one per URL, and a new one for each reconnect), from
/// many tasks; a factory is `Send + Sync`.
///
/// # Errors
///
/// Every failure is a [`SinkError`]. The host's reconnect policy acts on the class, so it
/// must be right:
///
/// | failure | class | why |
/// |---|---|---|
/// | connection refused, reset, closed by the peer (the server kicked us, restarted) | retryable | the server may be back in a second |
/// | connect or I/O timeout, no answer (SRT handshake timeout) | retryable | a network blip or a server restart |
/// | DNS: the name does not exist | permanent | it will not exist in a second either |
/// | DNS: temporary failure (no answer from the resolver) | retryable | |
/// | TLS: certificate rejected (unknown CA, wrong name, expired), or the server does not speak TLS | permanent | the next attempt meets the same certificate |
/// | publish refused: bad stream key, app rejected, stream in use, server closed the connection when asked to publish | auth | the key is wrong; a retry would be refused again |
/// | SRT: wrong passphrase, streamid rejected | auth | as above |
/// | a URL the plugin cannot use (malformed, missing stream key, bad query value) | config | the request is wrong, say which part |
///
/// The host fails a URL at once on a permanent, auth or config error from the **first**
/// connect of a session, and retries with backoff on retryable ones; after a session has
/// published, it retries any error within its window (a key that worked a minute ago is not
/// suddenly wrong). A plugin never retries a connect itself: one call, one attempt.
#[async_trait]
pub trait LiveFactory: Send + Sync + 'static {
    /// Check a URL without I/O (syntax, required parts, query values), so that a request with
    /// an unusable URL is refused at StartEgress. Errors are config errors. The default
    /// accepts every URL.
    fn validate_url(&self, url: &str) -> Result<(), SinkError> {
        let _ = url;
        Ok(())
    }

    /// Connect and start publishing to `url` (one of the plugin's schemes). Returns once the
    /// destination accepted the publish (RTMP: `connect` and `publish` answered with
    /// `NetStream.Publish.Start`; SRT: the handshake completed), so that the host can take
    /// that moment as the stream's start and classify a failure as a first-connect one. Must
    /// give up within a bounded time (a few seconds) with a retryable error.
    async fn connect(&self, url: &str) -> Result<Box<dyn LiveSession>, SinkError>;
}

/// One publish to one URL.
///
/// # Contract
///
/// * The host calls [`send`](Self::send) with chunks in order, never two at once. Awaiting
///   `send` is the backpressure: a destination that cannot keep up makes `send` slow, and the
///   host drops (from its own bounded queue, whole GOPs) rather than the plugin buffering.
/// * The first chunks of every session are the stream headers (flagged `header`), then media
///   from a keyframe; the plugin needs no state from an earlier session.
/// * After an error from `send` the session is dead: the host drops it (or calls
///   [`close`](Self::close)) and, per its policy, connects again.
/// * [`close`](Self::close) ends the publish cleanly (RTMP `deleteStream`, TLS close,
///   flushing what is queued) within a bounded time. Dropping a session without `close`
///   must release the connection at once, without blocking.
/// * [`bytes_sent`](Self::bytes_sent) counts the bytes handed to the transport in this
///   session (for metrics and the host's no-progress check); it must not block.
#[async_trait]
pub trait LiveSession: Send {
    /// Send one chunk (see [`LiveFormat`] for what a chunk holds).
    async fn send(&mut self, chunk: LiveChunk<'_>) -> Result<(), SinkError>;

    /// End the publish cleanly.
    async fn close(self: Box<Self>) -> Result<(), SinkError>;

    /// Bytes sent in this session so far.
    fn bytes_sent(&self) -> u64;
}

/// A loaded live destination plugin, before it is configured: what each loader produces.
pub trait LoadedLive: Send + Sync {
    /// The plugin's descriptor, with [`LiveDescriptor::api`] set to what it was built for.
    fn descriptor(&self) -> LiveDescriptor;

    /// Check a config without side effects.
    fn validate(&self, config: &Value) -> Result<(), SinkError>;

    /// Build a configured factory.
    fn create(&self, config: &Value) -> Result<Box<dyn LiveFactory>, SinkError>;
}

/// A live destination compiled into the binary; [`export_live!`](crate::export_live) submits
/// one per crate to `inventory`, the host lists them with [`BuiltinLive::iter`].
pub struct BuiltinLive {
    describe: fn() -> LiveDescriptor,
    validate: fn(&Value) -> Result<(), SinkError>,
    create: fn(&Value) -> Result<Box<dyn LiveFactory>, SinkError>,
}

impl BuiltinLive {
    /// The destination implemented by `L`.
    pub const fn of<L: LivePlugin>() -> Self {
        BuiltinLive {
            describe: L::describe,
            validate: L::validate,
            create: create_boxed::<L>,
        }
    }

    /// Every live destination plugin linked into this binary (in no particular order).
    #[cfg(not(target_family = "wasm"))]
    pub fn iter() -> impl Iterator<Item = &'static BuiltinLive> {
        inventory::iter::<BuiltinLive>.into_iter()
    }
}

fn create_boxed<L: LivePlugin>(config: &Value) -> Result<Box<dyn LiveFactory>, SinkError> {
    Ok(Box::new(L::create(config)?))
}

impl LoadedLive for BuiltinLive {
    fn descriptor(&self) -> LiveDescriptor {
        (self.describe)()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        (self.validate)(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn LiveFactory>, SinkError> {
        (self.create)(config)
    }
}

#[cfg(not(target_family = "wasm"))]
inventory::collect!(BuiltinLive);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_json_is_stable() {
        let d = LiveDescriptor::new("rtmp", "0.1.0", LiveFormat::Flv)
            .with_schemes(["RTMP", "rtmps"])
            .with_config_schema(serde_json::json!({
                "type": "object",
                "properties": { "key": { "type": "string", "writeOnly": true } }
            }));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["schemes"], serde_json::json!(["rtmp", "rtmps"]));
        assert_eq!(json["format"], "flv");
        let back: LiveDescriptor = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
        assert_eq!(d.secret_fields(), vec!["key".to_string()]);
        assert_eq!(
            serde_json::to_value(LiveFormat::MpegTs).unwrap(),
            serde_json::json!("mpegts")
        );
    }

    #[test]
    fn chunk_builders() {
        let c = LiveChunk::new(b"x", Duration::from_millis(40))
            .keyframe(true)
            .header(false);
        assert!(c.keyframe && !c.header);
        assert_eq!(c.pts, Duration::from_millis(40));
    }
}
