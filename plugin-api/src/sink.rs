//! The sink traits: [`SinkFactory`] (a configured destination) and [`SinkObject`] (one object
//! being written).

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::error::SinkError;
use crate::types::{Descriptor, ObjectSpec, Receipt};

/// How a plugin describes itself and builds its [`SinkFactory`] from a config. Implement it
/// (with [`SinkFactory`]) and export the type with [`export_sink!`](crate::export_sink).
///
/// # Lifecycle
///
/// 1. The host calls [`describe`](Self::describe) once when it loads the plugin.
/// 2. For each config that names the plugin, it calls [`validate`](Self::validate), then
///    [`create`](Self::create). Both are pure: no file system, network or credential look-up.
///    That is what makes `egress validate` safe to run anywhere.
/// 3. The factory then probes ([`SinkFactory::health_check`]) and opens objects
///    ([`SinkFactory::open`]).
///
/// These are associated functions, not methods, so they live apart from the object-safe
/// [`SinkFactory`] that loaders implement for dylib and WASM plugins.
pub trait SinkPlugin: SinkFactory + Sized {
    /// Static facts: name, version, capabilities and the JSON Schema of the config.
    fn describe() -> Descriptor;

    /// Check `config` without side effects. Errors are [`SinkError::config_field`] naming the
    /// field at fault. The default builds a factory with [`create`](Self::create) and drops it,
    /// which is right whenever `create` is pure, as it must be.
    fn validate(config: &Value) -> Result<(), SinkError> {
        Self::create(config).map(drop)
    }

    /// Build a factory from a config that passed [`validate`](Self::validate). No I/O.
    fn create(config: &Value) -> Result<Self, SinkError>;
}

/// A configured sink: the thing that opens objects at one destination.
///
/// [`health_check`](Self::health_check) probes the destination with short-lived resources of
/// its own (at start-up and on demand); it shares nothing with open objects.
/// [`open`](Self::open) starts one object. Many objects may be open at once, from many tasks; a
/// factory is `Send + Sync` and must not serialise them needlessly.
///
/// # Errors
///
/// Every failure is a [`SinkError`] classified as retryable, permanent, auth or config. A sink
/// that retries internally (per part, per request) returns *retryable* only once its own
/// budget is spent, so the host knows that retrying the whole object may still help.
#[async_trait]
pub trait SinkFactory: Send + Sync + 'static {
    /// Probe the destination: can we write there, are the credentials good?
    async fn health_check(&self) -> Result<(), SinkError>;

    /// Start writing one object. Nothing is visible at the destination until
    /// [`SinkObject::finish`] succeeds.
    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError>;
}

/// One object being written: a file, a segment, a playlist, a manifest.
///
/// # Contract
///
/// * The host calls [`write`](Self::write) with chunks in order, never two at once (it takes
///   `&mut self`). Chunks may have any size, including zero. The sink may hold on to a chunk
///   (it is reference counted) but should not buffer the whole object: multi-GB recordings must
///   stream. Memory must stay bounded by the sink's own part size, not the object size.
/// * Awaiting `write` is the backpressure. A slow destination makes `write` slow; the host
///   never queues unboundedly in front of a sink.
/// * After [`finish`](Self::finish) returns `Ok`, the object is durable and visible at
///   [`Receipt::location`] in full; before, nothing is visible under the key (or only
///   something the destination hides, such as an unfinished multipart upload). Finishing an
///   object whose key exists replaces it.
/// * After any error from `write`, the object is failed: the host calls
///   [`abort`](Self::abort) and never `finish`.
/// * [`abort`](Self::abort) discards everything written (temp files, parts). It cannot fail:
///   what it cannot clean up it logs.
/// * Dropping an object without `finish` or `abort` (the host task was cancelled) must leave
///   nothing visible; a sink cleans up best-effort in `Drop`.
#[async_trait]
pub trait SinkObject: Send {
    /// Append `chunk` to the object.
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError>;

    /// Make the object durable and visible. Returns where it is, its size and its SHA-256.
    async fn finish(self: Box<Self>) -> Result<Receipt, SinkError>;

    /// Discard the object.
    async fn abort(self: Box<Self>);
}
