//! HLS checks the issue names beyond `record_segments.rs`, each on a participant egress of a
//! real room (`lk room join --publish`), stored locally and read the way a player or a CDN
//! would read it:
//!
//! * at 16 fps (Go's segments played sped up there, #853): every playlist version obeys RFC
//!   8216, each segment holds as many frames as its `EXTINF` says at 16 fps, and the playlist
//!   plays as long as the MP4 (within 2 %);
//! * while it records, the playlists in storage are never more than one segment behind: every
//!   stored segment is listed but at most the one just written (Go stored the main playlist
//!   only every N segments, livekit#3474);
//! * an audio-only HLS output (a track composite of one microphone) has no audio holes (Go
//!   dropped a third of an audio-only participant's, #1316):
//!   the packets are continuous across segments, the tone never falls silent, and the audio
//!   lasts as long as the egress was ACTIVE.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use egress_e2e::hls::{
    audio_timeline, check_segments, ffprobe, int, lk_join, silences, valid_playlist,
    video_frames_and_span,
};
use egress_e2e::recording::*;
use egress_e2e::stream_check;
use egress_host::outputs::segments::check::{ParsedPlaylist, check_playlist_update};
use serde_json::json;

const SEGMENT_SECONDS: u32 = 2;
const RECORD_SECONDS: u64 = 16;

/// The `.ts` objects stored in `dir`.
fn stored_segments(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.ends_with(".ts"))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads and checks one version of a playlist, and that it is a valid update of the last one.
fn poll_playlist(path: &Path, last: &mut Option<ParsedPlaylist>, what: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let parsed = valid_playlist(&text, what);
    assert!(
        !parsed.end_list,
        "{what}: no ENDLIST while recording\n{text}"
    );
    if let Some(prev) = last.as_ref() {
        let v = check_playlist_update(prev, &parsed);
        assert!(v.is_empty(), "{what} update: {v:?}\n{text}");
    }
    *last = Some(parsed);
    true
}

