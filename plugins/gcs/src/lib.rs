//! `gcs`: Google Cloud Storage.
//!
//! Objects stream through GCS's XML multipart upload (see `egress-objstore-sink`): parts of
//! 5 MiB or more (8 MiB when the size is unknown), two in flight, nothing visible before
//! `finish`, which completes the upload, checks the stored size and returns the location, size
//! and SHA-256. An object smaller than one part is a single `PUT`. `abort` deletes the
//! unfinished upload.
//!
//! Builds compiled into the host (feature `gcs` of `egress-host`) and as a dylib plugin
//! (`--features dylib`). Not as a WASM component: object_store needs sockets and tokio.
//!
//! # Config
//!
//! ```yaml
//! credentials_json: '{"type": "service_account", …}'   # secret; empty: application default
//!                                                     # credentials (GOOGLE_APPLICATION_CREDENTIALS,
//!                                                     # gcloud's file, the metadata server)
//! bucket: recordings           # may be given per request instead
//! proxy: { url: http://proxy:3128, username: u, password: p }
//! endpoint: http://127.0.0.1:4443   # base URL instead of https://storage.googleapis.com
//! anonymous: false             # no OAuth token at all (emulators)
//! max_retries: 5               # per request; defaults 5, 100 ms, 5000 ms
//! min_retry_delay_ms: 100
//! max_retry_delay_ms: 5000
//! allow_http: false            # default: true iff the endpoint is http://
//! ```
//!
//! `credentials_json` must be a service-account key; other credential types go through
//! application default credentials. Locations are the Go egress's:
//! `https://<bucket>.storage.googleapis.com/<key>`, or `<endpoint>/<bucket>/<key>`.

mod backend;
mod config;

use egress_objstore_sink::ObjectStoreSink;
use egress_plugin_api::{
    Capabilities, Descriptor, ObjectSpec, SinkError, SinkFactory, SinkObject, SinkPlugin, Value,
    async_trait, export_sink,
};

pub use config::{GcsConfig, GcsSettings};

use backend::GcsBackend;

/// The `gcs` sink.
pub struct GcsSink {
    inner: ObjectStoreSink<GcsBackend>,
}

impl SinkPlugin for GcsSink {
    fn describe() -> Descriptor {
        Descriptor::new("gcs", env!("CARGO_PKG_VERSION"))
            .with_capabilities(Capabilities::none().streaming())
            .with_config_schema(config::schema())
    }

    fn validate(config: &Value) -> Result<(), SinkError> {
        GcsSettings::parse(config).map(drop)
    }

    /// Pure: parses and checks the config; the runtime and the client start on first use.
    fn create(config: &Value) -> Result<Self, SinkError> {
        let settings = GcsSettings::parse(config)?;
        Ok(GcsSink {
            inner: ObjectStoreSink::new(GcsBackend { settings }),
        })
    }
}

#[async_trait]
impl SinkFactory for GcsSink {
    async fn health_check(&self) -> Result<(), SinkError> {
        self.inner.health_check().await
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        self.inner.open(spec).await
    }
}

export_sink!(GcsSink);
