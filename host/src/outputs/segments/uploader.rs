//! The upload task of an HLS segment output: takes each closed segment from the pipeline,
//! stores it, adds it to the playlists in order, stores both playlists, and keeps
//! `SegmentsInfo` and the manifest entries.
//!
//! ```text
//! SegmentSender ──unbounded──▶ task ──▶ up to `parallel_uploads` segment puts (retried)
//!  (bus thread)                  │        results wait in order ─▶ commit n, n+1, …
//!                                ▼
//!             main playlist store task   live playlist store task   (newest version wins)
//! ```
//!
//! Rules:
//! * The pipeline never waits: [`SegmentSender::send`] is an unbounded send of a small
//!   record (the segment itself is on disk). The bound is on segments not yet committed: Go's
//!   `max_upload_queue · 60 / segment_duration` (900 at 60 min and 4 s). Past it the task says
//!   so ([`SegmentsNotice::QueueFull`], Go's `segment upload job queue is full`) and keeps
//!   every segment; the recorder fails the egress as Go does.
//! * Segments upload in parallel (default 4, Go: unbounded), each retried by the
//!   [`RetryPolicy`]; they are committed to the playlists strictly in order, each only after
//!   its upload was verified. The local file is deleted only then.
//! * A segment whose upload fails for good (after the store's backup and our retries) is kept
//!   locally (`ObjectStore::keep_locally`) and reported with its name, where it was kept, and
//!   the error ([`SegmentsNotice::SegmentLost`], [`SegmentsOutcome::lost`]). It is left out
//!   of the playlists, and the next stored segment carries `#EXT-X-DISCONTINUITY`, so players
//!   and the RFC checks see an explicit break rather than a link to an object that does not
//!   exist (or a timeline that silently skips). Go instead fails the egress at once; the
//!   recorder should fail the egress with the notice's text at the end (its error names the
//!   segment and the local copy), or at once for Go's behaviour.
//! * After every commit the main and the live playlist are stored (Go stores the main one only
//!   every N segments, #3474): each has its own task that always stores the newest version
//!   (an older one waiting is skipped), with `Cache-Control: no-cache`. At the end both are
//!   stored with `#EXT-X-ENDLIST`.
//! * `SegmentsInfo` as Go fills it: names at start, `segment_count`/`size` per stored segment,
//!   `playlist_location`/`live_playlist_location` once stored, `started_at` = wall clock of the
//!   first segment's first sample, `ended_at` = the end of the last segment on the same clock,
//!   `duration` = `ended_at - started_at` (Go: the same difference of the egress's times).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::naming::SegmentNaming;
use super::playlist::{DEFAULT_LIVE_WINDOW, HlsPlaylists, Playlist, Segment};
use bytes::Bytes;
use egress_proto::livekit::SegmentsInfo;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::gst::SegmentClosed;
use crate::outputs::manifest::{ManifestPlaylist, ManifestSegment};
use crate::outputs::retry::RetryPolicy;
use crate::outputs::store::{
    ObjectBody, ObjectMeta, ObjectStore, PLAYLIST_CACHE_CONTROL, PLAYLIST_CONTENT_TYPE,
    SEGMENT_CONTENT_TYPE, StoreError, StoredObject,
};
use crate::outputs::upload_metrics::{UploadCounts, UploadObject};

/// Go's `max_upload_queue` default, minutes.
pub const DEFAULT_MAX_UPLOAD_QUEUE_MINUTES: u32 = 60;
pub const DEFAULT_PARALLEL_UPLOADS: usize = 4;

#[derive(Debug, Clone)]
pub struct SegmentUploaderConfig {
    pub naming: SegmentNaming,
    /// Segments in the live playlist (Go's fixed 5).
    pub live_window: usize,
    pub parallel_uploads: usize,
    /// Go's `max_upload_queue` (minutes of segments that may wait).
    pub max_upload_queue_minutes: u32,
    pub retry: RetryPolicy,
}

