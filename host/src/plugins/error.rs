//! Plugin errors: each names the config key at fault and, when known, the plugin.

use std::fmt;

/// One problem with one plugin, or a lookup of a plugin that is not active.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// A `plugins:` entry that could not be loaded or configured.
    #[error("{field} ({}): {message}", Plugin(plugin.as_deref(), source_label))]
    Entry {
        /// Dotted config key: `plugins[1].dylib`, `plugins[0].config.url`.
        field: String,
        /// The plugin's name, once known.
        plugin: Option<String>,
        /// `builtin file`, `dylib /opt/libx.so`, `wasm /opt/x.wasm`.
        source_label: String,
        message: String,
    },
    /// A request or a storage setting names a sink whose plugin is not active.
    #[error(
        "no active sink plugin is named {name:?} (active: {}); add it to plugins: or build egress with its cargo feature",
        List(active)
    )]
    NotActive { name: String, active: Vec<String> },
    /// A request names a layout no active renderer serves.
    #[error(
        "no active layout renderer serves layout {layout:?} (layouts: {}); add a renderer for it to plugins:",
        List(known)
    )]
    UnknownLayout { layout: String, known: Vec<String> },
    /// A stream URL whose scheme no active live destination serves.
    #[error(
        "no active live destination serves {scheme}:// URLs (served: {}); build egress with its plugin (cargo features `rtmp`, `srt`) or add it to plugins:",
        List(served)
    )]
    NoLiveDestination { scheme: String, served: Vec<String> },
}

struct Plugin<'a>(Option<&'a str>, &'a str);

impl fmt::Display for Plugin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, "plugin {name}, {}", self.1),
            None => f.write_str(self.1),
        }
    }
}

struct List<'a>(&'a [String]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

/// Every problem found while loading the `plugins:` section; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(&self.0))]
pub struct PluginErrors(pub Vec<PluginError>);

struct Lines<'a>(&'a [PluginError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_and_plugin() {
        let e = PluginError::Entry {
            field: "plugins[0].config.url".into(),
            plugin: Some("http-put".into()),
            source_label: "dylib /opt/libhttp_put.so".into(),
            message: "must be an http:// or https:// URL".into(),
        };
        assert_eq!(
            e.to_string(),
            "plugins[0].config.url (plugin http-put, dylib /opt/libhttp_put.so): must be an http:// or https:// URL"
        );
        let e = PluginError::NotActive {
            name: "s3".into(),
            active: vec!["file".into()],
        };
        assert!(
            e.to_string()
                .starts_with("no active sink plugin is named \"s3\" (active: file)")
        );
    }
}
