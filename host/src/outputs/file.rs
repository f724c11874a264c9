//! One file output on its way from the work dir to its storage, the same for every recorder:
//! its storage resolved and opened ([`FileOutput::open`]), the [`LiveUpload`] that follows the file while it is
//! written, the delivery at the end (verified, or the local last resort with its path in the
//! error), the delivery-plan entry a killed handler leaves behind, and the manifest beside the
//! file in the storage that took it.

use std::path::{Path, PathBuf};

use egress_proto::livekit::FileInfo;
use egress_proto::rpc::StartEgressRequest;

use super::manifest::Manifest;
use crate::config::ServiceConfig;
use crate::core::PipelineError;
use crate::plugins::PluginRegistry;
use crate::storage::local::{PlannedDestination, PlannedFile};
use crate::storage::{self, Destinations, LiveUpload, UploadError};

pub struct FileOutput {
    local: PathBuf,
    dests: Destinations,
    upload: Option<LiveUpload>,
    /// What `EgressInfo.file_results` reports: the storage path from the start, the times once
    /// recording, the location and size once delivered.
    pub info: FileInfo,
    /// The backup storage holds the file (the primary failed).
    pub backup_used: bool,
}

impl FileOutput {
    /// The request's file output, named `storage_path`: its storage resolved (output → request
    /// → service, plus the backup) and configured for that key, the local file in `work_dir`
    /// under the path's last part.
    pub fn open(
        config: &ServiceConfig,
        request: &StartEgressRequest,
        plugins: &PluginRegistry,
        work_dir: &Path,
        storage_path: String,
    ) -> Result<FileOutput, PipelineError> {
        let targets = storage::target::for_file_output(config, request);
        let dests = storage::destinations(&targets, plugins, &storage_path).map_err(|e| {
            PipelineError::Upload {
                location: targets.primary.provider.label(),
                reason: e.to_string(),
            }
        })?;
        let local_name = storage_path
            .rsplit('/')
            .next()
            .unwrap_or(&storage_path)
            .to_owned();
        Ok(FileOutput::new(
            work_dir.join(local_name),
            storage_path,
            dests,
        ))
    }

    pub fn new(local: PathBuf, storage_path: String, dests: Destinations) -> FileOutput {
        FileOutput {
            local,
            dests,
            upload: None,
            info: FileInfo {
                filename: storage_path,
                ..Default::default()
            },
            backup_used: false,
        }
    }

    /// The file the pipeline writes.
    pub fn local_path(&self) -> &Path {
        &self.local
    }

    /// The primary storage's name and object key, for logs.
    pub fn destination(&self) -> (&'static str, &str) {
        (self.dests.primary.label, &self.dests.primary.key)
    }

    /// The backup storage's name, if there is one, for logs.
    pub fn backup_label(&self) -> Option<&'static str> {
        self.dests.backup.as_ref().map(|b| b.label)
    }

    /// This output's entry in the delivery plan.
    pub fn planned(&self) -> PlannedFile {
        PlannedFile {
            local_path: self.local.clone(),
            destination: PlannedDestination {
                storage_path: self.info.filename.clone(),
            },
            started_at: self.info.started_at,
        }
    }

    /// The recording is active (its first frame is in the file): start following the file.
    pub fn start(&mut self, started_at: i64) {
        self.info.started_at = started_at;
        let content_type = storage::content_type_for(&self.info.filename).to_owned();
        self.upload = Some(LiveUpload::start(
            self.dests.clone(),
            self.local.clone(),
            content_type,
        ));
    }

    /// The recording ended at `ended_at` (Unix ns): send the rest, verify, and fill in where it
    /// is. An empty file is not stored. When no storage takes it, the file is kept in local
    /// storage, the location is that path, and the error (Go's upload-failed text) names it.
    pub async fn deliver(&mut self, ended_at: i64) -> Result<(), PipelineError> {
        self.info.ended_at = ended_at;
        self.info.duration = ended_at - self.info.started_at;
        // A WebM written append-only gets its duration and cues before storage takes its end.
        super::webm_finish::finish_recording(&self.local).await;
        let size = std::fs::metadata(&self.local).map(|m| m.len()).unwrap_or(0);
        let upload = match self.upload.take() {
            Some(u) if size > 0 => u,
            other => {
                if let Some(u) = other {
                    u.cancel();
                }
                tracing::warn!("the recording produced no file");
                let _ = std::fs::remove_file(&self.local);
                return Ok(());
            }
        };
        match upload.finish().await {
            Ok(u) => {
                tracing::info!(location = %u.location, size = u.size, backup_used = u.backup_used, "recording stored");
                let _ = std::fs::remove_file(&self.local);
                self.info.location = u.location;
                self.info.size = u.size as i64;
                self.backup_used = u.backup_used;
                Ok(())
            }
            Err(e) => {
                let (local, storage_path) = (self.local.clone(), self.info.filename.clone());
                let kept = tokio::task::spawn_blocking(move || {
                    storage::keep_locally(&local, &storage_path)
                })
                .await
                .unwrap_or_else(|e| format!("(unknown: {e})"));
                self.info.location = kept.clone();
                self.info.size = size as i64;
                Err(match e {
                    UploadError::Primary { label, reason } => PipelineError::Upload {
                        location: label,
                        reason: format!("{reason}; the recording was kept at {kept}"),
                    },
                    UploadError::Both { primary, backup } => PipelineError::UploadBoth {
                        primary,
                        backup: format!("{backup}; the recording was kept at {kept}"),
                    },
                })
            }
        }
    }

    /// Nothing was recorded: drop the upload and the local file.
    pub fn discard(&mut self) {
        if let Some(upload) = self.upload.take() {
            upload.cancel();
        }
        let _ = std::fs::remove_file(&self.local);
    }

    /// Stores the manifest beside the file, in the storage that took the file, and returns its
    /// location. `work_dir` holds the JSON while it is uploaded.
    pub async fn store_manifest(&self, manifest: &Manifest, work_dir: &Path) -> Option<String> {
        let local = work_dir.join(format!("{}.json", manifest.egress_id));
        if let Err(e) = std::fs::write(&local, manifest.to_json()) {
            tracing::error!(error = %e, "could not write the manifest");
            return None;
        }
        let storage_path = Manifest::storage_path(&self.info.filename, &manifest.egress_id);
        let dest = match (&self.dests.backup, self.backup_used) {
            (Some(backup), true) => backup,
            _ => &self.dests.primary,
        };
        let one = Destinations {
            primary: dest.for_path(&storage_path),
            backup: None,
        };
        let location = match storage::upload_file(&one, &local, "application/json").await {
            Ok(u) => Some(u.location),
            Err(e) => {
                tracing::error!(error = %e, "could not store the manifest");
                None
            }
        };
        let _ = std::fs::remove_file(&local);
        location
    }
}
