//! The stable plugin boundary of the egress host.
//!
//! A *sink* turns a stream of bytes into a durable object somewhere (a local file, an S3 object,
//! an HTTP resource). The host owns everything else: the pipeline, the config envelope, retries
//! across objects, metrics and the manifest. This crate is the single source of truth for that
//! boundary; the C header (`include/egress_plugin.h`) and the WIT package (`wit/`) are
//! projections of it, versioned together.
//!
//! # The sink traits
//!
//! * [`SinkFactory`] is a configured sink: it probes its destination
//!   ([`SinkFactory::health_check`]) and opens objects ([`SinkFactory::open`]). Its companion
//!   [`SinkPlugin`] describes the plugin ([`SinkPlugin::describe`]), checks a config without
//!   side effects ([`SinkPlugin::validate`]) and builds a factory from it
//!   ([`SinkPlugin::create`]).
//! * [`SinkObject`] is one object being written: chunks are pushed in order with
//!   [`SinkObject::write`] (awaiting it *is* the backpressure), then [`SinkObject::finish`]
//!   returns a [`Receipt`] or [`SinkObject::abort`] discards everything.
//!
//! [`LayoutRenderer`] is the second extension point (since API 1.1 loadable like a sink):
//! given a request and the room's participants, it returns a page URL for the browser or a tile
//! layout for a native compositor. [`RendererPlugin`] describes and builds one from its config.
//!
//! A *live destination* (since API 1.2) is the third: the transport of a stream output (RTMP,
//! SRT, …). [`LiveFactory::connect`] publishes to a URL and returns a [`LiveSession`] that the
//! host feeds with FLV tags or MPEG-TS packets ([`LiveFormat`]); the host owns reconnects, the
//! keyframe gate, status and redaction. [`LivePlugin`] describes and builds one. Live
//! destinations load compiled in or as dylibs, not as WASM (a component has no sockets).
//!
//! # Building a plugin
//!
//! One macro, [`export_sink!`] (or [`export_renderer!`] for a renderer, [`export_live!`] for a
//! live destination), makes the same source
//! build as an rlib linked into the host (registered with `inventory`), as a `cdylib` exporting
//! the C entry symbol (with the plugin crate's `dylib` feature), or as a `wasm32-wasip2`
//! component. See the crate README.
//!
//! # Versioning
//!
//! [`API_VERSION_MAJOR`] and [`API_VERSION_MINOR`] version the boundary as a whole (Rust traits,
//! C ABI, WIT). The host refuses a plugin built for another major, or for a newer minor than its
//! own ([`ApiVersion::check_plugin`]). Minor versions only add: new optional functions appended
//! to the C tables, new WIT functions marked `@since`, new `#[non_exhaustive]` fields.
//!
//! # Runtime neutrality
//!
//! Nothing here depends on an async runtime. Plugin futures are polled by the host's executor
//! (compiled in), by a blocking executor on a host thread (dylib), or to completion inside one
//! call (WASM). Blocking work belongs on a [`blocking::Worker`], which is a thread natively and
//! inline in WASM.

pub mod abi;
pub mod blocking;
pub mod config;
mod error;
pub mod key;
mod live;
pub mod log;
mod macros;
mod plugin;
mod renderer;
mod renderer_plugin;
mod sink;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(target_family = "wasm")]
pub mod wasm;

pub use bytes::Bytes;
pub use error::SinkError;
pub use live::{
    BuiltinLive, LiveChunk, LiveDescriptor, LiveFactory, LiveFormat, LivePlugin, LiveSession,
    LoadedLive,
};
pub use plugin::{BuiltinSink, LoadedPlugin};
pub use renderer::{
    LayoutRenderer, Participant, RenderRequest, Rendering, RoomState, Tile, Track, TrackKind,
};
pub use renderer_plugin::{BuiltinRenderer, LoadedRenderer, RendererPlugin};
pub use serde_json::{Value, json};
pub use sink::{SinkFactory, SinkObject, SinkPlugin};
pub use types::{ApiVersion, Capabilities, Descriptor, ObjectSpec, Receipt, VersionMismatch};

/// `#[async_trait]`, re-exported so that plugins need no direct dependency on it.
pub use async_trait::async_trait;

/// Major version of the plugin API. A plugin built for another major is refused.
pub const API_VERSION_MAJOR: u16 = 1;
/// Minor version of the plugin API. A plugin built for a newer minor than the host is refused.
pub const API_VERSION_MINOR: u16 = 2;

/// The README's examples, compiled as doctests so that the guide never goes stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

// Used by `export_sink!`; not part of the API.
#[doc(hidden)]
pub mod __private {
    #[cfg(not(target_family = "wasm"))]
    pub use inventory;
}
