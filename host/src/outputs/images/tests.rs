//! Image outputs on real GStreamer pipelines: what lands in storage, when, how big, and what
//! a failing store does (nothing to the rest of the recording); and the validation a request
//! gets at StartEgress.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use egress_proto::livekit::{ImageFileSuffix, ImageOutput, SegmentedFileOutput};

use super::gst::{ImagesBranch, ImagesBranchConfig};
use super::naming::ImageNaming;
use super::uploader::{ImageUploader, ImageUploaderConfig, ImagesNotice};
use super::{ImagesOutput, ImagesSpec};
use crate::outputs::context::{OutputContext, OutputSettings};
use crate::outputs::filename::{FilenameInfo, LocalTime};
use crate::outputs::retry::RetryPolicy;
use crate::outputs::segments::check::check_playlist;
use crate::outputs::segments::gst::{SegmentsBranch, SegmentsBranchConfig};
use crate::outputs::segments::naming::SegmentNaming;
use crate::outputs::segments::tests::support::*;
use crate::outputs::segments::uploader::{SegmentUploader, SegmentUploaderConfig};
use crate::outputs::store::ObjectStore;
use crate::outputs::store::testing::{FailingStore, LocalDirStore};

fn filename_info() -> FilenameInfo {
    FilenameInfo::new("room", "RM_1", 0, LocalTime::from_system(SystemTime::now()))
}

fn image_naming(prefix: &str, suffix: ImageFileSuffix, w: i32, h: i32) -> ImageNaming {
    let req = ImageOutput {
        capture_interval: 1,
        width: w,
        height: h,
        filename_prefix: prefix.into(),
        filename_suffix: suffix as i32,
        ..Default::default()
    };
    ImageNaming::from_request(&req, true, &filename_info()).unwrap()
}

fn image_output(
    rec: &Recorder,
    naming: ImageNaming,
    n: usize,
    store: Arc<dyn ObjectStore>,
    go_behaviour: bool,
) -> (
    ImageUploader,
    tokio::sync::mpsc::UnboundedReceiver<ImagesNotice>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = ImageUploaderConfig::new(naming.clone());
    config.fail_on_upload_error = go_behaviour;
    config.retry = RetryPolicy {
        attempts: 2,
        first_delay: std::time::Duration::from_millis(10),
        ..Default::default()
    };
    let uploader = ImageUploader::spawn(config, store, tx);
    let branch = ImagesBranchConfig {
        capture_interval: naming.capture_interval,
        size: naming.size,
        element_prefix: format!("images{n}"),
    };
    ImagesBranch::attach(
        &rec.pipeline,
        rec.raw.as_ref().unwrap(),
        &branch,
        uploader.sender(),
    )
    .unwrap();
    (uploader, rx)
}

