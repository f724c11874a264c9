//! What a recording writes, one module per kind of output, below the recorders and above
//! storage: the request's outputs parsed once ([`plan`]), a file from the work dir to its
//! storage ([`file`]), PCM to a websocket ([`websocket`], decoded by [`pcm`]), live streams
//! ([`stream`]), HLS segments ([`segments`]), images ([`images`]), the manifest
//! ([`manifest`]), and what `EgressInfo` says of them all ([`OutputSet`]). The kinds that take
//! the media as it is encoded attach to a recorder's encoder tees ([`tap`]) through one call
//! ([`live::attach`]); a recorder refuses what it cannot produce in one place
//! ([`OutputPlan::refuse_unsupported`]).
//!
//! Invariant: `outputs` knows no recorder; recorders hand it bytes (a file they write, frames
//! for the websocket) and their start and end.

pub mod context;
pub mod file;
pub mod filename;
pub mod images;
pub mod live;
pub mod manifest;
pub mod pcm;
pub mod plan;
pub mod retry;
pub mod sample_clock;
pub mod segments;
pub mod store;
pub mod stream;
pub mod tap;
pub mod upload_metrics;
pub mod webm_finish;
pub mod websocket;

use std::path::Path;
use std::time::Duration;

use egress_proto::livekit::{
    EgressInfo, EgressStatus, FileInfo, StreamInfo, StreamInfoList, egress_info, stream_info,
};

use crate::core::status::{InfoExt, deprecated_file_result, now_nanos};
use crate::storage::local::DeliveryPlan;
pub use file::FileOutput;
use manifest::{Manifest, ManifestFile, ManifestImage, ManifestPlaylist};
pub use plan::{
    FileSpec, ImagesSpec, Output, OutputKind, OutputPlan, SegmentsSpec, StreamSpec, WebsocketSpec,
};

/// The outputs of one running recording: what they deliver at its end and what `EgressInfo`
/// says of them (`file_results`, `stream_results`; `segment_results` and `image_results` join
/// when those outputs exist), for any number of outputs.
#[derive(Default)]
pub struct OutputSet {
    /// The file outputs, once named (a track's file is named when the track is found).
    pub files: Vec<FileOutput>,
    /// `stream_results`: the websocket output's entry (Go lists it as a stream).
    pub streams: Vec<StreamInfo>,
    /// The live stream output (RTMP/SRT URLs), whose `StreamInfo`s follow the websocket's.
    pub live: Option<stream::StreamOutput>,
    /// The HLS segments output (`segment_results`).
    pub segments: Option<segments::SegmentsOutput>,
    /// The image outputs (`image_results`).
    pub images: Vec<images::ImagesOutput>,
}

impl OutputSet {
    /// Puts the outputs' results into `info`, with the deprecated single `result` that older
    /// clients read (the file's when there is one, else the streams').
    #[allow(deprecated)]
    pub fn fill_results(&self, info: &mut EgressInfo) {
        let mut streams = self.streams.clone();
        if let Some(live) = &self.live {
            streams.extend(live.infos());
        }
        if !streams.is_empty() {
            info.stream_results = streams.clone();
            info.result = Some(egress_info::Result::Stream(StreamInfoList {
                info: streams,
            }));
        }
        if let Some(segments) = &self.segments {
            info.segment_results = vec![segments.info()];
        }
        if !self.images.is_empty() {
            info.image_results = self.images.iter().map(images::ImagesOutput::info).collect();
        }
        if !self.files.is_empty() {
            info.file_results = self.files.iter().map(|f| f.info.clone()).collect();
            if let Some(first) = info.file_results.first() {
                info.result = deprecated_file_result(first);
            }
        }
    }

    /// The recording is active (its first media is in): files start following their bytes to
    /// storage, streams start with the media (Go's `updateStartTime`).
    pub fn start(&mut self, started_at: i64) {
        for file in &mut self.files {
            file.start(started_at);
        }
        for stream in &mut self.streams {
            stream.started_at = started_at;
        }
        if let Some(live) = self.live.as_mut() {
            live.media_started(started_at);
        }
    }

    /// Waits for a live destination's status to change (forever without one); `true` when the
    /// egress should report it.
    pub async fn live_changed(&mut self) -> bool {
        match self.live.as_mut() {
            Some(live) => {
                if !live.next_change().await {
                    std::future::pending::<()>().await;
                }
                true
            }
            None => std::future::pending().await,
        }
    }

    /// When every output of the egress is a stream and all have FAILED: the last error (Go
    /// fails the egress when its last output fails).
    pub fn all_live_failed(&self) -> Option<String> {
        // Files, the websocket, segments and images still record.
        if !self.files.is_empty()
            || !self.streams.is_empty()
            || self.segments.is_some()
            || !self.images.is_empty()
        {
            return None;
        }
        self.live.as_ref().and_then(|l| l.all_failed())
    }

    /// What a killed handler leaves for the service to salvage.
    pub fn delivery_plan(&self, egress_id: &str) -> DeliveryPlan {
        DeliveryPlan {
            egress_id: egress_id.to_owned(),
            files: self.files.iter().map(FileOutput::planned).collect(),
        }
    }

    /// Marks every stream FAILED with `error` (a no-op without streams).
    pub fn streams_failed(&mut self, error: &str) {
        for stream in &mut self.streams {
            stream.status = stream_info::Status::Failed as i32;
            stream.error = error.to_owned();
        }
    }

