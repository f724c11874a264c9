//! Uploading a recording while it is written, with backup storage and no lost recordings.
//!
//! The pipeline writes its output to a local file in the work dir (the muxers are append-only:
//! fragmented MP4, Ogg, MP3). A [`LiveUpload`] tails that file and streams each new range into a
//! sink object (a multipart upload, for the cloud sinks), so when the recording stops only the
//! last part and the completion are left: stop → available does not grow with the length.
//!
//! Safety rules, in order:
//! 1. The local file is the source of truth until the stored object is verified: the sink's
//!    receipt must report exactly the bytes we sent (size and SHA-256), and the file's first
//!    bytes must still be the ones we sent (a muxer that rewrote its header at the end, such as
//!    matroskamux, is detected there and the object is uploaded again from the finished file).
//! 2. A retryable failure (the plugin's own part retries exhausted) restarts the object from the
//!    local file, up to [`OBJECT_ATTEMPTS`] times; auth, config and permanent errors do not.
//! 3. When the primary storage fails for good, the whole file goes to the backup storage, and
//!    the result says so (`EgressInfo.backup_storage_used`).
//! 4. When that fails too (or there is none), the caller keeps the local file and names its path
//!    in the error. Nothing recorded is deleted before a verified upload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use egress_plugin_api::{ObjectSpec, Receipt, SinkError, SinkFactory, SinkObject};

use super::report::{self, UploadReport, UploadStatus};

/// Bytes read from the local file per write into the sink.
const CHUNK: usize = 1 << 20;
/// How often a growing file is checked for new bytes.
const POLL: Duration = Duration::from_millis(250);
/// How many leading bytes are compared at the end to detect a rewritten header.
const HEAD_CHECK: usize = 64 << 10;
/// Whole-object attempts on one storage for retryable errors.
pub const OBJECT_ATTEMPTS: u32 = 3;
/// Delay before the n-th whole-object retry.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

/// A sink ready to receive one object.
#[derive(Clone)]
pub struct Destination {
    /// The storage's name in errors: "S3", "GCP", "Azure", "AliOSS", "Local".
    pub label: &'static str,
    pub factory: Arc<dyn SinkFactory>,
    pub key: String,
    /// The storage's key prefix, for other objects beside this one ([`Destination::for_path`]).
    pub prefix: String,
    /// The storage config names its own endpoint (the `custom_endpoint` metric label).
    pub custom_endpoint: bool,
    /// This is the backup storage: objects stored here count as backup writes, not uploads.
    pub is_backup: bool,
}

impl Destination {
    /// The same storage, for another storage path (the manifest beside a recording).
    pub fn for_path(&self, storage_path: &str) -> Destination {
        Destination {
            key: super::target::object_key(&self.prefix, storage_path),
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("label", &self.label)
            .field("key", &self.key)
            .field("is_backup", &self.is_backup)
            .finish_non_exhaustive()
    }
}

/// The primary destination and the backup, if configured.
#[derive(Debug, Clone)]
pub struct Destinations {
    pub primary: Destination,
    pub backup: Option<Destination>,
}

/// A verified upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub location: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// The primary failed and the backup holds the object.
    pub backup_used: bool,
}

/// Every storage failed; the local file is still there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// Go's `ErrUploadFailed`: `<storage> upload failed: <reason>`.
    #[error("{label} upload failed: {reason}")]
    Primary { label: &'static str, reason: String },
    /// Go's text when the backup failed too.
    #[error("primary: {primary}\nbackup: {backup}")]
    Both { primary: String, backup: String },
}

impl UploadError {
    /// The storage named first in the error.
    pub fn label(&self) -> &'static str {
        match self {
            UploadError::Primary { label, .. } => label,
            UploadError::Both { .. } => "backup",
        }
    }
}

/// An upload that follows a file while it is being written.
pub struct LiveUpload {
    complete: watch::Sender<bool>,
    completed_at: CompletedAt,
    task: JoinHandle<Result<Uploaded, UploadError>>,
}

