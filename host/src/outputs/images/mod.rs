//! The image output (`ImageOutput`): a JPEG every `capture_interval` seconds from the
//! recorder's raw video, stored straight from memory.
//!
//! * [`naming`]: Go's settings, names and errors.
//! * [`gst`]: the branch off the raw video tee (leaky queue → videorate → scale → jpegenc →
//!   appsink), never blocking the recording.
//! * [`uploader`]: the upload task (Go's queue size, sequential uploads, `ImagesInfo`).
//!
//! A failed image is reported and the recording goes on, unless
//! `OutputSettings::image_upload_failure_fails_egress` asks for Go's behaviour.

pub mod gst;
pub mod naming;
pub mod uploader;

use std::sync::Arc;

use bytes::Bytes;
use egress_proto::livekit::{ImageOutput, ImagesInfo};
use tokio::sync::mpsc;

use self::gst::{ImagesBranch, ImagesBranchConfig};
use self::naming::{ImageNaming, ImageNamingError};
use self::uploader::{ImageUploader, ImageUploaderConfig, ImagesNotice, ImagesOutcome};
use super::context::{OutputContext, check_storage};
use super::manifest::{Manifest, ManifestImage};
use super::plan::ImagesSpec;
use super::retry::RetryPolicy;
use super::store::{ObjectBody, ObjectMeta, ObjectStore, SinkStore};
use super::tap::EncodedStreams;
use super::upload_metrics::{self, OutputKind, Tracking};
use crate::core::PipelineError;
use crate::core::errors;
use crate::rpc::{Code, RpcError};
use crate::storage;

/// One running image output.
pub struct ImagesOutput {
    naming: ImageNaming,
    store: Arc<SinkStore>,
    uploader: Option<ImageUploader>,
    _branch: ImagesBranch,
    notices: mpsc::UnboundedReceiver<ImagesNotice>,
    outcome: Option<ImagesOutcome>,
    fail_on_upload_error: bool,
    disable_manifest: bool,
    /// Its upload outcomes reach the service's metrics until it finishes.
    _metrics: Option<Tracking>,
}

impl ImagesOutput {
    /// Validates the spec as Go does (names, codec, suffix; Go's texts) and its storage. No I/O.
    pub fn validate(spec: &ImagesSpec, ctx: &OutputContext) -> Result<(), RpcError> {
        naming_of(spec, ctx)?;
        let targets =
            storage::target::for_image_output(&ctx.service, &ctx.request, ctx.image_index(spec));
        check_storage(&targets, &ctx.plugins)
    }

    /// Adds the JPEG branch to the raw video tee and starts the upload task. Call it inside the
    /// tokio runtime, before the pipeline plays.
    pub fn attach(
        streams: &EncodedStreams,
        spec: &ImagesSpec,
        ctx: &OutputContext,
    ) -> Result<ImagesOutput, PipelineError> {
        let naming = naming_of(spec, ctx)?;
        let raw = streams
            .raw_video
            .as_ref()
            .ok_or_else(|| PipelineError::Request(errors::invalid_input("audio_only images")))?;
        let index = ctx.image_index(spec);
        let targets = storage::target::for_image_output(&ctx.service, &ctx.request, index);
        let dests =
            storage::destinations(&targets, &ctx.plugins, &naming.image_path(0, ctx_time()))
                .map_err(|e| PipelineError::Upload {
                    location: targets.primary.provider.label(),
                    reason: e.to_string(),
                })?;
        let store = Arc::new(SinkStore::new(dests));
        let (notices_tx, notices) = mpsc::unbounded_channel();
        let fail_on_upload_error = ctx.settings.image_upload_failure_fails_egress;
        let config = ImageUploaderConfig {
            max_upload_queue_minutes: ctx.service.max_upload_queue,
            retry: RetryPolicy::default(),
            fail_on_upload_error,
            ..ImageUploaderConfig::new(naming.clone())
        };
        let uploader =
            ImageUploader::spawn(config, store.clone() as Arc<dyn ObjectStore>, notices_tx);
        let metrics = upload_metrics::track(
            &ctx.request.egress_id,
            OutputKind::Images,
            uploader.uploads(),
            None,
        );
        let branch_config = ImagesBranchConfig {
            capture_interval: naming.capture_interval,
            size: naming.size,
            element_prefix: format!("images{index}"),
        };
        let branch =
            ImagesBranch::attach(&streams.pipeline, raw, &branch_config, uploader.sender())
                .map_err(|e| PipelineError::Gst(e.to_string()))?;
        tracing::info!(prefix = %naming.prefix, dir = %naming.storage_dir, interval = naming.capture_interval,
            size = ?naming.size, storage = store.label(), "image output attached");
        Ok(ImagesOutput {
            naming,
            store,
            uploader: Some(uploader),
            _branch: branch,
            notices,
            outcome: None,
            fail_on_upload_error,
            disable_manifest: spec.disable_manifest,
            _metrics: Some(metrics),
        })
    }

