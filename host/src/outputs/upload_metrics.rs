//! Prometheus metrics of the segments and image outputs: Go's HLS upload queue gauges
//! (`livekit_egress_segments_uploads_channel_size`, `livekit_egress_playlist_uploads_channel_size`,
//! labelled `egress_id` as Go's const label), and beyond Go each output's upload outcomes
//! (`livekit_egress_output_uploads_total{egress_id, output, object, status}`) and the time from a
//! segment's close to both playlists listing it stored
//! (`livekit_egress_segment_playlists_stored_seconds`).
//!
//! The outputs run in handler processes and `/metrics` is served by the service, so the numbers
//! travel as the stream destinations' do (`super::stream::metrics`):
//!
//! ```text
//!  handler: uploader ─atomics─▶ tracked here ─every second─▶ IPC OutputStats frame
//!  service: child.rs reads the frame ─▶ record() ─▶ OutputUploadCollector in the registry
//! ```
//!
//! An output that finished is reported once more and forgotten by its handler; the service keeps
//! its last numbers for [`ENDED_KEPT`] so that a scrape after the egress sees how it went, and
//! forgets an output whose handler stopped reporting (it died) after [`STALE_AFTER`]. Several
//! image outputs of one egress are summed under `output="images"`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts};

use super::segments::uploader::SegmentGauges;

/// How long the service shows an output that finished.
pub const ENDED_KEPT: Duration = Duration::from_secs(120);
/// How long the service shows a running output no handler reports any more.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// What was uploaded (the `object` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UploadObject {
    Segment = 0,
    Playlist = 1,
    Image = 2,
}

impl UploadObject {
    pub const ALL: [UploadObject; 3] = [
        UploadObject::Segment,
        UploadObject::Playlist,
        UploadObject::Image,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UploadObject::Segment => "segment",
            UploadObject::Playlist => "playlist",
            UploadObject::Image => "image",
        }
    }

    pub fn from_label(label: &str) -> Option<UploadObject> {
        Self::ALL.into_iter().find(|o| o.label() == label)
    }
}

/// Which output (the `output` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OutputKind {
    Segments,
    Images,
}

impl OutputKind {
    pub fn label(self) -> &'static str {
        match self {
            OutputKind::Segments => "segments",
            OutputKind::Images => "images",
        }
    }

    pub fn from_label(label: &str) -> Option<OutputKind> {
        [OutputKind::Segments, OutputKind::Images]
            .into_iter()
            .find(|k| k.label() == label)
    }
}

/// One output's upload outcomes (each object once, after its retries and the backup), kept by
/// its upload task.
#[derive(Debug, Default)]
pub struct UploadCounts {
    stored: [AtomicU64; 3],
    failed: [AtomicU64; 3],
}

