//! The stream output of one egress: every URL it publishes to (one [`Destination`] each, all fed
//! by one mux), their `StreamInfo`s, and `UpdateStream`.
//!
//! Status, as Go reports it and beyond: each URL has a `StreamInfo` from the moment it is added
//! (ACTIVE), with `started_at` when its first session publishes, `retries` and `last_retry_at` on
//! every reconnect attempt (Go: a burst of retries, reported once a minute), and FINISHED (removed,
//! or the egress ended) or FAILED with its error and end time. A URL added again while ACTIVE is
//! a no-op (Go starts a second publisher to the same key and loses track of the first); one
//! added again after it ended gets a new `StreamInfo`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::url::{
    FindError, StreamKind, StreamUrl, StreamUrlError, StreamUrlRules, find_stream, parse_stream_url,
};
use egress_plugin_api::LiveFactory;
use egress_proto::livekit::stream_info::Status;
use egress_proto::livekit::{StreamInfo, UpdateStreamRequest};
use tokio::sync::mpsc;

use super::backoff::ReconnectPolicy;
use super::destination::{Destination, DestinationEvent, DestinationSetup, Framing};
use super::metrics;
use super::mux::MuxTap;

/// One URL of the output, with its status.
struct Entry {
    id: u64,
    url: StreamUrl,
    info: StreamInfo,
    /// The running destination; `None` once it ended.
    destination: Option<Destination>,
}

