//! What `egress validate` says about plugins.

use std::fmt::Write;

use super::registry::PluginRegistry;
use crate::config::{ServiceConfig, redact_plugin_config};

/// The active plugins as YAML comments (so that the printed config still loads), sinks then
/// layout renderers with their layouts:
///
/// ```text
/// # active plugins:
/// #   file      0.1.0  api 1.1  builtin
/// #   http-put  0.1.0  api 1.1  wasm /opt/egress/http_put.wasm
/// # active renderers:
/// #   templates     0.1.0  api 1.1  builtin  layouts: grid, grid-dark, …
/// #   solid-layout  0.1.0  api 1.1  dylib /opt/libsolid.so  layouts: solid-red, …
/// ```
pub fn active_plugins_report(registry: &PluginRegistry) -> String {
    let mut out = sinks_report(registry);
    out.push_str(&renderers_report(registry));
    out
}

fn renderers_report(registry: &PluginRegistry) -> String {
    let active = registry.renderers();
    if active.is_empty() {
        return "# active renderers: none\n".to_string();
    }
    let name_w = active.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let version_w = active
        .iter()
        .map(|p| p.descriptor.version.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("# active renderers:\n");
    for r in active {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "#   {:name_w$}  {:version_w$}  api {}  {}  layouts: {}",
            r.name,
            r.descriptor.version,
            r.descriptor.api,
            r.source,
            r.layouts.join(", ")
        );
    }
    out
}

fn sinks_report(registry: &PluginRegistry) -> String {
    let active = registry.active();
    if active.is_empty() {
        return "# active plugins: none\n".to_string();
    }
    let name_w = active.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let version_w = active
        .iter()
        .map(|p| p.descriptor.version.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("# active plugins:\n");
    for p in active {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "#   {:name_w$}  {:version_w$}  api {}  {}",
            p.name, p.descriptor.version, p.descriptor.api, p.source
        );
    }
    out
}

/// Load the config's plugins as the service would: the report, or one message per problem.
/// Config fields a plugin's schema marks `"writeOnly"` are redacted in `config` (for printing).
pub fn validate_plugins(config: &mut ServiceConfig) -> Result<String, Vec<String>> {
    let registry = PluginRegistry::load(config.plugins.as_deref())
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    if let Some(entries) = config.plugins.as_mut() {
        // Every entry loaded (or `load` failed); each as a sink, a renderer or both.
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.config = redact_plugin_config(&entry.config, &registry.secret_fields_of_entry(i));
        }
    }
    Ok(active_plugins_report(&registry))
}
