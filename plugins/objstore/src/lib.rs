//! The streaming upload shared by the object storage sinks (`s3`, `azure`, `gcs`), on
//! [`object_store`].
//!
//! A plugin crate describes its destination with a [`Backend`] (what must be configured, how to
//! build the `ObjectStore`, where an object ends up, which attributes it gets) and wraps an
//! [`ObjectStoreSink`], which does the rest:
//!
//! * **Runtime.** object_store needs tokio; a sink may be polled by any executor. The sink
//!   owns a small tokio runtime, started on the first `health_check` or `open` (never in
//!   `create`, which must do no I/O), and runs every store future on it (see [`runtime`]).
//! * **Streaming.** Each object buffers one part; when it fills, a multipart upload starts and
//!   full parts upload in the background, [`CONCURRENCY`] at a time. Awaiting `write` is the
//!   backpressure; an object holds at most part size × (concurrency + 1) bytes. The part size
//!   comes from the expected size ([`part_size()`]): at least 5 MiB, under 10 000 parts, 8 MiB
//!   when unknown. An object smaller than a part is a single `PUT` at `finish`.
//! * **Visibility.** Nothing is visible under the key until `finish`: parts are invisible
//!   until the upload completes. `finish` completes, then `HEAD`s the object and checks that
//!   its size is the number of bytes written, and returns the location, size and SHA-256.
//!   `abort`, or dropping an unfinished object, aborts the multipart upload.
//! * **Retries.** Per request, by object_store's own `RetryConfig` (jittered exponential
//!   backoff; 5xx, 429, 408 and connection failures are retried, other 4xx are not), from the
//!   Go-style `max_retries`/`min_retry_delay_ms`/`max_retry_delay_ms` ([`RetrySettings`]).
//!   Errors are classified for the host in [`error`].
//! * **TLS.** reqwest with rustls on the `ring` provider (the one the host already links), so
//!   no second crypto library is built. The first sink to start installs `ring` as the
//!   process's default rustls provider if none is installed yet.
//!
//! These sinks cannot be WASM components: object_store needs sockets and a tokio runtime, and
//! a component has neither (its only network is the host's `egress:plugin/http` import).

pub mod config;
pub mod error;
pub mod location;
mod object;
pub mod part_size;
pub mod runtime;
mod upload;

use std::sync::{Arc, Mutex, PoisonError};

use egress_plugin_api::{ObjectSpec, SinkError, SinkObject, log};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload, TagSet,
};

pub use config::{ProxyConfig, RetrySettings, Secret};
pub use error::StoreError;
pub use object_store;
pub use part_size::{CONCURRENCY, part_size};

use object::StoreObject;
use runtime::SinkRuntime;
use upload::{Target, Upload};

/// One kind of destination (S3, Azure Blob, GCS), configured.
pub trait Backend: Send + Sync + 'static {
    /// The plugin's name (`s3`), for thread names and messages.
    fn name(&self) -> &'static str;

    /// Is everything needed to reach the destination configured? Pure. A storage plugin may be
    /// created with an empty config (the host passes the bucket per request); this is where
    /// such a factory says which field is missing (`bucket`, `container_name`).
    fn ready(&self) -> Result<(), SinkError>;

    /// Build the store. Runs on a blocking thread of the sink's runtime (it may read a
    /// credentials file). Errors are config errors naming the field when one is at fault.
    fn build(&self) -> Result<Arc<dyn ObjectStore>, SinkError>;

    /// Where `key` (already normalised) is, as a URL a user can open.
    fn location(&self, key: &str) -> String;

    /// Object attributes: by default the content type, when the host knows it.
    fn attributes(&self, spec: &ObjectSpec) -> Attributes {
        let mut attributes = Attributes::new();
        if !spec.content_type.is_empty() {
            attributes.insert(Attribute::ContentType, spec.content_type.clone().into());
        }
        attributes
    }

    /// Object tags (S3 only).
    fn tags(&self) -> TagSet {
        TagSet::default()
    }
}

/// A configured object storage sink: the shared half of `S3Sink`, `AzureSink` and `GcsSink`.
pub struct ObjectStoreSink<B: Backend> {
    backend: Arc<B>,
    runtime: Mutex<Option<Arc<SinkRuntime>>>,
    store: Mutex<Option<Arc<dyn ObjectStore>>>,
}