impl LiveUpload {
    /// Starts streaming `local` (which may not exist yet) to `dests`.
    pub fn start(dests: Destinations, local: PathBuf, content_type: String) -> LiveUpload {
        let (complete, rx) = watch::channel(false);
        let completed_at = CompletedAt::default();
        let stamp = completed_at.clone();
        let task =
            tokio::spawn(async move { upload(&dests, &local, &content_type, rx, stamp).await });
        LiveUpload {
            complete,
            completed_at,
            task,
        }
    }

    /// The file is complete: upload the rest, verify, and return where it is.
    pub async fn finish(self) -> Result<Uploaded, UploadError> {
        let _ = self.completed_at.set(Instant::now());
        self.complete.send_replace(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(UploadError::Primary {
                label: "Local",
                reason: format!("upload task failed: {e}"),
            }),
        }
    }

    /// Nothing worth keeping was recorded: drop the object unfinished (the sink aborts it).
    pub fn cancel(self) {
        self.task.abort();
    }
}

/// Uploads a finished file (a salvaged partial recording, a manifest).
pub async fn upload_file(
    dests: &Destinations,
    local: &Path,
    content_type: &str,
) -> Result<Uploaded, UploadError> {
    let (_tx, rx) = watch::channel(true);
    upload(
        dests,
        local,
        content_type,
        rx,
        Arc::new(OnceLock::from(Instant::now())),
    )
    .await
}

async fn upload(
    dests: &Destinations,
    local: &Path,
    content_type: &str,
    complete: watch::Receiver<bool>,
    completed: CompletedAt,
) -> Result<Uploaded, UploadError> {
    let primary = match to_destination(&dests.primary, local, content_type, complete.clone()).await
    {
        Ok(u) => {
            counted(
                &dests.primary,
                content_type,
                UploadStatus::Success,
                since(&completed),
            );
            return Ok(u);
        }
        Err(e) => {
            counted(
                &dests.primary,
                content_type,
                UploadStatus::of_error(&e),
                since(&completed),
            );
            e
        }
    };
    let primary_text = format!("{} upload failed: {}", dests.primary.label, primary);
    let Some(backup) = &dests.backup else {
        return Err(UploadError::Primary {
            label: dests.primary.label,
            reason: primary.to_string(),
        });
    };
    tracing::warn!(storage = dests.primary.label, error = %primary, backup = backup.label,
        "primary storage failed; uploading to the backup storage");
    match to_destination(backup, local, content_type, complete).await {
        Ok(mut u) => {
            counted(
                backup,
                content_type,
                UploadStatus::Success,
                since(&completed),
            );
            u.backup_used = true;
            Ok(u)
        }
        Err(e) => {
            counted(
                backup,
                content_type,
                UploadStatus::of_error(&e),
                since(&completed),
            );
            Err(UploadError::Both {
                primary: primary_text,
                backup: format!("{} upload failed: {e}", backup.label),
            })
        }
    }
}

/// Reports one object's final outcome on `dest` for the upload metrics.
fn counted(
    dest: &Destination,
    content_type: &str,
    status: UploadStatus,
    response_time: Option<Duration>,
) {
    report::report(UploadReport {
        content_type: content_type.to_owned(),
        status,
        custom_endpoint: dest.custom_endpoint,
        backup: dest.is_backup,
        response_time,
    });
}

/// When the object was complete — the recording ended, or at once for an object sent whole —
/// stamped by whoever completes it: the start of its upload's response time, as Go measures it
/// after the recording.
type CompletedAt = Arc<OnceLock<Instant>>;

fn since(completed: &CompletedAt) -> Option<Duration> {
    completed.get().map(Instant::elapsed)
}

