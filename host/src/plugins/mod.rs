//! Sink and layout-renderer plugins: loading, configuring and looking them up.
//!
//! Three loaders produce the same thing, an [`egress_plugin_api::SinkPlugin`] (describe,
//! validate, create) whose [`egress_plugin_api::SinkFactory`] the rest of the host uses without
//! knowing where it came from:
//!
//! * [`builtin`]: plugin crates linked into this binary (cargo features of `egress-host`), found
//!   through `inventory`;
//! * [`dylib`]: shared libraries exporting `egress_plugin_entry_v1` (C ABI, version-checked,
//!   panics caught in the plugin, never unloaded);
//! * `wasm` (feature `wasm`): WebAssembly components of `egress:plugin/sink-plugin@1.x`, each
//!   object in its own instance with memory and time limits and no ambient authority.
//!
//! Layout renderers (API 1.1, [`egress_plugin_api::RendererPlugin`]) come through the same
//! three loaders and the same entries; [`templates`] is the compiled-in one serving the bundled
//! layouts. Live destinations (API 1.2, [`egress_plugin_api::LivePlugin`]: RTMP, SRT) come
//! compiled in or as dylibs (a WASM component has no sockets);
//! [`PluginRegistry::live_for_scheme`] says which serves a stream URL's scheme.
//!
//! [`PluginRegistry::load`] reads the `plugins:` config, loads, checks names (and that no two
//! renderers claim one layout) and validates each plugin's config, reporting every problem
//! against its `plugins[i]` key.

pub mod builtin;
pub mod dylib;
mod error;
mod registry;
mod report;
pub mod templates;
#[cfg(feature = "wasm")]
pub mod wasm;
mod worker_errors;

pub use error::{PluginError, PluginErrors};
pub use registry::{
    ActiveLive, ActivePlugin, ActiveRenderer, DEFAULT_LAYOUT, PluginRegistry, Source,
};
pub use report::{active_plugins_report, validate_plugins};
