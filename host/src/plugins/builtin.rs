//! The compiled-in loader: plugin crates linked into this binary register a
//! [`BuiltinSink`] with `inventory` (through `export_sink!`); cargo features of `egress-host`
//! decide which crates are linked.

use egress_plugin_api::{BuiltinSink, LoadedPlugin};

// Name each feature-selected plugin crate so that the linker keeps it (and with it, its
// `inventory` registration) even though nothing else here refers to it.
#[cfg(feature = "file")]
use egress_plugin_file as _;
#[cfg(feature = "s3")]
use egress_plugin_s3 as _;
#[cfg(feature = "azure")]
use egress_plugin_azure as _;
#[cfg(feature = "gcs")]
use egress_plugin_gcs as _;

/// The compiled-in plugin called `name`.
pub fn find(name: &str) -> Option<&'static BuiltinSink> {
    BuiltinSink::iter().find(|p| p.descriptor().name == name)
}

/// Names of every compiled-in plugin, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = BuiltinSink::iter().map(|p| p.descriptor().name).collect();
    names.sort();
    names
}