    /// `ImagesInfo` now.
    pub fn info(&self) -> ImagesInfo {
        match (&self.outcome, &self.uploader) {
            (Some(o), _) => o.info.clone(),
            (None, Some(u)) => u.info(),
            (None, None) => ImagesInfo::default(),
        }
    }

    /// With Go's behaviour turned on, the first image that could not be stored fails the
    /// egress: that error; `None` otherwise. Cheap: call it with the status updates.
    pub fn failure(&mut self) -> Option<PipelineError> {
        while let Ok(notice) = self.notices.try_recv() {
            if let ImagesNotice::Fatal(text) = notice {
                return Some(PipelineError::Upload {
                    location: self.store.label(),
                    reason: text,
                });
            }
        }
        None
    }

    /// After the pipeline's EOS: stores the images still queued. Images that could not be
    /// stored are logged and counted; they fail the egress only with Go's behaviour turned on.
    pub async fn finish(&mut self) -> Result<(), PipelineError> {
        let Some(uploader) = self.uploader.take() else {
            return Ok(());
        };
        let outcome = uploader.finish().await;
        self._metrics = None; // the next report is its last
        tracing::info!(
            images = outcome.info.image_count,
            failed = outcome.failed,
            "image output finished"
        );
        let failed = outcome.failed;
        let first = outcome.errors.first().cloned().unwrap_or_default();
        self.outcome = Some(outcome);
        if failed > 0 && self.fail_on_upload_error {
            return Err(PipelineError::Upload {
                location: self.store.label(),
                reason: first,
            });
        }
        if failed > 0 {
            tracing::warn!(failed, first_error = %first, "some images were not stored; the recording is complete");
        }
        Ok(())
    }

    /// An image went to the backup storage.
    pub fn backup_used(&self) -> bool {
        self.outcome.as_ref().is_some_and(|o| o.backup_used)
    }

    /// Images captured but not stored (after `finish`).
    pub fn failed(&self) -> u64 {
        self.outcome.as_ref().map(|o| o.failed).unwrap_or(0)
    }

    pub fn disable_manifest(&self) -> bool {
        self.disable_manifest
    }

    /// Go's manifest `images[]` entries (after `finish`; empty before).
    pub fn manifest(&self) -> Vec<ManifestImage> {
        self.outcome
            .as_ref()
            .map(|o| o.manifest.clone())
            .unwrap_or_default()
    }

    /// Stores the manifest beside the images (`<image dir>/<egress_id>.json`) in this output's
    /// storage; returns its location.
    pub async fn store_manifest(&self, manifest: &Manifest) -> Option<String> {
        let path = format!("{}{}.json", self.naming.storage_dir, manifest.egress_id);
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
                tracing::error!(error = %e, "could not store the manifest beside the images");
                None
            }
        }
    }
}

/// A fixed time for the key the sinks are configured with (each image gets its own key).
fn ctx_time() -> crate::outputs::filename::LocalTime {
    crate::outputs::filename::LocalTime::from_system(std::time::SystemTime::now())
}

/// The spec's settings and names, with Go's errors (all InvalidArgument).
fn naming_of(spec: &ImagesSpec, ctx: &OutputContext) -> Result<ImageNaming, RpcError> {
    ImageNaming::from_request(&proto(spec), ctx.video_size.is_some(), &ctx.filenames).map_err(|e| {
        match e {
            ImageNamingError::InvalidInput(field) => errors::invalid_input(field),
            ImageNamingError::NoCompatibleCodec => {
                RpcError::new(Code::InvalidArgument, e.to_string())
            }
        }
    })
}

fn proto(spec: &ImagesSpec) -> ImageOutput {
    ImageOutput {
        capture_interval: spec.capture_interval,
        width: spec.width,
        height: spec.height,
        filename_prefix: spec.filename_prefix.clone(),
        filename_suffix: spec.filename_suffix,
        image_codec: spec.image_codec,
        disable_manifest: spec.disable_manifest,
        output: None,
    }
}

#[cfg(test)]
mod tests;