/// One storage, with whole-object retries for retryable errors.
async fn to_destination(
    dest: &Destination,
    local: &Path,
    content_type: &str,
    complete: watch::Receiver<bool>,
) -> Result<Uploaded, SinkError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match stream_object(dest, local, content_type, complete.clone()).await {
            Ok(u) => return Ok(u),
            Err(Attempt::Rewritten) => {
                // The muxer went back and changed bytes already sent: send the finished file
                // again (the file is complete by now: a rewrite happens at EOS).
                tracing::info!(key = %dest.key, "local file was rewritten at the end; uploading it again");
                let (_tx, done) = watch::channel(true);
                match stream_object(dest, local, content_type, done).await {
                    Ok(u) => return Ok(u),
                    Err(Attempt::Rewritten) => {
                        SinkError::permanent("the local file keeps changing after it was finished")
                    }
                    Err(Attempt::Failed(e)) => e,
                }
            }
            Err(Attempt::Failed(e)) => e,
        };
        if !err.is_retryable() || attempt >= OBJECT_ATTEMPTS {
            return Err(err);
        }
        let delay = RETRY_DELAYS[(attempt as usize - 1).min(RETRY_DELAYS.len() - 1)];
        tracing::warn!(storage = dest.label, key = %dest.key, attempt, error = %err, ?delay,
            "upload failed; starting the object again from the local file");
        tokio::time::sleep(delay).await;
    }
}

enum Attempt {
    Failed(SinkError),
    Rewritten,
}

impl From<SinkError> for Attempt {
    fn from(e: SinkError) -> Self {
        Attempt::Failed(e)
    }
}

/// What was sent of the file.
struct Sent {
    size: u64,
    hasher: Sha256,
    head: Vec<u8>,
}

async fn stream_object(
    dest: &Destination,
    local: &Path,
    content_type: &str,
    mut complete: watch::Receiver<bool>,
) -> Result<Uploaded, Attempt> {
    let mut spec = ObjectSpec::new(dest.key.clone()).with_content_type(content_type);
    if *complete.borrow()
        && let Ok(m) = tokio::fs::metadata(local).await
    {
        spec = spec.with_expected_size(m.len());
    }
    let mut object = dest.factory.open(spec).await?;
    let sent = match tail(&mut *object, local, &mut complete).await {
        Ok(s) => s,
        Err(e) => {
            object.abort().await;
            return Err(Attempt::Failed(e));
        }
    };
    if rewritten(local, &sent).await {
        object.abort().await;
        return Err(Attempt::Rewritten);
    }
    let receipt: Receipt = object.finish().await?;
    let sha256: [u8; 32] = sent.hasher.finalize().into();
    if receipt.size != sent.size || receipt.sha256 != sha256 {
        return Err(Attempt::Failed(SinkError::permanent(format!(
            "the stored object does not match the recording ({} bytes stored, {} recorded)",
            receipt.size, sent.size
        ))));
    }
    Ok(Uploaded {
        location: receipt.location,
        size: sent.size,
        sha256,
        backup_used: false,
    })
}

/// Streams the file into `object` until it is complete and fully sent.
async fn tail(
    object: &mut dyn SinkObject,
    local: &Path,
    complete: &mut watch::Receiver<bool>,
) -> Result<Sent, SinkError> {
    let mut file = loop {
        let done = *complete.borrow();
        match tokio::fs::File::open(local).await {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !done => wait(complete).await,
            Err(e) => {
                return Err(SinkError::permanent(format!(
                    "cannot read the recording {}: {e}",
                    local.display()
                )));
            }
        }
    };
    let mut sent = Sent {
        size: 0,
        hasher: Sha256::new(),
        head: Vec::new(),
    };
    loop {
        // Sample "complete" before reading: a read that then returns nothing is the true end.
        let done = *complete.borrow();
        let mut buf = BytesMut::with_capacity(CHUNK);
        let n = file.read_buf(&mut buf).await.map_err(|e| {
            SinkError::permanent(format!(
                "cannot read the recording {}: {e}",
                local.display()
            ))
        })?;
        if n == 0 {
            if done {
                return Ok(sent);
            }
            wait(complete).await;
            continue;
        }
        let chunk = buf.freeze();
        sent.hasher.update(&chunk);
        if sent.head.len() < HEAD_CHECK {
            let take = (HEAD_CHECK - sent.head.len()).min(chunk.len());
            sent.head.extend_from_slice(&chunk[..take]);
        }
        sent.size += n as u64;
        object.write(chunk).await?;
    }
}

