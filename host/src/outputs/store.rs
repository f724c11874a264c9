//! Where the segment and image outputs put their objects: one finished object (bytes in
//! memory, or a finished local file) under a storage path, verified, with the primary →
//! backup fallback, answering where it went.
//!
//! The outputs only see [`ObjectStore`]; in production it is [`SinkStore`], over the host's
//! storage layer (the same resolution, sinks, receipt verification, whole-object retries,
//! backup and upload metrics as a file output); unit tests use a directory
//! ([`testing::LocalDirStore`]) or a failing store ([`testing::FailingStore`]).
//!
//! `ObjectMeta::cache_control` has no place in the plugin ABI's `ObjectSpec` yet, so
//! [`SinkStore`] drops it: a CDN in front of the bucket may cache playlists (Go sets no
//! header either). Adding an optional `cache_control` to `ObjectSpec` is the fix.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use egress_plugin_api::async_trait;

use crate::storage::{self, Destinations};

/// Playlists must never be cached by a CDN in front of the bucket: players poll them.
pub const PLAYLIST_CACHE_CONTROL: &str = "no-cache";
pub const PLAYLIST_CONTENT_TYPE: &str = "application/x-mpegurl";
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";
pub const IMAGE_CONTENT_TYPE: &str = "image/jpeg";

/// What to store.
#[derive(Debug, Clone)]
pub enum ObjectBody {
    /// In memory (images, playlists): never written to a temp file.
    Bytes(Bytes),
    /// A finished local file (segments). The store does not delete it.
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: &'static str,
    /// `Cache-Control` when the storage can carry it.
    pub cache_control: Option<&'static str>,
}

/// A verified object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Where it is: a path or a URL (the sink's receipt).
    pub location: String,
    pub size: u64,
    /// The primary storage failed and the backup holds it.
    pub backup_used: bool,
}

/// Every storage failed for this attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    /// Trying again later may help (5xx, connection errors); auth and config errors do not.
    pub retryable: bool,
}

impl StoreError {
    pub fn retryable(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            retryable: true,
        }
    }
    pub fn permanent(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            retryable: false,
        }
    }
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `body` under `storage_path` (relative to the output's storage, `/`-separated),
    /// replacing an object of that name, and returns it once verified.
    async fn put(
        &self,
        storage_path: &str,
        body: ObjectBody,
        meta: &ObjectMeta,
    ) -> Result<StoredObject, StoreError>;

    /// A file no storage took is moved where the work dir's cleanup leaves it; returns where.
    /// `None`: it stays where it is.
    fn keep_locally(&self, _local: &Path, _storage_path: &str) -> Option<String> {
        None
    }
}

/// The production store: the output's primary and backup sinks (configured by
/// `storage::destinations`); each object gets its own key through `Destination::for_path`.
pub struct SinkStore {
    dests: Destinations,
}

impl SinkStore {
    pub fn new(dests: Destinations) -> SinkStore {
        SinkStore { dests }
    }

    /// The primary storage's name, for logs and errors.
    pub fn label(&self) -> &'static str {
        self.dests.primary.label
    }
}

#[async_trait]
impl ObjectStore for SinkStore {
    async fn put(
        &self,
        storage_path: &str,
        body: ObjectBody,
        meta: &ObjectMeta,
    ) -> Result<StoredObject, StoreError> {
        let dests = Destinations {
            primary: self.dests.primary.for_path(storage_path),
            backup: self.dests.backup.as_ref().map(|b| b.for_path(storage_path)),
        };
        let stored = match body {
            ObjectBody::File(p) => storage::upload_file(&dests, &p, meta.content_type).await,
            ObjectBody::Bytes(b) => storage::upload_bytes(&dests, b, meta.content_type).await,
        };
        // The storage layer already retried retryable errors on each storage and tried the
        // backup: only a retry after a pause (the caller's policy) can still help.
        stored
            .map(|u| StoredObject {
                location: u.location,
                size: u.size,
                backup_used: u.backup_used,
            })
            .map_err(|e| StoreError::retryable(e.to_string()))
    }

    fn keep_locally(&self, local: &Path, storage_path: &str) -> Option<String> {
        Some(storage::keep_locally(local, storage_path))
    }
}

/// Stores for unit tests.
#[cfg(test)]
pub mod testing {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use bytes::Bytes;
    use egress_plugin_api::async_trait;
    use sha2::{Digest, Sha256};

