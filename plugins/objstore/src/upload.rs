//! One object being uploaded, driven on the sink's runtime.
//!
//! Bytes are buffered until one part is full. An object that never fills a part is a single
//! `PUT` at `finish`. Once a part is full a multipart upload starts (S3/GCS multipart, Azure
//! block list) and [`WriteMultipart`] uploads full parts in the background, at most
//! [`CONCURRENCY`] at a time: before each piece goes in, `write` waits for a free slot, so a
//! slow store slows the writer and memory stays under one part being filled plus the parts in
//! flight. Either way nothing is visible under the key before `finish`: multipart parts are
//! invisible until the upload completes.

use std::sync::Arc;

use egress_plugin_api::{Bytes, Receipt, log};
use object_store::path::Path;
use object_store::{
    Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayloadMut,
    TagSet, WriteMultipart,
};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::part_size::CONCURRENCY;

/// Chunks smaller than this are copied into the part buffer (many tiny chunks would otherwise
/// become many tiny buffers in one request body); larger ones are kept by reference.
const COPY_BELOW: usize = 64 << 10;

/// What the object is and where it goes.
pub struct Target {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub location: String,
    pub part_size: usize,
    pub attributes: Attributes,
    pub tags: TagSet,
}

enum State {
    /// Less than one part so far.
    Buffering(PutPayloadMut),
    /// A multipart upload is open; `pending` bytes sit in its current, unfinished part.
    Streaming {
        writer: WriteMultipart,
        pending: usize,
    },
    /// Finished, aborted, or failed to start.
    Closed,
}

pub struct Upload {
    target: Target,
    state: State,
    hasher: Sha256,
    written: u64,
    failed: bool,
}

impl Upload {
    pub fn new(target: Target) -> Self {
        Upload {
            target,
            state: State::Buffering(PutPayloadMut::new()),
            hasher: Sha256::new(),
            written: 0,
            failed: false,
        }
    }

    fn key(&self) -> &str {
        self.target.path.as_ref()
    }

    /// Append `chunk`. After an error the object is failed: only `abort` is left.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Failed {
                key: self.key().to_string(),
            });
        }
        if chunk.is_empty() {
            return Ok(());
        }
        self.hasher.update(&chunk);
        self.written += chunk.len() as u64;
        let result = self.append(chunk).await;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    async fn append(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        let part_size = self.target.part_size;
        if let State::Buffering(buffer) = &mut self.state {
            if buffer.content_length() + chunk.len() < part_size {
                push(buffer, chunk);
                return Ok(());
            }
            let buffered = std::mem::take(buffer);
            self.start_multipart(buffered).await?;
        }
        let key = self.target.path.to_string();
        let State::Streaming { writer, pending } = &mut self.state else {
            return Err(StoreError::Failed { key });
        };
        // Feed the writer at most up to the end of the current part at a time, waiting for a
        // free upload slot first, so that no more than CONCURRENCY parts are ever in flight.
        while !chunk.is_empty() {
            let room = part_size - *pending;
            let piece = chunk.split_to(room.min(chunk.len()));
            writer
                .wait_for_capacity(CONCURRENCY)
                .await
                .map_err(|e| StoreError::store("upload a part of", &key, e))?;
            *pending = (*pending + piece.len()) % part_size;
            if piece.len() < COPY_BELOW {
                writer.write(&piece);
            } else {
                writer.put(piece);
            }
        }
        Ok(())
    }

    /// Open the multipart upload and hand it what was buffered (less than one part).
    async fn start_multipart(&mut self, buffered: PutPayloadMut) -> Result<(), StoreError> {
        let options = PutMultipartOptions {
            attributes: self.target.attributes.clone(),
            tags: self.target.tags.clone(),
            ..Default::default()
        };
        self.state = State::Closed;
        let upload = self
            .target
            .store
            .put_multipart_opts(&self.target.path, options)
            .await
            .map_err(|e| StoreError::store("start the multipart upload of", self.key(), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.target.part_size);
        let pending = buffered.content_length();
        for bytes in buffered.freeze() {
            writer.put(bytes);
        }
        self.state = State::Streaming { writer, pending };
        Ok(())
    }

    /// Complete the object, check its size at the store, and return the receipt.
    pub async fn finish(&mut self) -> Result<Receipt, StoreError> {
        let key = self.key().to_string();
        if self.failed {
            self.abort().await;
            return Err(StoreError::Failed { key });
        }
        let result = match std::mem::replace(&mut self.state, State::Closed) {
            State::Buffering(buffer) => {
                let options = PutOptions {
                    attributes: self.target.attributes.clone(),
                    tags: self.target.tags.clone(),
                    ..Default::default()
                };
                self.target
                    .store
                    .put_opts(&self.target.path, buffer.freeze(), options)
                    .await
                    .map(drop)
                    .map_err(|e| StoreError::store("upload", &key, e))
            }
            // On failure WriteMultipart aborts the upload itself.
            State::Streaming { writer, .. } => writer
                .finish()
                .await
                .map(drop)
                .map_err(|e| StoreError::store("complete the upload of", &key, e)),
            State::Closed => Err(StoreError::Failed { key: key.clone() }),
        };
        result?;
        self.verify().await?;
        let sha256 = std::mem::take(&mut self.hasher).finalize().into();
        Ok(Receipt::new(
            self.target.location.clone(),
            self.written,
            sha256,
        ))
    }

    /// The store must hold exactly the bytes written. A mismatch is removed again (best
    /// effort), so that a bad object does not stay visible without a receipt.
    async fn verify(&mut self) -> Result<(), StoreError> {
        let key = self.key().to_string();
        match self.target.store.head(&self.target.path).await {
            Ok(meta) if meta.size == self.written => Ok(()),
            Ok(meta) => {
                if let Err(e) = self.target.store.delete(&self.target.path).await {
                    log::warn(format!(
                        "object storage sink: cannot remove {key} after a size mismatch: {e}"
                    ));
                }
                Err(StoreError::SizeMismatch {
                    key,
                    stored: meta.size,
                    written: self.written,
                })
            }
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::Vanished { key }),
            // Upload-only credentials may not read back: the upload itself succeeded.
            Err(
                e @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            ) => {
                log::warn(format!(
                    "object storage sink: uploaded {key} but cannot read its size back to check \
                     it: {e}"
                ));
                Ok(())
            }
            Err(e) => Err(StoreError::store("check the size of", &key, e)),
        }
    }

    /// Discard the object: abort the multipart upload if one is open. Never fails; logs.
    ///
    /// Parts still in flight are awaited first rather than cancelled: a store may finish
    /// storing a part whose request was cut off after it received the abort, which leaves that
    /// part behind (S3's documentation says as much). Each in-flight part ends within its
    /// retry budget, so this wait is bounded.
    pub async fn abort(&mut self) {
        if let State::Streaming { mut writer, .. } =
            std::mem::replace(&mut self.state, State::Closed)
        {
            // Each error takes one finished part out of the set; Ok means none is left.
            while writer.wait_for_capacity(0).await.is_err() {}
            if let Err(e) = writer.abort().await {
                log::warn(format!(
                    "object storage sink: cannot abort the multipart upload of {}: {e}",
                    self.key()
                ));
            }
        }
    }
}