impl SegmentUploaderConfig {
    pub fn new(naming: SegmentNaming) -> SegmentUploaderConfig {
        SegmentUploaderConfig {
            naming,
            live_window: DEFAULT_LIVE_WINDOW,
            parallel_uploads: DEFAULT_PARALLEL_UPLOADS,
            max_upload_queue_minutes: DEFAULT_MAX_UPLOAD_QUEUE_MINUTES,
            retry: RetryPolicy::default(),
        }
    }

    /// Segments that may wait for their commit (Go's channel capacity).
    pub fn queue_capacity(&self) -> usize {
        let d = self.naming.segment_duration.max(1);
        ((self.max_upload_queue_minutes as usize * 60) / d as usize).max(1)
    }
}

/// What the recorder hears from the task while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentsNotice {
    /// More segments wait than the queue holds: storage cannot keep up (Go FAILs the egress
    /// with `segment upload job queue is full`). Reported once per overflow.
    QueueFull { pending: usize, capacity: usize },
    /// A segment could not be stored anywhere.
    SegmentLost(LostSegment),
    /// A playlist version could not be stored (the next version tries again).
    PlaylistFailed { playlist: String, error: String },
    /// A segment ran longer than the target duration, which grew (RFC 8216 §6.2.1 asks for a
    /// constant value: the encoder missed a keyframe request).
    TargetDurationGrew { segment: String, target: u64 },
}

