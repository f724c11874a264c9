//! The active plugins: loaded from the `plugins:` config, named, validated and configured.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use egress_plugin_api::{Descriptor, LoadedPlugin, SinkError, SinkFactory, Value};

use super::builtin;
use super::dylib::DylibPlugin;
use super::error::{PluginError, PluginErrors};
use crate::config::{PluginEntry, PluginSource};

/// Which loader an active plugin came through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin,
    Dylib(PathBuf),
    Wasm(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::Dylib(p) => write!(f, "dylib {}", p.display()),
            Source::Wasm(p) => write!(f, "wasm {}", p.display()),
        }
    }
}

/// A plugin that loaded and accepted its config.
pub struct ActivePlugin {
    /// The name lookups use (the config's `name:`, else the plugin's own).
    pub name: String,
    pub descriptor: Descriptor,
    pub source: Source,
    plugin: Arc<dyn LoadedPlugin>,
    factory: Arc<dyn SinkFactory>,
    /// The entry's `config:` (null when none), the base of per-request configs.
    config: Value,
}

impl ActivePlugin {
    /// The `config:` it was loaded with.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// A sink configured for one use: the plugin's `create` with `config` (validated first).
    pub fn configure(&self, config: &Value) -> Result<Arc<dyn SinkFactory>, SinkError> {
        self.plugin.validate(config)?;
        Ok(Arc::from(self.plugin.create(config)?))
    }

    /// The configured sink.
    pub fn factory(&self) -> Arc<dyn SinkFactory> {
        self.factory.clone()
    }

    /// The plugin itself (to configure it again, e.g. for a per-request config).
    pub fn plugin(&self) -> Arc<dyn LoadedPlugin> {
        self.plugin.clone()
    }
}

impl fmt::Debug for ActivePlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivePlugin")
            .field("name", &self.name)
            .field("version", &self.descriptor.version)
            .field("api", &self.descriptor.api)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Every active sink plugin, in config order.
#[derive(Debug, Default)]
pub struct PluginRegistry {
    active: Vec<ActivePlugin>,
}

