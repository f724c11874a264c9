//! The guest side of the WIT projection: bindings for the `sink-plugin` world and the adapters
//! that [`export_sink!`](crate::export_sink) plugs a [`SinkPlugin`] into.
//!
//! Every export runs the plugin's futures to completion within the call
//! ([`block_on`](crate::blocking::block_on)): a WASM plugin waits only on host calls, which are
//! synchronous from its point of view.

use std::cell::RefCell;
use std::marker::PhantomData;

use bytes::Bytes;
use serde_json::Value;

use crate::blocking::block_on;
use crate::error::{Kind, SinkError};
use crate::sink::{SinkObject, SinkPlugin};
use crate::types::{Descriptor, ObjectSpec};

pub mod http;
pub mod renderer;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "sink-plugin",
        pub_export_macro: true,
        export_macro_name: "__wit_export_sink_plugin",
        default_bindings_module: "egress_plugin_api::wasm::bindings",
        // Import arguments are borrowed, so that sending an 8 MiB part through the HTTP import
        // does not copy it first.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

use bindings::egress::plugin::types as wit;
use bindings::exports::egress::plugin::sink as exports;

pub(crate) fn to_wit_error(e: SinkError) -> wit::SinkError {
    wit::SinkError {
        kind: match e.kind() {
            Kind::Retryable => wit::ErrorKind::Retryable,
            Kind::Permanent => wit::ErrorKind::Permanent,
            Kind::Auth => wit::ErrorKind::Auth,
            Kind::Config => wit::ErrorKind::Config,
        },
        message: e.message().to_string(),
        field: e.field().map(str::to_string),
    }
}

pub(crate) fn parse_json(config: &str) -> Result<Value, SinkError> {
    if config.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(config).map_err(|e| SinkError::config(format!("config is not JSON: {e}")))
}

#[doc(hidden)]
pub fn describe<F: SinkPlugin>() -> wit::Descriptor {
    descriptor_to_wit(F::describe())
}

pub(crate) fn descriptor_to_wit(d: Descriptor) -> wit::Descriptor {
    wit::Descriptor {
        name: d.name,
        version: d.version,
        api_major: crate::API_VERSION_MAJOR,
        api_minor: crate::API_VERSION_MINOR,
        capabilities: wit::Capabilities {
            streaming: d.capabilities.streaming,
            needs_local_file: d.capabilities.needs_local_file,
            live: d.capabilities.live,
        },
        config_schema: d.config_schema.to_string(),
    }
}

#[doc(hidden)]
pub fn validate<F: SinkPlugin>(config: &str) -> Result<(), wit::SinkError> {
    parse_json(config)
        .and_then(|c| F::validate(&c))
        .map_err(to_wit_error)
}

/// The `factory` resource, backed by an `F`.
#[doc(hidden)]
pub struct GuestFactory<F: SinkPlugin> {
    factory: F,
    _f: PhantomData<F>,
}

impl<F: SinkPlugin> exports::GuestFactory for GuestFactory<F> {
    fn create(config: String) -> Result<exports::Factory, wit::SinkError> {
        let factory = parse_json(&config)
            .and_then(|c| F::create(&c))
            .map_err(to_wit_error)?;
        Ok(exports::Factory::new(GuestFactory {
            factory,
            _f: PhantomData,
        }))
    }

    fn health_check(&self) -> Result<(), wit::SinkError> {
        block_on(self.factory.health_check()).map_err(to_wit_error)
    }

    fn open(&self, spec: wit::ObjectSpec) -> Result<exports::Object, wit::SinkError> {
        let mut object_spec = ObjectSpec::new(spec.key).with_content_type(spec.content_type);
        if let Some(size) = spec.expected_size {
            object_spec = object_spec.with_expected_size(size);
        }
        let object = block_on(self.factory.open(object_spec)).map_err(to_wit_error)?;
        Ok(exports::Object::new(GuestObject {
            object: RefCell::new(Some(object)),
        }))
    }
}

/// The `object` resource. WIT methods take `&self`; calls never overlap (one component
/// instance runs one call at a time), so a `RefCell` is enough.
#[doc(hidden)]
pub struct GuestObject {
    object: RefCell<Option<Box<dyn SinkObject>>>,
}

impl GuestObject {
    fn take(&self) -> Option<Box<dyn SinkObject>> {
        self.object.borrow_mut().take()
    }
}

impl exports::GuestObject for GuestObject {
    fn write(&self, chunk: Vec<u8>) -> Result<(), wit::SinkError> {
        let mut slot = self.object.borrow_mut();
        let Some(object) = slot.as_mut() else {
            return Err(to_wit_error(SinkError::permanent(
                "write after finish or abort",
            )));
        };
        block_on(object.write(Bytes::from(chunk))).map_err(to_wit_error)
    }

    fn finish(this: exports::Object) -> Result<wit::Receipt, wit::SinkError> {
        let this: GuestObject = this.into_inner();
        let Some(object) = this.take() else {
            return Err(to_wit_error(SinkError::permanent("finish after abort")));
        };
        let receipt = block_on(object.finish()).map_err(to_wit_error)?;
        Ok(wit::Receipt {
            location: receipt.location,
            size: receipt.size,
            sha256: receipt.sha256.to_vec(),
        })
    }

    fn abort(this: exports::Object) {
        let this: GuestObject = this.into_inner();
        if let Some(object) = this.take() {
            block_on(object.abort());
        }
    }
}
