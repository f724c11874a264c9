//! The segments output on real GStreamer pipelines (the playlists a player would read, the
//! segments it would fetch, what ffmpeg makes of them), the upload task alone, and the
//! validation a request gets at StartEgress.

pub(crate) mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use egress_plugin_api::async_trait;
use egress_proto::livekit::SegmentedFileOutput;

use self::support::*;
use super::check::{check_playlist, check_playlist_update};
use super::gst::{SegmentClosed, SegmentsBranch, SegmentsBranchConfig};
use super::naming::{SegmentNaming, SegmentSuffix};
use super::uploader::{SegmentUploader, SegmentUploaderConfig, SegmentsNotice, SegmentsOutcome};
use super::{SegmentsOutput, SegmentsSpec};
use crate::outputs::context::{OutputContext, OutputSettings};
use crate::outputs::filename::{FilenameInfo, LocalTime};
use crate::outputs::retry::RetryPolicy;
use crate::outputs::store::testing::{FailingStore, LocalDirStore};
use crate::outputs::store::{ObjectBody, ObjectMeta, ObjectStore, StoreError, StoredObject};

const SEGMENT_SECONDS: u32 = 2;
const MEDIA_SECONDS: f64 = 12.5;

fn naming(live_playlist: bool) -> SegmentNaming {
    let req = SegmentedFileOutput {
        filename_prefix: "hls/seg".into(),
        playlist_name: "hls/main.m3u8".into(),
        live_playlist_name: if live_playlist {
            "hls/live.m3u8".into()
        } else {
            String::new()
        },
        segment_duration: SEGMENT_SECONDS,
        ..Default::default()
    };
    let info = FilenameInfo::new("room", "RM_1", 0, LocalTime::from_system(SystemTime::now()));
    SegmentNaming::from_request(&req, &info, 0).unwrap()
}

struct Run {
    outcome: SegmentsOutcome,
    notices: Vec<SegmentsNotice>,
    latencies: Vec<Duration>,
    max_segment_queue: usize,
}

