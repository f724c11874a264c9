//! What `egress validate` says about plugins.

use std::fmt::Write;

use super::registry::PluginRegistry;
use crate::config::{ServiceConfig, redact_plugin_config};

/// The active plugins as YAML comments (so that the printed config still loads):
///
/// ```text
/// # active plugins:
/// #   file      0.1.0  api 1.0  builtin
/// #   http-put  0.1.0  api 1.0  wasm /opt/egress/http_put.wasm
/// ```
pub fn active_plugins_report(registry: &PluginRegistry) -> String {
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
        // Every entry loaded (or `load` failed), in order.
        for (entry, active) in entries.iter_mut().zip(registry.active()) {
            entry.config = redact_plugin_config(&entry.config, &active.descriptor.secret_fields());
        }
    }
    Ok(active_plugins_report(&registry))
}