fn probe_dimensions(path: &Path) -> (u32, u32) {
    let wh = ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ],
        path,
    );
    let mut it = wh.trim().split(',').map(|v| v.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Mean luma (0–255) of an image.
fn mean_luma(path: &Path) -> f64 {
    let graph = format!("movie={},signalstats", path.display());
    let out = ffprobe(
        &[
            "-f",
            "lavfi",
            "-show_entries",
            "frame_tags=lavfi.signalstats.YAVG",
            "-of",
            "csv=p=0",
        ],
        Path::new(&graph),
    );
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("YAVG from {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_image_a_second_sized_and_not_black() {
    let tmp = tempfile::tempdir().unwrap();
    let root = work_dir(tmp.path(), "storage");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(&root));
    let seconds = 10.5;
    // Live, as the recorders are (a non-live source outruns the leaky queue, which then drops).
    let rec = recorder(Some(30), false, seconds, true, 0);
    let (indexed, mut notices) = image_output(
        &rec,
        image_naming("img/shot", ImageFileSuffix::ImageSuffixIndex, 640, 360),
        0,
        store.clone(),
        false,
    );
    let (overwrite, _) = image_output(
        &rec,
        image_naming(
            "img/latest",
            ImageFileSuffix::ImageSuffixNoneOverwrite,
            0,
            0,
        ),
        1,
        store,
        false,
    );
    let pipeline = run_to_eos(rec.pipeline.clone(), |_| {}).await;
    drop(pipeline);
    drop(rec);
    let out = indexed.finish().await;
    let latest = overwrite.finish().await;
    assert!(notices.try_recv().is_err(), "no failures");

    // One at t = 0, 1, … 10 s.
    assert_eq!(
        out.manifest.len(),
        11,
        "{:?}",
        out.manifest.iter().map(|m| &m.filename).collect::<Vec<_>>()
    );
    assert_eq!(out.info.image_count, 11);
    assert_eq!(out.info.filename_prefix, "img/shot");
    assert_eq!(out.failed, 0);
    let times: Vec<f64> = out
        .manifest
        .iter()
        .map(|m| {
            chrono::DateTime::parse_from_rfc3339(&m.timestamp)
                .unwrap()
                .timestamp_micros() as f64
                / 1e6
        })
        .collect();
    let spacing: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        spacing.iter().all(|s| (s - 1.0).abs() <= 0.1),
        "spacing {spacing:?}"
    );
    let mut lumas = Vec::new();
    for (i, m) in out.manifest.iter().enumerate() {
        assert_eq!(m.filename, format!("img/shot_{i:05}.jpeg"));
        let path = Path::new(&m.location);
        assert_eq!(path, root.join(&m.filename));
        assert_eq!(
            probe_dimensions(path),
            (640, 360),
            "as requested (letterboxed)"
        );
        let y = mean_luma(path);
        assert!(y > 40.0, "{} is not black: mean luma {y}", m.filename);
        lumas.push(y.round());
    }
    // NONE_OVERWRITE: one object, the newest, at the source's size.
    assert_eq!(latest.manifest.len(), 11);
    let only = root.join("img/latest.jpeg");
    assert_eq!(
        probe_dimensions(&only),
        (320, 240),
        "source size when no size is asked"
    );
    assert_eq!(
        std::fs::read_dir(root.join("img")).unwrap().count(),
        12,
        "11 indexed + 1 overwritten, no temp files"
    );
    println!("images: 11 at spacing {spacing:?} s, 640x360, mean luma {lumas:?}");
}

