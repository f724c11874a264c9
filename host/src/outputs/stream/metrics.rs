//! Per-destination Prometheus metrics of live streams: bytes sent, reconnects and state of each
//! stream URL, labelled with the egress, the destination's number within it and its URL as
//! `StreamInfo.url` shows it (stream keys, SRT passphrases and streamids redacted), never the
//! URL itself.
//!
//! Destinations run in handler processes and `/metrics` is served by the service, so the
//! numbers travel the way upload outcomes do:
//!
//! ```text
//!  handler: Destination ─counters─▶ tracked here ─every second─▶ IPC StreamStats frame
//!  service: child.rs reads the frame ─▶ record() ─▶ StreamCollector, registered in the
//!           service's Prometheus registry, renders what was recorded at scrape time
//! ```
//!
//! A destination that ended (FINISHED or FAILED) is reported once more and forgotten by its
//! handler; the service keeps its last numbers for [`ENDED_KEPT`] so that a scrape sees how it
//! ended, and forgets any destination whose handler stopped reporting (it died) after
//! [`STALE_AFTER`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

/// How long the service shows a destination that ended.
pub const ENDED_KEPT: Duration = Duration::from_secs(120);
/// How long the service shows a live destination no handler reports any more.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How often a handler reports its destinations.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Where a destination is in its life (the `state` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DestinationState {
    /// Its first connect is under way.
    Connecting = 0,
    /// A session is publishing.
    Publishing = 1,
    /// It dropped (or a first connect failed) and is being tried again.
    Reconnecting = 2,
    /// Removed, or the egress ended.
    Finished = 3,
    /// Given up.
    Failed = 4,
}

impl DestinationState {
    pub const ALL: [DestinationState; 5] = [
        DestinationState::Connecting,
        DestinationState::Publishing,
        DestinationState::Reconnecting,
        DestinationState::Finished,
        DestinationState::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DestinationState::Connecting => "connecting",
            DestinationState::Publishing => "publishing",
            DestinationState::Reconnecting => "reconnecting",
            DestinationState::Finished => "finished",
            DestinationState::Failed => "failed",
        }
    }

    pub fn from_label(label: &str) -> Option<DestinationState> {
        Self::ALL.into_iter().find(|s| s.label() == label)
    }

    fn from_u8(v: u8) -> DestinationState {
        Self::ALL
            .into_iter()
            .find(|s| *s as u8 == v)
            .unwrap_or(DestinationState::Connecting)
    }

    pub fn has_ended(self) -> bool {
        matches!(self, DestinationState::Finished | DestinationState::Failed)
    }
}

/// The counters of one destination, kept by its task.
#[derive(Debug, Default)]
pub struct DestinationStats {
    bytes_sent: AtomicU64,
    reconnects: AtomicU64,
    state: AtomicU8,
}

