//! The active plugins: loaded from the `plugins:` config, named, validated and configured.
//! Sinks, layout renderers and live destinations come through the same entries and loaders; an
//! entry may yield any of them (a dylib with several tables).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use egress_plugin_api::{
    Descriptor, LayoutRenderer, LiveDescriptor, LiveFactory, LoadedLive, LoadedPlugin,
    LoadedRenderer, SinkError, SinkFactory, Value,
};

use super::builtin;
use super::error::{PluginError, PluginErrors};
use super::templates;
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
    /// Index of its `plugins:` entry (none when activated without one).
    entry: Option<usize>,
}

/// A layout renderer that loaded and accepted its config.
pub struct ActiveRenderer {
    /// The config's `name:`, else the plugin's own.
    pub name: String,
    pub descriptor: Descriptor,
    pub source: Source,
    /// The layouts it answers (asked once, at load).
    pub layouts: Vec<String>,
    renderer: Arc<dyn LayoutRenderer>,
    entry: Option<usize>,
}

impl ActiveRenderer {
    pub fn renderer(&self) -> Arc<dyn LayoutRenderer> {
        self.renderer.clone()
    }
}

impl fmt::Debug for ActiveRenderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveRenderer")
            .field("name", &self.name)
            .field("version", &self.descriptor.version)
            .field("api", &self.descriptor.api)
            .field("source", &self.source)
            .field("layouts", &self.layouts)
            .finish_non_exhaustive()
    }
}

/// A live destination (API 1.2) that loaded and accepted its config.
pub struct ActiveLive {
    /// The config's `name:`, else the plugin's own.
    pub name: String,
    pub descriptor: LiveDescriptor,
    pub source: Source,
    plugin: Arc<dyn LoadedLive>,
    factory: Arc<dyn LiveFactory>,
    entry: Option<usize>,
}

impl ActiveLive {
    /// The configured destination: connects to URLs of its schemes.
    pub fn factory(&self) -> Arc<dyn LiveFactory> {
        self.factory.clone()
    }

    /// The plugin itself (to configure it again, e.g. for a per-request config).
    pub fn plugin(&self) -> Arc<dyn LoadedLive> {
        self.plugin.clone()
    }
}

impl fmt::Debug for ActiveLive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveLive")
            .field("name", &self.name)
            .field("version", &self.descriptor.version)
            .field("api", &self.descriptor.api)
            .field("source", &self.source)
            .field("schemes", &self.descriptor.schemes)
            .field("format", &self.descriptor.format)
            .finish_non_exhaustive()
    }
}

/// The layout an empty request layout means: the bundled template draws a grid for none.
pub const DEFAULT_LAYOUT: &str = "grid";

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

/// Every active sink plugin, renderer and live destination, in config order.
#[derive(Debug, Default)]
pub struct PluginRegistry {
    active: Vec<ActivePlugin>,
    renderers: Vec<ActiveRenderer>,
    live: Vec<ActiveLive>,
}

/// What one entry yielded.
struct Loaded {
    sink: Option<ActivePlugin>,
    renderer: Option<ActiveRenderer>,
    live: Option<ActiveLive>,
}

