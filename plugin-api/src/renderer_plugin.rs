//! [`RendererPlugin`]: how a layout renderer describes itself and is built from its config;
//! [`LoadedRenderer`], the same made object-safe for the host's loaders; and
//! [`BuiltinRenderer`], the form a compiled-in renderer registers with `inventory`.
//!
//! The shape is the sink's ([`SinkPlugin`](crate::SinkPlugin), [`LoadedPlugin`](crate::LoadedPlugin),
//! [`BuiltinSink`](crate::BuiltinSink)) so that one config section and one set of loaders serve both.

use serde_json::Value;

use crate::error::SinkError;
use crate::renderer::LayoutRenderer;
use crate::types::Descriptor;

/// A layout renderer plugin. Implement it (with [`LayoutRenderer`]) and export the type with
/// [`export_renderer!`](crate::export_renderer). Since API 1.1.
///
/// `describe`, `validate` and `create` are pure, as for sinks: no file system, network or
/// credential look-up, so that `egress validate` can run them anywhere.
pub trait RendererPlugin: LayoutRenderer + Sized {
    /// Static facts: name, version and the JSON Schema of the config. Capabilities are
    /// meaningless for a renderer; leave them empty.
    fn describe() -> Descriptor;

    /// Check `config` without side effects (default: build a renderer and drop it).
    fn validate(config: &Value) -> Result<(), SinkError> {
        Self::create(config).map(drop)
    }

    /// Build a renderer from a config that passed [`validate`](Self::validate). No I/O.
    fn create(config: &Value) -> Result<Self, SinkError>;
}

/// A loaded renderer plugin, before it is configured: what each loader produces.
pub trait LoadedRenderer: Send + Sync {
    /// The plugin's descriptor, with [`Descriptor::api`] set to what it was built for.
    fn descriptor(&self) -> Descriptor;

    /// Check a config without side effects.
    fn validate(&self, config: &Value) -> Result<(), SinkError>;

    /// Build a configured renderer.
    fn create(&self, config: &Value) -> Result<Box<dyn LayoutRenderer>, SinkError>;
}

/// A renderer compiled into the binary; [`export_renderer!`](crate::export_renderer) submits one
/// per crate to `inventory`, the host lists them with [`BuiltinRenderer::iter`].
pub struct BuiltinRenderer {
    describe: fn() -> Descriptor,
    validate: fn(&Value) -> Result<(), SinkError>,
    create: fn(&Value) -> Result<Box<dyn LayoutRenderer>, SinkError>,
}

impl BuiltinRenderer {
    /// The renderer implemented by `R`.
    pub const fn of<R: RendererPlugin>() -> Self {
        BuiltinRenderer {
            describe: R::describe,
            validate: R::validate,
            create: create_boxed::<R>,
        }
    }

    /// Every renderer plugin linked into this binary (in no particular order).
    #[cfg(not(target_family = "wasm"))]
    pub fn iter() -> impl Iterator<Item = &'static BuiltinRenderer> {
        inventory::iter::<BuiltinRenderer>.into_iter()
    }
}

fn create_boxed<R: RendererPlugin>(config: &Value) -> Result<Box<dyn LayoutRenderer>, SinkError> {
    Ok(Box::new(R::create(config)?))
}

impl LoadedRenderer for BuiltinRenderer {
    fn descriptor(&self) -> Descriptor {
        (self.describe)()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        (self.validate)(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn LayoutRenderer>, SinkError> {
        (self.create)(config)
    }
}

#[cfg(not(target_family = "wasm"))]
inventory::collect!(BuiltinRenderer);
