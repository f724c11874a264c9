//! The upload task of an image snapshot output: names each JPEG as Go does, stores it straight
//! from memory, and keeps `ImagesInfo` and the manifest entries.
//!
//! * The pipeline never waits: [`ImageSender::offer`] is a `try_send` into a queue of Go's
//!   capacity, `max(max_upload_queue · 60 / capture_interval, 4)`; when it is full the image
//!   is dropped and counted (Go's text: `image upload queue full (N pending): storage cannot
//!   keep up`).
//! * Uploads are sequential (an image every ≥ 1 s is small; order matters for
//!   NONE_OVERWRITE, where the newest must win), each retried by the [`RetryPolicy`].
//! * A failed image is counted and reported ([`ImagesNotice::ImageFailed`]) and the recording
//!   goes on (Go FAILs the whole egress on the first one). `fail_on_upload_error` restores
//!   Go's behaviour: the first failure is [`ImagesNotice::Fatal`].
//! * Names: INDEX counts every captured image from 0 (Go's multifilesink index: a dropped or
//!   failed image still uses its number), TIMESTAMP from the capture's wall clock,
//!   NONE_OVERWRITE always `<prefix>.jpeg`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::naming::ImageNaming;
use crate::outputs::filename::LocalTime;
use egress_proto::livekit::ImagesInfo;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::gst::CapturedImage;
use crate::outputs::manifest::ManifestImage;
use crate::outputs::retry::RetryPolicy;
use crate::outputs::store::{IMAGE_CONTENT_TYPE, ObjectBody, ObjectMeta, ObjectStore};
use crate::outputs::upload_metrics::{UploadCounts, UploadObject};

pub const DEFAULT_MAX_UPLOAD_QUEUE_MINUTES: u32 = 60;
/// Go's floor for the image queue (#1338).
const MIN_QUEUE: usize = 4;

#[derive(Debug, Clone)]
pub struct ImageUploaderConfig {
    pub naming: ImageNaming,
    pub max_upload_queue_minutes: u32,
    pub retry: RetryPolicy,
    /// Go's behaviour: the first image that cannot be stored fails the egress.
    pub fail_on_upload_error: bool,
}

impl ImageUploaderConfig {
    pub fn new(naming: ImageNaming) -> ImageUploaderConfig {
        ImageUploaderConfig {
            naming,
            max_upload_queue_minutes: DEFAULT_MAX_UPLOAD_QUEUE_MINUTES,
            retry: RetryPolicy::default(),
            fail_on_upload_error: false,
        }
    }

    pub fn queue_capacity(&self) -> usize {
        (self.max_upload_queue_minutes as usize * 60 / self.naming.capture_interval.max(1) as usize)
            .max(MIN_QUEUE)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImagesNotice {
    /// An image was not stored (upload failed for good, or the queue was full). The
    /// recording goes on.
    ImageFailed {
        name: String,
        error: String,
        failed_total: u64,
    },
    /// `fail_on_upload_error`: fail the egress with this text.
    Fatal(String),
}

#[derive(Debug, Clone)]
pub struct ImagesOutcome {
    pub info: ImagesInfo,
    pub manifest: Vec<ManifestImage>,
    /// Images captured but not stored.
    pub failed: u64,
    /// The first few failures' texts (for the log / the error with `fail_on_upload_error`).
    pub errors: Vec<String>,
    pub backup_used: bool,
}

struct Counters {
    captured: AtomicU64,
    dropped: AtomicU64,
    queued: AtomicUsize,
}

/// Where the pipeline hands images over (owned by the branch's appsink callback).
#[derive(Clone)]
pub struct ImageSender {
    tx: mpsc::Sender<(u64, CapturedImage)>,
    counters: Arc<Counters>,
}

impl ImageSender {
    /// Never blocks: a full queue drops the image (counted, reported by the task).
    pub fn offer(&self, image: CapturedImage) {
        let index = self.counters.captured.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send((index, image)) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    pending = self.tx.max_capacity(),
                    "image upload queue full: storage cannot keep up"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("image captured after the output finished");
            }
        }
    }
}

pub struct ImageUploader {
    sender: Option<ImageSender>,
    uploads: Arc<UploadCounts>,
    finish: Option<tokio::sync::oneshot::Sender<()>>,
    info: Arc<Mutex<ImagesInfo>>,
    task: JoinHandle<ImagesOutcome>,
}

impl ImageUploader {
    pub fn spawn(
        config: ImageUploaderConfig,
        store: Arc<dyn ObjectStore>,
        notices: mpsc::UnboundedSender<ImagesNotice>,
    ) -> ImageUploader {
        let (tx, rx) = mpsc::channel(config.queue_capacity());
        let counters = Arc::new(Counters {
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
        });
        let info = Arc::new(Mutex::new(ImagesInfo {
            filename_prefix: config.naming.info_filename_prefix.clone(),
            ..Default::default()
        }));
        let (finish, finish_rx) = tokio::sync::oneshot::channel();
        let uploads = Arc::new(UploadCounts::default());
        let task = tokio::spawn(run(
            config,
            store,
            rx,
            finish_rx,
            counters.clone(),
            info.clone(),
            notices,
            uploads.clone(),
        ));
        ImageUploader {
            sender: Some(ImageSender { tx, counters }),
            uploads,
            finish: Some(finish),
            info,
            task,
        }
    }

    /// For [`super::gst::ImagesBranch::attach`].
    pub fn sender(&self) -> ImageSender {
        self.sender.clone().expect("sender taken only by finish")
    }