    use super::{ObjectBody, ObjectMeta, ObjectStore, StoreError, StoredObject};

    /// Objects as files under a directory (tests; the host's `local` sink does the same).
    /// Written to a temp name and renamed, so a reader never sees half an object.
    pub struct LocalDirStore {
        root: PathBuf,
        /// Every put, in order: (path, content type, cache control), for tests.
        log: Mutex<Vec<(String, &'static str, Option<&'static str>)>>,
    }

    impl LocalDirStore {
        pub fn new(root: impl Into<PathBuf>) -> LocalDirStore {
            LocalDirStore {
                root: root.into(),
                log: Mutex::new(Vec::new()),
            }
        }

        pub fn root(&self) -> &Path {
            &self.root
        }

        pub fn puts(&self) -> Vec<(String, &'static str, Option<&'static str>)> {
            self.log.lock().map(|l| l.clone()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl ObjectStore for LocalDirStore {
        async fn put(
            &self,
            storage_path: &str,
            body: ObjectBody,
            meta: &ObjectMeta,
        ) -> Result<StoredObject, StoreError> {
            if storage_path.is_empty()
                || storage_path.starts_with('/')
                || storage_path.split('/').any(|c| c == "..")
            {
                return Err(StoreError::permanent(format!(
                    "invalid object key {storage_path:?}"
                )));
            }
            let data = match body {
                ObjectBody::Bytes(b) => b,
                ObjectBody::File(p) => Bytes::from(tokio::fs::read(&p).await.map_err(|e| {
                    StoreError::permanent(format!("cannot read {}: {e}", p.display()))
                })?),
            };
            let dest = self.root.join(storage_path);
            let io = |e: std::io::Error| StoreError::retryable(format!("Local upload failed: {e}"));
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
            }
            let tmp = dest.with_extension(format!("part{}", std::process::id()));
            tokio::fs::write(&tmp, &data).await.map_err(io)?;
            tokio::fs::rename(&tmp, &dest).await.map_err(io)?;
            // Verify as the host verifies a receipt: the stored bytes hash to what was sent.
            let stored = tokio::fs::read(&dest).await.map_err(io)?;
            if Sha256::digest(&stored) != Sha256::digest(&data) {
                return Err(StoreError::retryable(format!(
                    "stored object {storage_path} does not match"
                )));
            }
            if let Ok(mut log) = self.log.lock() {
                log.push((
                    storage_path.to_owned(),
                    meta.content_type,
                    meta.cache_control,
                ));
            }
            Ok(StoredObject {
                location: dest.to_string_lossy().into_owned(),
                size: data.len() as u64,
                backup_used: false,
            })
        }
    }

    /// Fails puts whose path matches, a number of times or always (tests of failure paths);
    /// everything else goes to `inner`.
    pub struct FailingStore<S> {
        pub inner: S,
        matches: Box<dyn Fn(&str) -> bool + Send + Sync>,
        /// Failures left; `u32::MAX` = always.
        left: AtomicU32,
        pub retryable: bool,
    }

    impl<S: ObjectStore> FailingStore<S> {
        pub fn new(
            inner: S,
            matches: impl Fn(&str) -> bool + Send + Sync + 'static,
            times: u32,
        ) -> Self {
            FailingStore {
                inner,
                matches: Box::new(matches),
                left: AtomicU32::new(times),
                retryable: true,
            }
        }

        pub fn always(inner: S, matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
            Self::new(inner, matches, u32::MAX)
        }
    }

    #[async_trait]
    impl<S: ObjectStore> ObjectStore for FailingStore<S> {
        async fn put(
            &self,
            storage_path: &str,
            body: ObjectBody,
            meta: &ObjectMeta,
        ) -> Result<StoredObject, StoreError> {
            if (self.matches)(storage_path) {
                let left = self.left.load(Ordering::Relaxed);
                if left > 0 {
                    if left != u32::MAX {
                        self.left.fetch_sub(1, Ordering::Relaxed);
                    }
                    return Err(StoreError {
                        message: "S3 upload failed: status code: 503 Service Unavailable".into(),
                        retryable: self.retryable,
                    });
                }
            }
            self.inner.put(storage_path, body, meta).await
        }

        fn keep_locally(&self, local: &Path, storage_path: &str) -> Option<String> {
            self.inner.keep_locally(local, storage_path)
        }
    }
}
