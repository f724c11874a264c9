//! What a composite recording takes from a room, end to end: a participant egress of a screen
//! share (not the camera), v2 media audio routes by participant kind with `capture_all`, and
//! H.265, VP8, VP9 and AV1 tracks decoded into a track composite.
//!
//! `lk` v2.18.2 publishes every video as CAMERA and every participant as STANDARD, so the
//! publishers here are `lk-publish` (tests/publisher, built by scripts/setup on the same
//! server SDK as `lk`), which sets the track source and the participant kind. Tracks are told
//! apart by what they carry: each video has its own colour, each audio its own tone frequency,
//! measured in the recorded file through narrow band-pass filters.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use egress_e2e::recording::*;
use egress_e2e::{LiveKitServer, TestDir, find_binary};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The screen share's colour (the camera is [`VIDEO_RGB`], green).
const SCREEN_RGB: [u8; 3] = [0xc0, 0x30, 0xa0];
/// Tone frequencies, Hz: 3.3 octaves apart, so a band-pass at one removes the other.
const LOW_HZ: u32 = 300;
const HIGH_HZ: u32 = 3000;
/// A tone that is there measures about −21 dB in its band (ffmpeg's sine is at 1/8); one that
/// is not is below this.
const PRESENT_DB: f64 = -35.0;
const ABSENT_DB: f64 = -55.0;

/// An Ogg Opus sine tone of `hz` (20 ms pages), `seconds` long.
async fn tone(dir: &TestDir, hz: u32, seconds: u32) -> PathBuf {
    let out = dir.join(&format!("tone-{hz}.ogg"));
    let source = format!("sine=frequency={hz}:sample_rate=48000:duration={seconds}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &source,
        "-ac",
        "1",
        "-c:a",
        "libopus",
        "-b:a",
        "48k",
        "-frame_duration",
        "20",
        "-page_duration",
        "20000",
        out.to_str().expect("path"),
    ])
    .await;
    out
}

/// `lk-publish` in the background: joins as `identity` of participant `kind` and publishes each
/// `(source, file)` with that track source. Killed on drop.
struct LkPublish {
    child: Child,
}

