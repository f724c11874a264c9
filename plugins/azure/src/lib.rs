//! `azure`: Azure Blob Storage.
//!
//! Objects stream as block blobs (see `egress-objstore-sink`): blocks of 5 MiB or more (8 MiB
//! when the size is unknown), two in flight, committed with one Put Block List at `finish`, so
//! nothing is visible before; `finish` then checks the stored size and returns the location,
//! size and SHA-256. An object smaller than one block is a single Put Blob. Requests are signed
//! with the account's shared key. `abort` has nothing to delete: Azure discards uncommitted
//! blocks itself (after a week).
//!
//! Builds compiled into the host (feature `azure` of `egress-host`) and as a dylib plugin
//! (`--features dylib`). Not as a WASM component: object_store needs sockets and tokio.
//!
//! # Config
//!
//! ```yaml
//! account_name: mystorage
//! account_key: …               # secret; empty: managed/workload identity or the Azure CLI
//! container_name: recordings   # may be given per request instead
//! endpoint: http://127.0.0.1:10000/devstoreaccount1   # Azurite or sovereign clouds
//! max_retries: 5               # per request; defaults 5, 100 ms, 5000 ms
//! min_retry_delay_ms: 100
//! max_retry_delay_ms: 5000
//! allow_http: false            # default: true iff the endpoint is http://
//! ```
//!
//! Locations are the Go egress's: `https://<account>.blob.core.windows.net/<container>/<key>`,
//! or `<endpoint>/<container>/<key>` with an endpoint.

mod backend;
mod config;

use egress_objstore_sink::ObjectStoreSink;
use egress_plugin_api::{
    Capabilities, Descriptor, ObjectSpec, SinkError, SinkFactory, SinkObject, SinkPlugin, Value,
    async_trait, export_sink,
};

pub use config::{AzureConfig, AzureSettings};

use backend::AzureBackend;

/// The `azure` sink.
pub struct AzureSink {
    inner: ObjectStoreSink<AzureBackend>,
}

impl SinkPlugin for AzureSink {
    fn describe() -> Descriptor {
        Descriptor::new("azure", env!("CARGO_PKG_VERSION"))
            .with_capabilities(Capabilities::none().streaming())
            .with_config_schema(config::schema())
    }

    fn validate(config: &Value) -> Result<(), SinkError> {
        AzureSettings::parse(config).map(drop)
    }

    /// Pure: parses and checks the config; the runtime and the client start on first use.
    fn create(config: &Value) -> Result<Self, SinkError> {
        let settings = AzureSettings::parse(config)?;
        Ok(AzureSink {
            inner: ObjectStoreSink::new(AzureBackend { settings }),
        })
    }
}

#[async_trait]
impl SinkFactory for AzureSink {
    async fn health_check(&self) -> Result<(), SinkError> {
        self.inner.health_check().await
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        self.inner.open(spec).await
    }
}

export_sink!(AzureSink);