/// Waits until the file is marked complete or the poll interval passes.
async fn wait(complete: &mut watch::Receiver<bool>) {
    tokio::select! {
        r = complete.changed() => {
            if r.is_err() {
                // The sender is gone without saying "complete": treat the file as finished.
                tokio::time::sleep(POLL).await;
            }
        }
        _ = tokio::time::sleep(POLL) => {}
    }
}

/// Whether the finished file differs from what was sent: another length, or other first bytes.
async fn rewritten(local: &Path, sent: &Sent) -> bool {
    let Ok(mut f) = tokio::fs::File::open(local).await else {
        return true;
    };
    match f.metadata().await {
        Ok(m) if m.len() == sent.size => {}
        _ => return true,
    }
    let mut head = vec![0u8; sent.head.len()];
    if f.seek(std::io::SeekFrom::Start(0)).await.is_err() || f.read_exact(&mut head).await.is_err()
    {
        return true;
    }
    head != sent.head
}

/// The MIME type of an output file, from its extension (what the Go egress labels uploads with).
pub fn content_type_for(path: &str) -> &'static str {
    match path
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("mp4") => "video/mp4",
        Some("ogg") => "audio/ogg",
        Some("mp3") => "audio/mpeg",
        Some("webm") => "video/webm",
        Some("ts") => "video/mp2t",
        Some("m3u8") => "application/x-mpegurl",
        Some("jpeg") | Some("jpg") => "image/jpeg",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Uploads an object held in memory (an image, a playlist version): the same verification,
/// whole-object retries, backup fallback and metrics as [`upload_file`], without a local file.
pub async fn upload_bytes(
    dests: &Destinations,
    data: bytes::Bytes,
    content_type: &str,
) -> Result<Uploaded, UploadError> {
    let completed: CompletedAt = Arc::new(OnceLock::from(Instant::now()));
    let primary = match bytes_to_destination(&dests.primary, &data, content_type).await {
        Ok(u) => {
            counted(
                &dests.primary,
                content_type,
                UploadStatus::Success,
                since(&completed),
            );
            return Ok(u);
        }
        Err(e) => {
            counted(
                &dests.primary,
                content_type,
                UploadStatus::of_error(&e),
                since(&completed),
            );
            e
        }
    };
    let Some(backup) = &dests.backup else {
        return Err(UploadError::Primary {
            label: dests.primary.label,
            reason: primary.to_string(),
        });
    };
    tracing::warn!(storage = dests.primary.label, error = %primary, backup = backup.label,
        "primary storage failed; uploading to the backup storage");
    match bytes_to_destination(backup, &data, content_type).await {
        Ok(mut u) => {
            counted(
                backup,
                content_type,
                UploadStatus::Success,
                since(&completed),
            );
            u.backup_used = true;
            Ok(u)
        }
        Err(e) => {
            counted(
                backup,
                content_type,
                UploadStatus::of_error(&e),
                since(&completed),
            );
            Err(UploadError::Both {
                primary: format!("{} upload failed: {primary}", dests.primary.label),
                backup: format!("{} upload failed: {e}", backup.label),
            })
        }
    }
}

/// One storage, with whole-object retries for retryable errors.
async fn bytes_to_destination(
    dest: &Destination,
    data: &bytes::Bytes,
    content_type: &str,
) -> Result<Uploaded, SinkError> {
    let sha256: [u8; 32] = Sha256::digest(data).into();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match send_bytes(dest, data, content_type, &sha256).await {
            Ok(u) => return Ok(u),
            Err(e) => e,
        };
        if !err.is_retryable() || attempt >= OBJECT_ATTEMPTS {
            return Err(err);
        }
        let delay = RETRY_DELAYS[(attempt as usize - 1).min(RETRY_DELAYS.len() - 1)];
        tracing::warn!(storage = dest.label, key = %dest.key, attempt, error = %err, ?delay, "upload failed; sending the object again");
        tokio::time::sleep(delay).await;
    }
}