impl LkPublish {
    fn start(
        livekit: &LiveKitServer,
        room: &str,
        identity: &str,
        kind: &str,
        publish: &[(&str, &Path)],
        log_dir: &Path,
    ) -> LkPublish {
        let log = std::fs::File::create(log_dir.join(format!("lk-publish-{identity}.log")))
            .expect("publisher log");
        let mut cmd = Command::new(find_binary("lk-publish"));
        cmd.args([
            "--url",
            &livekit.http_url(),
            "--api-key",
            livekit.api_key(),
            "--api-secret",
            livekit.api_secret(),
        ])
        .args([
            "--room",
            room,
            "--identity",
            identity,
            "--kind",
            kind,
            "--fps",
            "30",
        ]);
        for (source, file) in publish {
            cmd.arg("--publish")
                .arg(format!("{source}={}", file.display()));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .kill_on_drop(true);
        LkPublish {
            child: cmd
                .spawn()
                .expect("start lk-publish (scripts/setup builds it)"),
        }
    }

    /// Leaves the room (SIGINT: the SDK disconnects cleanly) and reaps the process.
    async fn leave(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid; it has not been reaped yet.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The tracks `identity` has published in `room` (`RoomService/ListParticipants`), once there
/// are `count` of them: `(sid, type, source)` with Go's omitted zero values filled in.
async fn published_tracks(
    stack: &RecordingStack,
    room: &str,
    identity: &str,
    count: usize,
) -> Vec<(String, String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = twirp(
            &stack.livekit,
            "RoomService/ListParticipants",
            json!({ "roomAdmin": true, "room": room }),
            &json!({ "room": room }),
        )
        .await;
        let tracks: Vec<(String, String, String)> = (status == 200)
            .then(|| body["participants"].as_array().cloned())
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["identity"] == identity)
            .flat_map(|p| p["tracks"].as_array().cloned().unwrap_or_default())
            .map(|t| {
                let field = |k: &str, zero: &str| t[k].as_str().unwrap_or(zero).to_owned();
                (
                    field("sid", ""),
                    field("type", "AUDIO"),
                    field("source", "UNKNOWN"),
                )
            })
            .collect();
        if tracks.len() >= count {
            return tracks;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{identity} has {} of {count} tracks in {room}: {body:#}",
            tracks.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Mean level (dB) of `hz` in `file`'s audio: channel `channel` (0 left, 1 right, `None` the
/// mix) through two narrow band-pass filters at `hz`.
async fn band_volume(file: &Path, channel: Option<u32>, hz: u32) -> f64 {
    let pan = channel
        .map(|c| format!("pan=mono|c0=c{c},"))
        .unwrap_or_default();
    let filter = format!("{pan}bandpass=f={hz}:t=q:w=4,bandpass=f={hz}:t=q:w=4,volumedetect");
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-nostats", "-i"])
        .arg(file)
        .args(["-vn", "-af", &filter, "-f", "null", "-"])
        .output()
        .await
        .expect("run ffmpeg volumedetect");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|rest| rest.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no mean_volume at {hz} Hz:\n{log}"))
}

/// Starts a v2 `StartEgress` (Twirp; `lk` has no v2 command) and returns the egress ID.
async fn start_v2(stack: &RecordingStack, request: Value) -> String {
    let (status, info) = twirp(
        &stack.livekit,
        "Egress/StartEgress",
        json!({ "roomRecord": true }),
        &request,
    )
    .await;
    assert_eq!(status, 200, "StartEgress answered {status}: {info}");
    let id = info
        .get("egress_id")
        .or_else(|| info.get("egressId"))
        .and_then(Value::as_str);
    id.unwrap_or_else(|| panic!("no egress ID in {info}"))
        .to_owned()
}

/// Waits for ACTIVE, records `secs`, stops and returns the COMPLETE info.
async fn record_for(lk: &egress_e2e::Lk, id: &str, secs: u64) -> Value {
    wait_for_status(lk, id, status::ACTIVE, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    lk.egress_stop(id).await.expect("egress stop");
    wait_for_status(lk, id, status::COMPLETE, Duration::from_secs(60))
        .await
        .0
}

#[tokio::test]
async fn a_participant_egress_of_a_screen_share_records_the_screen_not_the_camera() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestDir::new("screen-share-media");
    let camera = moving_box_video(&media, "h264", VIDEO_RGB, 40).await;
    let screen = moving_box_video(&media, "h264", SCREEN_RGB, 40).await;
    let microphone = tone(&media, LOW_HZ, 40).await;
    let screen_audio = tone(&media, HIGH_HZ, 40).await;
    let room = "screen-share-room";
    let publisher = LkPublish::start(
        &stack.livekit,
        room,
        "presenter",
        "standard",
        &[
            ("camera", &camera),
            ("microphone", &microphone),
            ("screen_share", &screen),
            ("screen_share_audio", &screen_audio),
        ],
        stack.egress.dir(),
    );
    let tracks = published_tracks(&stack, room, "presenter", 4).await;
    let mut sources: Vec<&str> = tracks.iter().map(|(_, _, s)| s.as_str()).collect();
    sources.sort();
    assert_eq!(
        sources,
        ["CAMERA", "MICROPHONE", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"],
        "{tracks:?}"
    );

    let request = json!({
        "room_name": room,
        "identity": "presenter",
        "screen_share": true,
        "file_outputs": [{ "filepath": "screen/{publisher_identity}.mp4" }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
    });
    let id = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let done = record_for(&lk, &id, 5).await;
    publisher.leave().await;

    let file = location(&done);
    let p = probe(&file).await;
    assert_eq!(
        p.video
            .as_ref()
            .map(|v| (v.codec.as_str(), v.width, v.height)),
        Some(("h264", 640, 360)),
        "{p:?}"
    );
    assert_eq!(
        p.audio.as_ref().map(|a| a.codec.as_str()),
        Some("aac"),
        "{p:?}"
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    let colour = pixel(&file, p.duration / 2.0, 320, 300, 16).await;
    let (screen_audio, microphone) = (
        band_volume(&file, None, HIGH_HZ).await,
        band_volume(&file, None, LOW_HZ).await,
    );
    eprintln!(
        "screen-share egress {id}: colour {colour:?}, screen audio {screen_audio:.1} dB, microphone {microphone:.1} dB"
    );
    assert!(
        colour_distance(colour, SCREEN_RGB) < 30,
        "screen share {SCREEN_RGB:?}, camera {VIDEO_RGB:?}, recorded {colour:?}"
    );
    assert!(
        screen_audio > PRESENT_DB,
        "the screen share's audio ({HIGH_HZ} Hz) is missing: {screen_audio:.1} dB"
    );
    assert!(
        microphone < ABSENT_DB,
        "the microphone ({LOW_HZ} Hz) was recorded: {microphone:.1} dB"
    );
}

#[tokio::test]
async fn a_v2_media_egress_routes_by_participant_kind_and_captures_the_rest() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let media = TestDir::new("kind-route-media");
    let camera = moving_box_video(&media, "h264", VIDEO_RGB, 40).await;
    let guest_voice = tone(&media, HIGH_HZ, 40).await;
    let agent_voice = tone(&media, LOW_HZ, 40).await;
    let room = "kind-route-room";
    let guest = LkPublish::start(
        &stack.livekit,
        room,
        "guest",
        "standard",
        &[("camera", &camera), ("microphone", &guest_voice)],
        stack.egress.dir(),
    );
    let agent = LkPublish::start(
        &stack.livekit,
        room,
        "assistant",
        "agent",
        &[("microphone", &agent_voice)],
        stack.egress.dir(),
    );
    published_tracks(&stack, room, "guest", 2).await;
    published_tracks(&stack, room, "assistant", 1).await;

    let id = start_v2(
        &stack,
        json!({
            "room_name": room,
            "media": {
                "participant_video": { "identity": "guest" },
                "audio": {
                    "capture_all": true,
                    "routes": [{ "participant_kind": "AGENT", "channel": "AUDIO_CHANNEL_RIGHT" }],
                },
            },
            "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
            "outputs": [{ "file": { "filepath": "media/{room_name}" } }],
        }),
    )
    .await;
    let done = record_for(&stack.lk(), &id, 5).await;
    guest.leave().await;
    agent.leave().await;

    let file = location(&done);
    let p = probe(&file).await;
    assert_eq!(
        p.audio.as_ref().map(|a| (a.codec.as_str(), a.channels)),
        Some(("aac", 2)),
        "{p:?}"
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    let mut levels = Vec::new();
    for channel in [0, 1] {
        for hz in [HIGH_HZ, LOW_HZ] {
            levels.push(band_volume(&file, Some(channel), hz).await);
        }
    }
    let [left_guest, left_agent, right_guest, right_agent] = levels[..] else {
        unreachable!()
    };
    eprintln!(
        "media egress {id}: left: guest {left_guest:.1} dB, agent {left_agent:.1} dB; right: guest {right_guest:.1} dB, agent {right_agent:.1} dB"
    );
    // capture_all: the standard participant's audio (unmatched by the route) in both channels.
    assert!(
        left_guest > PRESENT_DB && right_guest > PRESENT_DB,
        "the guest belongs in both channels: left {left_guest:.1}, right {right_guest:.1}"
    );
    // The agent, matched by its kind, on the right only.
    assert!(
        right_agent > PRESENT_DB,
        "the agent is missing on the right: {right_agent:.1} dB"
    );
    assert!(
        left_agent < ABSENT_DB,
        "the agent belongs on the right only: left {left_agent:.1} dB"
    );
}

/// A track composite of a `codec` video track and an Opus track: the video must be decoded
/// into the H.264 file (its colour, moving frames) with the audio beside it.
///
/// The VP8, VP9 and AV1 cases used to reach the composite late or never. The cause was the
/// publisher, not our subscriber: left to itself, the Go SDK paces an IVF file at one frame a
/// second (tests/publisher/main.go has the evidence), so livekit-server got one packet a second,
/// declared the layer stopped, and the file's keyframe every 15 frames came every 15 s (the SDK
/// does not answer PLI). `lk-publish` now paces `.ivf` at `--fps`, as `lk room join --fps`
/// paces every file, and sends 30 frames a second like a real client.
async fn track_composite_of(codec: &str) {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestDir::new(&format!("{codec}-composite-media"));
    let camera = moving_box_video(&media, codec, VIDEO_RGB, 30).await;
    let microphone = tone(&media, LOW_HZ, 30).await;
    let room = format!("{codec}-composite-room");
    let publisher = LkPublish::start(
        &stack.livekit,
        &room,
        "camera",
        "standard",
        &[("camera", &camera), ("microphone", &microphone)],
        stack.egress.dir(),
    );
    let tracks = published_tracks(&stack, &room, "camera", 2).await;
    let sid = |kind: &str| {
        tracks
            .iter()
            .find(|(_, t, _)| t == kind)
            .map(|(s, _, _)| s.clone())
            .expect("track")
    };

    let request = json!({
        "room_name": room,
        "audio_track_id": sid("AUDIO"),
        "video_track_id": sid("VIDEO"),
        "file_outputs": [{ "filepath": format!("composite/{codec}.mp4") }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
    });
    let id = lk
        .egress_start("track-composite", &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let done = record_for(&lk, &id, 5).await;
    publisher.leave().await;

    let file = location(&done);
    let p = probe(&file).await;
    assert_eq!(
        p.video
            .as_ref()
            .map(|v| (v.codec.as_str(), v.width, v.height)),
        Some(("h264", 640, 360)),
        "{p:?}"
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    let colour = pixel(&file, p.duration / 2.0, 320, 300, 16).await;
    // "Late" shows as a composite that starts without the track: its first second must have it.
    let early = pixel(&file, 1.0, 320, 300, 16).await;
    let (distinct, frames) = unique_frames(&file).await;
    let level = band_volume(&file, None, LOW_HZ).await;
    eprintln!(
        "{codec} track composite {id}: colour {colour:?} (at 1 s {early:?}), {distinct} distinct of {frames} frames, tone {level:.1} dB, {:.2} s",
        p.duration
    );
    assert!(
        colour_distance(colour, VIDEO_RGB) < 30,
        "published colour {VIDEO_RGB:?}, recorded {colour:?}"
    );
    assert!(
        colour_distance(early, VIDEO_RGB) < 30,
        "the video is late: published colour {VIDEO_RGB:?}, recorded {early:?} at 1 s"
    );
    assert!(
        frames > 90 && distinct * 2 > frames,
        "the {codec} video is not moving: {distinct} distinct of {frames} frames"
    );
    assert!(level > PRESENT_DB, "the tone is missing: {level:.1} dB");
}

#[tokio::test]
async fn a_vp9_track_is_decoded_into_a_track_composite() {
    track_composite_of("vp9").await;
}

#[tokio::test]
async fn an_h265_track_is_decoded_into_a_track_composite() {
    track_composite_of("h265").await;
}

#[tokio::test]
async fn an_av1_track_is_decoded_into_a_track_composite() {
    track_composite_of("av1").await;
}

#[tokio::test]
async fn a_vp8_track_is_decoded_into_a_track_composite() {
    track_composite_of("vp8").await;
}