impl SegmentsNotice {
    /// Go's error text for the egress, for the notices that fail it in Go.
    pub fn error_text(&self) -> Option<String> {
        match self {
            SegmentsNotice::QueueFull { pending, .. } => Some(format!(
                "segment upload job queue is full ({pending} pending): storage cannot keep up"
            )),
            SegmentsNotice::SegmentLost(l) => Some(l.to_string()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("segment {name} could not be stored ({error}); kept at {kept_at}")]
pub struct LostSegment {
    pub name: String,
    pub kept_at: String,
    pub error: String,
}

/// The end of a segment output.
#[derive(Debug, Clone)]
pub struct SegmentsOutcome {
    pub info: SegmentsInfo,
    pub manifest: ManifestPlaylist,
    pub lost: Vec<LostSegment>,
    /// Errors that should fail the egress (lost segments, the final playlist not stored).
    pub errors: Vec<String>,
    /// A segment or playlist went to the backup storage (`EgressInfo.backup_storage_used`).
    pub backup_used: bool,
}

/// Queue sizes for Go's gauges and the segment-end → playlists-stored times.
#[derive(Debug, Default)]
pub struct SegmentGauges {
    /// `livekit_egress_segments_uploads_channel_size`: segments closed, not yet committed.
    segments: AtomicUsize,
    /// Per playlist (main, live): the newest version offered and the newest the store task
    /// took. Older waiting versions are skipped, so at most one per playlist waits.
    playlist_offered: [AtomicU64; 2],
    playlist_taken: [AtomicU64; 2],
    /// Segment closed → both playlists listing it stored, per committed segment.
    latencies: Mutex<Vec<Duration>>,
    /// Segments and playlist versions stored or failed (after retries), for the metrics.
    uploads: Arc<UploadCounts>,
}

impl SegmentGauges {
    pub fn segment_queue(&self) -> usize {
        self.segments.load(Ordering::Relaxed)
    }
    /// `livekit_egress_playlist_uploads_channel_size`: playlist versions waiting to be stored.
    pub fn playlist_queue(&self) -> usize {
        (0..2)
            .filter(|&i| {
                self.playlist_offered[i].load(Ordering::Relaxed)
                    > self.playlist_taken[i].load(Ordering::Relaxed)
            })
            .count()
    }
    /// Segments and playlist versions stored or failed so far.
    pub fn uploads(&self) -> Arc<UploadCounts> {
        self.uploads.clone()
    }
    /// Drains the recorded latencies (the metrics layer observes them into a histogram).
    pub fn take_latencies(&self) -> Vec<Duration> {
        self.latencies
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

enum Msg {
    Segment(SegmentClosed),
    Finish,
}

/// Where the pipeline hands segments over (cloned into the branch).
#[derive(Clone)]
pub struct SegmentSender {
    tx: mpsc::UnboundedSender<Msg>,
    gauges: Arc<SegmentGauges>,
}

impl SegmentSender {
    /// Never blocks.
    pub fn send(&self, segment: SegmentClosed) {
        self.gauges.segments.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(Msg::Segment(s))) = self.tx.send(Msg::Segment(segment)) {
            self.gauges.segments.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(segment = %s.name, path = %s.local_path.display(),
                "segment closed after its output finished; left in the work dir");
        }
    }
}

/// The running upload task of one segment output.
pub struct SegmentUploader {
    sender: SegmentSender,
    info: Arc<Mutex<SegmentsInfo>>,
    task: JoinHandle<SegmentsOutcome>,
}

impl SegmentUploader {
    /// Starts the task. `notices` gets what the recorder must know while recording.
    pub fn spawn(
        config: SegmentUploaderConfig,
        store: Arc<dyn ObjectStore>,
        notices: mpsc::UnboundedSender<SegmentsNotice>,
    ) -> SegmentUploader {
        let (tx, rx) = mpsc::unbounded_channel();
        let gauges = Arc::new(SegmentGauges::default());
        let info = Arc::new(Mutex::new(SegmentsInfo {
            playlist_name: config.naming.playlist_path(),
            live_playlist_name: config.naming.live_playlist_path().unwrap_or_default(),
            ..Default::default()
        }));
        let task = tokio::spawn(run(
            config,
            store,
            rx,
            gauges.clone(),
            info.clone(),
            notices,
        ));
        SegmentUploader {
            sender: SegmentSender { tx, gauges },
            info,
            task,
        }
    }

    /// For [`super::gst::SegmentsBranch::attach`].
    pub fn sender(&self) -> SegmentSender {
        self.sender.clone()
    }

    pub fn gauges(&self) -> Arc<SegmentGauges> {
        self.sender.gauges.clone()
    }

    /// The current `SegmentsInfo`, for status updates.
    pub fn info(&self) -> SegmentsInfo {
        self.info.lock().map(|i| i.clone()).unwrap_or_default()
    }

    /// Call after the pipeline's EOS (every segment has been handed over): uploads what is
    /// left, stores the playlists with `#EXT-X-ENDLIST`, and returns the results.
    pub async fn finish(self) -> SegmentsOutcome {
        let _ = self.sender.tx.send(Msg::Finish);
        match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => SegmentsOutcome {
                info: self.info.lock().map(|i| i.clone()).unwrap_or_default(),
                manifest: ManifestPlaylist::default(),
                lost: Vec::new(),
                errors: vec![format!("segment upload task failed: {e}")],
                backup_used: false,
            },
        }
    }
}

type UploadResult = Result<StoredObject, (StoreError, u32)>;

async fn run(
    config: SegmentUploaderConfig,
    store: Arc<dyn ObjectStore>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    gauges: Arc<SegmentGauges>,
    info: Arc<Mutex<SegmentsInfo>>,
    notices: mpsc::UnboundedSender<SegmentsNotice>,
) -> SegmentsOutcome {
    let capacity = config.queue_capacity();
    let naming = config.naming.clone();
    let mut playlists = match HlsPlaylists::new(
        naming.segment_duration,
        naming
            .live_playlist_filename
            .as_ref()
            .map(|_| config.live_window.max(1)),
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "invalid live playlist window; using Go's");
            HlsPlaylists {
                main: Playlist::event(naming.segment_duration),
                live: naming.live_playlist_filename.as_ref().map(|_| {
                    Playlist::live(naming.segment_duration, DEFAULT_LIVE_WINDOW)
                        .expect("window > 0")
                }),
            }
        }
    };
    let latency = Arc::new(LatencyTracker::new(
        playlists.live.is_some(),
        gauges.clone(),
    ));
    let main_store = PlaylistStore::spawn(
        naming.playlist_path(),
        0,
        store.clone(),
        config.retry,
        latency.clone(),
        info.clone(),
        notices.clone(),
    );
    let live_store = naming.live_playlist_path().map(|p| {
        PlaylistStore::spawn(
            p,
            1,
            store.clone(),
            config.retry,
            latency.clone(),
            info.clone(),
            notices.clone(),
        )
    });

    let permits = Arc::new(Semaphore::new(config.parallel_uploads.max(1)));
    let mut uploads: JoinSet<(u64, SegmentClosed, UploadResult)> = JoinSet::new();
    let mut finished: BTreeMap<u64, (SegmentClosed, UploadResult)> = BTreeMap::new();
    let (mut received, mut next_commit, mut version) = (0u64, 0u64, 0u64);
    let mut overflowing = false;
    let mut input_open = true;
    let mut state = CommitState::default();

    loop {
        tokio::select! {
            msg = rx.recv(), if input_open => match msg {
                Some(Msg::Segment(segment)) => {
                    let seq = received;
                    received += 1;
                    let pending = (received - next_commit) as usize;
                    if pending > capacity && !overflowing {
                        overflowing = true;
                        tracing::error!(pending, capacity, "segment upload job queue is full: storage cannot keep up");
                        let _ = notices.send(SegmentsNotice::QueueFull { pending, capacity });
                    }
                    let (store, permits, retry, path) =
                        (store.clone(), permits.clone(), config.retry, naming.segment_path(&segment.name));
                    uploads.spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let meta = ObjectMeta { content_type: SEGMENT_CONTENT_TYPE, cache_control: None };
                        let body = ObjectBody::File(segment.local_path.clone());
                        let result = retry.run(&path, || store.put(&path, body.clone(), &meta)).await;
                        (seq, segment, result)
                    });
                }
                Some(Msg::Finish) | None => input_open = false,
            },
            Some(joined) = uploads.join_next(), if !uploads.is_empty() => {
                let Ok((seq, segment, result)) = joined else {
                    tracing::error!("a segment upload task panicked");
                    continue;
                };
                match &result {
                    Ok(_) => gauges.uploads.stored(UploadObject::Segment),
                    Err(_) => gauges.uploads.failed(UploadObject::Segment),
                }
                finished.insert(seq, (segment, result));
                while let Some((segment, result)) = finished.remove(&next_commit) {
                    next_commit += 1;
                    gauges.segments.fetch_sub(1, Ordering::Relaxed);
                    if overflowing && ((received - next_commit) as usize) <= capacity / 2 {
                        overflowing = false;
                    }
                    let committed = state.commit(&naming, &mut playlists, &store, &info, &notices, segment, result);
                    if let Some(closed_at) = committed {
                        version += 1;
                        latency.committed(version, closed_at);
                        main_store.publish(version, playlists.main.render(), &gauges);
                        if let (Some(s), Some(live)) = (&live_store, &playlists.live) {
                            s.publish(version, live.render(), &gauges);
                        }
                    }
                }
            },
            else => break,
        }
    }

    // Every segment is committed (or lost): the final versions, with ENDLIST.
    playlists.end();
    version += 1;
    main_store.publish(version, playlists.main.render(), &gauges);
    if let (Some(s), Some(live)) = (&live_store, &playlists.live) {
        s.publish(version, live.render(), &gauges);
    }
    let mut errors: Vec<String> = state.lost.iter().map(ToString::to_string).collect();
    let mut backup_used = state.backup_used;
    for s in std::iter::once(main_store).chain(live_store) {
        let r = s.close().await;
        backup_used |= r.backup_used;
        if let Some(e) = r.final_error {
            errors.push(e);
        }
    }
    let info = info.lock().map(|i| i.clone()).unwrap_or_default();
    SegmentsOutcome {
        manifest: ManifestPlaylist {
            location: info.playlist_location.clone(),
            segments: state.manifest,
        },
        info,
        lost: state.lost,
        errors,
        backup_used,
    }
}