/// Images failing in storage do not touch the segments or the egress; Go's flag makes the
/// first failure fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_image_store_leaves_segments_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, root) = (
        work_dir(tmp.path(), "work"),
        work_dir(tmp.path(), "storage"),
    );
    let good: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(&root));
    let failing: Arc<dyn ObjectStore> =
        Arc::new(FailingStore::always(LocalDirStore::new(&root), |p| {
            p.ends_with(".jpeg")
        }));
    let rec = recorder(Some(16), true, 6.0, false, 32);

    let seg_req = SegmentedFileOutput {
        filename_prefix: "hls/seg".into(),
        segment_duration: 2,
        ..Default::default()
    };
    let seg_naming = SegmentNaming::from_request(&seg_req, &filename_info(), 0).unwrap();
    let (stx, mut srx) = tokio::sync::mpsc::unbounded_channel();
    let segments =
        SegmentUploader::spawn(SegmentUploaderConfig::new(seg_naming.clone()), good, stx);
    let tees = rec.streams();
    let branch = SegmentsBranch::attach(
        &tees,
        &SegmentsBranchConfig {
            naming: seg_naming,
            work_dir: work.clone(),
            element_prefix: "segments0".into(),
        },
        segments.sender(),
    )
    .unwrap();

    let (tolerant, mut tolerant_notices) = image_output(
        &rec,
        image_naming("img/a", ImageFileSuffix::ImageSuffixIndex, 0, 0),
        0,
        failing.clone(),
        false,
    );
    let (go_like, mut go_notices) = image_output(
        &rec,
        image_naming("img/b", ImageFileSuffix::ImageSuffixIndex, 0, 0),
        1,
        failing,
        true,
    );

    run_to_eos(rec.pipeline.clone(), move |m| {
        branch.handle_message(m);
    })
    .await;
    drop(rec);
    let seg = segments.finish().await;
    let a = tolerant.finish().await;
    let b = go_like.finish().await;

    assert!(
        seg.errors.is_empty() && srx.try_recv().is_err(),
        "segments untouched: {:?}",
        seg.errors
    );
    assert_eq!(seg.info.segment_count, 3);
    let (main, v) = check_playlist(&std::fs::read_to_string(root.join("hls/seg.m3u8")).unwrap());
    assert!(
        v.is_empty() && main.end_list && main.segments.len() == 3,
        "{v:?}"
    );

    for (out, notices, fatal_expected) in [
        (&a, &mut tolerant_notices, false),
        (&b, &mut go_notices, true),
    ] {
        assert_eq!(out.manifest.len(), 0);
        assert_eq!(
            out.failed, 6,
            "every image counted as failed: {:?}",
            out.errors
        );
        assert_eq!(out.info.image_count, 0);
        let mut got = Vec::new();
        while let Ok(n) = notices.try_recv() {
            got.push(n);
        }
        let fatal = got
            .iter()
            .filter(|n| matches!(n, ImagesNotice::Fatal(_)))
            .count();
        assert_eq!(fatal, usize::from(fatal_expected), "{got:?}");
        assert_eq!(
            got.iter()
                .filter(|n| matches!(n, ImagesNotice::ImageFailed { .. }))
                .count(),
            6
        );
    }
    assert!(!root.join("img").exists(), "nothing stored for the images");
    println!(
        "failing image store: segments {} ok; images failed {} + {}: {}",
        seg.info.segment_count, a.failed, b.failed, a.errors[0]
    );
}

fn context(video: bool) -> OutputContext {
    let yaml = "api_key: devkey\napi_secret: secret\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\n";
    let service = crate::config::parse(yaml, &crate::config::EmptyEnv)
        .unwrap()
        .config;
    OutputContext {
        service: Arc::new(service),
        request: Default::default(),
        plugins: Arc::new(crate::plugins::PluginRegistry::load(None).unwrap()),
        work_dir: std::env::temp_dir(),
        filenames: filename_info(),
        video_size: video.then_some((1280, 720)),
        settings: OutputSettings::default(),
    }
}

fn spec() -> ImagesSpec {
    ImagesSpec {
        capture_interval: 0,
        width: 0,
        height: 0,
        filename_prefix: "img/shot".into(),
        filename_suffix: 0,
        image_codec: 0,
        disable_manifest: false,
        has_upload: false,
    }
}

/// Each refused spec names its field (or Go's codec text), as psrpc InvalidArgument.
#[test]
fn validation_names_the_field() {
    let ctx = context(true);
    assert!(ImagesOutput::validate(&spec(), &ctx).is_ok());
    let refused = |s: ImagesSpec, ctx: &OutputContext| ImagesOutput::validate(&s, ctx).unwrap_err();
    let e = refused(
        ImagesSpec {
            filename_suffix: 5,
            ..spec()
        },
        &ctx,
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            crate::rpc::Code::InvalidArgument,
            "request has missing or invalid field: filename_suffix"
        )
    );
    let e = refused(
        ImagesSpec {
            capture_interval: 86_401,
            ..spec()
        },
        &ctx,
    );
    assert_eq!(
        e.message,
        "request has missing or invalid field: capture_interval"
    );
    let e = refused(
        ImagesSpec {
            width: 20_000,
            height: 10,
            ..spec()
        },
        &ctx,
    );
    assert_eq!(e.message, "request has missing or invalid field: width");
    let e = refused(
        ImagesSpec {
            image_codec: 2,
            ..spec()
        },
        &ctx,
    );
    assert_eq!(
        e.message,
        "no supported codec is compatible with all outputs"
    );
    let e = refused(spec(), &context(false));
    assert_eq!(
        e.message,
        "request has missing or invalid field: audio_only images"
    );
}