    pub fn info(&self) -> ImagesInfo {
        self.info.lock().map(|i| i.clone()).unwrap_or_default()
    }

    /// Images stored and failed so far (for the metrics).
    pub fn uploads(&self) -> Arc<UploadCounts> {
        self.uploads.clone()
    }

    /// Images waiting for their upload (a gauge).
    pub fn queue_len(&self) -> usize {
        self.sender
            .as_ref()
            .map(|s| s.counters.queued.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Call after the pipeline's EOS: stores what is queued and returns the results. Images
    /// offered after this are dropped (the appsink's sender may outlive the call).
    pub async fn finish(mut self) -> ImagesOutcome {
        drop(self.sender.take());
        if let Some(f) = self.finish.take() {
            let _ = f.send(());
        }
        match self.task.await {
            Ok(o) => o,
            Err(e) => ImagesOutcome {
                info: self.info.lock().map(|i| i.clone()).unwrap_or_default(),
                manifest: Vec::new(),
                failed: 0,
                errors: vec![format!("image upload task failed: {e}")],
                backup_used: false,
            },
        }
    }
}

/// At most this many failure texts are kept.
const KEPT_ERRORS: usize = 10;

#[allow(clippy::too_many_arguments)]
async fn run(
    config: ImageUploaderConfig,
    store: Arc<dyn ObjectStore>,
    mut rx: mpsc::Receiver<(u64, CapturedImage)>,
    finish: tokio::sync::oneshot::Receiver<()>,
    counters: Arc<Counters>,
    info: Arc<Mutex<ImagesInfo>>,
    notices: mpsc::UnboundedSender<ImagesNotice>,
    uploads: Arc<UploadCounts>,
) -> ImagesOutcome {
    let naming = &config.naming;
    let meta = ObjectMeta {
        content_type: IMAGE_CONTENT_TYPE,
        cache_control: None,
    };
    let mut outcome = ImagesOutcome {
        info: ImagesInfo::default(),
        manifest: Vec::new(),
        failed: 0,
        errors: Vec::new(),
        backup_used: false,
    };
    let mut reported_drops = 0u64;
    let mut fatal_sent = false;
    let mut fail = |outcome: &mut ImagesOutcome, name: String, error: String| {
        outcome.failed += 1;
        uploads.failed(UploadObject::Image);
        if outcome.errors.len() < KEPT_ERRORS {
            outcome.errors.push(format!("{name}: {error}"));
        }
        tracing::warn!(image = %name, %error, failed = outcome.failed, "image not stored");
        let _ = notices.send(ImagesNotice::ImageFailed {
            name: name.clone(),
            error: error.clone(),
            failed_total: outcome.failed,
        });
        if config.fail_on_upload_error && !fatal_sent {
            fatal_sent = true;
            let _ = notices.send(ImagesNotice::Fatal(format!("{name}: {error}")));
        }
    };

    let mut finish = Some(finish);
    loop {
        let next = tokio::select! {
            biased;
            next = rx.recv() => next,
            _ = async { finish.as_mut().expect("guarded").await }, if finish.is_some() => {
                // Take what is queued, then end (`recv` answers None once it is drained).
                finish = None;
                rx.close();
                continue;
            }
        };
        let Some((index, image)) = next else { break };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        if dropped > reported_drops {
            let pending = config.queue_capacity();
            for _ in reported_drops..dropped {
                fail(
                    &mut outcome,
                    "(dropped)".into(),
                    format!("image upload queue full ({pending} pending): storage cannot keep up"),
                );
            }
            reported_drops = dropped;
        }
        let path = naming.image_path(index, LocalTime::from_system(image.captured_at));
        let body = ObjectBody::Bytes(image.data.clone());
        match config
            .retry
            .run(&path, || store.put(&path, body.clone(), &meta))
            .await
        {
            Ok(stored) => {
                uploads.stored(UploadObject::Image);
                outcome.backup_used |= stored.backup_used;
                outcome.manifest.push(ManifestImage {
                    filename: path,
                    timestamp: rfc3339(image.captured_at),
                    location: stored.location,
                });
                if let Ok(mut i) = info.lock() {
                    i.image_count += 1;
                    if i.started_at == 0 {
                        i.started_at = unix_nanos(image.captured_at);
                    }
                    i.ended_at = unix_nanos(image.captured_at);
                }
            }
            Err((e, attempts)) => fail(
                &mut outcome,
                path,
                format!("{e} (after {attempts} attempts)"),
            ),
        }
    }
    let dropped = counters.dropped.load(Ordering::Relaxed);
    for _ in reported_drops..dropped {
        fail(
            &mut outcome,
            "(dropped)".into(),
            "image upload queue full: storage cannot keep up".into(),
        );
    }
    outcome.info = info.lock().map(|i| i.clone()).unwrap_or_default();
    if outcome.info.started_at != 0 {
        outcome.info.ended_at = unix_nanos(SystemTime::now()).max(outcome.info.ended_at);
    }
    outcome
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn rfc3339(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_queue_capacity_and_timestamp_format() {
        let naming = ImageNaming {
            storage_dir: String::new(),
            prefix: "p".into(),
            info_filename_prefix: "p".into(),
            suffix: super::super::naming::ImageSuffix::Index,
            capture_interval: 10,
            size: super::super::naming::ImageSize::Source,
        };
        assert_eq!(
            ImageUploaderConfig::new(naming.clone()).queue_capacity(),
            360
        );
        let huge = ImageNaming {
            capture_interval: 86_400,
            ..naming
        };
        assert_eq!(
            ImageUploaderConfig::new(huge).queue_capacity(),
            4,
            "Go's floor"
        );
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