impl DestinationStats {
    pub fn add_bytes(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// One reconnect attempt (what `StreamInfo.retries` counts).
    pub fn reconnecting(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        self.set_state(DestinationState::Reconnecting);
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn set_state(&self, state: DestinationState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> DestinationState {
        DestinationState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// One destination's numbers at one moment, as a handler reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSample {
    /// The destination's number within its egress (the order URLs were added, from 0).
    pub index: u64,
    /// The URL as `StreamInfo.url` shows it.
    pub url: String,
    pub state: DestinationState,
    pub bytes_sent: u64,
    pub reconnects: u64,
}

// ---- handler side -------------------------------------------------------------------------

tokio::task_local! {
    static EGRESS_ID: String;
}

/// Runs `f` (an egress's pipeline) with its stream destinations labelled `egress_id`.
pub async fn for_egress<F: Future>(egress_id: String, f: F) -> F::Output {
    EGRESS_ID.scope(egress_id, f).await
}

/// The egress whose pipeline runs on this task (`None` outside [`for_egress`]).
pub(crate) fn current_egress() -> Option<String> {
    EGRESS_ID.try_with(Clone::clone).ok()
}

struct Tracked {
    egress_id: String,
    index: u64,
    url: String,
    stats: Arc<DestinationStats>,
}

static TRACKED: Mutex<Vec<Tracked>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts reporting a destination of `egress_id` (handler side).
pub fn track(egress_id: &str, index: u64, url: &str, stats: Arc<DestinationStats>) {
    lock(&TRACKED).push(Tracked {
        egress_id: egress_id.to_owned(),
        index,
        url: url.to_owned(),
        stats,
    });
}

/// Every tracked destination's numbers, grouped by egress; destinations that ended are in it
/// one last time and then forgotten.
pub fn take_report() -> BTreeMap<String, Vec<DestinationSample>> {
    let mut report: BTreeMap<String, Vec<DestinationSample>> = BTreeMap::new();
    lock(&TRACKED).retain(|t| {
        let state = t.stats.state();
        report
            .entry(t.egress_id.clone())
            .or_default()
            .push(DestinationSample {
                index: t.index,
                url: t.url.clone(),
                state,
                bytes_sent: t.stats.bytes_sent(),
                reconnects: t.stats.reconnects(),
            });
        !state.has_ended()
    });
    report
}

// ---- service side -------------------------------------------------------------------------

struct Recorded {
    sample: DestinationSample,
    at: Instant,
}

static RECORDED: Mutex<BTreeMap<(String, u64), Recorded>> = Mutex::new(BTreeMap::new());

/// Stores what a handler reported about `egress_id`'s destinations (service side).
pub fn record(egress_id: &str, samples: Vec<DestinationSample>) {
    let now = Instant::now();
    let mut recorded = lock(&RECORDED);
    for sample in samples {
        recorded.insert(
            (egress_id.to_owned(), sample.index),
            Recorded { sample, at: now },
        );
    }
}

fn still_shown(r: &Recorded, now: Instant) -> bool {
    let age = now.saturating_duration_since(r.at);
    if r.sample.state.has_ended() {
        age < ENDED_KEPT
    } else {
        age < STALE_AFTER
    }
}

/// Renders the recorded destinations; registered in the service's registry, so its series
/// carry the registry's `node_id` and `cluster_id` like every other.
pub struct StreamCollector {
    bytes_sent: IntCounterVec,
    reconnects: IntCounterVec,
    state: IntGaugeVec,
    /// One scrape at a time: each rebuilds the vectors from the recorded samples.
    collecting: Mutex<()>,
}

const LABELS: [&str; 3] = ["egress_id", "destination", "url"];

impl StreamCollector {
    pub fn new() -> Result<StreamCollector, prometheus::Error> {
        Ok(StreamCollector {
            bytes_sent: IntCounterVec::new(
                Opts::new(
                    "livekit_egress_stream_bytes_sent_total",
                    "bytes sent to a live stream destination, over all its sessions",
                ),
                &LABELS,
            )?,
            reconnects: IntCounterVec::new(
                Opts::new(
                    "livekit_egress_stream_reconnects_total",
                    "reconnect attempts of a live stream destination (StreamInfo.retries)",
                ),
                &LABELS,
            )?,
            state: IntGaugeVec::new(
                Opts::new(
                    "livekit_egress_stream_state",
                    "1 for the state a live stream destination is in (connecting, publishing, reconnecting, finished, failed)",
                ),
                &["egress_id", "destination", "url", "state"],
            )?,
            collecting: Mutex::new(()),
        })
    }
}

/// The [`StreamCollector`], ready to register.
pub fn collector() -> Result<Box<dyn Collector>, prometheus::Error> {
    Ok(Box::new(StreamCollector::new()?))
}

impl Collector for StreamCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.bytes_sent.desc();
        d.extend(self.reconnects.desc());
        d.extend(self.state.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = lock(&self.collecting);
        self.bytes_sent.reset();
        self.reconnects.reset();
        self.state.reset();
        let now = Instant::now();
        let mut recorded = lock(&RECORDED);
        recorded.retain(|_, r| still_shown(r, now));
        for ((egress_id, index), r) in recorded.iter() {
            let index = index.to_string();
            let labels = [egress_id.as_str(), index.as_str(), r.sample.url.as_str()];
            self.bytes_sent
                .with_label_values(&labels)
                .inc_by(r.sample.bytes_sent);
            self.reconnects
                .with_label_values(&labels)
                .inc_by(r.sample.reconnects);
            for s in DestinationState::ALL {
                self.state
                    .with_label_values(&[labels[0], labels[1], labels[2], s.label()])
                    .set(i64::from(s == r.sample.state));
            }
        }
        drop(recorded);
        let mut families = self.bytes_sent.collect();
        families.extend(self.reconnects.collect());
        families.extend(self.state.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn a_handlers_destinations_reach_the_services_metrics() {
        // Handler side: two destinations of one egress, one of them ended.
        let egress = "EG_metrics_unit_1";
        let live = Arc::new(DestinationStats::default());
        let ended = Arc::new(DestinationStats::default());
        for_egress(egress.to_owned(), async {
            assert_eq!(current_egress().as_deref(), Some(egress));
            track(egress, 0, "rtmp://h/live/{abc...xyz}", live.clone());
            track(egress, 1, "srt://h:1?passphrase={pas...ase}", ended.clone());
        })
        .await;
        assert_eq!(current_egress(), None);
        live.set_state(DestinationState::Publishing);
        live.add_bytes(1000);
        live.reconnecting();
        live.set_state(DestinationState::Publishing);
        live.add_bytes(500);
        ended.set_state(DestinationState::Failed);

        let report = take_report();
        let samples = report.get(egress).cloned().unwrap_or_default();
        assert_eq!(samples.len(), 2, "{report:?}");
        assert_eq!(
            samples[0],
            DestinationSample {
                index: 0,
                url: "rtmp://h/live/{abc...xyz}".into(),
                state: DestinationState::Publishing,
                bytes_sent: 1500,
                reconnects: 1,
            }
        );
        assert_eq!(samples[1].state, DestinationState::Failed);
        // The ended one is reported once, then forgotten by the handler.
        let again = take_report();
        assert_eq!(again.get(egress).map(Vec::len), Some(1), "{again:?}");

        // Service side.
        record(egress, samples);
        let registry = Registry::new_custom(
            None,
            Some([("node_id".to_owned(), "NE_1".to_owned())].into()),
        )
        .unwrap();
        registry.register(collector().unwrap()).unwrap();
        let text = render(&registry);
        let line = |prefix: &str, needles: &[&str]| {
            text.lines()
                .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("no {prefix} with {needles:?} in:\n{text}"))
        };
        let bytes = line(
            "livekit_egress_stream_bytes_sent_total{",
            &[egress, r#"destination="0""#],
        );
        assert!(bytes.ends_with(" 1500"), "{bytes}");
        assert!(bytes.contains(r#"node_id="NE_1""#), "{bytes}");
        assert!(
            bytes.contains(r#"url="rtmp://h/live/{abc...xyz}""#),
            "{bytes}"
        );
        assert!(
            line(
                "livekit_egress_stream_reconnects_total{",
                &[egress, r#"destination="0""#]
            )
            .ends_with(" 1")
        );
        assert!(
            line(
                "livekit_egress_stream_state{",
                &[egress, r#"destination="0""#, r#"state="publishing""#]
            )
            .ends_with(" 1")
        );
        assert!(
            line(
                "livekit_egress_stream_state{",
                &[egress, r#"destination="0""#, r#"state="reconnecting""#]
            )
            .ends_with(" 0")
        );
        assert!(
            line(
                "livekit_egress_stream_state{",
                &[egress, r#"destination="1""#, r#"state="failed""#]
            )
            .ends_with(" 1")
        );
    }

    #[test]
    fn ended_destinations_are_kept_a_while_and_silent_ones_dropped() {
        let sample = |state| DestinationSample {
            index: 0,
            url: String::new(),
            state,
            bytes_sent: 0,
            reconnects: 0,
        };
        let now = Instant::now();
        let at = |ago: Duration, state| Recorded {
            sample: sample(state),
            at: now - ago,
        };
        let secs = Duration::from_secs;
        assert!(still_shown(
            &at(secs(20), DestinationState::Publishing),
            now
        ));
        assert!(!still_shown(
            &at(secs(31), DestinationState::Publishing),
            now
        ));
        assert!(still_shown(&at(secs(100), DestinationState::Failed), now));
        assert!(!still_shown(
            &at(secs(121), DestinationState::Finished),
            now
        ));
    }

    #[test]
    fn state_labels_round_trip() {
        for s in DestinationState::ALL {
            assert_eq!(DestinationState::from_label(s.label()), Some(s));
            assert_eq!(DestinationState::from_u8(s as u8), s);
        }
        assert_eq!(DestinationState::from_label("gone"), None);
    }
}