async fn send_bytes(
    dest: &Destination,
    data: &bytes::Bytes,
    content_type: &str,
    sha256: &[u8; 32],
) -> Result<Uploaded, SinkError> {
    let spec = ObjectSpec::new(dest.key.clone())
        .with_content_type(content_type)
        .with_expected_size(data.len() as u64);
    let mut object = dest.factory.open(spec).await?;
    if let Err(e) = object.write(data.clone()).await {
        object.abort().await;
        return Err(e);
    }
    let receipt: Receipt = object.finish().await?;
    if receipt.size != data.len() as u64 || &receipt.sha256 != sha256 {
        return Err(SinkError::permanent(format!(
            "the stored object does not match what was sent ({} bytes stored, {} sent)",
            receipt.size,
            data.len()
        )));
    }
    Ok(Uploaded {
        location: receipt.location,
        size: receipt.size,
        sha256: *sha256,
        backup_used: false,
    })
}

#[cfg(test)]
mod tests {
    //! The upload logic against an in-memory sink (a mock is fine here: the real sinks are
    //! tested against real servers in `tests/`).
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use bytes::Bytes;
    use egress_plugin_api::async_trait;

    #[derive(Default)]
    struct MemSink {
        stored: Mutex<Vec<(String, Vec<u8>)>>,
        /// Fail this many objects with this error before succeeding.
        failures: AtomicU32,
        error: Mutex<Option<fn() -> SinkError>>,
        opened: AtomicU32,
    }

    struct MemObject {
        sink: Arc<MemSink>,
        key: String,
        data: Vec<u8>,
        fail: bool,
    }

    struct MemFactory(Arc<MemSink>);

    #[async_trait]
    impl SinkFactory for MemFactory {
        async fn health_check(&self) -> Result<(), SinkError> {
            Ok(())
        }
        async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
            let sink = &self.0;
            sink.opened.fetch_add(1, Ordering::SeqCst);
            let fail = sink.failures.load(Ordering::SeqCst) > 0;
            if fail {
                sink.failures.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(Box::new(MemObject {
                sink: sink.clone(),
                key: spec.key,
                data: Vec::new(),
                fail,
            }))
        }
    }