#[derive(Default)]
struct CommitState {
    /// The previous segment was lost: the next one follows a discontinuity.
    gap: bool,
    started: Option<SystemTime>,
    manifest: Vec<ManifestSegment>,
    lost: Vec<LostSegment>,
    backup_used: bool,
}

impl CommitState {
    /// Commits one segment in order; returns its close time when the playlists changed.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        naming: &SegmentNaming,
        playlists: &mut HlsPlaylists,
        store: &Arc<dyn ObjectStore>,
        info: &Mutex<SegmentsInfo>,
        notices: &mpsc::UnboundedSender<SegmentsNotice>,
        segment: SegmentClosed,
        result: UploadResult,
    ) -> Option<Instant> {
        let stored = match result {
            Ok(stored) => stored,
            Err((e, attempts)) => {
                let path = naming.segment_path(&segment.name);
                let kept_at = store
                    .keep_locally(&segment.local_path, &path)
                    .unwrap_or_else(|| segment.local_path.to_string_lossy().into_owned());
                let lost = LostSegment {
                    name: segment.name.clone(),
                    kept_at,
                    error: format!("{e} (after {attempts} attempts)"),
                };
                tracing::error!(%lost, "segment left out of the playlists");
                let _ = notices.send(SegmentsNotice::SegmentLost(lost.clone()));
                self.lost.push(lost);
                self.gap = true;
                return None;
            }
        };
        // Verified by the store: the local copy can go.
        if let Err(e) = std::fs::remove_file(&segment.local_path) {
            tracing::warn!(path = %segment.local_path.display(), error = %e, "cannot delete an uploaded segment");
        }
        self.backup_used |= stored.backup_used;
        let entry = Segment {
            uri: segment.name.clone(),
            duration: segment.duration.as_secs_f64(),
            program_date_time: segment.program_date_time,
            discontinuity: std::mem::take(&mut self.gap),
        };
        match playlists.append(&entry) {
            Ok(true) => {
                let target = playlists.main.target_duration();
                tracing::warn!(segment = %entry.uri, duration = entry.duration, target,
                    "segment longer than the target duration (missed keyframe request?)");
                let _ = notices.send(SegmentsNotice::TargetDurationGrew {
                    segment: entry.uri.clone(),
                    target,
                });
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "segment refused by the playlist");
                return None;
            }
        }
        self.manifest.push(ManifestSegment {
            filename: naming.segment_path(&segment.name),
            location: stored.location,
        });
        let started = *self.started.get_or_insert(segment.program_date_time);
        let ended = segment.program_date_time + segment.duration;
        if let Ok(mut i) = info.lock() {
            i.segment_count += 1;
            i.size += stored.size as i64;
            i.started_at = unix_nanos(started);
            i.ended_at = unix_nanos(ended);
            i.duration = i.ended_at - i.started_at;
        }
        Some(segment.closed_at)
    }
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Segment close → both playlists stored.
struct LatencyTracker {
    state: Mutex<LatencyState>,
    gauges: Arc<SegmentGauges>,
}