#[tokio::test]
async fn at_16_fps_playlists_obey_rfc_8216_and_storage_is_never_more_than_one_segment_behind() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "segments-16fps";
    let publisher = lk_join(&stack, room, "bob", 30, &[&media.video, &media.audio]);
    track_sid(&stack, room, "bob", "VIDEO").await;
    track_sid(&stack, room, "bob", "AUDIO").await;

    let request = json!({
        "room_name": room,
        "identity": "bob",
        "file_outputs": [{ "filepath": "fps16/{publisher_identity}.mp4" }],
        "segment_outputs": [{
            "filename_prefix": "fps16/hls/seg",
            "playlist_name": "fps16/hls/main.m3u8",
            "live_playlist_name": "fps16/hls/live.m3u8",
            "segment_duration": SEGMENT_SECONDS,
        }],
        "advanced": { "width": 640, "height": 360, "framerate": 16, "video_bitrate": 800 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;

    // While recording, every 100 ms: both playlists valid updates of what was seen before, and
    // no stored segment missing from the main playlist but the one just written.
    let dir = stack.output("fps16/hls");
    let (main_path, live_path) = (dir.join("main.m3u8"), dir.join("live.m3u8"));
    let (mut main, mut live) = (None, None);
    let (mut polls, mut most_behind, mut behind_polls) = (0usize, 0usize, 0usize);
    let until = tokio::time::Instant::now() + Duration::from_secs(RECORD_SECONDS);
    while tokio::time::Instant::now() < until {
        // The segments first: a playlist read after them lists at least what it should.
        let stored = stored_segments(&dir);
        if poll_playlist(&main_path, &mut main, "main playlist") {
            polls += 1;
            let listed: BTreeSet<&str> = main
                .as_ref()
                .map(|m| m.segments.iter().map(|s| s.uri.as_str()).collect())
                .unwrap_or_default();
            let behind: Vec<&String> = stored
                .iter()
                .filter(|s| !listed.contains(s.as_str()))
                .collect();
            assert!(
                behind.len() <= 1,
                "the stored playlist is {} segments behind: {behind:?} not listed",
                behind.len()
            );
            most_behind = most_behind.max(behind.len());
            behind_polls += usize::from(!behind.is_empty());
        }
        if poll_playlist(&live_path, &mut live, "live playlist")
            && let (Some(m), Some(l)) = (main.as_ref(), live.as_ref())
            && let Some(live_last) = l.segments.last()
        {
            // The live playlist is stored beside the main one: when the main playlist lists
            // its last segment, at most one more follows it there.
            if let Some(i) = m.segments.iter().position(|s| s.uri == live_last.uri) {
                assert!(
                    m.segments.len() - 1 <= i + 1,
                    "the live playlist ends at {} while the main one lists {} segments",
                    live_last.uri,
                    m.segments.len()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(polls > 50, "the main playlist was read {polls} times");

    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    drop(publisher);

    // The MP4 at 16 fps; the playlist plays as long (within 2 %).
    let file = location(&done);
    let p = probe(&file).await;
    assert!(
        p.video.as_ref().is_some_and(|v| (v.fps - 16.0).abs() < 0.5),
        "16 fps MP4: {p:?}"
    );
    let playlist = dir.join("main.m3u8");
    let text = std::fs::read_to_string(&playlist).expect("main playlist");
    let main = valid_playlist(&text, "final main playlist");
    assert!(main.end_list, "ENDLIST:\n{text}");
    assert_eq!(
        main.target_duration,
        Some(u64::from(SEGMENT_SECONDS)),
        "{text}"
    );
    assert_eq!(
        int(&done["segment_results"][0]["segment_count"]) as usize,
        main.segments.len()
    );
    check_segments(&main, &dir, true).await;
    let read = stream_check::copy_duration(&playlist).await;
    assert!(
        stream_check::within(read, p.duration, 0.02),
        "the playlist plays {read:.3} s, the MP4 lasts {:.3} s",
        p.duration
    );

    // Not sped up: each segment has as many frames as its EXTINF at 16 fps, spaced 1/16 s.
    let mut worst = 0.0f64;
    for s in &main.segments {
        let (frames, span) = video_frames_and_span(&dir.join(&s.uri)).await;
        let expected = s.duration * 16.0;
        assert!(
            (frames as f64 - expected).abs() <= 1.5,
            "{}: {frames} frames for an EXTINF of {:.3} s at 16 fps",
            s.uri,
            s.duration
        );
        if frames > 1 {
            let spacing = span / (frames - 1) as f64;
            worst = worst.max((spacing - 1.0 / 16.0).abs());
            assert!(
                (spacing - 1.0 / 16.0).abs() < 0.004,
                "{}: frames {spacing:.4} s apart",
                s.uri
            );
        }
    }
    println!(
        "16 fps: MP4 {:.3} s, {} segments, playlist plays {read:.3} s; {polls} polls, {behind_polls} with one segment not yet listed (at most {most_behind}); worst frame spacing error {:.4} s",
        p.duration,
        main.segments.len(),
        worst
    );
}

#[tokio::test]
async fn an_audio_only_track_composites_hls_has_no_audio_holes() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "segments-audio-only";
    let publisher = lk_join(&stack, room, "carol", 30, &[&media.audio]);
    let audio = track_sid(&stack, room, "carol", "AUDIO").await;

    // Audio only (no video track asked): the segments carry only AAC.
    let request = json!({
        "room_name": room,
        "audio_track_id": audio,
        "segment_outputs": [{
            "filename_prefix": "audiohls/seg",
            "playlist_name": "audiohls/main.m3u8",
            "segment_duration": SEGMENT_SECONDS,
        }],
    });
    let started = lk
        .egress_start("track-composite", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    let active_at = int(&active["started_at"]);
    tokio::time::sleep(Duration::from_secs(RECORD_SECONDS)).await;
    let asked = (unix_nanos() - active_at) as f64 / 1e9;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    drop(publisher);

    let dir = stack.output("audiohls");
    let playlist = dir.join("main.m3u8");
    let text = std::fs::read_to_string(&playlist).expect("main playlist");
    let main = valid_playlist(&text, "audio-only playlist");
    assert!(main.end_list, "ENDLIST:\n{text}");
    assert_eq!(
        int(&done["segment_results"][0]["segment_count"]) as usize,
        main.segments.len()
    );
    check_segments(&main, &dir, false).await;
    // Audio only: one AAC stream in every segment.
    for s in &main.segments {
        let streams = ffprobe(
            &["-show_entries", "stream=codec_name", "-of", "csv=p=0"],
            &dir.join(&s.uri),
        )
        .await;
        let codecs: BTreeSet<&str> = streams
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(codecs, BTreeSet::from(["aac"]), "{}: {streams}", s.uri);
    }

    // Holes, measured three ways. The packets as a player reads them across segments: no gap
    // longer than a quarter of an AAC frame (21 ms at 48 kHz).
    let timeline = audio_timeline(&playlist, 0.005).await;
    assert!(
        timeline.holes.is_empty(),
        "{} holes in the audio: {:?}",
        timeline.holes.len(),
        timeline.holes
    );
    // The audio lasts as long as the playlist says and as the egress was ACTIVE (a third
    // dropped would show here).
    let extinf = main.total_duration();
    assert!(
        stream_check::within(timeline.covered, extinf, 0.02),
        "packets cover {:.3} s, the EXTINFs {extinf:.3} s",
        timeline.covered
    );
    assert!(
        (timeline.covered - asked).abs() < 1.0,
        "{:.3} s of audio for {asked:.3} s ACTIVE",
        timeline.covered
    );
    // The tone never falls silent (a hole filled with silence would); the very start may be
    // silent until the first packet reaches the mixer.
    let quiet = silences(&playlist, -30.0, 0.05).await;
    let late: Vec<&(f64, f64)> = quiet
        .iter()
        .filter(|(start, _)| *start > timeline.first_pts + 0.5)
        .collect();
    assert!(
        late.is_empty(),
        "silences in the tone: {late:?} (all: {quiet:?})"
    );
    println!(
        "audio-only HLS: {} segments, EXTINF {extinf:.3} s, {} packets covering {:.3} s, ACTIVE {asked:.3} s, holes {:?}, silences {quiet:?}",
        main.segments.len(),
        timeline.packets,
        timeline.covered,
        timeline.holes
    );
}