    /// Delivers every file to its storage (a partial one after a failure too, so nothing
    /// recorded is lost) or discards them when no media ever started (`started_at` 0), and
    /// ends the streams. A failed delivery fails the egress (unless it had failed already: the
    /// first error is the one reported).
    pub async fn deliver(
        &mut self,
        info: &mut EgressInfo,
        started_at: i64,
        media: Option<Duration>,
    ) {
        for file in &mut self.files {
            if started_at == 0 {
                file.discard();
                continue;
            }
            if let Err(e) = file.deliver(media_ended_at(started_at, media)).await {
                tracing::error!(error = %e, "file delivery failed");
                if !info.status_is(EgressStatus::EgressFailed) {
                    info.set_failed(&e);
                }
            }
            info.backup_storage_used = file.backup_used;
        }
        // Segments and images finish after the pipeline's EOS: the last segment, the playlists
        // with ENDLIST, the last images. A lost segment fails the egress (it is kept locally
        // and named); a failed image does not, unless the Go-compatible setting says so.
        if let Some(segments) = self.segments.as_mut()
            && let Err(e) = segments.finish().await
        {
            tracing::error!(error = %e, "segments output failed");
            if !info.status_is(EgressStatus::EgressFailed) {
                info.set_failed(&e);
            }
        }
        for images in &mut self.images {
            if let Err(e) = images.finish().await {
                tracing::error!(error = %e, "image output failed");
                if !info.status_is(EgressStatus::EgressFailed) {
                    info.set_failed(&e);
                }
            }
        }
        if let Some(live) = self.live.as_mut() {
            if info.status_is(EgressStatus::EgressFailed) {
                live.fail(&info.error).await;
            } else {
                live.finish().await;
            }
        }
        // Go's `UpdateEndTime`: FINISHED unless it failed; the span is the media sent.
        let ended_at = media_ended_at(started_at, media);
        for stream in &mut self.streams {
            if stream.status != stream_info::Status::Failed as i32 {
                stream.status = stream_info::Status::Finished as i32;
            }
            stream.ended_at = ended_at;
            if started_at > 0 {
                stream.duration = ended_at - stream.started_at;
            } else {
                stream.started_at = ended_at;
            }
        }
    }

    /// Where the (first) file is, for the log.
    pub fn location(&self) -> &str {
        self.files
            .first()
            .map(|f| f.info.location.as_str())
            .unwrap_or_default()
    }

    /// What the manifest lists.
    pub fn manifest_files(&self) -> Vec<ManifestFile> {
        self.files
            .iter()
            .map(|f| ManifestFile {
                filename: f.info.filename.clone(),
                location: f.info.location.clone(),
            })
            .collect()
    }

    /// Go's `playlists`: the segments output's playlist and its stored segments (after
    /// `deliver`).
    pub fn manifest_playlists(&self) -> Vec<ManifestPlaylist> {
        self.segments
            .iter()
            .filter_map(segments::SegmentsOutput::manifest)
            .collect()
    }

    /// Go's `images`: every stored image of every image output (after `deliver`).
    pub fn manifest_images(&self) -> Vec<ManifestImage> {
        self.images
            .iter()
            .flat_map(images::ImagesOutput::manifest)
            .collect()
    }

    /// Stores the manifest beside each output, as Go's sinks do: beside the first stored file
    /// (unless `file_manifest_disabled`), the playlist and each image directory (unless that
    /// output disabled it), each in its own storage; an output that used the backup storage
    /// stores it in any case (Go forces it). Returns the first location stored.
    pub async fn store_manifest(
        &self,
        manifest: &Manifest,
        work_dir: &Path,
        file_manifest_disabled: bool,
    ) -> Option<String> {
        let mut first = None;
        if let Some(file) = self.files.iter().find(|f| !f.info.location.is_empty())
            && (!file_manifest_disabled || file.backup_used)
        {
            first = file.store_manifest(manifest, work_dir).await;
        }
        if let Some(segments) = &self.segments
            && segments.info().segment_count > 0
            && (!segments.disable_manifest() || segments.backup_used())
        {
            let stored = segments.store_manifest(manifest).await;
            first = first.or(stored);
        }
        for images in &self.images {
            if images.info().image_count > 0 && (!images.disable_manifest() || images.backup_used())
            {
                let stored = images.store_manifest(manifest).await;
                first = first.or(stored);
            }
        }
        first
    }
}

/// When the recorded media ended: its start plus the media's duration, or now when the
/// duration is unknown or nothing started.
pub fn media_ended_at(started_at: i64, media: Option<Duration>) -> i64 {
    match media {
        Some(d) if started_at > 0 => started_at + i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        _ => now_nanos(),
    }
}

/// Puts salvaged files into a FAILED info (and the deprecated single result when there is one).
pub fn attach_salvaged(info: &mut EgressInfo, files: Vec<FileInfo>) {
    if files.is_empty() {
        return;
    }
    if let [only] = files.as_slice() {
        info.result = deprecated_file_result(only);
    }
    info.file_results = files;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_end_is_its_start_plus_its_duration_or_now() {
        assert_eq!(
            media_ended_at(1_000, Some(Duration::from_nanos(500))),
            1_500
        );
        let before = now_nanos();
        assert!(
            media_ended_at(0, Some(Duration::from_secs(1))) >= before,
            "never started: now"
        );
        assert!(
            media_ended_at(1_000, None) >= before,
            "unknown duration: now"
        );
    }
}