/// Why an `UpdateStream` was refused (in part): Go collects one error per URL and answers with
/// the first one's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// A URL to add is not valid for this output (InvalidArgument).
    #[error(transparent)]
    Invalid(#[from] StreamUrlError),
    /// A URL to remove is not among the outputs (NotFound).
    #[error(transparent)]
    NotFound(#[from] FindError),
}

/// What an applied `UpdateStream` left.
#[derive(Debug, Default)]
pub struct UpdateOutcome {
    /// Per-URL errors, in Go's order (adds first, then removes).
    pub errors: Vec<UpdateError>,
}

pub struct StreamOutput {
    kind: StreamKind,
    tap: MuxTap,
    factory: Arc<dyn LiveFactory>,
    rules: StreamUrlRules,
    policy: ReconnectPolicy,
    entries: Vec<Entry>,
    next_id: u64,
    events_tx: mpsc::UnboundedSender<(u64, DestinationEvent)>,
    events_rx: mpsc::UnboundedReceiver<(u64, DestinationEvent)>,
    /// When the recording's media started (Unix ns; 0 before): a stream does not start before
    /// it, however early its destination connected (the Chrome recorder connects while the
    /// page loads).
    media_started_at: i64,
    /// The egress the destinations' metrics are labelled with (`None`: not reported, outside
    /// a handler's job).
    egress_id: Option<String>,
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl StreamOutput {
    pub fn new(
        kind: StreamKind,
        tap: MuxTap,
        factory: Arc<dyn LiveFactory>,
        rules: StreamUrlRules,
        policy: ReconnectPolicy,
    ) -> StreamOutput {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let egress_id = metrics::current_egress();
        if egress_id.is_none() {
            tracing::debug!("stream output outside an egress job: its metrics are not reported");
        }
        StreamOutput {
            kind,
            tap,
            factory,
            rules,
            policy,
            entries: Vec::new(),
            next_id: 0,
            events_tx,
            events_rx,
            media_started_at: 0,
            egress_id,
        }
    }

    /// The recording's media started at `at` (Unix ns): streams already publishing start then.
    pub fn media_started(&mut self, at: i64) {
        self.media_started_at = at;
        for entry in &mut self.entries {
            if entry.info.started_at > 0 && entry.info.started_at < at {
                entry.info.started_at = at;
            }
        }
    }

    /// Starts publishing to `url` unless it is already ACTIVE. Returns whether it was added.
    pub fn add(&mut self, url: StreamUrl) -> bool {
        let live = self.entries.iter().any(|e| {
            e.destination.is_some()
                && e.info.status == Status::Active as i32
                && e.url.url == url.url
        });
        if live {
            tracing::info!(url = %url.redacted, "stream already publishing; add ignored");
            return false;
        }
        let id = self.next_id;
        self.next_id += 1;
        let (events, mut rx) = mpsc::unbounded_channel();
        let forward = self.events_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if forward.send((id, e)).is_err() {
                    break;
                }
            }
        });
        let destination = Destination::spawn(DestinationSetup {
            url: url.url.clone(),
            redacted: url.redacted.clone(),
            factory: self.factory.clone(),
            framing: if self.kind == StreamKind::Srt {
                Framing::MpegTs
            } else {
                Framing::Flv
            },
            headers: self.tap.headers.clone(),
            keyframes: self.tap.keyframes.clone(),
            policy: self.policy.for_kind(self.kind),
            events,
        });
        if let Ok(mut fanout) = self.tap.fanout.lock() {
            fanout.insert(id, destination.input());
        }
        if let Some(egress_id) = &self.egress_id {
            metrics::track(egress_id, id, &url.redacted, destination.stats());
        }
        let info = StreamInfo {
            url: url.redacted.clone(),
            status: Status::Active as i32,
            ..StreamInfo::default()
        };
        tracing::info!(url = %url.redacted, "stream added");
        self.entries.push(Entry {
            id,
            url,
            info,
            destination: Some(destination),
        });
        true
    }

    /// Applies an `UpdateStream`: adds first (each URL validated as Go does, for this output's
    /// protocol), then removes (by the URL as sent, or as redacted in `StreamInfo.url`).
    pub async fn update(&mut self, req: &UpdateStreamRequest) -> UpdateOutcome {
        let mut outcome = UpdateOutcome::default();
        for raw in &req.add_output_urls {
            match parse_stream_url(raw, self.kind, &self.rules) {
                Ok(url) => {
                    self.add(url);
                }
                Err(e) => outcome.errors.push(e.into()),
            }
        }
        for raw in &req.remove_output_urls {
            let live: Vec<StreamUrl> = self
                .entries
                .iter()
                .filter(|e| e.destination.is_some())
                .map(|e| e.url.clone())
                .collect();
            match find_stream(&live, raw, &self.rules) {
                Ok(i) => {
                    let url = &live[i];
                    if let Some(pos) = self
                        .entries
                        .iter()
                        .position(|e| e.destination.is_some() && e.url.url == url.url)
                    {
                        self.stop_entry(pos).await;
                    }
                }
                Err(e) => outcome.errors.push(e.into()),
            }
        }
        outcome
    }

    async fn stop_entry(&mut self, pos: usize) {
        let entry = &mut self.entries[pos];
        if let Ok(mut fanout) = self.tap.fanout.lock() {
            fanout.remove(&entry.id);
        }
        if let Some(d) = entry.destination.take() {
            d.stop().await;
        }
        tracing::info!(url = %entry.url.redacted, "stream removed");
        Self::settle(&mut entry.info, Status::Finished, SystemTime::now(), None);
        self.drain_events();
    }

    /// Waits for the next status change of a destination and applies it to its `StreamInfo`.
    /// Returns `false` when there can be none (no destination left).
    pub async fn next_change(&mut self) -> bool {
        if self.entries.iter().all(|e| e.destination.is_none()) && self.events_rx.is_empty() {
            return false;
        }
        match self.events_rx.recv().await {
            Some((id, event)) => {
                self.apply(id, event);
                true
            }
            None => false,
        }
    }

    fn drain_events(&mut self) {
        while let Ok((id, event)) = self.events_rx.try_recv() {
            self.apply(id, event);
        }
    }

    fn apply(&mut self, id: u64, event: DestinationEvent) {
        let media_started_at = self.media_started_at;
        let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) else {
            return;
        };
        let info = &mut entry.info;
        if info.status != Status::Active as i32 {
            return;
        }
        match event {
            DestinationEvent::Publishing { at, first } => {
                if first {
                    info.started_at = nanos(at).max(media_started_at);
                }
            }
            DestinationEvent::Retrying { at, .. } => {
                info.retries += 1;
                info.last_retry_at = nanos(at);
            }
            DestinationEvent::Failed { at, error } => {
                Self::settle(info, Status::Failed, at, Some(error));
                if let Ok(mut fanout) = self.tap.fanout.lock() {
                    fanout.remove(&entry.id);
                }
                entry.destination = None;
            }
            DestinationEvent::Finished { at } => {
                Self::settle(info, Status::Finished, at, None);
                entry.destination = None;
            }
        }
    }

    fn settle(info: &mut StreamInfo, status: Status, at: SystemTime, error: Option<String>) {
        if info.status != Status::Active as i32 {
            return;
        }
        info.status = status as i32;
        info.ended_at = nanos(at);
        if info.started_at > 0 {
            info.duration = info.ended_at - info.started_at;
        }
        if let Some(e) = error {
            info.error = e;
        }
    }

    /// The `StreamInfo` of every URL ever added, in order.
    pub fn infos(&self) -> Vec<StreamInfo> {
        self.entries.iter().map(|e| e.info.clone()).collect()
    }

    /// URLs still ACTIVE.
    pub fn active(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.info.status == Status::Active as i32)
            .count()
    }

    /// When every URL has FAILED: the last error (the egress fails with it if it has no other
    /// output).
    pub fn all_failed(&self) -> Option<String> {
        if self.entries.is_empty()
            || self
                .entries
                .iter()
                .any(|e| e.info.status != Status::Failed as i32)
        {
            return None;
        }
        // The one that failed last (Go fails the egress with the error of the stream whose
        // failure left it without outputs), not the last added.
        self.entries
            .iter()
            .max_by_key(|e| e.info.ended_at)
            .map(|e| e.info.error.clone())
    }

    /// The egress ends: each destination sends what is queued and closes; every ACTIVE URL
    /// becomes FINISHED.
    pub async fn finish(&mut self) {
        if let Ok(mut fanout) = self.tap.fanout.lock() {
            fanout.clear();
        }
        for entry in &mut self.entries {
            if let Some(d) = entry.destination.take() {
                d.finish().await;
            }
        }
        self.drain_events();
        let now = SystemTime::now();
        for entry in &mut self.entries {
            Self::settle(&mut entry.info, Status::Finished, now, None);
        }
    }

    /// The egress failed: ACTIVE URLs are FAILED with its error (Go #399).
    pub async fn fail(&mut self, error: &str) {
        if let Ok(mut fanout) = self.tap.fanout.lock() {
            fanout.clear();
        }
        let now = SystemTime::now();
        for entry in &mut self.entries {
            // Settled first, so the `Finished` the stopped task reports is ignored.
            Self::settle(&mut entry.info, Status::Failed, now, Some(error.to_owned()));
            if let Some(d) = entry.destination.take() {
                d.stop().await;
            }
        }
        self.drain_events();
    }
}