impl PluginRegistry {
    /// Load what `plugins:` lists. Without a `plugins:` key (`None`), every compiled-in plugin
    /// that works with its default config (a plugin that needs settings is skipped, with a
    /// log line). When the list names no renderer, the compiled-in `templates` renderer (the
    /// bundled layouts) is active, as the Go egress always serves them; a list that names
    /// renderers gets exactly those. Fails with every problem found, each naming its key.
    pub fn load(entries: Option<&[PluginEntry]>) -> Result<Self, PluginErrors> {
        let mut registry = PluginRegistry::default();
        let mut errors = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut renderer_keys: Vec<String> = Vec::new();
        let mut live_keys: Vec<String> = Vec::new();
        match entries {
            None => {
                let mut builtins = builtin::names()
                    .into_iter()
                    .chain(builtin::renderer_names())
                    .chain(builtin::live_names())
                    .collect::<Vec<_>>();
                // One entry per name: a crate that registers two kinds loads once, with both.
                builtins.sort();
                builtins.dedup();
                for name in builtins {
                    let entry = PluginEntry {
                        name: None,
                        source: PluginSource::Builtin(name),
                        sandbox: None,
                        config: Value::Null,
                    };
                    match load_entry("plugins", None, &entry) {
                        Ok(loaded) => {
                            if let Some(p) = loaded.sink {
                                registry.active.push(p);
                                keys.push("plugins".into());
                            }
                            if let Some(r) = loaded.renderer {
                                registry.add_renderer(
                                    r,
                                    "plugins",
                                    &mut renderer_keys,
                                    &mut errors,
                                );
                            }
                            if let Some(l) = loaded.live {
                                registry.add_live(l, "plugins", &mut live_keys, &mut errors);
                            }
                        }
                        // Nobody asked for it: not an error, but worth saying why it is absent.
                        Err(e) => tracing::info!(
                            %e,
                            "Compiled-in plugin not activated: it needs settings in plugins:."
                        ),
                    }
                }
            }
            Some(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    let key = format!("plugins[{i}]");
                    let loaded = match load_entry(&key, Some(i), entry) {
                        Ok(loaded) => loaded,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    };
                    if let Some(p) = loaded.sink {
                        if let Some(j) = registry.active.iter().position(|a| a.name == p.name) {
                            errors.push(duplicate_name(&key, entry, &p.name, &keys[j]));
                        } else {
                            registry.active.push(p);
                            keys.push(key.clone());
                        }
                    }
                    if let Some(r) = loaded.renderer {
                        if let Some(j) = registry.renderers.iter().position(|a| a.name == r.name) {
                            errors.push(duplicate_name(&key, entry, &r.name, &renderer_keys[j]));
                        } else {
                            registry.add_renderer(r, &key, &mut renderer_keys, &mut errors);
                        }
                    }
                    if let Some(l) = loaded.live {
                        if let Some(j) = registry.live.iter().position(|a| a.name == l.name) {
                            errors.push(duplicate_name(&key, entry, &l.name, &live_keys[j]));
                        } else {
                            registry.add_live(l, &key, &mut live_keys, &mut errors);
                        }
                    }
                }
                // As with renderers: a list that names no live destination keeps the
                // compiled-in ones (RTMP and SRT work without settings, as in Go), one that
                // names any gets exactly those.
                if registry.live.is_empty() && errors.is_empty() {
                    for name in builtin::live_names() {
                        let entry = PluginEntry {
                            name: None,
                            source: PluginSource::Builtin(name),
                            sandbox: None,
                            config: Value::Null,
                        };
                        match load_entry("plugins", None, &entry) {
                            Ok(Loaded { live: Some(l), .. }) => {
                                registry.add_live(l, "plugins", &mut live_keys, &mut errors)
                            }
                            Ok(_) => {}
                            Err(e) => tracing::info!(
                                %e,
                                "Compiled-in live destination not activated: it needs settings in plugins:."
                            ),
                        }
                    }
                }
                if registry.renderers.is_empty() && errors.is_empty() {
                    let entry = PluginEntry {
                        name: None,
                        source: PluginSource::Builtin(templates::NAME.into()),
                        sandbox: None,
                        config: Value::Null,
                    };
                    match load_entry("plugins", None, &entry) {
                        Ok(Loaded {
                            renderer: Some(r), ..
                        }) => registry.add_renderer(r, "plugins", &mut renderer_keys, &mut errors),
                        Ok(_) => {}
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        if errors.is_empty() {
            for p in &registry.active {
                tracing::info!(
                    plugin = %p.name,
                    version = %p.descriptor.version,
                    api = %p.descriptor.api,
                    source = %p.source,
                    "Sink plugin active."
                );
            }
            for r in &registry.renderers {
                tracing::info!(
                    plugin = %r.name,
                    version = %r.descriptor.version,
                    api = %r.descriptor.api,
                    source = %r.source,
                    layouts = ?r.layouts,
                    "Layout renderer active."
                );
            }
            for l in &registry.live {
                tracing::info!(
                    plugin = %l.name,
                    version = %l.descriptor.version,
                    api = %l.descriptor.api,
                    source = %l.source,
                    schemes = ?l.descriptor.schemes,
                    format = %l.descriptor.format,
                    "Live destination active."
                );
            }
            Ok(registry)
        } else {
            Err(PluginErrors(errors))
        }
    }

    /// Add `r` unless one of its layouts is already served: a layout has one renderer, so two
    /// claiming it is a start-up error naming both.
    fn add_renderer(
        &mut self,
        r: ActiveRenderer,
        key: &str,
        keys: &mut Vec<String>,
        errors: &mut Vec<PluginError>,
    ) {
        let mut clash = false;
        for layout in &r.layouts {
            if let Some((j, other)) = self
                .renderers
                .iter()
                .enumerate()
                .find(|(_, o)| o.layouts.contains(layout))
            {
                clash = true;
                errors.push(PluginError::Entry {
                    field: key.to_string(),
                    plugin: Some(r.name.clone()),
                    source_label: r.source.to_string(),
                    message: format!(
                        "layout {layout:?} is served by both renderer {} ({}) and renderer {} ({key}); a layout has one renderer: remove one of them",
                        other.name, keys[j], r.name
                    ),
                });
            }
        }
        if !clash {
            self.renderers.push(r);
            keys.push(key.to_string());
        }
    }

    /// Add `l` unless one of its schemes is already served: a scheme has one destination, so
    /// two claiming it is a start-up error naming both.
    fn add_live(
        &mut self,
        l: ActiveLive,
        key: &str,
        keys: &mut Vec<String>,
        errors: &mut Vec<PluginError>,
    ) {
        let mut clash = false;
        for (j, other) in self.live.iter().enumerate() {
            let shared: Vec<String> = l
                .descriptor
                .schemes
                .iter()
                .filter(|s| other.descriptor.schemes.contains(s))
                .map(|s| format!("{s:?}"))
                .collect();
            if shared.is_empty() {
                continue;
            }
            clash = true;
            let what = match shared.as_slice() {
                [one] => format!("scheme {one} is"),
                many => format!("schemes {} are", many.join(", ")),
            };
            errors.push(PluginError::Entry {
                field: key.to_string(),
                plugin: Some(l.name.clone()),
                source_label: l.source.to_string(),
                message: format!(
                    "{what} served by both live destination {} ({}) and live destination {} ({key}); a scheme has one destination: remove one of them",
                    other.name, keys[j], l.name
                ),
            });
        }
        if !clash {
            self.live.push(l);
            keys.push(key.to_string());
        }
    }

    /// The active live destinations, in config order.
    pub fn live(&self) -> &[ActiveLive] {
        &self.live
    }

    /// The live destination serving URLs of `scheme` (`rtmp`, `rtmps`, `srt`; any case), or an
    /// error naming the scheme and listing the served ones (a slim build without the `rtmp`
    /// feature answers `rtmp` with this error, which StartEgress returns).
    pub fn live_for_scheme(&self, scheme: &str) -> Result<&ActiveLive, PluginError> {
        let wanted = scheme.trim_end_matches("://").to_ascii_lowercase();
        self.live
            .iter()
            .find(|l| l.descriptor.schemes.contains(&wanted))
            .ok_or_else(|| {
                let mut served: Vec<String> = self
                    .live
                    .iter()
                    .flat_map(|l| l.descriptor.schemes.iter().cloned())
                    .collect();
                served.sort();
                PluginError::NoLiveDestination {
                    scheme: wanted,
                    served,
                }
            })
    }

    /// The active sink plugins, in config order.
    pub fn active(&self) -> &[ActivePlugin] {
        &self.active
    }

    /// The active layout renderers, in config order.
    pub fn renderers(&self) -> &[ActiveRenderer] {
        &self.renderers
    }

    pub fn get(&self, name: &str) -> Option<&ActivePlugin> {
        self.active.iter().find(|p| p.name == name)
    }

    /// The renderer that serves `layout` (the empty layout is [`DEFAULT_LAYOUT`]), or an error
    /// naming the layout and listing the served ones.
    pub fn renderer_for(&self, layout: &str) -> Result<&ActiveRenderer, PluginError> {
        let wanted = if layout.is_empty() {
            DEFAULT_LAYOUT
        } else {
            layout
        };
        // A layout no renderer claims goes to the bundled templates when they are active, as
        // in Go, whose template page draws any other name by its prefix (else as grid).
        self.renderers
            .iter()
            .find(|r| r.layouts.iter().any(|l| l == wanted))
            .or_else(|| {
                self.renderers.iter().find(|r| {
                    matches!(r.source, Source::Builtin) && r.descriptor.name == templates::NAME
                })
            })
            .ok_or_else(|| {
                let mut known: Vec<String> = self
                    .renderers
                    .iter()
                    .flat_map(|r| r.layouts.iter().cloned())
                    .collect();
                known.sort();
                PluginError::UnknownLayout {
                    layout: wanted.to_string(),
                    known,
                }
            })
    }

    /// The secret config fields of the plugin loaded from `plugins[entry]` (for redaction).
    pub fn secret_fields_of_entry(&self, entry: usize) -> Vec<String> {
        let sink = self.active.iter().filter(|p| p.entry == Some(entry));
        let renderer = self.renderers.iter().filter(|r| r.entry == Some(entry));
        let live = self.live.iter().filter(|l| l.entry == Some(entry));
        let mut fields: Vec<String> = sink
            .flat_map(|p| p.descriptor.secret_fields())
            .chain(renderer.flat_map(|r| r.descriptor.secret_fields()))
            .chain(live.flat_map(|l| l.descriptor.secret_fields()))
            .collect();
        fields.sort();
        fields.dedup();
        fields
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

fn duplicate_name(key: &str, entry: &PluginEntry, name: &str, other_key: &str) -> PluginError {
    PluginError::Entry {
        field: format!("{key}.name"),
        plugin: Some(name.to_string()),
        source_label: entry.source.to_string(),
        message: format!(
            "plugin name {name:?} is already used by {other_key}; give one of them another name:"
        ),
    }
}

fn load_entry(key: &str, index: Option<usize>, entry: &PluginEntry) -> Result<Loaded, PluginError> {
    let label = entry.source.to_string();
    let fail = |field: String, plugin: Option<&str>, message: String| PluginError::Entry {
        field,
        plugin: plugin.map(str::to_string),
        source_label: label.clone(),
        message,
    };
    let (sink, renderer, live, source): LoadedParts = match &entry.source {
        PluginSource::Builtin(name) => {
            let sink =
                builtin::find(name).map(|p| Arc::new(BuiltinRef(p)) as Arc<dyn LoadedPlugin>);
            let renderer = builtin::find_renderer(name)
                .map(|p| Arc::new(BuiltinRendererRef(p)) as Arc<dyn LoadedRenderer>);
            let live = builtin::find_live(name)
                .map(|p| Arc::new(BuiltinLiveRef(p)) as Arc<dyn LoadedLive>);
            if sink.is_none() && renderer.is_none() && live.is_none() {
                let compiled = builtin::all_names();
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
            (sink, renderer, live, Source::Builtin)
        }
        PluginSource::Dylib(path) => match super::dylib::load(path) {
            Ok(lib) => (
                lib.sink.map(|p| Arc::new(p) as Arc<dyn LoadedPlugin>),
                lib.renderer.map(|r| Arc::new(r) as Arc<dyn LoadedRenderer>),
                lib.live.map(|l| Arc::new(l) as Arc<dyn LoadedLive>),
                Source::Dylib(path.clone()),
            ),
            Err(e) => return Err(fail(format!("{key}.dylib"), None, e.to_string())),
        },
        PluginSource::Wasm(path) => {
            load_wasm(entry, path).map_err(|m| fail(format!("{key}.wasm"), None, m))?
        }
    };
    let config_error = |name: &str, e: SinkError| {
        let (field, message) = match e.field() {
            Some(f) if e.is_config() => (format!("{key}.config.{f}"), e.message().to_string()),
            _ if e.is_config() => (format!("{key}.config"), e.message().to_string()),
            _ => (format!("{key}.config"), e.to_string()),
        };
        fail(field, Some(name), message)
    };
    let sink = match sink {
        Some(plugin) => {
            let descriptor = plugin.descriptor();
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| descriptor.name.clone());
            plugin
                .validate(&entry.config)
                .map_err(|e| config_error(&name, e))?;
            let factory: Arc<dyn SinkFactory> = Arc::from(
                plugin
                    .create(&entry.config)
                    .map_err(|e| config_error(&name, e))?,
            );
            Some(ActivePlugin {
                name,
                descriptor,
                source: source.clone(),
                plugin,
                factory,
                config: entry.config.clone(),
                entry: index,
            })
        }
        None => None,
    };
    let renderer = match renderer {
        Some(plugin) => {
            let descriptor = plugin.descriptor();
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| descriptor.name.clone());
            plugin
                .validate(&entry.config)
                .map_err(|e| config_error(&name, e))?;
            let renderer: Arc<dyn LayoutRenderer> = Arc::from(
                plugin
                    .create(&entry.config)
                    .map_err(|e| config_error(&name, e))?,
            );
            let layouts = renderer.layouts();
            if layouts.is_empty() {
                return Err(fail(
                    key.to_string(),
                    Some(&name),
                    "the renderer serves no layout".into(),
                ));
            }
            Some(ActiveRenderer {
                name,
                descriptor,
                source: source.clone(),
                layouts,
                renderer,
                entry: index,
            })
        }
        None => None,
    };
    let live = match live {
        Some(plugin) => {
            let descriptor = plugin.descriptor();
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| descriptor.name.clone());
            if descriptor.schemes.is_empty() {
                return Err(fail(
                    key.to_string(),
                    Some(&name),
                    "the live destination serves no URL scheme".into(),
                ));
            }
            plugin
                .validate(&entry.config)
                .map_err(|e| config_error(&name, e))?;
            let factory: Arc<dyn LiveFactory> = Arc::from(
                plugin
                    .create(&entry.config)
                    .map_err(|e| config_error(&name, e))?,
            );
            Some(ActiveLive {
                name,
                descriptor,
                source,
                plugin,
                factory,
                entry: index,
            })
        }
        None => None,
    };
    Ok(Loaded {
        sink,
        renderer,
        live,
    })
}

/// What a loader found in one entry's file: a sink, a renderer, a live destination (any of
/// them), and where from.
type LoadedParts = (
    Option<Arc<dyn LoadedPlugin>>,
    Option<Arc<dyn LoadedRenderer>>,
    Option<Arc<dyn LoadedLive>>,
    Source,
);

#[cfg(feature = "wasm")]
fn load_wasm(entry: &PluginEntry, path: &std::path::Path) -> Result<LoadedParts, String> {
    let sandbox = entry
        .sandbox
        .clone()
        .unwrap_or_else(super::wasm::default_sandbox);
    super::wasm::load(path, sandbox)
        .map(|lib| {
            (
                lib.sink.map(|p| Arc::new(p) as Arc<dyn LoadedPlugin>),
                lib.renderer.map(|r| Arc::new(r) as Arc<dyn LoadedRenderer>),
                // A component has no sockets, so no live destination (see the WIT package).
                None,
                Source::Wasm(path.to_path_buf()),
            )
        })
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "wasm"))]
fn load_wasm(_entry: &PluginEntry, _path: &std::path::Path) -> Result<LoadedParts, String> {
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

/// A `&'static BuiltinRenderer` as an `Arc<dyn LoadedRenderer>`.
struct BuiltinRendererRef(&'static egress_plugin_api::BuiltinRenderer);

impl LoadedRenderer for BuiltinRendererRef {
    fn descriptor(&self) -> Descriptor {
        self.0.descriptor()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        self.0.validate(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn LayoutRenderer>, SinkError> {
        self.0.create(config)
    }
}

/// A `&'static BuiltinLive` as an `Arc<dyn LoadedLive>`.
struct BuiltinLiveRef(&'static egress_plugin_api::BuiltinLive);

impl LoadedLive for BuiltinLiveRef {
    fn descriptor(&self) -> LiveDescriptor {
        self.0.descriptor()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        self.0.validate(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn LiveFactory>, SinkError> {
        self.0.create(config)
    }
}
