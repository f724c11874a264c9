//! The compiled-in loader: plugin crates linked into this binary register a [`BuiltinSink`], a
//! [`BuiltinRenderer`] or a [`BuiltinLive`] with `inventory` (through `export_sink!` /
//! `export_renderer!` / `export_live!`); cargo features of `egress-host` decide which crates
//! are linked. The host's own `templates`
//! renderer is a static of this crate, listed with them.

use egress_plugin_api::{
    BuiltinLive, BuiltinRenderer, BuiltinSink, LoadedLive, LoadedPlugin, LoadedRenderer,
};

use super::templates::TEMPLATES;

// Name each feature-selected plugin crate so that the linker keeps it (and with it, its
// `inventory` registration) even though nothing else here refers to it.
#[cfg(feature = "azure")]
use egress_plugin_azure as _;
#[cfg(feature = "file")]
use egress_plugin_file as _;
#[cfg(feature = "gcs")]
use egress_plugin_gcs as _;
#[cfg(feature = "rtmp")]
use egress_plugin_rtmp as _;
#[cfg(feature = "s3")]
use egress_plugin_s3 as _;
#[cfg(feature = "srt")]
use egress_plugin_srt as _;

/// The compiled-in sink plugin called `name`.
pub fn find(name: &str) -> Option<&'static BuiltinSink> {
    BuiltinSink::iter().find(|p| p.descriptor().name == name)
}

/// The compiled-in renderer called `name`.
pub fn find_renderer(name: &str) -> Option<&'static BuiltinRenderer> {
    renderers().find(|p| p.descriptor().name == name)
}

fn renderers() -> impl Iterator<Item = &'static BuiltinRenderer> {
    std::iter::once(&TEMPLATES).chain(BuiltinRenderer::iter())
}

/// Names of every compiled-in sink plugin, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = BuiltinSink::iter().map(|p| p.descriptor().name).collect();
    names.sort();
    names
}

/// Names of every compiled-in renderer, sorted.
pub fn renderer_names() -> Vec<String> {
    let mut names: Vec<String> = renderers().map(|p| p.descriptor().name).collect();
    names.sort();
    names
}

/// The compiled-in live destination called `name`.
pub fn find_live(name: &str) -> Option<&'static BuiltinLive> {
    BuiltinLive::iter().find(|p| p.descriptor().name == name)
}

/// Names of every compiled-in live destination, sorted.
pub fn live_names() -> Vec<String> {
    let mut names: Vec<String> = BuiltinLive::iter().map(|p| p.descriptor().name).collect();
    names.sort();
    names
}

/// Names of every compiled-in plugin of any kind, sorted (for error messages).
pub fn all_names() -> Vec<String> {
    let mut names = names();
    names.extend(renderer_names());
    names.extend(live_names());
    names.sort();
    names.dedup();
    names
}