struct LatencyState {
    /// Newest stored version per playlist (the live one at `u64::MAX` when there is none).
    stored: [u64; 2],
    waiting: VecDeque<(u64, Instant)>,
}

impl LatencyTracker {
    fn new(has_live: bool, gauges: Arc<SegmentGauges>) -> LatencyTracker {
        let stored = [0, if has_live { 0 } else { u64::MAX }];
        LatencyTracker {
            state: Mutex::new(LatencyState {
                stored,
                waiting: VecDeque::new(),
            }),
            gauges,
        }
    }

    fn committed(&self, version: u64, closed_at: Instant) {
        if let Ok(mut s) = self.state.lock() {
            s.waiting.push_back((version, closed_at));
        }
    }

    fn stored(&self, playlist: usize, version: u64) {
        let Ok(mut s) = self.state.lock() else { return };
        s.stored[playlist] = s.stored[playlist].max(version);
        let both = s.stored[0].min(s.stored[1]);
        let now = Instant::now();
        while let Some(&(v, closed_at)) = s.waiting.front() {
            if v > both {
                break;
            }
            s.waiting.pop_front();
            if let Ok(mut l) = self.gauges.latencies.lock() {
                l.push(now - closed_at);
            }
        }
    }
}

#[derive(Clone)]
struct Version {
    number: u64,
    text: Bytes,
}