impl UploadCounts {
    pub fn stored(&self, object: UploadObject) {
        self.stored[object as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, object: UploadObject) {
        self.failed[object as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// (stored, failed) of `object` so far.
    pub fn get(&self, object: UploadObject) -> (u64, u64) {
        (
            self.stored[object as usize].load(Ordering::Relaxed),
            self.failed[object as usize].load(Ordering::Relaxed),
        )
    }
}

/// One output's numbers at one moment, as a handler reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputSample {
    pub output: Option<OutputKind>,
    /// Segments closed and not yet committed to the playlists (segments output only).
    pub segments_queue: u64,
    /// Playlist versions waiting to be stored (segments output only).
    pub playlists_queue: u64,
    /// (object, stored, failed) for the objects this output uploads.
    pub uploads: Vec<(UploadObject, u64, u64)>,
    /// Segment close → both playlists stored, since the last report.
    pub playlist_latencies: Vec<Duration>,
    /// The output finished; this is its last report.
    pub ended: bool,
}

// ---- handler side -------------------------------------------------------------------------

struct Tracked {
    egress_id: String,
    kind: OutputKind,
    counts: Arc<UploadCounts>,
    gauges: Option<Arc<SegmentGauges>>,
    ended: Arc<AtomicBool>,
}

static TRACKED: Mutex<Vec<Tracked>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reported while it lives; dropping it (the output finished or was dropped) makes the next
/// report the output's last.
#[must_use = "the output is reported until this is dropped"]
pub struct Tracking(Arc<AtomicBool>);

impl Drop for Tracking {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts reporting an output of `egress_id` (handler side). `gauges` for a segments output.
pub fn track(
    egress_id: &str,
    kind: OutputKind,
    counts: Arc<UploadCounts>,
    gauges: Option<Arc<SegmentGauges>>,
) -> Tracking {
    let ended = Arc::new(AtomicBool::new(false));
    lock(&TRACKED).push(Tracked {
        egress_id: egress_id.to_owned(),
        kind,
        counts,
        gauges,
        ended: ended.clone(),
    });
    Tracking(ended)
}

/// Every tracked output's numbers, one sample per egress and output kind (image outputs
/// summed); outputs that ended are in it one last time and then forgotten.
pub fn take_report() -> BTreeMap<String, Vec<OutputSample>> {
    let mut by: BTreeMap<(String, OutputKind), OutputSample> = BTreeMap::new();
    lock(&TRACKED).retain(|t| {
        let ended = t.ended.load(Ordering::Relaxed);
        let s = by
            .entry((t.egress_id.clone(), t.kind))
            .or_insert_with(|| OutputSample {
                output: Some(t.kind),
                ended: true,
                ..Default::default()
            });
        s.ended &= ended;
        let objects: &[UploadObject] = match t.kind {
            OutputKind::Segments => &[UploadObject::Segment, UploadObject::Playlist],
            OutputKind::Images => &[UploadObject::Image],
        };
        for &o in objects {
            let (stored, failed) = t.counts.get(o);
            match s.uploads.iter_mut().find(|(x, _, _)| *x == o) {
                Some(e) => {
                    e.1 += stored;
                    e.2 += failed;
                }
                None => s.uploads.push((o, stored, failed)),
            }
        }
        if let Some(g) = &t.gauges {
            s.segments_queue += g.segment_queue() as u64;
            s.playlists_queue += g.playlist_queue() as u64;
            s.playlist_latencies.extend(g.take_latencies());
        }
        !ended
    });
    let mut report: BTreeMap<String, Vec<OutputSample>> = BTreeMap::new();
    for ((egress_id, _), sample) in by {
        report.entry(egress_id).or_default().push(sample);
    }
    report
}

// ---- service side -------------------------------------------------------------------------

struct Recorded {
    sample: OutputSample,
    at: Instant,
}

static RECORDED: Mutex<BTreeMap<(String, OutputKind), Recorded>> = Mutex::new(BTreeMap::new());

/// Go's upload-time buckets are for whole files; these resolve the ≤ 1 s target.
const LATENCY_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

static PLAYLIST_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "livekit_egress_segment_playlists_stored_seconds",
            "time from a segment's close to both playlists listing it stored",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
    )
    .expect("valid histogram options")
});

/// Stores what a handler reported about `egress_id`'s outputs (service side).
pub fn record(egress_id: &str, samples: Vec<OutputSample>) {
    let now = Instant::now();
    let mut recorded = lock(&RECORDED);
    for mut sample in samples {
        let Some(kind) = sample.output else { continue };
        for l in sample.playlist_latencies.drain(..) {
            PLAYLIST_LATENCY.observe(l.as_secs_f64());
        }
        recorded.insert((egress_id.to_owned(), kind), Recorded { sample, at: now });
    }
}

fn still_shown(r: &Recorded, now: Instant) -> bool {
    let age = now.saturating_duration_since(r.at);
    if r.sample.ended {
        age < ENDED_KEPT
    } else {
        age < STALE_AFTER
    }
}

/// Renders the recorded outputs; registered in the service's registry, so its series carry
/// the registry's `node_id` and `cluster_id` like every other.
pub struct OutputUploadCollector {
    segments_queue: IntGaugeVec,
    playlists_queue: IntGaugeVec,
    uploads: IntCounterVec,
    /// One scrape at a time: each rebuilds the vectors from the recorded samples.
    collecting: Mutex<()>,
}

impl OutputUploadCollector {
    pub fn new() -> Result<OutputUploadCollector, prometheus::Error> {
        Ok(OutputUploadCollector {
            segments_queue: IntGaugeVec::new(
                Opts::new(
                    "livekit_egress_segments_uploads_channel_size",
                    "HLS segments closed and not yet stored and listed",
                ),
                &["egress_id"],
            )?,
            playlists_queue: IntGaugeVec::new(
                Opts::new(
                    "livekit_egress_playlist_uploads_channel_size",
                    "HLS playlist versions waiting to be stored",
                ),
                &["egress_id"],
            )?,
            uploads: IntCounterVec::new(
                Opts::new(
                    "livekit_egress_output_uploads_total",
                    "objects a segments or image output stored or failed to store (after retries and the backup)",
                ),
                &["egress_id", "output", "object", "status"],
            )?,
            collecting: Mutex::new(()),
        })
    }
}

/// The [`OutputUploadCollector`], ready to register.
pub fn collector() -> Result<Box<dyn Collector>, prometheus::Error> {
    Ok(Box::new(OutputUploadCollector::new()?))
}

