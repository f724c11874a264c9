//! The HLS segments output (`SegmentedFileOutput`): MPEG-TS segments cut by a `splitmuxsink`
//! branch off the recorder's encoded tees, each uploaded as soon as it is closed, and the main
//! (EVENT) and live playlists stored after every segment.
//!
//! * [`naming`]: Go's names (playlist, live playlist, segments, storage dir) and its errors.
//! * [`playlist`]: the playlists' text, Go's format with RFC 8216's target duration.
//! * [`check`]: an RFC 8216 checker for the playlists (unit and e2e tests).
//! * [`gst`]: the GStreamer branch and its fragment messages.
//! * [`uploader`]: the upload task (parallel uploads, commits in order, playlists).
//!
//! A recorder uses [`SegmentsOutput`]: `validate` at StartEgress, `attach` before the
//! pipeline plays, `info` for status updates, `finish` after EOS, then `manifest`.

pub mod check;
pub mod gst;
pub mod naming;
pub mod playlist;
pub mod uploader;

use std::sync::Arc;

use bytes::Bytes;
use egress_proto::livekit::{SegmentedFileOutput, SegmentsInfo};
use tokio::sync::mpsc;

use self::gst::{SegmentsBranch, SegmentsBranchConfig};
use self::naming::{SegmentNaming, SegmentNamingError};
use self::uploader::{SegmentUploader, SegmentUploaderConfig, SegmentsNotice, SegmentsOutcome};
use super::context::{OutputContext, check_storage};
use super::manifest::{Manifest, ManifestPlaylist};
use super::plan::SegmentsSpec;
use super::retry::RetryPolicy;
use super::store::{ObjectBody, ObjectMeta, ObjectStore, SinkStore};
use super::tap::EncodedStreams;
use super::upload_metrics::{self, OutputKind, Tracking};
use crate::core::PipelineError;
use crate::core::errors;
use crate::rpc::{Code, RpcError};
use crate::storage;

/// One running segments output.
pub struct SegmentsOutput {
    naming: SegmentNaming,
    store: Arc<SinkStore>,
    uploader: Option<SegmentUploader>,
    /// Kept for the recorder's bus hook (which holds it too) and to identify the sink.
    _branch: Arc<SegmentsBranch>,
    notices: mpsc::UnboundedReceiver<SegmentsNotice>,
    outcome: Option<SegmentsOutcome>,
    disable_manifest: bool,
    /// Its queues and upload outcomes reach the service's metrics until it finishes.
    _metrics: Option<Tracking>,
}

impl SegmentsOutput {
    /// Validates the spec as Go does (its names and texts, InvalidArgument; a name without
    /// `{retry}` on a retry is FailedPrecondition) and its storage. No I/O.
    pub fn validate(spec: &SegmentsSpec, ctx: &OutputContext) -> Result<(), RpcError> {
        naming_of(spec, ctx)?;
        check_storage(
            &storage::target::for_segments_output(&ctx.service, &ctx.request),
            &ctx.plugins,
        )
    }

    /// Adds the splitmuxsink branch to the recorder's tees and starts the upload task. Call it
    /// inside the tokio runtime, before the pipeline plays.
    pub fn attach(
        streams: &EncodedStreams,
        spec: &SegmentsSpec,
        ctx: &OutputContext,
    ) -> Result<SegmentsOutput, PipelineError> {
        let naming = naming_of(spec, ctx)?;
        let targets = storage::target::for_segments_output(&ctx.service, &ctx.request);
        let dests = storage::destinations(&targets, &ctx.plugins, &naming.playlist_path())
            .map_err(|e| PipelineError::Upload {
                location: targets.primary.provider.label(),
                reason: e.to_string(),
            })?;
        let store = Arc::new(SinkStore::new(dests));
        let (notices_tx, notices) = mpsc::unbounded_channel();
        let config = SegmentUploaderConfig {
            live_window: ctx.settings.live_playlist_window.max(1),
            parallel_uploads: ctx.settings.parallel_uploads.max(1),
            max_upload_queue_minutes: ctx.service.max_upload_queue,
            retry: RetryPolicy::default(),
            ..SegmentUploaderConfig::new(naming.clone())
        };
        let uploader =
            SegmentUploader::spawn(config, store.clone() as Arc<dyn ObjectStore>, notices_tx);
        let gauges = uploader.gauges();
        let metrics = upload_metrics::track(
            &ctx.request.egress_id,
            OutputKind::Segments,
            gauges.uploads(),
            Some(gauges),
        );
        let branch_config = SegmentsBranchConfig {
            naming: naming.clone(),
            work_dir: ctx.work_dir.join("segments"),
            element_prefix: "segments0".into(),
        };
        let branch = SegmentsBranch::attach(streams, &branch_config, uploader.sender())
            .map_err(|e| PipelineError::Gst(e.to_string()))?;
        let branch = Arc::new(branch);
        let hook = branch.clone();
        streams.add_bus_hook(Arc::new(move |msg| hook.handle_message(msg)));
        tracing::info!(playlist = %naming.playlist_path(), live = ?naming.live_playlist_path(),
            segment_duration = naming.segment_duration, storage = store.label(), "segments output attached");
        Ok(SegmentsOutput {
            naming,
            store,
            uploader: Some(uploader),
            _branch: branch,
            notices,
            outcome: None,
            disable_manifest: spec.disable_manifest,
            _metrics: Some(metrics),
        })
    }