async fn record(
    fps: Option<u32>,
    audio: bool,
    live: bool,
    store: Arc<dyn ObjectStore>,
    work: &Path,
    retry: RetryPolicy,
    key_int_max: u32,
) -> Run {
    let rec = recorder(fps, audio, MEDIA_SECONDS, live, key_int_max);
    let naming = naming(true);
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = SegmentUploaderConfig::new(naming.clone());
    config.retry = retry;
    let uploader = SegmentUploader::spawn(config, store, ntx);
    let tees = rec.streams();
    let branch = SegmentsBranch::attach(
        &tees,
        &SegmentsBranchConfig {
            naming,
            work_dir: work.to_owned(),
            element_prefix: "segments0".into(),
        },
        uploader.sender(),
    )
    .unwrap();
    let gauges = uploader.gauges();
    let g = gauges.clone();
    let max_queue = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mq = max_queue.clone();
    run_to_eos(rec.pipeline.clone(), move |m| {
        branch.handle_message(m);
        mq.fetch_max(g.segment_queue(), std::sync::atomic::Ordering::Relaxed);
    })
    .await;
    let outcome = uploader.finish().await;
    let mut notices = Vec::new();
    while let Ok(n) = nrx.try_recv() {
        notices.push(n);
    }
    assert_eq!(gauges.segment_queue(), 0, "nothing left waiting");
    Run {
        outcome,
        notices,
        latencies: gauges.take_latencies(),
        max_segment_queue: max_queue.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Every version of both playlists as stored, in order: valid alone and as updates; the live
/// window is the last 5 committed segments; ENDLIST only at the end.
fn check_versions(store: &VersionedStore, expected_segments: usize) {
    for (path, window) in [("hls/main.m3u8", usize::MAX), ("hls/live.m3u8", 5)] {
        let versions = store.versions_of(path);
        assert!(!versions.is_empty(), "{path} stored");
        let mut prev = None;
        let mut last_count = 0;
        for (i, text) in versions.iter().enumerate() {
            let (parsed, violations) = check_playlist(text);
            assert!(
                violations.is_empty(),
                "{path} version {i}: {violations:?}\n{text}"
            );
            let m3u8 = m3u8_rs::parse_media_playlist_res(text.as_bytes())
                .unwrap_or_else(|e| panic!("{path}: m3u8-rs: {e:?}"));
            let is_last = i + 1 == versions.len();
            assert_eq!(
                parsed.end_list, is_last,
                "{path} version {i}: ENDLIST only in the final version"
            );
            assert_eq!(m3u8.end_list, is_last);
            // Committed segments so far = media sequence + listed.
            let committed = parsed.media_sequence as usize + parsed.segments.len();
            assert!(committed >= last_count, "{path}: never goes back");
            assert_eq!(
                parsed.segments.len(),
                committed.min(window),
                "{path} version {i}: window"
            );
            last_count = committed;
            if let Some(p) = &prev {
                let v = check_playlist_update(p, &parsed);
                assert!(v.is_empty(), "{path} version {i} as an update: {v:?}");
            }
            prev = Some(parsed);
        }
        assert_eq!(
            last_count, expected_segments,
            "{path}: all segments in the end"
        );
    }
}

async fn video_at(fps: u32, live: bool, key_int_max: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let (work, root) = (
        work_dir(tmp.path(), "work"),
        work_dir(tmp.path(), "storage"),
    );
    let store = VersionedStore::new(&root);
    let run = record(
        Some(fps),
        true,
        live,
        Arc::new(Shared(store.clone())),
        &work,
        RetryPolicy::default(),
        key_int_max,
    )
    .await;
    let o = &run.outcome;
    let last = store
        .versions_of("hls/main.m3u8")
        .last()
        .cloned()
        .unwrap_or_default();
    println!("{fps} fps live={live} key-int-max={key_int_max}:\n{last}");
    assert!(o.errors.is_empty() && o.lost.is_empty(), "{:?}", o.errors);
    assert!(run.notices.is_empty(), "{:?}", run.notices);

    let expected = (MEDIA_SECONDS / f64::from(SEGMENT_SECONDS)).ceil() as usize;
    check_versions(&store, expected);
    let main_text = std::fs::read_to_string(root.join("hls/main.m3u8")).unwrap();
    let (main, _) = check_playlist(&main_text);
    assert_eq!(
        main.target_duration,
        Some(u64::from(SEGMENT_SECONDS)),
        "cuts on time: the target never grew"
    );

    // Durations from the media: every full segment exactly 2 s, the sum is the media.
    let durations: Vec<f64> = main.segments.iter().map(|s| s.duration).collect();
    for d in &durations[..durations.len() - 1] {
        assert!((d - 2.0).abs() < 1e-6, "{fps} fps: {durations:?}");
    }
    let total = main.total_duration();
    assert!(
        (total - MEDIA_SECONDS).abs() < 1.0 / f64::from(fps),
        "{fps} fps: EXTINF sum {total}"
    );

    for s in &main.segments {
        let path = root.join("hls").join(&s.uri);
        let ts =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{} listed but not stored: {e}", s.uri));
        assert!(has_pat_and_pmt(&ts), "{}: PAT and PMT", s.uri);
        let first = ffprobe(
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=flags",
                "-of",
                "csv=p=0",
                "-read_intervals",
                "%+#1",
            ],
            &path,
        );
        assert!(
            first.trim_start().starts_with('K'),
            "{} starts with a keyframe: {first:?}",
            s.uri
        );
    }
    let read = ffmpeg_copy_duration(&root.join("hls/main.m3u8"));
    assert!(
        (read - MEDIA_SECONDS).abs() / MEDIA_SECONDS < 0.02,
        "{fps} fps: ffmpeg read {read} s of {MEDIA_SECONDS}"
    );

    // Local copies are gone once stored; the info is Go's.
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "local segments deleted after upload"
    );
    let info = &o.info;
    assert_eq!(info.segment_count as usize, expected);
    assert_eq!(
        (
            info.playlist_name.as_str(),
            info.live_playlist_name.as_str()
        ),
        ("hls/main.m3u8", "hls/live.m3u8")
    );
    assert!(
        info.playlist_location.ends_with("storage/hls/main.m3u8"),
        "{}",
        info.playlist_location
    );
    assert!(
        info.live_playlist_location
            .ends_with("storage/hls/live.m3u8")
    );
    let stored_size: u64 = main
        .segments
        .iter()
        .map(|s| {
            std::fs::metadata(root.join("hls").join(&s.uri))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(info.size as u64, stored_size);
    assert!(
        ((info.duration as f64 / 1e9) - MEDIA_SECONDS).abs() < 0.1,
        "duration {}",
        info.duration
    );
    assert_eq!(o.manifest.segments.len(), expected);
    assert_eq!(o.manifest.segments[0].filename, "hls/seg_00000.ts");
    assert_eq!(o.manifest.location, info.playlist_location);
    // Playlists are stored with their type and no-cache; segments as video/mp2t.
    for (path, ct, cc) in store.dir.puts() {
        if path.ends_with(".m3u8") {
            assert_eq!((ct, cc), ("application/x-mpegurl", Some("no-cache")));
        } else {
            assert_eq!((ct, cc), ("video/mp2t", None));
        }
    }
    audio_is_continuous(&root.join("hls/main.m3u8"));
    let p95 = p95(run.latencies.clone());
    println!(
        "{fps} fps{}: {} segments, EXTINF {durations:?}, ffmpeg {read:.3} s, segment end → both playlists stored p95 {p95:?} (n={}), max segment queue {}",
        if live { " live" } else { "" },
        expected,
        run.latencies.len(),
        run.max_segment_queue
    );
    assert_eq!(
        run.latencies.len(),
        expected,
        "a latency per committed segment"
    );
}

/// No audio hole across segment boundaries: each packet starts where the previous ended
/// (± 1 ms), and the packets cover the media.
fn audio_is_continuous(playlist: &Path) {
    let csv = ffprobe(
        &[
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ],
        playlist,
    );
    let packets: Vec<(f64, f64)> = csv
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect();
    assert!(!packets.is_empty(), "audio packets");
    let mut worst = 0.0f64;
    for w in packets.windows(2) {
        worst = worst.max((w[1].0 - (w[0].0 + w[0].1)).abs());
    }
    let covered = packets.last().unwrap().0 + packets.last().unwrap().1 - packets[0].0;
    println!(
        "audio: {} packets, {covered:.3} s covered, worst gap {:.1} ms",
        packets.len(),
        worst * 1000.0
    );
    assert!(worst < 0.001, "audio hole of {worst} s");
    assert!(
        (covered - MEDIA_SECONDS).abs() / MEDIA_SECONDS < 0.02,
        "audio covers {covered} s"
    );
}

// Live sources (real time, as in the recorders), x264's default GOP: the cuts come from
// splitmuxsink's keyframe requests alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_at_16_fps() {
    video_at(16, true, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_at_30_fps() {
    video_at(30, true, 0).await;
}

/// A non-live pipeline runs the encoder seconds ahead of splitmuxsink, so keyframe requests
/// arrive late; a GOP of fps × segment_duration keeps the cuts on time anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_encoder_ahead_with_aligned_gop() {
    video_at(16, false, 16 * SEGMENT_SECONDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_segments_have_no_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, root) = (
        work_dir(tmp.path(), "work"),
        work_dir(tmp.path(), "storage"),
    );
    let store = VersionedStore::new(&root);
    let run = record(
        None,
        true,
        false,
        Arc::new(Shared(store.clone())),
        &work,
        RetryPolicy::default(),
        0,
    )
    .await;
    assert!(run.outcome.errors.is_empty(), "{:?}", run.outcome.errors);
    let versions = store.versions_of("hls/main.m3u8");
    let (main, v) = check_playlist(versions.last().unwrap());
    assert!(v.is_empty(), "{v:?}");
    let n = main.segments.len();
    check_versions(&store, n);
    assert!((6..=7).contains(&n), "about 2 s each: {n}");
    for s in &main.segments {
        assert!(has_pat_and_pmt(
            &std::fs::read(root.join("hls").join(&s.uri)).unwrap()
        ));
    }
    audio_is_continuous(&root.join("hls/main.m3u8"));
    let read = ffmpeg_copy_duration(&root.join("hls/main.m3u8"));
    println!(
        "audio only: {n} segments, EXTINF sum {:.3}, ffmpeg {read:.3}",
        main.total_duration()
    );
    assert!(
        (read - MEDIA_SECONDS).abs() / MEDIA_SECONDS < 0.02,
        "ffmpeg read {read}"
    );
    assert!((main.total_duration() - MEDIA_SECONDS).abs() < 0.05);
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// A segment that fails twice is retried and stored in its place; one that always fails is
/// kept locally, named in the error, and the playlists mark the break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_segment_uploads_are_retried_then_kept_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, root) = (
        work_dir(tmp.path(), "work"),
        work_dir(tmp.path(), "storage"),
    );
    let versioned = VersionedStore::new(&root);
    let flaky = FailingStore::new(Shared(versioned.clone()), |p| p.ends_with("_00001.ts"), 2);
    let broken = FailingStore::always(flaky, |p| p.ends_with("_00003.ts"));
    let run = record(
        Some(16),
        true,
        false,
        Arc::new(broken),
        &work,
        fast_retry(),
        32,
    )
    .await;
    let o = &run.outcome;
    assert_eq!(o.lost.len(), 1, "{:?}", o.lost);
    let lost = &o.lost[0];
    assert_eq!(lost.name, "seg_00003.ts");
    assert!(
        Path::new(&lost.kept_at).exists(),
        "kept locally at {}",
        lost.kept_at
    );
    assert!(
        o.errors[0].contains("seg_00003.ts") && o.errors[0].contains("503"),
        "{:?}",
        o.errors
    );
    assert!(
        run.notices
            .iter()
            .any(|n| matches!(n, SegmentsNotice::SegmentLost(l) if l.name == "seg_00003.ts"))
    );

    let text = std::fs::read_to_string(root.join("hls/main.m3u8")).unwrap();
    let (main, v) = check_playlist(&text);
    assert!(v.is_empty(), "{v:?}\n{text}");
    let uris: Vec<_> = main.segments.iter().map(|s| s.uri.as_str()).collect();
    assert!(uris.contains(&"seg_00001.ts"), "retried segment listed");
    assert!(!uris.contains(&"seg_00003.ts"));
    let after = main
        .segments
        .iter()
        .find(|s| s.uri == "seg_00004.ts")
        .unwrap();
    assert!(after.discontinuity, "the break is explicit:\n{text}");
    assert!(root.join("hls/seg_00001.ts").exists());
    assert_eq!(o.info.segment_count as usize, main.segments.len());
    println!("lost: {lost}");
}

/// Segment 0 takes longest, so later segments finish first.
struct SlowFirst(LocalDirStore);

#[async_trait]
impl ObjectStore for SlowFirst {
    async fn put(
        &self,
        path: &str,
        body: ObjectBody,
        meta: &ObjectMeta,
    ) -> Result<StoredObject, StoreError> {
        let delay = if path.ends_with("_00000.ts") {
            300
        } else if path.ends_with(".ts") {
            50
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        self.0.put(path, body, meta).await
    }
}

#[tokio::test]
async fn commits_in_order_and_says_when_the_queue_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let naming = SegmentNaming {
        storage_dir: String::new(),
        playlist_filename: "p.m3u8".into(),
        live_playlist_filename: None,
        segment_prefix: "p".into(),
        suffix: SegmentSuffix::Index,
        segment_duration: 4,
    };
    let mut config = SegmentUploaderConfig::new(naming.clone());
    config.max_upload_queue_minutes = 0; // capacity 1
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let uploader = SegmentUploader::spawn(
        config,
        Arc::new(SlowFirst(LocalDirStore::new(tmp.path().join("s")))),
        tx,
    );
    let sender = uploader.sender();
    let t0 = SystemTime::now();
    for i in 0..4u64 {
        let name = format!("p_{i:05}.ts");
        let local = tmp.path().join(&name);
        std::fs::write(&local, vec![i as u8; 1000]).unwrap();
        sender.send(SegmentClosed {
            index: i,
            name,
            local_path: local,
            start_running_time: Duration::from_secs(4 * i),
            duration: Duration::from_secs(4),
            program_date_time: t0 + Duration::from_secs(4 * i),
            closed_at: Instant::now(),
        });
    }
    assert_eq!(uploader.gauges().segment_queue(), 4);
    let out = uploader.finish().await;
    let text = std::fs::read_to_string(tmp.path().join("s/p.m3u8")).unwrap();
    let (p, v) = check_playlist(&text);
    assert!(v.is_empty(), "{v:?}");
    let uris: Vec<_> = p.segments.iter().map(|s| s.uri.clone()).collect();
    assert_eq!(
        uris,
        ["p_00000.ts", "p_00001.ts", "p_00002.ts", "p_00003.ts"]
    );
    assert_eq!(out.info.segment_count, 4);
    assert_eq!(out.info.size, 4000);
    assert_eq!(out.info.duration, 16_000_000_000);
    let n = notices.try_recv().unwrap();
    assert_eq!(
        n,
        SegmentsNotice::QueueFull {
            pending: 2,
            capacity: 1
        }
    );
    assert_eq!(
        n.error_text().unwrap(),
        "segment upload job queue is full (2 pending): storage cannot keep up"
    );
    assert!(
        !tmp.path().join("p_00000.ts").exists(),
        "deleted after upload"
    );
}

fn context(retry_count: i32) -> OutputContext {
    let yaml = "api_key: devkey\napi_secret: secret\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\n";
    let service = crate::config::parse(yaml, &crate::config::EmptyEnv)
        .unwrap()
        .config;
    let request = egress_proto::rpc::StartEgressRequest {
        retry_count,
        ..Default::default()
    };
    OutputContext {
        service: Arc::new(service),
        request,
        plugins: Arc::new(crate::plugins::PluginRegistry::load(None).unwrap()),
        work_dir: std::env::temp_dir(),
        filenames: FilenameInfo::new(
            "room",
            "RM_1",
            retry_count,
            LocalTime::from_system(SystemTime::now()),
        ),
        video_size: Some((1280, 720)),
        settings: OutputSettings::default(),
    }
}

fn spec(prefix: &str, playlist: &str, live: &str) -> SegmentsSpec {
    SegmentsSpec {
        protocol: 0,
        filename_prefix: prefix.into(),
        playlist_name: playlist.into(),
        live_playlist_name: live.into(),
        segment_duration: 0,
        filename_suffix: 0,
        disable_manifest: false,
        has_upload: false,
    }
}

/// Each refused spec names its field in Go's text, as psrpc InvalidArgument.
#[test]
fn validation_names_the_field() {
    let ctx = context(0);
    let refused = |s: SegmentsSpec| SegmentsOutput::validate(&s, &ctx).unwrap_err();
    assert!(SegmentsOutput::validate(&spec("hls/seg", "hls/main", "hls/live"), &ctx).is_ok());

    let huge = SegmentsSpec {
        segment_duration: 3601,
        ..spec("", "p", "")
    };
    let e = refused(huge);
    assert_eq!(
        e.message,
        "request has missing or invalid field: segment_duration"
    );
    assert_eq!(e.code, crate::rpc::Code::InvalidArgument);
    let e = refused(spec("", "a/main", "b/live"));
    assert_eq!(
        e.message,
        "request has missing or invalid field: live_playlist_name must be in same directory as playlist_name"
    );
    let e = refused(spec("", "a/main", "a/main.m3u8"));
    assert_eq!(
        e.message,
        "request has missing or invalid field: live_playlist_name cannot be identical to playlist_name"
    );
    let e = refused(SegmentsSpec {
        filename_suffix: 7,
        ..spec("", "p", "")
    });
    assert_eq!(
        e.message,
        "request has missing or invalid field: filename_suffix"
    );
    assert_eq!(e.code, crate::rpc::Code::InvalidArgument);
    let e = refused(SegmentsSpec {
        protocol: 9,
        ..spec("", "p", "")
    });
    assert_eq!(e.message, "request has missing or invalid field: protocol");

    let retry = context(1);
    let e = SegmentsOutput::validate(&spec("seg", "p", ""), &retry).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            crate::rpc::Code::FailedPrecondition,
            "output configuration does not support retry"
        )
    );
    assert!(SegmentsOutput::validate(&spec("seg-{retry}", "p", ""), &retry).is_ok());
}