impl Collector for OutputUploadCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.segments_queue.desc();
        d.extend(self.playlists_queue.desc());
        d.extend(self.uploads.desc());
        d.extend(PLAYLIST_LATENCY.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = lock(&self.collecting);
        self.segments_queue.reset();
        self.playlists_queue.reset();
        self.uploads.reset();
        let now = Instant::now();
        let mut recorded = lock(&RECORDED);
        recorded.retain(|_, r| still_shown(r, now));
        for ((egress_id, kind), r) in recorded.iter() {
            if *kind == OutputKind::Segments {
                let e = [egress_id.as_str()];
                self.segments_queue
                    .with_label_values(&e)
                    .set(i64::try_from(r.sample.segments_queue).unwrap_or(i64::MAX));
                self.playlists_queue
                    .with_label_values(&e)
                    .set(i64::try_from(r.sample.playlists_queue).unwrap_or(i64::MAX));
            }
            for (object, stored, failed) in &r.sample.uploads {
                for (status, n) in [("success", stored), ("failed", failed)] {
                    self.uploads
                        .with_label_values(&[egress_id, kind.label(), object.label(), status])
                        .inc_by(*n);
                }
            }
        }
        drop(recorded);
        let mut families = self.segments_queue.collect();
        families.extend(self.playlists_queue.collect());
        families.extend(self.uploads.collect());
        families.extend(PLAYLIST_LATENCY.collect());
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

    #[test]
    fn a_handlers_outputs_reach_the_services_metrics() {
        // Handler side: a segments output and two image outputs of one egress.
        let egress = "EG_upload_metrics_unit_1";
        let seg = Arc::new(UploadCounts::default());
        let gauges = Arc::new(SegmentGauges::default());
        let img1 = Arc::new(UploadCounts::default());
        let img2 = Arc::new(UploadCounts::default());
        let seg_tracking = track(
            egress,
            OutputKind::Segments,
            seg.clone(),
            Some(gauges.clone()),
        );
        let t1 = track(egress, OutputKind::Images, img1.clone(), None);
        let t2 = track(egress, OutputKind::Images, img2.clone(), None);
        for _ in 0..3 {
            seg.stored(UploadObject::Segment);
        }
        seg.stored(UploadObject::Playlist);
        seg.failed(UploadObject::Playlist);
        img1.stored(UploadObject::Image);
        img2.failed(UploadObject::Image);
        img2.failed(UploadObject::Image);

        let report = take_report()
            .remove(egress)
            .expect("the egress is reported");
        assert_eq!(report.len(), 2, "{report:?}");
        let images = report
            .iter()
            .find(|s| s.output == Some(OutputKind::Images))
            .expect("images");
        assert_eq!(images.uploads, vec![(UploadObject::Image, 1, 2)], "summed");
        assert!(!images.ended);

        // Service side.
        let registry = Registry::new();
        registry.register(collector().unwrap()).unwrap();
        record(egress, report);
        let text = render(&registry);
        for line in [
            format!("livekit_egress_segments_uploads_channel_size{{egress_id=\"{egress}\"}} 0"),
            format!("livekit_egress_playlist_uploads_channel_size{{egress_id=\"{egress}\"}} 0"),
            format!(
                "livekit_egress_output_uploads_total{{egress_id=\"{egress}\",object=\"segment\",output=\"segments\",status=\"success\"}} 3"
            ),
            format!(
                "livekit_egress_output_uploads_total{{egress_id=\"{egress}\",object=\"playlist\",output=\"segments\",status=\"failed\"}} 1"
            ),
            format!(
                "livekit_egress_output_uploads_total{{egress_id=\"{egress}\",object=\"image\",output=\"images\",status=\"failed\"}} 2"
            ),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }

        // Ended outputs are reported once more, then forgotten by the handler; the service
        // keeps their last numbers.
        drop((seg_tracking, t1, t2));
        let last = take_report().remove(egress).expect("a last report");
        assert!(last.iter().all(|s| s.ended), "{last:?}");
        assert!(!take_report().contains_key(egress));
        record(egress, last);
        assert!(
            render(&registry).contains(&format!(
                "livekit_egress_output_uploads_total{{egress_id=\"{egress}\",object=\"image\",output=\"images\",status=\"success\"}} 1"
            )),
            "kept after the end"
        );
    }

    #[test]
    fn labels_round_trip() {
        for o in UploadObject::ALL {
            assert_eq!(UploadObject::from_label(o.label()), Some(o));
        }
        for k in [OutputKind::Segments, OutputKind::Images] {
            assert_eq!(OutputKind::from_label(k.label()), Some(k));
        }
        assert_eq!(UploadObject::from_label("file"), None);
    }
}