    /// `SegmentsInfo` now (names from the start, counts and locations as segments are stored).
    pub fn info(&self) -> SegmentsInfo {
        match (&self.outcome, &self.uploader) {
            (Some(o), _) => o.info.clone(),
            (None, Some(u)) => u.info(),
            (None, None) => SegmentsInfo::default(),
        }
    }

    /// What must fail the egress while it records (Go: a full upload queue, storage cannot
    /// keep up); `None` otherwise. Cheap: call it with the status updates.
    pub fn failure(&mut self) -> Option<PipelineError> {
        while let Ok(notice) = self.notices.try_recv() {
            match notice {
                SegmentsNotice::QueueFull { .. } => {
                    let text = notice.error_text().unwrap_or_default();
                    return Some(PipelineError::Upload {
                        location: self.store.label(),
                        reason: text,
                    });
                }
                other => tracing::debug!(notice = ?other, "segments output"),
            }
        }
        None
    }

    /// After the pipeline's EOS (every fragment message handled): stores the last segments
    /// and both playlists with `#EXT-X-ENDLIST`. The error names every segment that could not
    /// be stored (each kept locally, its path in the text) or the playlist that was not.
    pub async fn finish(&mut self) -> Result<(), PipelineError> {
        let Some(uploader) = self.uploader.take() else {
            return Ok(());
        };
        let outcome = uploader.finish().await;
        self._metrics = None; // the next report is its last
        tracing::info!(segments = outcome.info.segment_count, size = outcome.info.size,
            playlist = %outcome.info.playlist_location, lost = outcome.lost.len(), "segments output finished");
        let errors = outcome.errors.clone();
        self.outcome = Some(outcome);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PipelineError::Upload {
                location: self.store.label(),
                reason: errors.join("; "),
            })
        }
    }

    /// A segment or playlist went to the backup storage.
    pub fn backup_used(&self) -> bool {
        self.outcome.as_ref().is_some_and(|o| o.backup_used)
    }

    /// Whether the request turned the manifest off for this output.
    pub fn disable_manifest(&self) -> bool {
        self.disable_manifest
    }

    /// Go's manifest `playlists[]` entry, once finished.
    pub fn manifest(&self) -> Option<ManifestPlaylist> {
        self.outcome.as_ref().map(|o| o.manifest.clone())
    }

    /// Stores the manifest beside the playlist (`<playlist dir>/<egress_id>.json`), in this
    /// output's storage; returns its location.
    pub async fn store_manifest(&self, manifest: &Manifest) -> Option<String> {
        let path = Manifest::storage_path(&self.naming.playlist_path(), &manifest.egress_id);
        let meta = ObjectMeta {
            content_type: "application/json",
            cache_control: None,
        };
        match self
            .store
            .put(
                &path,
                ObjectBody::Bytes(Bytes::from(manifest.to_json())),
                &meta,
            )
            .await
        {
            Ok(o) => Some(o.location),
            Err(e) => {
                tracing::error!(error = %e, "could not store the manifest beside the playlist");
                None
            }
        }
    }
}

/// The spec's names, with Go's errors.
fn naming_of(spec: &SegmentsSpec, ctx: &OutputContext) -> Result<SegmentNaming, RpcError> {
    SegmentNaming::from_request(&proto(spec), &ctx.filenames, ctx.retry_count()).map_err(
        |e| match e {
            SegmentNamingError::InvalidInput(field) => errors::invalid_input(field),
            SegmentNamingError::NotRetrySafe => {
                RpcError::new(Code::FailedPrecondition, e.to_string())
            }
        },
    )
}

/// The request's message back from the parsed spec (the naming rules read the wire type).
fn proto(spec: &SegmentsSpec) -> SegmentedFileOutput {
    SegmentedFileOutput {
        protocol: spec.protocol,
        filename_prefix: spec.filename_prefix.clone(),
        playlist_name: spec.playlist_name.clone(),
        live_playlist_name: spec.live_playlist_name.clone(),
        segment_duration: spec.segment_duration,
        filename_suffix: spec.filename_suffix,
        disable_manifest: spec.disable_manifest,
        output: None,
    }
}

#[cfg(test)]
pub(crate) mod tests;