impl PluginRegistry {
    /// Load what `plugins:` lists. Without a `plugins:` key (`None`), every compiled-in plugin
    /// that works with its default config (a plugin that needs settings is skipped, with a
    /// log line). Fails with every problem found, each naming its key.
    pub fn load(entries: Option<&[PluginEntry]>) -> Result<Self, PluginErrors> {
        let mut active: Vec<ActivePlugin> = Vec::new();
        let mut errors = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        match entries {
            None => {
                for name in builtin::names() {
                    let entry = PluginEntry {
                        name: None,
                        source: PluginSource::Builtin(name),
                        sandbox: None,
                        config: Value::Null,
                    };
                    match load_entry("plugins", &entry) {
                        Ok(p) => {
                            active.push(p);
                            keys.push("plugins".into());
                        }
                        // Nobody asked for it: not an error, but worth saying why it is absent.
                        Err(e) => tracing::info!(
                            %e,
                            "Compiled-in sink plugin not activated: it needs settings in plugins:."
                        ),
                    }
                }
            }
            Some(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    let key = format!("plugins[{i}]");
                    match load_entry(&key, entry) {
                        Ok(p) => {
                            if let Some(j) = active.iter().position(|a| a.name == p.name) {
                                errors.push(PluginError::Entry {
                                    field: format!("{key}.name"),
                                    plugin: Some(p.name.clone()),
                                    source_label: entry.source.to_string(),
                                    message: format!(
                                        "plugin name {:?} is already used by {}; give one of them another name:",
                                        p.name, keys[j]
                                    ),
                                });
                            } else {
                                active.push(p);
                                keys.push(key);
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        if errors.is_empty() {
            for p in &active {
                tracing::info!(
                    plugin = %p.name,
                    version = %p.descriptor.version,
                    api = %p.descriptor.api,
                    source = %p.source,
                    "Sink plugin active."
                );
            }
            Ok(PluginRegistry { active })
        } else {
            Err(PluginErrors(errors))
        }
    }

    /// The active plugins, in config order.
    pub fn active(&self) -> &[ActivePlugin] {
        &self.active
    }

    pub fn get(&self, name: &str) -> Option<&ActivePlugin> {
        self.active.iter().find(|p| p.name == name)
    }

    /// The configured sink called `name`, or an error listing what is active.
    pub fn sink(&self, name: &str) -> Result<Arc<dyn SinkFactory>, PluginError> {
        self.get(name)
            .map(ActivePlugin::factory)
            .ok_or_else(|| PluginError::NotActive {
                name: name.to_string(),
                active: self.active.iter().map(|p| p.name.clone()).collect(),
            })
    }

    /// Run every plugin's health check (they probe their destinations).
    pub async fn health_check(&self) -> Vec<(String, Result<(), SinkError>)> {
        let mut out = Vec::with_capacity(self.active.len());
        for p in &self.active {
            out.push((p.name.clone(), p.factory.health_check().await));
        }
        out
    }
}

fn load_entry(key: &str, entry: &PluginEntry) -> Result<ActivePlugin, PluginError> {
    let label = entry.source.to_string();
    let fail = |field: String, plugin: Option<&str>, message: String| PluginError::Entry {
        field,
        plugin: plugin.map(str::to_string),
        source_label: label.clone(),
        message,
    };
    let (plugin, source): (Arc<dyn LoadedPlugin>, Source) = match &entry.source {
        PluginSource::Builtin(name) => match builtin::find(name) {
            Some(p) => (Arc::new(BuiltinRef(p)), Source::Builtin),
            None => {
                let compiled = builtin::names();
                return Err(fail(
                    format!("{key}.builtin"),
                    None,
                    format!(
                        "no plugin {name:?} is compiled into this egress (compiled in: {}); build with its cargo feature or load it as a dylib or wasm plugin",
                        if compiled.is_empty() {
                            "none".to_string()
                        } else {
                            compiled.join(", ")
                        }
                    ),
                ));
            }
        },
        PluginSource::Dylib(path) => match DylibPlugin::load(path) {
            Ok(p) => (Arc::new(p), Source::Dylib(path.clone())),
            Err(e) => return Err(fail(format!("{key}.dylib"), None, e.to_string())),
        },
        PluginSource::Wasm(path) => {
            load_wasm(entry, path).map_err(|m| fail(format!("{key}.wasm"), None, m))?
        }
    };
    let descriptor = plugin.descriptor();
    let name = entry
        .name
        .clone()
        .unwrap_or_else(|| descriptor.name.clone());
    let config_error = |e: SinkError| {
        let (field, message) = match e.field() {
            Some(f) if e.is_config() => (format!("{key}.config.{f}"), e.message().to_string()),
            _ if e.is_config() => (format!("{key}.config"), e.message().to_string()),
            _ => (format!("{key}.config"), e.to_string()),
        };
        fail(field, Some(&name), message)
    };
    plugin.validate(&entry.config).map_err(config_error)?;
    let factory: Arc<dyn SinkFactory> =
        Arc::from(plugin.create(&entry.config).map_err(config_error)?);
    Ok(ActivePlugin {
        name,
        descriptor,
        source,
        plugin,
        factory,
        config: entry.config.clone(),
    })
}

#[cfg(feature = "wasm")]
fn load_wasm(
    entry: &PluginEntry,
    path: &std::path::Path,
) -> Result<(Arc<dyn LoadedPlugin>, Source), String> {
    let sandbox = entry
        .sandbox
        .clone()
        .unwrap_or_else(super::wasm::default_sandbox);
    super::wasm::WasmPlugin::load(path, sandbox)
        .map(|p| {
            (
                Arc::new(p) as Arc<dyn LoadedPlugin>,
                Source::Wasm(path.to_path_buf()),
            )
        })
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "wasm"))]
fn load_wasm(
    _entry: &PluginEntry,
    _path: &std::path::Path,
) -> Result<(Arc<dyn LoadedPlugin>, Source), String> {
    Err(
        "this egress was built without the WASM loader (cargo feature `wasm` of egress-host)"
            .into(),
    )
}

/// A `&'static BuiltinSink` as an `Arc<dyn LoadedPlugin>`.
struct BuiltinRef(&'static egress_plugin_api::BuiltinSink);

impl LoadedPlugin for BuiltinRef {
    fn descriptor(&self) -> Descriptor {
        self.0.descriptor()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        self.0.validate(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn SinkFactory>, SinkError> {
        self.0.create(config)
    }
}
