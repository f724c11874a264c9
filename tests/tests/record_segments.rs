//! HLS segments and images end to end: a participant egress (a real room, a publisher run by
//! `lk room join --publish`) recording a file, a segments output and an images output at once
//! to local storage, checked the way a user would: the playlists parse (m3u8-rs) and pass the
//! RFC 8216 checks, every listed segment is there, starts with a keyframe and carries PAT/PMT,
//! ffmpeg reads the playlist for as long as the MP4 lasts, the live playlist slides and ends,
//! images come at the asked interval and size and show the picture, and the final EgressInfo
//! reports all three.

use std::path::PathBuf;
use std::time::Duration;

use egress_e2e::hls::{check_segments, dimensions, int, lk_join, mean_luma, valid_playlist};
use egress_e2e::recording::*;
use egress_host::outputs::segments::check::check_playlist_update;
use serde_json::{Value, json};

const SEGMENT_SECONDS: u32 = 2;
const LIVE_WINDOW: usize = 5;
const IMAGE_INTERVAL: u32 = 2;
const RECORD_SECONDS: u64 = 16;

#[tokio::test]
async fn a_participant_egress_records_a_file_segments_and_images_at_once() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "segments-room";
    let publisher = lk_join(&stack, room, "alice", 30, &[&media.video, &media.audio]);
    track_sid(&stack, room, "alice", "VIDEO").await;
    track_sid(&stack, room, "alice", "AUDIO").await;

    let request = json!({
        "room_name": room,
        "identity": "alice",
        "file_outputs": [{ "filepath": "segtest/{publisher_identity}.mp4" }],
        "segment_outputs": [{
            "filename_prefix": "segtest/hls/seg",
            "playlist_name": "segtest/hls/main.m3u8",
            "live_playlist_name": "segtest/hls/live.m3u8",
            "segment_duration": SEGMENT_SECONDS,
        }],
        "image_outputs": [{
            "capture_interval": IMAGE_INTERVAL,
            "width": 320,
            "height": 180,
            "filename_prefix": "segtest/img/shot",
        }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    assert_eq!(
        active["segment_results"][0]["playlist_name"], "segtest/hls/main.m3u8",
        "{active:#}"
    );
    assert_eq!(
        active["segment_results"][0]["live_playlist_name"], "segtest/hls/live.m3u8",
        "{active:#}"
    );

    // While recording: the live playlist holds at most the last N segments, has no ENDLIST,
    // and every version we see is a valid update of the one before.
    let live_path = stack.output("segtest/hls/live.m3u8");
    let mut previous: Option<egress_host::outputs::segments::check::ParsedPlaylist> = None;
    let mut live_versions = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(RECORD_SECONDS);
    while tokio::time::Instant::now() < until {
        if let Ok(text) = std::fs::read_to_string(&live_path) {
            let parsed = valid_playlist(&text, "live playlist while recording");
            assert!(!parsed.end_list, "no ENDLIST while recording:\n{text}");
            assert!(parsed.segments.len() <= LIVE_WINDOW, "live window:\n{text}");
            if let Some(p) = &previous {
                let v = check_playlist_update(p, &parsed);
                assert!(v.is_empty(), "live playlist update: {v:?}\n{text}");
            }
            previous = Some(parsed);
            live_versions += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seen_window = previous
        .as_ref()
        .map(|p| (p.media_sequence, p.segments.len()));
    assert!(
        live_versions > 0,
        "the live playlist was stored while recording"
    );
    assert!(
        seen_window.is_some_and(|(seq, n)| seq > 0 && n == LIVE_WINDOW),
        "after {RECORD_SECONDS} s the live window slid: {seen_window:?}"
    );

    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    drop(publisher);

    // The file.
    let file = location(&done);
    let file_duration = probe(&file).await.duration;
    let storage_root: PathBuf = file
        .to_string_lossy()
        .strip_suffix("segtest/alice.mp4")
        .map(PathBuf::from)
        .expect("file under the storage root");

    // segment_results: Go's fields.
    let seg = &done["segment_results"][0];
    assert_eq!(seg["playlist_name"], "segtest/hls/main.m3u8", "{done:#}");
    let playlist = PathBuf::from(
        seg["playlist_location"]
            .as_str()
            .expect("playlist_location"),
    );
    let live = PathBuf::from(
        seg["live_playlist_location"]
            .as_str()
            .expect("live_playlist_location"),
    );
    assert_eq!(playlist, storage_root.join("segtest/hls/main.m3u8"));
    assert_eq!(live, storage_root.join("segtest/hls/live.m3u8"));

    // The main playlist: valid, ended, every segment there, keyframe first, PAT/PMT.
    let main_text = std::fs::read_to_string(&playlist).expect("main playlist stored");
    let main = valid_playlist(&main_text, "main playlist");
    assert!(main.end_list, "ENDLIST at the end:\n{main_text}");
    assert_eq!(
        main.target_duration,
        Some(u64::from(SEGMENT_SECONDS)),
        "cut on time:\n{main_text}"
    );
    assert_eq!(
        int(&seg["segment_count"]) as usize,
        main.segments.len(),
        "{done:#}"
    );
    let size = check_segments(&main, playlist.parent().expect("playlist dir"), true).await;
    assert_eq!(
        int(&seg["size"]) as u64,
        size,
        "size is the segments' bytes"
    );
    let seg_duration = int(&seg["duration"]) as f64 / 1e9;
    assert!(
        (seg_duration - main.total_duration()).abs() < 0.5,
        "duration {seg_duration} vs EXTINF sum {}",
        main.total_duration()
    );

    // What a player reads: as long as the MP4, within 2 %.
    let read = egress_e2e::stream_check::copy_duration(&playlist).await;
    assert!(
        (read - file_duration).abs() / file_duration < 0.02,
        "ffmpeg read {read:.3} s of the playlist, the MP4 lasts {file_duration:.3} s"
    );

    // The live playlist at the end: the last N segments of the main one, ended.
    let live_text = std::fs::read_to_string(&live).expect("live playlist stored");
    let last = valid_playlist(&live_text, "final live playlist");
    assert!(
        last.end_list,
        "ENDLIST in the live playlist at the end:\n{live_text}"
    );
    let tail: Vec<&str> = main
        .segments
        .iter()
        .rev()
        .take(LIVE_WINDOW)
        .rev()
        .map(|s| s.uri.as_str())
        .collect();
    let listed: Vec<&str> = last.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        listed, tail,
        "the live playlist lists the last {LIVE_WINDOW}"
    );
    assert_eq!(
        last.media_sequence as usize,
        main.segments.len() - LIVE_WINDOW
    );

    // Images: one every IMAGE_INTERVAL s of the recording, 320x180, showing the green picture.
    let images = &done["image_results"][0];
    assert_eq!(images["filename_prefix"], "segtest/img/shot", "{done:#}");
    let count = int(&images["image_count"]) as usize;
    let expected = (file_duration / f64::from(IMAGE_INTERVAL)).floor() as usize + 1;
    assert!(
        count + 1 >= expected && count <= expected + 1,
        "{count} images over {file_duration:.2} s (expected about {expected})"
    );
    let span = (int(&images["ended_at"]) - int(&images["started_at"])) as f64 / 1e9;
    let spacing = span / (count.max(2) - 1) as f64;
    assert!(
        (spacing - f64::from(IMAGE_INTERVAL)).abs() < 0.25,
        "images every {spacing:.3} s"
    );
    let mut lumas = Vec::new();
    for i in 0..count {
        let path = storage_root.join(format!("segtest/img/shot_{i:05}.jpeg"));
        assert!(path.is_file(), "{} stored", path.display());
        assert_eq!(dimensions(&path).await, (320, 180), "{}", path.display());
        let y = mean_luma(&path).await;
        // What is wrong: the first image is taken at the composite's first frame, which is
        // still the black background (the participant's first decoded frame lands a few
        // frames later; the MP4 starts the same way). The images after it show the video.
        if i > 0 {
            assert!(y > 40.0, "{} is not black: mean luma {y}", path.display());
        }
        lumas.push(y.round());
    }
    assert!(
        !storage_root
            .join(format!("segtest/img/shot_{count:05}.jpeg"))
            .exists(),
        "no image beyond the count"
    );

    // The manifest, as Go's: beside the file (its location in the info), the playlist and the
    // images, the same document each time, listing the playlist with every segment and every
    // image.
    let manifest_at = PathBuf::from(
        done["manifest_location"]
            .as_str()
            .expect("manifest_location"),
    );
    assert_eq!(manifest_at, storage_root.join(format!("segtest/{id}.json")));
    let text = std::fs::read_to_string(&manifest_at).expect("manifest beside the file");
    for beside in ["segtest/hls", "segtest/img"] {
        let copy = storage_root.join(format!("{beside}/{id}.json"));
        let again = std::fs::read_to_string(&copy)
            .unwrap_or_else(|e| panic!("manifest beside {beside}: {e}"));
        assert_eq!(again, text, "{} is the same manifest", copy.display());
    }
    let manifest: Value = serde_json::from_str(&text).expect("manifest JSON");
    assert_eq!(manifest["egress_id"], id.as_str(), "{manifest:#}");
    assert_eq!(
        manifest["files"][0]["location"],
        file.to_string_lossy().as_ref()
    );
    let playlists = manifest["playlists"].as_array().expect("playlists");
    assert_eq!(playlists.len(), 1, "{manifest:#}");
    assert_eq!(
        playlists[0]["location"],
        playlist.to_string_lossy().as_ref(),
        "{manifest:#}"
    );
    let listed: Vec<(String, String)> = playlists[0]["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| {
            (
                s["filename"].as_str().unwrap_or_default().to_owned(),
                s["location"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = main
        .segments
        .iter()
        .map(|s| {
            let name = format!("segtest/hls/{}", s.uri);
            let at = storage_root.join(&name).to_string_lossy().into_owned();
            (name, at)
        })
        .collect();
    assert_eq!(listed, expected, "every segment, in order");
    let shots = manifest["images"].as_array().expect("images");
    assert_eq!(shots.len(), count, "{manifest:#}");
    for (i, shot) in shots.iter().enumerate() {
        let name = format!("segtest/img/shot_{i:05}.jpeg");
        assert_eq!(shot["filename"], name.as_str(), "{manifest:#}");
        assert_eq!(
            shot["location"],
            storage_root.join(&name).to_string_lossy().as_ref()
        );
        assert!(
            shot["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{shot}"
        );
    }

    println!(
        "file {file_duration:.3} s; {} segments, EXTINF sum {:.3} s, ffmpeg {read:.3} s, {size} bytes; live playlist seen in {live_versions} versions; {count} images every {spacing:.3} s, luma {lumas:?}",
        main.segments.len(),
        main.total_duration()
    );
}