fn push(buffer: &mut PutPayloadMut, chunk: Bytes) {
    if chunk.len() < COPY_BELOW {
        buffer.extend_from_slice(&chunk);
    } else {
        buffer.push(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn target(store: Arc<dyn ObjectStore>, key: &str, part_size: usize) -> Target {
        Target {
            store,
            path: Path::parse(key).unwrap(),
            location: format!("mem://{key}"),
            part_size,
            attributes: Attributes::new(),
            tags: TagSet::default(),
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn small_objects_are_one_put_and_invisible_until_finish() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut up = Upload::new(target(store.clone(), "a/b.bin", 1 << 20));
        up.write(Bytes::from(data(1000))).await.unwrap();
        assert!(store.head(&Path::from("a/b.bin")).await.is_err());
        let r = up.finish().await.unwrap();
        assert_eq!(r.size, 1000);
        assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(data(1000))));
        let got = store.get(&Path::from("a/b.bin")).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().as_ref(), data(1000).as_slice());
    }

    #[tokio::test]
    async fn large_objects_stream_in_parts() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let part = 64 << 10;
        let mut up = Upload::new(target(store.clone(), "big.bin", part));
        let all = data(10 * part + 123);
        // Odd chunk sizes, some larger than a part, some tiny.
        let mut offset = 0;
        for (i, size) in [1, part * 3 + 5, 17, part - 1, 4096, 3 * part]
            .iter()
            .cycle()
            .enumerate()
        {
            if offset >= all.len() || i > 100 {
                break;
            }
            let end = (offset + size).min(all.len());
            up.write(Bytes::copy_from_slice(&all[offset..end]))
                .await
                .unwrap();
            offset = end;
        }
        assert!(matches!(up.state, State::Streaming { .. }));
        let r = up.finish().await.unwrap();
        assert_eq!(r.size, all.len() as u64);
        let got = store.get(&Path::from("big.bin")).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().as_ref(), all.as_slice());
    }

    #[tokio::test]
    async fn empty_objects_exist_after_finish() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut up = Upload::new(target(store.clone(), "empty", 1 << 20));
        up.write(Bytes::new()).await.unwrap();
        assert_eq!(up.finish().await.unwrap().size, 0);
        assert_eq!(store.head(&Path::from("empty")).await.unwrap().size, 0);
    }

    #[tokio::test]
    async fn abort_leaves_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut up = Upload::new(target(store.clone(), "gone", 64 << 10));
        up.write(Bytes::from(data(300 << 10))).await.unwrap();
        up.abort().await;
        assert!(store.head(&Path::from("gone")).await.is_err());
        // A second abort, or a write afterwards, is harmless.
        up.abort().await;
    }
}