struct PlaylistStore {
    slot: usize,
    tx: watch::Sender<Option<Version>>,
    task: JoinHandle<PlaylistResult>,
}

#[derive(Default)]
struct PlaylistResult {
    backup_used: bool,
    /// The last version (with ENDLIST) could not be stored.
    final_error: Option<String>,
}

impl PlaylistStore {
    fn spawn(
        path: String,
        slot: usize,
        store: Arc<dyn ObjectStore>,
        retry: RetryPolicy,
        latency: Arc<LatencyTracker>,
        info: Arc<Mutex<SegmentsInfo>>,
        notices: mpsc::UnboundedSender<SegmentsNotice>,
    ) -> PlaylistStore {
        let (tx, mut rx) = watch::channel::<Option<Version>>(None);
        let task = tokio::spawn(async move {
            let meta = ObjectMeta {
                content_type: PLAYLIST_CONTENT_TYPE,
                cache_control: Some(PLAYLIST_CACHE_CONTROL),
            };
            let mut result = PlaylistResult::default();
            let mut attempted = 0u64;
            loop {
                let latest = rx.borrow_and_update().clone();
                if let Some(v) = latest.filter(|v| v.number > attempted) {
                    attempted = v.number;
                    latency.gauges.playlist_taken[slot].fetch_max(v.number, Ordering::Relaxed);
                    let stored = retry
                        .run(&path, || {
                            store.put(&path, ObjectBody::Bytes(v.text.clone()), &meta)
                        })
                        .await;
                    match stored {
                        Ok(o) => {
                            latency.gauges.uploads.stored(UploadObject::Playlist);
                            result.backup_used |= o.backup_used;
                            result.final_error = None;
                            latency.stored(slot, v.number);
                            if let Ok(mut i) = info.lock() {
                                let field = if slot == 0 {
                                    &mut i.playlist_location
                                } else {
                                    &mut i.live_playlist_location
                                };
                                *field = o.location;
                            }
                        }
                        Err((e, _)) => {
                            latency.gauges.uploads.failed(UploadObject::Playlist);
                            tracing::warn!(playlist = %path, error = %e, "playlist upload failed");
                            result.final_error =
                                Some(format!("playlist {path} could not be stored: {e}"));
                            let _ = notices.send(SegmentsNotice::PlaylistFailed {
                                playlist: path.clone(),
                                error: e.message,
                            });
                        }
                    }
                }
                if rx.changed().await.is_err() {
                    let newer = rx.borrow().as_ref().is_some_and(|v| v.number > attempted);
                    if !newer {
                        break;
                    }
                }
            }
            result
        });
        PlaylistStore { slot, tx, task }
    }

    /// Offers a version; a version still waiting is replaced (the newest is what matters).
    fn publish(&self, number: u64, text: String, gauges: &SegmentGauges) {
        gauges.playlist_offered[self.slot].fetch_max(number, Ordering::Relaxed);
        self.tx.send_replace(Some(Version {
            number,
            text: Bytes::from(text),
        }));
    }

    async fn close(self) -> PlaylistResult {
        drop(self.tx);
        self.task.await.unwrap_or_else(|e| PlaylistResult {
            backup_used: false,
            final_error: Some(format!("playlist upload task failed: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_capacity_as_go() {
        let naming = |d: u32| SegmentNaming {
            storage_dir: String::new(),
            playlist_filename: "p.m3u8".into(),
            live_playlist_filename: None,
            segment_prefix: "p".into(),
            suffix: super::super::naming::SegmentSuffix::Index,
            segment_duration: d,
        };
        assert_eq!(SegmentUploaderConfig::new(naming(4)).queue_capacity(), 900);
        assert_eq!(SegmentUploaderConfig::new(naming(6)).queue_capacity(), 600);
        assert_eq!(SegmentUploaderConfig::new(naming(3600)).queue_capacity(), 1);
    }
}
