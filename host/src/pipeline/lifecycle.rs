//! The parts of the status lifecycle that every recorder shares (the Chrome [`controller`],
//! [`track`] and [`composite`]): stop requests taken once each, the session limit, and the end
//! of an egress — its file delivered (a partial one too), its status settled, its manifest
//! written. One place, so that the three recorders end an egress the same way Go does.
//!
//! [`controller`]: super::controller
//! [`track`]: super::track
//! [`composite`]: super::composite

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use egress_proto::livekit::{EgressInfo, EgressStatus};

use super::job::StopRequest;
use super::file_output::FileOutput;
use super::manifest::{Manifest, ManifestFile};
use crate::core::status::{InfoExt, now_nanos};

/// The stop requests of one egress, each handed out once: the service may repeat the latest
/// (a second StopEgress) and a `watch` shows it again after every `changed`.
pub struct StopRequests {
    rx: watch::Receiver<Option<StopRequest>>,
    seen: Option<StopRequest>,
}

impl StopRequests {
    pub fn new(rx: watch::Receiver<Option<StopRequest>>) -> StopRequests {
        StopRequests { rx, seen: None }
    }

    /// The next stop request not yet handed out; pending forever once the sender is gone.
    /// Cancel-safe: a request is marked seen only in the poll that returns it.
    pub async fn next(&mut self) -> StopRequest {
        loop {
            if let Some(req) = self.rx.borrow_and_update().clone()
                && Some(&req) != self.seen.as_ref()
            {
                self.seen = Some(req.clone());
                return req;
            }
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// How the media subscriber task (WebRTC) ended: `None` when cleanly, else why — a join that
/// never happened is what fails an egress that never started.
pub async fn subscriber_error<E: std::fmt::Display>(task: tokio::task::JoinHandle<Result<(), E>>) -> Option<String> {
    match task.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("subscriber task: {e}")),
    }
}

/// Sleeps until `at`, or forever when there is no deadline (no session limit).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

/// Delivers the file to its storage — a partial one after a failure too, so nothing recorded
/// is lost — or discards it when no media ever started. A failed delivery fails the egress
/// (unless it had failed already: the first error is the one reported).
pub async fn deliver_file(info: &mut EgressInfo, file: &mut FileOutput, started_at: i64, media: Option<Duration>) {
    if started_at == 0 {
        file.discard();
        return;
    }
    if let Err(e) = file.deliver(media_ended_at(started_at, media)).await {
        tracing::error!(error = %e, "file delivery failed");
        if !info.status_is(EgressStatus::EgressFailed) {
            info.set_failed(&e);
        }
    }
    info.backup_storage_used = file.backup_used;
}

/// What the manifest says of the source.
pub struct ManifestSource<'a> {
    pub egress_id: &'a str,
    pub room_id: &'a str,
    pub room_name: &'a str,
    /// The recorded page (web egress); empty otherwise.
    pub url: &'a str,
    pub disabled: bool,
}

/// Settles the final status once the outputs are delivered: a recording still ACTIVE or ENDING
/// is COMPLETE; a COMPLETE or LIMIT_REACHED one with a stored file gets its manifest beside the
/// file; `ended_at` is stamped if nothing set it.
pub async fn settle(info: &mut EgressInfo, file: Option<&FileOutput>, manifest: ManifestSource<'_>, work_dir: &Path) {
    if info.status_is(EgressStatus::EgressActive) || info.status_is(EgressStatus::EgressEnding) {
        info.set_complete();
    }
    let location = file.map(|f| f.info.location.as_str()).unwrap_or_default();
    if let Some(file) = file
        && !manifest.disabled
        && !location.is_empty()
        && (info.status_is(EgressStatus::EgressComplete) || info.status_is(EgressStatus::EgressLimitReached))
    {
        let doc = Manifest {
            egress_id: manifest.egress_id.to_owned(),
            room_id: manifest.room_id.to_owned(),
            room_name: manifest.room_name.to_owned(),
            url: manifest.url.to_owned(),
            started_at: info.started_at,
            ended_at: info.ended_at,
            files: vec![ManifestFile { filename: file.info.filename.clone(), location: file.info.location.clone() }],
        };
        if let Some(stored) = file.store_manifest(&doc, work_dir).await {
            info.manifest_location = stored;
        }
    }
    if info.ended_at == 0 {
        info.ended_at = now_nanos();
    }
    tracing::info!(status = ?EgressStatus::try_from(info.status).ok(), error = %info.error,
        details = %info.details, location = %location, "egress finished");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graceful(reason: &str) -> Option<StopRequest> {
        Some(StopRequest::Graceful { reason: reason.into() })
    }

    #[tokio::test]
    async fn each_stop_request_is_handed_out_once() {
        let (tx, rx) = watch::channel(None);
        let mut stops = StopRequests::new(rx);
        tx.send_replace(graceful("StopEgress API"));
        assert_eq!(stops.next().await, StopRequest::Graceful { reason: "StopEgress API".into() });
        // The same request again (a repeated StopEgress) is not a new one ...
        tx.send_replace(graceful("StopEgress API"));
        let again = tokio::time::timeout(Duration::from_millis(50), stops.next()).await;
        assert!(again.is_err(), "a repeated request was handed out twice: {again:?}");
        // ... a kill after it is.
        tx.send_replace(Some(StopRequest::Kill { error: "CPU exhausted".into() }));
        assert_eq!(stops.next().await, StopRequest::Kill { error: "CPU exhausted".into() });
        // With the sender gone, no request ever comes.
        drop(tx);
        assert!(tokio::time::timeout(Duration::from_millis(50), stops.next()).await.is_err());
    }

    #[test]
    fn media_end_is_its_start_plus_its_duration_or_now() {
        assert_eq!(media_ended_at(1_000, Some(Duration::from_nanos(500))), 1_500);
        let before = now_nanos();
        assert!(media_ended_at(0, Some(Duration::from_secs(1))) >= before, "never started: now");
        assert!(media_ended_at(1_000, None) >= before, "unknown duration: now");
    }
}
