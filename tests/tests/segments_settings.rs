//! The config's `segments:` and `images:` sections end to end (keys the Go egress does not
//! have): a participant egress (a real room, `lk room join --publish`) recording a file, HLS
//! segments and images to an S3 emulator, with `images.upload_failure_fails_egress: true`
//! (Go's behaviour) and a live playlist window of 3. The images' S3 refuses them: the egress
//! ends FAILED with an error naming the image, while the file and the segments it recorded are
//! all in the bucket and the live playlist lists the last 3 segments. The service's `/metrics`
//! shows Go's HLS queue gauges and each output's upload outcomes during and after it.

use std::time::Duration;

use egress_e2e::S3sFs;
use egress_e2e::hls::{lk_join, valid_playlist};
use egress_e2e::recording::*;
use egress_e2e::storage::{S3_REGION, S3S_ACCESS_KEY, S3S_SECRET_KEY};
use serde_json::json;

const BUCKET: &str = "settings";
const LIVE_WINDOW: usize = 3;
const UPLOADS: &str = "livekit_egress_output_uploads_total";
const SEGMENT_QUEUE: &str = "livekit_egress_segments_uploads_channel_size";
const PLAYLIST_QUEUE: &str = "livekit_egress_playlist_uploads_channel_size";
const LATENCY: &str = "livekit_egress_segment_playlists_stored_seconds";

