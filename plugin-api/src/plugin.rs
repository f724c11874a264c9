//! [`LoadedPlugin`]: a sink plugin as a value, whatever loaded it; and [`BuiltinSink`], the form
//! a compiled-in plugin registers with `inventory`.

use serde_json::Value;

use crate::error::SinkError;
use crate::sink::{SinkFactory, SinkPlugin};
use crate::types::Descriptor;

/// A loaded sink plugin, before it is configured. The host's three loaders (compiled-in, dylib,
/// WASM) each produce one; plugin authors implement [`SinkPlugin`] instead.
///
/// This is [`SinkPlugin`]'s associated functions (`describe`, `validate`, `create`) made
/// object-safe.
pub trait LoadedPlugin: Send + Sync {
    /// The plugin's descriptor, with [`Descriptor::api`] set to what the plugin was built for.
    fn descriptor(&self) -> Descriptor;

    /// Check a config without side effects.
    fn validate(&self, config: &Value) -> Result<(), SinkError>;

    /// Build a configured factory.
    fn create(&self, config: &Value) -> Result<Box<dyn SinkFactory>, SinkError>;
}

/// A sink plugin compiled into the binary. [`export_sink!`](crate::export_sink) submits one per
/// plugin crate to `inventory`; the host lists them with [`BuiltinSink::iter`].
pub struct BuiltinSink {
    describe: fn() -> Descriptor,
    validate: fn(&Value) -> Result<(), SinkError>,
    create: fn(&Value) -> Result<Box<dyn SinkFactory>, SinkError>,
}

impl BuiltinSink {
    /// The plugin implemented by `F`.
    pub const fn of<F: SinkPlugin>() -> Self {
        BuiltinSink {
            describe: F::describe,
            validate: F::validate,
            create: create_boxed::<F>,
        }
    }

    /// Every sink plugin linked into this binary (in no particular order).
    #[cfg(not(target_family = "wasm"))]
    pub fn iter() -> impl Iterator<Item = &'static BuiltinSink> {
        inventory::iter::<BuiltinSink>.into_iter()
    }
}

fn create_boxed<F: SinkPlugin>(config: &Value) -> Result<Box<dyn SinkFactory>, SinkError> {
    Ok(Box::new(F::create(config)?))
}

impl LoadedPlugin for BuiltinSink {
    fn descriptor(&self) -> Descriptor {
        (self.describe)()
    }

    fn validate(&self, config: &Value) -> Result<(), SinkError> {
        (self.validate)(config)
    }

    fn create(&self, config: &Value) -> Result<Box<dyn SinkFactory>, SinkError> {
        (self.create)(config)
    }
}

#[cfg(not(target_family = "wasm"))]
inventory::collect!(BuiltinSink);