    #[async_trait]
    impl SinkObject for MemObject {
        async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
            if self.fail {
                let make = self
                    .sink
                    .error
                    .lock()
                    .unwrap()
                    .unwrap_or(|| SinkError::retryable("503"));
                return Err(make());
            }
            self.data.extend_from_slice(&chunk);
            Ok(())
        }
        async fn finish(self: Box<Self>) -> Result<Receipt, SinkError> {
            let sha: [u8; 32] = Sha256::digest(&self.data).into();
            let size = self.data.len() as u64;
            self.sink
                .stored
                .lock()
                .unwrap()
                .push((self.key.clone(), self.data));
            Ok(Receipt::new(format!("mem://{}", self.key), size, sha))
        }
        async fn abort(self: Box<Self>) {}
    }

    fn dest(label: &'static str, sink: &Arc<MemSink>) -> Destination {
        Destination {
            label,
            factory: Arc::new(MemFactory(sink.clone())),
            key: "rec/a.mp4".into(),
            prefix: String::new(),
            custom_endpoint: false,
            is_backup: false,
        }
    }

    #[tokio::test]
    async fn streams_a_growing_file_and_verifies_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        let sink = Arc::new(MemSink::default());
        let up = LiveUpload::start(
            Destinations {
                primary: dest("S3", &sink),
                backup: None,
            },
            path.clone(),
            "video/mp4".into(),
        );
        // The file appears late and grows in pieces.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut expected = Vec::new();
        for i in 0..5u8 {
            let piece = vec![i; 300_000];
            expected.extend_from_slice(&piece);
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(&piece).unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let u = up.finish().await.unwrap();
        assert_eq!(u.size, expected.len() as u64);
        assert!(!u.backup_used);
        let stored = sink.stored.lock().unwrap();
        assert_eq!(stored[0].1, expected);
        assert_eq!(u.sha256, <[u8; 32]>::from(Sha256::digest(&expected)));
    }

    #[tokio::test]
    async fn a_rewritten_header_is_uploaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.webm");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let sink = Arc::new(MemSink::default());
        let up = LiveUpload::start(
            Destinations {
                primary: dest("S3", &sink),
                backup: None,
            },
            path.clone(),
            "video/webm".into(),
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The muxer seeks back and patches its header at EOS.
        let mut data = vec![1u8; 1000];
        data[3] = 9;
        std::fs::write(&path, &data).unwrap();
        let u = up.finish().await.unwrap();
        assert_eq!(sink.stored.lock().unwrap().last().unwrap().1, data);
        assert_eq!(u.size, 1000);
        assert_eq!(sink.opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn retryable_errors_restart_the_object_then_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ogg");
        std::fs::write(&path, b"hello").unwrap();
        let sink = Arc::new(MemSink::default());
        sink.failures.store(1, Ordering::SeqCst);
        let dests = Destinations {
            primary: dest("S3", &sink),
            backup: None,
        };
        let u = upload_file(&dests, &path, "audio/ogg").await.unwrap();
        assert_eq!(u.size, 5);
        assert_eq!(sink.opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn auth_errors_go_to_the_backup_without_retrying() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ogg");
        std::fs::write(&path, b"hello").unwrap();
        let primary = Arc::new(MemSink::default());
        primary.failures.store(10, Ordering::SeqCst);
        *primary.error.lock().unwrap() = Some(|| SinkError::auth("403 Forbidden"));
        let backup = Arc::new(MemSink::default());
        let dests = Destinations {
            primary: dest("S3", &primary),
            backup: Some(dest("Azure", &backup)),
        };
        let u = upload_file(&dests, &path, "audio/ogg").await.unwrap();
        assert!(u.backup_used);
        assert_eq!(
            primary.opened.load(Ordering::SeqCst),
            1,
            "auth errors are not retried"
        );
        assert_eq!(backup.stored.lock().unwrap()[0].1, b"hello");

        // Both failing: Go's two-line error.
        let backup_bad = Arc::new(MemSink::default());
        backup_bad.failures.store(10, Ordering::SeqCst);
        *backup_bad.error.lock().unwrap() = Some(|| SinkError::permanent("bucket gone"));
        primary.failures.store(10, Ordering::SeqCst);
        let dests = Destinations {
            primary: dest("S3", &primary),
            backup: Some(dest("Azure", &backup_bad)),
        };
        let e = upload_file(&dests, &path, "audio/ogg").await.unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("primary: S3 upload failed: "), "{text}");
        assert!(text.contains("\nbackup: Azure upload failed: "), "{text}");
        assert!(
            path.exists(),
            "the local file is never removed by the uploader"
        );
    }

    #[tokio::test]
    async fn outcomes_are_reported_per_storage() {
        // The reporter is process-wide: only this test installs one, and it keeps only its own
        // content type.
        const TYPE: &str = "test/outcomes-are-reported";
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let _installed = report::install(Arc::new(move |r: UploadReport| {
            if r.content_type == TYPE {
                sink.lock().unwrap().push(r);
            }
        }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ogg");
        std::fs::write(&path, b"hello").unwrap();
        let primary = Arc::new(MemSink::default());
        primary.failures.store(1, Ordering::SeqCst);
        *primary.error.lock().unwrap() =
            Some(|| SinkError::auth("put: Server returned non-2xx status code: 403 Forbidden"));
        let backup = Arc::new(MemSink::default());
        let mut primary_dest = dest("S3", &primary);
        primary_dest.custom_endpoint = true;
        let mut backup_dest = dest("Azure", &backup);
        backup_dest.is_backup = true;
        let dests = Destinations {
            primary: primary_dest.clone(),
            backup: Some(backup_dest),
        };
        upload_file(&dests, &path, TYPE).await.unwrap();
        upload_file(
            &Destinations {
                primary: primary_dest,
                backup: None,
            },
            &path,
            TYPE,
        )
        .await
        .unwrap();
        let seen = seen.lock().unwrap();
        let got: Vec<_> = seen
            .iter()
            .map(|r| (r.status, r.custom_endpoint, r.backup))
            .collect();
        assert_eq!(
            got,
            [
                (UploadStatus::ClientError, true, false),
                (UploadStatus::Success, false, true),
                (UploadStatus::Success, true, false)
            ]
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("a/b.MP4"), "video/mp4");
        assert_eq!(content_type_for("x.json"), "application/json");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}
