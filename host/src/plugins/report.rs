//! What `egress validate` says about plugins.

use std::fmt::Write;

use super::registry::PluginRegistry;
use crate::config::{ServiceConfig, redact_plugin_config};

/// The active plugins as YAML comments (so that the printed config still loads), sinks, then
/// layout renderers with their layouts, then live destinations with their schemes:
///
/// ```text
/// # active plugins:
/// #   file      0.1.0  api 1.1  builtin
/// #   http-put  0.1.0  api 1.1  wasm /opt/egress/http_put.wasm
/// # active renderers:
/// #   templates     0.1.0  api 1.1  builtin  layouts: grid, grid-dark, …
/// #   solid-layout  0.1.0  api 1.1  dylib /opt/libsolid.so  layouts: solid-red, …
/// # active live destinations:
/// #   rtmp  0.1.0  api 1.2  builtin  schemes: rtmp, rtmps  format: flv
/// #   srt   0.1.0  api 1.2  builtin  schemes: srt  format: mpegts
/// ```
pub fn active_plugins_report(registry: &PluginRegistry) -> String {
    let sinks: Vec<Row> = registry
        .active()
        .iter()
        .map(|p| Row {
            name: &p.name,
            version: &p.descriptor.version,
            api: p.descriptor.api.to_string(),
            source: p.source.to_string(),
            tail: String::new(),
        })
        .collect();
    let renderers: Vec<Row> = registry
        .renderers()
        .iter()
        .map(|r| Row {
            name: &r.name,
            version: &r.descriptor.version,
            api: r.descriptor.api.to_string(),
            source: r.source.to_string(),
            tail: format!("  layouts: {}", r.layouts.join(", ")),
        })
        .collect();
    let live: Vec<Row> = registry
        .live()
        .iter()
        .map(|l| Row {
            name: &l.name,
            version: &l.descriptor.version,
            api: l.descriptor.api.to_string(),
            source: l.source.to_string(),
            tail: format!(
                "  schemes: {}  format: {}",
                l.descriptor.schemes.join(", "),
                l.descriptor.format
            ),
        })
        .collect();
    let mut out = table("active plugins", &sinks);
    out.push_str(&table("active renderers", &renderers));
    out.push_str(&table("active live destinations", &live));
    out
}

/// One plugin's line.
struct Row<'a> {
    name: &'a str,
    version: &'a str,
    api: String,
    source: String,
    /// Appended as it is (renderers: their layouts).
    tail: String,
}

/// A titled list of plugins, names and versions in aligned columns.
fn table(title: &str, rows: &[Row]) -> String {
    if rows.is_empty() {
        return format!("# {title}: none\n");
    }
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let version_w = rows.iter().map(|r| r.version.len()).max().unwrap_or(0);
    let mut out = format!("# {title}:\n");
    for r in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "#   {:name_w$}  {:version_w$}  api {}  {}{}",
            r.name, r.version, r.api, r.source, r.tail
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
        // Every entry loaded (or `load` failed); each as a sink, a renderer, a live
        // destination or several.
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.config = redact_plugin_config(&entry.config, &registry.secret_fields_of_entry(i));
        }
    }
    Ok(active_plugins_report(&registry))
}
