//! Upload outcomes, for the Go egress's upload metrics (`livekit_egress_pipeline_uploads`
//! {type, status, custom_endpoint} and `livekit_egress_backup_storage_writes` {output_type}).
//!
//! Uploads run in handler processes (and, for a dead handler's partial file, in the service),
//! but the metrics live in the service's Prometheus registry. So the upload code only reports
//! each outcome to the process's [`Reporter`]: the handler installs one that forwards it over IPC,
//! the service one that counts it. A process-wide reporter rather than a parameter, because every
//! pipeline (Chrome, track, composite) uploads through [`super::upload`] from tasks of its own,
//! and none of them should have to carry a metrics handle to be counted.
//!
//! What is reported follows Go's `Uploader.Upload`: one outcome per object on the primary
//! storage (its final result, after our whole-object retries, as Go counts once per upload after
//! its storage library's retries), and one per object on the backup storage; the metrics count
//! primary outcomes as `pipeline_uploads` and backup successes as `backup_storage_writes`.

use std::sync::{Arc, RwLock};

use egress_plugin_api::SinkError;

/// The `status` label: Go's `uploadErrorStatus` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    Success,
    /// The storage answered 4xx (wrong credentials, missing bucket, bad request).
    ClientError,
    /// The storage answered 5xx (after every retry).
    ServerError,
    /// No HTTP answer: a connection failure, a local read error, a receipt that did not match.
    Internal,
}

impl UploadStatus {
    pub fn label(self) -> &'static str {
        match self {
            UploadStatus::Success => "success",
            UploadStatus::ClientError => "4xx",
            UploadStatus::ServerError => "5xx",
            UploadStatus::Internal => "internal",
        }
    }

    /// Parses [`UploadStatus::label`] (the IPC carries the label).
    pub fn from_label(label: &str) -> Option<UploadStatus> {
        [
            UploadStatus::Success,
            UploadStatus::ClientError,
            UploadStatus::ServerError,
            UploadStatus::Internal,
        ]
        .into_iter()
        .find(|s| s.label() == label)
    }

    /// The class of a sink's failure. The plugin ABI has no status field, so the HTTP status is
    /// read from the error text: the object-storage plugins pass on object_store's
    /// `… status code: 403 Forbidden …`, through every loader unchanged. A failure that names
    /// no status is `internal`, as Go counts an error without a status code.
    pub fn of_error(e: &SinkError) -> UploadStatus {
        match http_status(e.message()) {
            Some(400..=499) => UploadStatus::ClientError,
            Some(500..=599) => UploadStatus::ServerError,
            _ => UploadStatus::Internal,
        }
    }
}

/// The first `status code: NNN` in a text.
fn http_status(text: &str) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let at = text.find(MARKER)? + MARKER.len();
    text.get(at..at + 3)?.parse().ok()
}

/// One object's outcome on one storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    /// The object's MIME type (`video/mp4`, `application/json` for a manifest): Go's `type` label.
    pub content_type: String,
    pub status: UploadStatus,
    /// The storage config set its own endpoint (S3 or AliOSS `endpoint`), as Go labels it.
    pub custom_endpoint: bool,
    /// The object went to the backup storage (the primary had failed).
    pub backup: bool,
    /// How long the finished object waited for this outcome: from the end of the recording
    /// (for an object sent whole, such as a manifest, from the upload's start) — what Go's
    /// `pipline_upload_response_time_ms` measures, since Go uploads only after the recording.
    /// `None` for an outcome that came while the recording was still being written.
    pub response_time: Option<std::time::Duration>,
}

/// Where a process's upload outcomes go.
pub type Reporter = Arc<dyn Fn(UploadReport) + Send + Sync>;

static REPORTER: RwLock<Option<Reporter>> = RwLock::new(None);

/// Sends this process's upload outcomes to `reporter` (replacing any earlier one) until the
/// returned guard is dropped. The guard matters when the reporter holds a channel: the handler's
/// IPC writer ends only once every sender is gone.
pub fn install(reporter: Reporter) -> Installed {
    *REPORTER.write().unwrap_or_else(|e| e.into_inner()) = Some(reporter);
    Installed(())
}

/// Removes the reporter when dropped.
#[must_use = "the reporter is removed when this is dropped"]
pub struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        *REPORTER.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Reports one outcome; without a reporter (unit tests, `egress validate`) it is dropped.
pub fn report(r: UploadReport) {
    let reporter = REPORTER.read().unwrap_or_else(|e| e.into_inner()).clone();
    match reporter {
        Some(f) => f(r),
        None => tracing::trace!(
            ?r,
            "upload outcome not reported: no reporter in this process"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_from_sink_errors() {
        let denied = SinkError::auth(
            "put_part rec/a.mp4: The operation lacked the necessary privileges to complete for path rec/a.mp4: \
             Client error with status 403 Forbidden: Server returned non-2xx status code: 403 Forbidden: <Error>",
        );
        assert_eq!(UploadStatus::of_error(&denied), UploadStatus::ClientError);
        let busy = SinkError::retryable(
            "Error after 10 retries - Server returned non-2xx status code: 503 Service Unavailable: ",
        );
        assert_eq!(UploadStatus::of_error(&busy), UploadStatus::ServerError);
        let refused =
            SinkError::retryable("error sending request: Connection refused (os error 111)");
        assert_eq!(UploadStatus::of_error(&refused), UploadStatus::Internal);
        assert_eq!(
            UploadStatus::of_error(&SinkError::permanent("status code: 4")),
            UploadStatus::Internal
        );
    }

    #[test]
    fn labels_round_trip() {
        for s in [
            UploadStatus::Success,
            UploadStatus::ClientError,
            UploadStatus::ServerError,
            UploadStatus::Internal,
        ] {
            assert_eq!(UploadStatus::from_label(s.label()), Some(s));
        }
        assert_eq!(UploadStatus::from_label("2xx"), None);
    }
}