/// The probe `health_check` writes and deletes again.
const HEALTH_PREFIX: &str = ".egress-health-check";

impl<B: Backend> ObjectStoreSink<B> {
    /// A sink for `backend`. Does no I/O and starts no thread.
    pub fn new(backend: B) -> Self {
        ObjectStoreSink {
            backend: Arc::new(backend),
            runtime: Mutex::new(None),
            store: Mutex::new(None),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn runtime(&self) -> Result<Arc<SinkRuntime>, SinkError> {
        let mut slot = self.runtime.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let sink = self.backend.name();
        let runtime =
            SinkRuntime::start(sink).map_err(|source| StoreError::Runtime { sink, source })?;
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    /// The runtime and the store, started and built on first use.
    async fn active(&self) -> Result<(Arc<SinkRuntime>, Arc<dyn ObjectStore>), SinkError> {
        self.backend.ready()?;
        let runtime = self.runtime()?;
        let cached = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(store) = cached {
            return Ok((runtime, store));
        }
        install_crypto_provider();
        let backend = self.backend.clone();
        let sink = self.backend.name();
        let store = runtime
            .handle()
            .spawn_blocking(move || backend.build())
            .await
            .map_err(|_| StoreError::TaskGone { sink })??;
        // Two first calls may race; both stores work, the first one stays.
        let mut slot = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let store = slot.get_or_insert(store).clone();
        Ok((runtime, store))
    }

    /// Probe the destination: write an empty object under `.egress-health-check/` and delete it
    /// again. That proves the bucket exists and the credentials may write. A failed delete
    /// (upload-only credentials) is logged, not an error.
    pub async fn health_check(&self) -> Result<(), SinkError> {
        let (runtime, store) = self.active().await?;
        let sink = self.backend.name();
        let path = Path::from(format!("{HEALTH_PREFIX}/{}", unique_suffix()));
        let probe = async move {
            store
                .put_opts(&path, PutPayload::new(), PutOptions::default())
                .await
                .map_err(|e| StoreError::store("write the health probe", path.as_ref(), e))?;
            if let Err(e) = store.delete(&path).await {
                log::warn(format!(
                    "{sink} sink: cannot delete the health probe {path}: {e}"
                ));
            }
            Ok::<_, StoreError>(())
        };
        Ok(runtime
            .handle()
            .spawn(probe)
            .await
            .map_err(|_| StoreError::TaskGone { sink })??)
    }

    /// Start an object. No request is made until the first part fills or `finish`.
    pub async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        let (runtime, store) = self.active().await?;
        let path = object_path(&spec.key)?;
        let part_size = part_size(spec.expected_size);
        let target = Target {
            location: self.backend.location(path.as_ref()),
            attributes: self.backend.attributes(&spec),
            tags: self.backend.tags(),
            store,
            path,
            part_size,
        };
        let upload = Upload::new(target);
        Ok(Box::new(StoreObject::spawn(
            self.backend.name(),
            runtime,
            upload,
        )))
    }
}

/// Keys are `/`-separated; object_store refuses empty, `.` and `..` segments and control
/// characters. A leading `/` is dropped, as the Go egress does.
fn object_path(key: &str) -> Result<Path, StoreError> {
    let invalid = |reason: String| StoreError::InvalidKey {
        key: key.to_string(),
        reason,
    };
    let path = Path::parse(key).map_err(|e| invalid(e.to_string()))?;
    if path.as_ref().is_empty() {
        return Err(invalid("the key is empty".into()));
    }
    Ok(path)
}

/// reqwest's rustls needs a process-wide crypto provider; ours is `ring`. If the host (or
/// another plugin) installed one already, that one stays.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A suffix no other probe is likely to have.
fn unique_suffix() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{random:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(object_path("a/b.mp4").unwrap().as_ref(), "a/b.mp4");
        assert_eq!(object_path("/a/b.mp4").unwrap().as_ref(), "a/b.mp4");
        for bad in ["", "/", "a//b", "a/../b", "a/./b", "a/\u{1}b"] {
            let e: SinkError = object_path(bad).unwrap_err().into();
            assert!(e.is_permanent(), "{bad:?}: {e}");
        }
    }
}
