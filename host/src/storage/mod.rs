//! Where recordings go: storage resolution (Go's config and request fields → a sink plugin and
//! its config) and the upload that runs while a recording is written.
//!
//! * [`target`]: the Go egress's storage settings (output → request → service, plus `backup`)
//!   resolved to [`StorageTarget`]s, each naming the plugin that serves it.
//! * [`destinations`]: targets → configured sinks from the [`PluginRegistry`]; a storage whose
//!   plugin is not active is an error naming it. [`check`] runs that at StartEgress, so a bad
//!   storage config is answered synchronously, before anything is launched.
//! * [`upload`]: [`LiveUpload`] streams a growing local file into a sink, verifies the stored
//!   object, falls back to the backup storage, and never deletes the local file itself.
//! * [`report`]: each upload's outcome, for the service's upload metrics.
//! * [`salvage`]: what the service runs for a handler that died: the partial file it left is
//!   uploaded like a finished one, or kept locally.
//! * [`local`]: the delivery plan a handler leaves in its work dir, local storage (the last
//!   resort when no sink takes a recording) and the KEEP marker.

pub mod local;
pub mod report;
pub mod target;
pub mod upload;

use std::path::Path;

use serde_json::Value;

use egress_proto::livekit::FileInfo;
use egress_proto::rpc::StartEgressRequest;

use crate::config::ServiceConfig;
use crate::plugins::{PluginError, PluginRegistry};
use crate::rpc::{Code, RpcError};
use local::DeliveryPlan;

pub use target::{Provider, StorageTarget, Targets};
pub use upload::{
    Destination, Destinations, LiveUpload, UploadError, Uploaded, content_type_for, upload_bytes,
    upload_file,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The storage's plugin is not active in this worker (not compiled in, or left out of
    /// `plugins:`).
    #[error("{label} storage is not available on this worker: {source}")]
    NotActive {
        label: &'static str,
        source: PluginError,
    },
    /// The resolved settings were refused by the plugin (a field it cannot use, a bad value).
    #[error("{label} storage: {}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Config {
        label: &'static str,
        field: Option<String>,
        message: String,
    },
    /// The request needs a feature this service turned off (Go's `ErrFeatureDisabled`).
    #[error("{feature} is disabled for this account")]
    FeatureDisabled { feature: &'static str },
}

/// Configures the sink for one target, with the object key for `storage_path`.
pub fn destination(
    target: &StorageTarget,
    registry: &PluginRegistry,
    storage_path: &str,
) -> Result<Destination, StorageError> {
    if let Some(feature) = target.disabled_feature {
        return Err(StorageError::FeatureDisabled { feature });
    }
    let label = target.provider.label();
    let name = target.provider.plugin_name();
    let active = registry.get(name).ok_or_else(|| StorageError::NotActive {
        label,
        source: PluginError::NotActive {
            name: name.to_owned(),
            active: registry.active().iter().map(|p| p.name.clone()).collect(),
        },
    })?;
    // Our field names only mean something to our own plugin of that name.
    let ours = active.descriptor.name == name;
    let mut config = target.plugin_config(active.config(), ours);
    if target.is_local()
        && ours
        && let Value::Object(m) = &mut config
        && !m.contains_key("directory")
    {
        m.insert(
            "directory".into(),
            Value::String(local::local_storage_root().to_string_lossy().into_owned()),
        );
    }
    let factory = active
        .configure(&config)
        .map_err(|e| StorageError::Config {
            label,
            field: e.field().map(str::to_owned),
            message: if e.is_config() {
                e.message().to_owned()
            } else {
                e.to_string()
            },
        })?;
    Ok(Destination {
        label,
        factory,
        key: target.key(storage_path),
        prefix: target.prefix.clone(),
        custom_endpoint: target.custom_endpoint(),
        is_backup: false,
    })
}

