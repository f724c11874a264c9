//! What an output needs to know about the recording it belongs to, handed over by the recorder
//! when it attaches the output: the service's config and plugins (to resolve and open its
//! storage), the request (its storage fields), the work dir, the names' template values, and
//! whether there is video. [`OutputSettings`] holds the knobs this build has beyond Go's config.

use std::path::PathBuf;
use std::sync::Arc;

use egress_proto::rpc::StartEgressRequest;

use super::filename::FilenameInfo;
use super::plan::{Output, OutputPlan};
use crate::config::ServiceConfig;
use crate::core::errors;
use crate::plugins::PluginRegistry;
use crate::rpc::{Code, RpcError};
use crate::storage::{self, StorageError, Targets};

/// Settings beyond Go's config (the recorder's config fills them from the YAML's `segments:`
/// and `images:` with [`OutputSettings::from_config`]; the defaults are Go's behaviour where
/// Go has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSettings {
    /// Segments listed in the live playlist (`segments.live_playlist_window`; Go's fixed 5).
    pub live_playlist_window: usize,
    /// Go's behaviour: the first image that cannot be stored fails the egress. Off by default:
    /// a missing thumbnail is reported and the recording goes on
    /// (`images.upload_failure_fails_egress`).
    pub image_upload_failure_fails_egress: bool,
    /// Segment uploads running at once (`segments.parallel_uploads`; Go: unbounded).
    pub parallel_uploads: usize,
}

impl OutputSettings {
    /// The settings the config's `segments:` and `images:` sections ask for (their defaults
    /// are [`OutputSettings::default`]).
    pub fn from_config(config: &ServiceConfig) -> OutputSettings {
        OutputSettings {
            live_playlist_window: config.segments.live_playlist_window as usize,
            image_upload_failure_fails_egress: config.images.upload_failure_fails_egress,
            parallel_uploads: config.segments.parallel_uploads as usize,
        }
    }
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            live_playlist_window: 5,
            image_upload_failure_fails_egress: false,
            parallel_uploads: 4,
        }
    }
}

/// One recording, as its outputs see it.
#[derive(Clone)]
pub struct OutputContext {
    pub service: Arc<ServiceConfig>,
    pub request: StartEgressRequest,
    pub plugins: Arc<PluginRegistry>,
    /// The egress's work dir: segments are written below it before their upload.
    pub work_dir: PathBuf,
    /// The template values of names (`{room_name}`, `{time}`, …) and the identifier of default
    /// names (the room, or the participant's identity for a participant egress), built with
    /// the request's `retry_count` and the recording's start time.
    pub filenames: FilenameInfo,
    /// The size of the video the recording encodes; `None` for an audio-only recording (image
    /// outputs need video).
    pub video_size: Option<(u32, u32)>,
    pub settings: OutputSettings,
}

impl OutputContext {
    /// A recording's context; the settings beyond Go's come from the service's config.
    pub fn new(
        service: Arc<ServiceConfig>,
        request: StartEgressRequest,
        plugins: Arc<PluginRegistry>,
        work_dir: PathBuf,
        filenames: FilenameInfo,
        video_size: Option<(u32, u32)>,
    ) -> OutputContext {
        let settings = OutputSettings::from_config(&service);
        OutputContext {
            service,
            request,
            plugins,
            work_dir,
            filenames,
            video_size,
            settings,
        }
    }

    /// The request's `retry_count` (names must carry `{retry}` on a retry).
    pub fn retry_count(&self) -> i32 {
        self.request.retry_count
    }

    /// The position of an image output among the request's image outputs (for its storage
    /// and its element names): the first one with these settings.
    pub(crate) fn image_index(&self, spec: &super::plan::ImagesSpec) -> usize {
        OutputPlan::parse(&self.request)
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::Images(i) => Some(i),
                _ => None,
            })
            .position(|i| i == spec)
            .unwrap_or(0)
    }
}

/// StartEgress-time check of an output's storage, answered like a file output's
/// (`storage::check`): a plugin that is not active, a config the plugin refuses, a disabled
/// feature.
pub(crate) fn check_storage(targets: &Targets, plugins: &PluginRegistry) -> Result<(), RpcError> {
    storage::destinations(targets, plugins, "check")
        .map(drop)
        .map_err(|e| match e {
            StorageError::NotActive { .. } => {
                RpcError::new(Code::FailedPrecondition, e.to_string())
            }
            StorageError::Config { .. } => errors::invalid_input(&e.to_string()),
            StorageError::FeatureDisabled { .. } => {
                RpcError::new(Code::PermissionDenied, e.to_string())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmptyEnv, parse};

    #[test]
    fn settings_come_from_the_config_and_default_as_before() {
        let base = "api_key: k\napi_secret: s\nws_url: ws://x\nredis:\n  address: localhost:6379\n";
        let config = |extra: &str| {
            parse(&format!("{base}{extra}"), &EmptyEnv)
                .expect("valid config")
                .config
        };
        assert_eq!(
            OutputSettings::from_config(&config("")),
            OutputSettings::default()
        );
        assert_eq!(
            OutputSettings::from_config(&config(
                "segments:\n  live_playlist_window: 3\n  parallel_uploads: 2\nimages:\n  upload_failure_fails_egress: true\n"
            )),
            OutputSettings {
                live_playlist_window: 3,
                image_upload_failure_fails_egress: true,
                parallel_uploads: 2,
            }
        );
    }
}