#[tokio::test]
async fn with_gos_image_switch_a_refused_image_fails_the_egress_naming_it() {
    let _serial = serial().await;
    let s3 = S3sFs::start().await;
    s3.create_bucket(BUCKET).await;
    let stack = composite_stack_with(&format!(
        "plugins:\n  - builtin: file\n  - builtin: s3\nsegments:\n  live_playlist_window: {LIVE_WINDOW}\nimages:\n  upload_failure_fails_egress: true\n"
    ))
    .await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "segments-settings";
    let publisher = lk_join(&stack, room, "alice", 30, &[&media.video, &media.audio]);
    track_sid(&stack, room, "alice", "VIDEO").await;

    let good = json!({
        "access_key": S3S_ACCESS_KEY, "secret": S3S_SECRET_KEY, "region": S3_REGION,
        "endpoint": s3.endpoint(), "bucket": BUCKET, "force_path_style": true
    });
    // The same endpoint with a wrong secret: every image upload is refused (SigV4 mismatch).
    let mut refused = good.clone();
    refused["secret"] = json!("not-the-secret");
    let request = json!({
        "room_name": room,
        "identity": "alice",
        "file_outputs": [{ "filepath": "set/file.mp4", "s3": good }],
        "segment_outputs": [{
            "filename_prefix": "set/hls/seg",
            "playlist_name": "set/hls/main.m3u8",
            "live_playlist_name": "set/hls/live.m3u8",
            "segment_duration": 2,
            "s3": good,
        }],
        "image_outputs": [{
            "capture_interval": 2,
            "filename_prefix": "set/img/shot",
            "s3": refused,
        }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;

    // While it records, the service's /metrics has Go's queue gauges and the outputs' upload
    // outcomes: segments and playlists stored, images refused.
    let uploads = |text: &str, output: &str, object: &str, status: &str| {
        metric_sample(
            text,
            UPLOADS,
            &[
                ("egress_id", id.as_str()),
                ("output", output),
                ("object", object),
                ("status", status),
            ],
        )
        .unwrap_or(0.0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut during = String::new();
    while tokio::time::Instant::now() < deadline {
        during = stack.scrape_metrics().await;
        if uploads(&during, "segments", "segment", "success") >= 2.0
            && uploads(&during, "images", "image", "failed") >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for gauge in [SEGMENT_QUEUE, PLAYLIST_QUEUE] {
        let v = metric_sample(&during, gauge, &[("egress_id", id.as_str())]);
        assert!(
            v.is_some_and(|v| (0.0..=2.0).contains(&v)),
            "{gauge} while recording: {v:?}\n{during}"
        );
    }
    assert!(
        uploads(&during, "segments", "segment", "success") >= 2.0
            && uploads(&during, "segments", "playlist", "success") >= 2.0,
        "segments and playlists stored while recording:\n{during}"
    );
    assert!(
        uploads(&during, "images", "image", "failed") >= 1.0
            && uploads(&during, "images", "image", "success") == 0.0,
        "images refused while recording:\n{during}"
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::FAILED, Duration::from_secs(120)).await;
    drop(publisher);

    // The error names the first image that could not be stored, as Go's does.
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("set/img/shot_00000.jpeg"),
        "the error names the image: {done:#}"
    );
    assert!(
        s3.list(BUCKET, "set/img/").await.is_empty(),
        "images stored with a wrong secret"
    );

    // Nothing recorded is lost: the MP4 and every segment are in the bucket, the playlists ended.
    let mp4 = s3
        .read(BUCKET, "set/file.mp4")
        .await
        .expect("the MP4 in S3");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("file.mp4"), mp4).expect("write");
    let p = probe(&dir.path().join("file.mp4")).await;
    assert!(p.duration > 8.0, "the MP4 lasts {:.2} s", p.duration);
    let text = |key: &'static str| {
        let s3 = &s3;
        async move {
            String::from_utf8(
                s3.read(BUCKET, key)
                    .await
                    .unwrap_or_else(|| panic!("{key} in S3")),
            )
            .expect("UTF-8 playlist")
        }
    };
    let main_text = text("set/hls/main.m3u8").await;
    let main = valid_playlist(&main_text, "main playlist");
    assert!(main.end_list, "ENDLIST:\n{main_text}");
    assert!(main.segments.len() > LIVE_WINDOW, "{main_text}");
    for s in &main.segments {
        assert!(
            s3.read(BUCKET, &format!("set/hls/{}", s.uri))
                .await
                .is_some(),
            "{} listed but not in S3",
            s.uri
        );
    }

    // segments.live_playlist_window: the live playlist lists the last 3 segments.
    let live_text = text("set/hls/live.m3u8").await;
    let live = valid_playlist(&live_text, "live playlist");
    assert!(live.end_list, "ENDLIST:\n{live_text}");
    let tail: Vec<&str> = main.segments[main.segments.len() - LIVE_WINDOW..]
        .iter()
        .map(|s| s.uri.as_str())
        .collect();
    let listed: Vec<&str> = live.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        listed, tail,
        "the live playlist lists the last {LIVE_WINDOW}"
    );
    assert_eq!(
        live.media_sequence as usize,
        main.segments.len() - LIVE_WINDOW
    );
    // After the end (the handler's last report): every segment counted once, the playlists'
    // final versions too, none failed; Go's gauges at 0; the playlist latencies observed.
    let after = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = stack.scrape_metrics().await;
            if uploads(&text, "segments", "segment", "success") as usize == main.segments.len()
                || tokio::time::Instant::now() > deadline
            {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    assert_eq!(
        uploads(&after, "segments", "segment", "success") as usize,
        main.segments.len(),
        "{after}"
    );
    assert_eq!(uploads(&after, "segments", "segment", "failed"), 0.0);
    assert_eq!(uploads(&after, "segments", "playlist", "failed"), 0.0);
    assert!(
        uploads(&after, "segments", "playlist", "success") >= main.segments.len() as f64,
        "playlists stored as segments came (an older waiting version may be skipped):\n{after}"
    );
    let images_failed = uploads(&after, "images", "image", "failed");
    assert!(images_failed >= 1.0, "{after}");
    for gauge in [SEGMENT_QUEUE, PLAYLIST_QUEUE] {
        assert_eq!(
            metric_sample(&after, gauge, &[("egress_id", id.as_str())]),
            Some(0.0),
            "{gauge} after the end:\n{after}"
        );
    }
    // Without an egress label (a node-wide histogram); the registry's const labels follow.
    let latencies = after
        .lines()
        .find(|l| l.starts_with(&format!("{LATENCY}_count")))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        latencies as usize >= main.segments.len(),
        "{latencies} playlist latencies observed for {} segments",
        main.segments.len()
    );

    println!("metrics: {images_failed} images failed, {latencies} playlist latencies");
    println!(
        "FAILED with {error:?}; MP4 {:.2} s, {} segments, live playlist of {}",
        p.duration,
        main.segments.len(),
        live.segments.len()
    );
}