/// The primary and backup sinks for one output.
pub fn destinations(
    targets: &Targets,
    registry: &PluginRegistry,
    storage_path: &str,
) -> Result<Destinations, StorageError> {
    Ok(Destinations {
        primary: destination(&targets.primary, registry, storage_path)?,
        backup: targets
            .backup
            .as_ref()
            .map(|b| {
                destination(b, registry, storage_path).map(|d| Destination {
                    is_backup: true,
                    ..d
                })
            })
            .transpose()?,
    })
}

/// StartEgress-time check: the request's storage resolves to active plugins that accept it.
pub fn check(
    config: &ServiceConfig,
    request: &StartEgressRequest,
    registry: &PluginRegistry,
) -> Result<(), RpcError> {
    let targets = target::for_file_output(config, request);
    destinations(&targets, registry, "check")
        .map(drop)
        .map_err(|e| match e {
            StorageError::NotActive { .. } => {
                RpcError::new(Code::FailedPrecondition, e.to_string())
            }
            StorageError::Config { .. } => RpcError::new(
                Code::InvalidArgument,
                format!("request has missing or invalid field: {e}"),
            ),
            StorageError::FeatureDisabled { .. } => {
                RpcError::new(Code::PermissionDenied, e.to_string())
            }
        })
}

/// Delivers what a dead handler left in `work_dir` to the storage its request named, and
/// returns the file results for its FAILED info. A file no storage would take is kept in
/// local storage; its path is logged and becomes the location.
pub async fn salvage(
    work_dir: &Path,
    config: &ServiceConfig,
    request: &StartEgressRequest,
    registry: &PluginRegistry,
    now_unix_nanos: i64,
) -> Vec<FileInfo> {
    let Ok(plan) = DeliveryPlan::read(work_dir) else {
        return Vec::new();
    };
    let targets = target::for_file_output(config, request);
    let mut results = Vec::new();
    for f in &plan.files {
        let Ok(meta) = std::fs::metadata(&f.local_path) else {
            continue;
        };
        if meta.len() == 0 {
            continue;
        }
        let ended_at = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(now_unix_nanos);
        let storage_path = &f.destination.storage_path;
        let uploaded = match destinations(&targets, registry, storage_path) {
            Ok(dests) => upload_file(&dests, &f.local_path, content_type_for(storage_path))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (location, size) = match uploaded {
            Ok(u) => {
                tracing::info!(egress_id = %plan.egress_id, location = %u.location, size = u.size,
                    backup_used = u.backup_used, "delivered the partial file of a failed handler");
                let _ = std::fs::remove_file(&f.local_path);
                (u.location, u.size)
            }
            Err(e) => {
                let kept = keep_locally(&f.local_path, storage_path);
                tracing::error!(egress_id = %plan.egress_id, error = %e, kept = %kept,
                    "could not upload the partial file of a failed handler; kept it locally");
                (kept, meta.len())
            }
        };
        let started_at = if f.started_at > 0 {
            f.started_at
        } else {
            ended_at
        };
        results.push(FileInfo {
            filename: storage_path.clone(),
            started_at,
            ended_at,
            duration: (ended_at - started_at).max(0),
            size: size as i64,
            location,
        });
    }
    DeliveryPlan::remove(work_dir);
    results
}

/// Moves a recording that no storage took into local storage (so the work dir's cleanup does
/// not delete it) and returns where it is. If even that fails it stays in the work dir, which
/// is then marked to be kept.
pub fn keep_locally(local: &Path, storage_path: &str) -> String {
    match local::deliver(
        local,
        &local::PlannedDestination {
            storage_path: storage_path.to_owned(),
        },
    ) {
        Ok(d) => d.location,
        Err(e) => {
            tracing::error!(error = %e, path = %local.display(), "cannot move the recording to local storage; keeping the work dir");
            if let Some(dir) = local.parent() {
                local::mark_keep(dir);
            }
            local.to_string_lossy().into_owned()
        }
    }
}
