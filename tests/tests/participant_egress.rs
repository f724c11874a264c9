//! Track composite and participant egress end to end, over WebRTC without Chrome: a real room,
//! publishers run by `lk room join --publish`, requests started with `lk egress start`, and the
//! MP4 files they write checked with ffprobe/ffmpeg.
//!
//! The A/V sync test publishes a clip with a white flash and a 1 kHz beep at the same instants
//! (every 2 s). `lk` publishing two *files* starts each track when it is negotiated, so the two
//! would be published out of step by an unknown amount; instead `lk` reads both streams from
//! sockets this test writes in real time from one clock (a frame or an Ogg page at its due
//! time, after both tracks are published), so the published clip is in sync by construction,
//! and the source files are measured the same way as the recording as a check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use egress_e2e::recording::*;
use egress_e2e::{LiveKitServer, TestDir, find_binary};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// The measured A/V offset must stay under this.
const MAX_AV_OFFSET: f64 = 0.040;
/// Flash and beep period and length.
const PERIOD_SECS: u32 = 2;
const PULSE_SECS: f64 = 0.1;
/// The long recording's period and length.
const DRIFT_PERIOD_SECS: u32 = 5;
const DRIFT_RECORD_SECS: u64 = 60;

/// `lk room join --identity IDENTITY --publish …` in the background (killed on drop).
fn lk_join(
    livekit: &LiveKitServer,
    room: &str,
    identity: &str,
    publish: &[String],
    log_dir: &Path,
) -> Child {
    let log =
        std::fs::File::create(log_dir.join(format!("publisher-{identity}-{}.log", super_unique())))
            .expect("publisher log");
    let mut cmd = Command::new(find_binary("lk"));
    cmd.args([
        "--url",
        &livekit.http_url(),
        "--api-key",
        livekit.api_key(),
        "--api-secret",
        livekit.api_secret(),
    ])
    .args(["room", "join", "--identity", identity, "--fps", "30"]);
    for p in publish {
        cmd.args(["--publish", p]);
    }
    cmd.arg(room)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LIVEKIT_") {
            cmd.env_remove(&key);
        }
    }
    cmd.spawn().expect("start lk room join")
}

fn super_unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Asks a publisher to leave the room (SIGINT: lk disconnects cleanly), then reaps it.
async fn leave(mut child: Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid; it has not been reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

// ---------- the A/V clip ----------

/// A 640x360@30 H.264 Annex-B video (dark grey, white for 0.1 s every `period` s from 0) and
/// an Ogg Opus audio (silence, a 1 kHz beep for 0.1 s every `period` s from 0, 20 ms pages),
/// from one time line.
struct AvClip {
    video: PathBuf,
    audio: PathBuf,
    period: u32,
    _dir: TestDir,
}

impl AvClip {
    async fn generate(seconds: u32, period: u32) -> AvClip {
        let dir = TestDir::new("av-clip");
        let video = dir.join("flash.h264");
        let audio = dir.join("beep.ogg");
        let flash = format!(
            "color=c=0x202020:s=640x360:r=30:d={seconds}[bg];color=c=white:s=640x360:r=30:d={seconds}[w];\
             [bg][w]overlay=enable='lt(mod(t\\,{period})\\,{PULSE_SECS})'"
        );
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &flash,
            "-c:v",
            "libx264",
            "-threads",
            "1",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-bf",
            "0",
            "-g",
            "15",
            "-b:v",
            "400k",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
            video.to_str().expect("path"),
        ])
        .await;
        let beep = format!(
            "aevalsrc='if(lt(mod(t\\,{period})\\,{PULSE_SECS})\\,0.5*sin(2*PI*1000*t)\\,0)':s=48000:d={seconds}"
        );
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &beep,
            "-ac",
            "1",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-frame_duration",
            "20",
            "-page_duration",
            "20000",
            audio.to_str().expect("path"),
        ])
        .await;
        AvClip {
            video,
            audio,
            period,
            _dir: dir,
        }
    }
}

/// The access units of an Annex-B stream (a new one after each coded slice), each followed by
/// the start of an access unit delimiter: a reader that splits NAL units at start codes can
/// then hand on a frame as soon as it is written, not when the next one arrives.
fn access_units(annex_b: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            let start = if i > 0 && annex_b[i - 1] == 0 {
                i - 1
            } else {
                i
            };
            starts.push((start, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::new();
    let mut current = Vec::new();
    for (n, (start, payload)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map(|s| s.0).unwrap_or(annex_b.len());
        let nal_type = annex_b.get(*payload).map(|b| b & 0x1f).unwrap_or(0);
        current.extend_from_slice(&annex_b[*start..end]);
        if (1..=5).contains(&nal_type) {
            current.extend_from_slice(&[0, 0, 0, 1, 9, 0xf0]);
            units.push(std::mem::take(&mut current));
        }
    }
    units
}

/// The pages of an Ogg file.
fn ogg_pages(ogg: &[u8]) -> Vec<Vec<u8>> {
    let mut pages = Vec::new();
    let mut i = 0;
    while i + 27 <= ogg.len() && &ogg[i..i + 4] == b"OggS" {
        let segments = ogg[i + 26] as usize;
        let Some(table) = ogg.get(i + 27..i + 27 + segments) else {
            break;
        };
        let len = 27 + segments + table.iter().map(|&b| b as usize).sum::<usize>();
        let Some(page) = ogg.get(i..i + len) else {
            break;
        };
        pages.push(page.to_vec());
        i += len;
    }
    pages
}

/// `lk` publishing H.264 and Opus from two sockets this test writes in real time.
struct SocketPublisher {
    child: Child,
    video: Option<TcpStream>,
    audio: Option<TcpStream>,
    units: Vec<Vec<u8>>,
    pages: Vec<Vec<u8>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl SocketPublisher {
    async fn start(
        livekit: &LiveKitServer,
        room: &str,
        identity: &str,
        clip: &AvClip,
        log_dir: &Path,
    ) -> SocketPublisher {
        let video_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let audio_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let publish = [
            format!(
                "h264://127.0.0.1:{}",
                video_listener.local_addr().expect("addr").port()
            ),
            format!(
                "opus://127.0.0.1:{}",
                audio_listener.local_addr().expect("addr").port()
            ),
        ];
        let child = lk_join(livekit, room, identity, &publish, log_dir);
        let accept = |l: TcpListener| async move {
            tokio::time::timeout(Duration::from_secs(30), l.accept()).await
        };
        let (mut video, _) = accept(video_listener)
            .await
            .expect("lk connects to the video socket")
            .expect("accept");
        let (mut audio, _) = accept(audio_listener)
            .await
            .expect("lk connects to the audio socket")
            .expect("accept");
        let mut units = access_units(&std::fs::read(&clip.video).expect("read video"));
        let mut pages = ogg_pages(&std::fs::read(&clip.audio).expect("read audio"));
        // lk reads the Opus headers (first two pages) and the first H.264 access unit while it
        // sets the tracks up (it blocks there until they come); the rest is played in time.
        for page in pages.drain(..2) {
            audio.write_all(&page).await.expect("write Ogg headers");
        }
        if let Some(first) = units.first_mut() {
            video
                .write_all(first)
                .await
                .expect("write the first access unit");
            first.clear();
        }
        SocketPublisher {
            child,
            video: Some(video),
            audio: Some(audio),
            units,
            pages,
            writers: Vec::new(),
        }
    }

    /// Starts writing both streams in real time from one instant: frame i at i/30 s, page j
    /// at j × 20 ms.
    fn play(&mut self) {
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        let streams = [
            (
                self.video.take(),
                std::mem::take(&mut self.units),
                Duration::from_nanos(1_000_000_000 / 30),
            ),
            (
                self.audio.take(),
                std::mem::take(&mut self.pages),
                Duration::from_millis(20),
            ),
        ];
        for (socket, chunks, step) in streams {
            let Some(mut socket) = socket else { continue };
            self.writers.push(tokio::spawn(async move {
                for (n, chunk) in chunks.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
                    tokio::time::sleep_until(start + step * n as u32).await;
                    if socket.write_all(chunk).await.is_err() {
                        return;
                    }
                }
            }));
        }
    }

    async fn stop(mut self) {
        for w in &self.writers {
            w.abort();
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

// ---------- measuring ----------

/// `(pts_time, value)` of every frame, from ffmpeg's `metadata`/`ametadata` print filter.
async fn frame_metadata(
    file: &Path,
    extra_input_args: &[&str],
    filter_flag: &str,
    filter: &str,
    key: &str,
) -> Vec<(f64, f64)> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostats"])
        .args(extra_input_args)
        .arg("-i")
        .arg(file)
        .args([filter_flag, filter, "-f", "null", "-"])
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {filter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut frames = Vec::new();
    let mut time = None;
    for line in text.lines() {
        if let Some(t) = line.split("pts_time:").nth(1) {
            time = t
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok());
        } else if let Some(v) = line.strip_prefix(&format!("{key}=")) {
            let value = if v.contains("inf") {
                -200.0
            } else {
                v.trim().parse().unwrap_or(-200.0)
            };
            if let Some(t) = time.take() {
                frames.push((t, value));
            }
        }
    }
    frames
}

/// Times at which the video turns white (mean luma rising through 128).
async fn flash_onsets(file: &Path, raw_h264: bool) -> Vec<f64> {
    let input: &[&str] = if raw_h264 { &["-r", "30"] } else { &[] };
    let frames = frame_metadata(
        file,
        input,
        "-vf",
        "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-",
        "lavfi.signalstats.YAVG",
    )
    .await;
    frames
        .windows(2)
        .filter(|w| w[0].1 < 128.0 && w[1].1 >= 128.0)
        .map(|w| w[1].0)
        .collect()
}

/// Times at which the beep starts (1 ms peak level rising above −20 dBFS after silence).
async fn beep_onsets(file: &Path) -> Vec<f64> {
    let filter = "aresample=48000,asetnsamples=n=48:p=0,astats=metadata=1:reset=1,ametadata=print:key=lavfi.astats.Overall.Peak_level:file=-";
    let frames = frame_metadata(file, &[], "-af", filter, "lavfi.astats.Overall.Peak_level").await;
    let mut onsets = Vec::new();
    let mut quiet_since = None;
    for (t, peak) in frames {
        if peak < -40.0 {
            quiet_since.get_or_insert(t);
        } else if peak > -20.0 {
            if quiet_since.is_some_and(|q| t - q > 0.2) {
                onsets.push(t);
            }
            quiet_since = None;
        }
    }
    onsets
}

/// Beep onset minus flash onset for each flash with a beep within half a period.
fn av_offsets(flashes: &[f64], beeps: &[f64], period: u32) -> Vec<f64> {
    flashes
        .iter()
        .filter_map(|f| {
            beeps
                .iter()
                .map(|b| b - f)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        })
        .filter(|d| d.abs() < f64::from(period) / 2.0)
        .collect()
}

#[tokio::test]
async fn a_track_composite_keeps_audio_and_video_in_sync() {
    av_sync_of(
        "track-composite",
        |room, audio, video| {
            json!({
                "room_name": room,
                "audio_track_id": audio,
                "video_track_id": video,
                "file_outputs": [{ "filepath": "composite/{room_name}-{publisher_identity}.mp4" }],
                // 60 fps output: a flash lands on the output frame grid within 17 ms.
                "advanced": { "width": 640, "height": 360, "framerate": 60, "video_bitrate": 1200 },
            })
        },
        PERIOD_SECS,
        9,
    )
    .await;
}

#[tokio::test]
async fn a_participant_egress_keeps_audio_and_video_in_sync() {
    av_sync_of(
        "participant",
        |room, _, _| {
            json!({
                "room_name": room,
                "identity": "presenter",
                "file_outputs": [{ "filepath": "composite/{room_name}-{publisher_identity}.mp4" }],
                "advanced": { "width": 640, "height": 360, "framerate": 60, "video_bitrate": 1200 },
            })
        },
        PERIOD_SECS,
        9,
    )
    .await;
}

/// A minute of track composite: the A/V offset must not grow, and the file must last as long
/// as the wall clock ran (nothing sped up or slowed down: the flashes, written every 5 s of
/// the test's clock, are 5 s apart in the file from the first to the last).
#[tokio::test]
async fn a_minute_long_track_composite_does_not_drift() {
    let m = av_sync_of(
        "track-composite",
        |room, audio, video| {
            json!({
                "room_name": room,
                "audio_track_id": audio,
                "video_track_id": video,
                "file_outputs": [{ "filepath": "composite/{room_name}-{publisher_identity}.mp4" }],
                "advanced": { "width": 640, "height": 360, "framerate": 60, "video_bitrate": 1200 },
            })
        },
        DRIFT_PERIOD_SECS,
        DRIFT_RECORD_SECS,
    )
    .await;
    let period = f64::from(DRIFT_PERIOD_SECS);
    assert!(
        m.offsets.len() as f64 >= m.asked / period - 2.0,
        "{} flash/beep pairs in {:.1} s",
        m.offsets.len(),
        m.asked
    );
    assert!(
        (m.duration - m.asked).abs() < 0.5,
        "the file lasts {:.2} s, the recording ran {:.2} s",
        m.duration,
        m.asked
    );
    let (first, last) = (m.flashes[0], m.flashes[m.flashes.len() - 1]);
    let periods = ((last - first) / period).round();
    let span_error = (last - first) - periods * period;
    let drift = m.offsets[m.offsets.len() - 1] - m.offsets[0];
    eprintln!(
        "over {periods} periods: flash spacing off by {:.1} ms, A/V offset moved {:.1} ms",
        span_error * 1000.0,
        drift * 1000.0
    );
    assert!(
        span_error.abs() < 0.040,
        "{periods} periods of flashes span {:.3} s in the file",
        last - first
    );
}

/// What [`av_sync_of`] measured in the file.
struct AvMeasure {
    /// The file's duration and the wall-clock span from its start to the stop request, s.
    duration: f64,
    asked: f64,
    flashes: Vec<f64>,
    offsets: Vec<f64>,
}

/// Publishes the flash-and-beep clip (a flash and a beep every `period` s) in real time,
/// records it with an egress of `egress_type` (`request(room, audio_sid, video_sid)`) for about
/// `record_secs`, and checks the file: H.264 + AAC, the duration, a clean decode, and every
/// flash/beep pair within [`MAX_AV_OFFSET`].
async fn av_sync_of(
    egress_type: &str,
    request: impl Fn(&str, &str, &str) -> Value,
    period: u32,
    record_secs: u64,
) -> AvMeasure {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    // Long enough for the join, the hold and the recording.
    let clip = AvClip::generate(record_secs as u32 + 20, period).await;

    // The clip itself: flash and beep together (the Opus encoder delays its audio by a few ms).
    let source = av_offsets(
        &flash_onsets(&clip.video, true).await,
        &beep_onsets(&clip.audio).await,
        clip.period,
    );
    eprintln!("source clip A/V offsets (s): {source:.4?}");
    assert!(
        source.len() >= 10 && source.iter().all(|d| d.abs() < 0.010),
        "the test clip is not in sync: {source:?}"
    );

    let room = format!("av-sync-{egress_type}");
    let mut publisher = SocketPublisher::start(
        &stack.livekit,
        &room,
        "presenter",
        &clip,
        stack.egress.dir(),
    )
    .await;
    // lk has connected both sockets and publishes (livekit-server announces a track once its
    // media flows): let it set both tracks up, then start both streams together.
    tokio::time::sleep(Duration::from_secs(1)).await;
    publisher.play();
    let video = track_sid(&stack, &room, "presenter", "VIDEO").await;
    let audio = track_sid(&stack, &room, "presenter", "AUDIO").await;

    let request = request(&room, &audio, &video);
    let started = lk
        .egress_start(egress_type, &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    tokio::time::sleep(Duration::from_secs(record_secs)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    let cpu = cpu_seconds(&id);
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    publisher.stop().await;
    eprintln!("{egress_type} {id}: handler used {cpu:.2} s CPU over {asked:.1} s");

    assert_eq!(
        done["file_results"][0]["filename"],
        format!("composite/{room}-presenter.mp4"),
        "{done:#}"
    );
    let file = location(&done);
    let p = probe(&file).await;
    let (v, a) = (
        p.video.clone().expect("a video stream"),
        p.audio.clone().expect("an audio stream"),
    );
    assert_eq!(
        (v.codec.as_str(), v.width, v.height, a.codec.as_str()),
        ("h264", 640, 360, "aac"),
        "{p:?}"
    );
    assert!(
        (p.duration - asked).abs() < 1.0,
        "recorded {:.2}s, asked for about {asked:.2}s",
        p.duration
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );

    let flashes = flash_onsets(&file, false).await;
    let beeps = beep_onsets(&file).await;
    let offsets = av_offsets(&flashes, &beeps, period);
    eprintln!(
        "{egress_type} {id}: flashes {flashes:.3?}, beeps {beeps:.3?}, A/V offsets (s) {offsets:.4?}"
    );
    assert!(
        offsets.len() >= 3,
        "too few flash/beep pairs: flashes {flashes:?}, beeps {beeps:?}"
    );
    for d in &offsets {
        assert!(
            d.abs() < MAX_AV_OFFSET,
            "A/V offset {:.1} ms (all: {offsets:.4?})",
            d * 1000.0
        );
    }
    AvMeasure {
        duration: p.duration,
        asked,
        flashes,
        offsets,
    }
}

/// Starts a participant egress of `identity` in `room` and waits for ACTIVE; returns its id
/// and when the file started (Unix ns).
async fn start_participant(lk: &egress_e2e::Lk, room: &str, identity: &str) -> (String, i64) {
    let request = json!({
        "room_name": room,
        "identity": identity,
        "file_outputs": [{ "filepath": "participants/{publisher_identity}.mp4" }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    (
        id,
        active["file_results"][0]["started_at"]
            .as_i64()
            .expect("started_at"),
    )
}

#[tokio::test]
async fn a_participant_egress_completes_when_the_participant_leaves() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "participant-leave-room";
    let files = [
        media.video.to_string_lossy().into_owned(),
        media.audio.to_string_lossy().into_owned(),
    ];
    let publisher = lk_join(&stack.livekit, room, "alice", &files, stack.egress.dir());
    track_sid(&stack, room, "alice", "VIDEO").await;
    track_sid(&stack, room, "alice", "AUDIO").await;

    let (id, file_started) = start_participant(&lk, room, "alice").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let left_after = (unix_nanos() - file_started) as f64 / 1e9;
    leave(publisher).await;
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    assert_eq!(done["details"], "End reason: Source closed", "{done:#}");
    assert_eq!(
        done["file_results"][0]["filename"], "participants/alice.mp4",
        "{done:#}"
    );
    let file = location(&done);
    let p = probe(&file).await;
    let v = p.video.clone().expect("a video stream");
    assert_eq!(
        (v.codec.as_str(), v.width, v.height),
        ("h264", 640, 360),
        "{p:?}"
    );
    assert_eq!(
        p.audio.as_ref().map(|a| a.codec.as_str()),
        Some("aac"),
        "{p:?}"
    );
    assert!(
        p.duration > left_after - 1.0 && p.duration < left_after + 2.0,
        "recorded {:.2}s, the participant left after {left_after:.2}s",
        p.duration
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    let colour = pixel(&file, p.duration / 2.0, 320, 300, 16).await;
    assert!(
        colour_distance(colour, VIDEO_RGB) < 30,
        "published colour {VIDEO_RGB:?}, recorded {colour:?}"
    );
    assert!(
        mean_volume(&file).await > -40.0,
        "the published tone is missing"
    );
}

/// Mean volume (dB) of `file`'s audio from `from_secs` on.
async fn volume_after(file: &Path, from_secs: f64) -> f64 {
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "info",
            "-nostats",
            "-ss",
            &format!("{from_secs:.2}"),
            "-i",
        ])
        .arg(file)
        .args(["-vn", "-af", "volumedetect", "-f", "null", "-"])
        .output()
        .await
        .expect("run ffmpeg volumedetect");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|rest| rest.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or(-91.0)
}

#[tokio::test]
async fn a_participant_egress_continues_across_a_republish() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "participant-republish-room";
    let files = [
        media.video.to_string_lossy().into_owned(),
        media.audio.to_string_lossy().into_owned(),
    ];
    let first = lk_join(&stack.livekit, room, "bob", &files, stack.egress.dir());
    let first_video = track_sid(&stack, room, "bob", "VIDEO").await;
    track_sid(&stack, room, "bob", "AUDIO").await;

    let (id, file_started) = start_participant(&lk, room, "bob").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The publisher goes away and comes back as the same identity: new session, new tracks.
    let mut first = first;
    let _ = first.start_kill();
    let _ = first.wait().await;
    let second = lk_join(&stack.livekit, room, "bob", &files, stack.egress.dir());
    republished_track_sid(&stack, room, "bob", "VIDEO", Some(&first_video)).await;
    let republished_at = (unix_nanos() - file_started) as f64 / 1e9;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    let info = egress_info(&lk, &id).await.expect("egress info");
    assert_eq!(
        status_of(&info),
        status::ACTIVE,
        "the egress ended at the republish: {info:#}"
    );
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    leave(second).await;

    let file = location(&done);
    let p = probe(&file).await;
    eprintln!(
        "participant egress {id}: republished at {republished_at:.2}s, stopped at {asked:.2}s, file {:.2}s",
        p.duration
    );
    assert!(
        (p.duration - asked).abs() < 1.0,
        "recorded {:.2}s, asked for about {asked:.2}s",
        p.duration
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    // The second part is the republished tracks: moving video and the tone.
    let from = (republished_at + 1.5).min(p.duration - 1.0);
    let (distinct, frames) = unique_frames_from(&file, from).await;
    assert!(
        frames > 20 && distinct * 2 > frames,
        "after the republish: {distinct} distinct of {frames} frames"
    );
    let level = volume_after(&file, from).await;
    assert!(level > -40.0, "no tone after the republish: {level} dB");
}

#[tokio::test]
async fn a_participant_that_never_comes_fails_with_the_go_error() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let (code, body) = twirp(
        &stack.livekit,
        "RoomService/CreateRoom",
        json!({ "roomCreate": true }),
        &json!({ "name": "nobody-room" }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let request = json!({ "room_name": "nobody-room", "identity": "ghost", "file_outputs": [{ "filepath": "ghost.mp4" }] });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let (failed, _) = wait_for_status(
        &lk,
        &started.egress_id,
        status::FAILED,
        Duration::from_secs(50),
    )
    .await;
    assert_eq!(failed["error"], "participant ghost not found", "{failed:#}");
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

/// Mean volume (dB) of one channel (0 left, 1 right) of `file`.
async fn channel_volume(file: &Path, channel: u32) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-nostats", "-i"])
        .arg(file)
        .args([
            "-vn",
            "-af",
            &format!("pan=mono|c0=c{channel},volumedetect"),
            "-f",
            "null",
            "-",
        ])
        .output()
        .await
        .expect("run ffmpeg volumedetect");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|rest| rest.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no mean_volume for channel {channel}:\n{log}"))
}

#[tokio::test]
async fn a_v2_media_egress_routes_a_participants_audio_to_one_channel() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "media-room";
    let files = [
        media.video.to_string_lossy().into_owned(),
        media.audio.to_string_lossy().into_owned(),
    ];
    let publisher = lk_join(&stack.livekit, room, "carol", &files, stack.egress.dir());
    track_sid(&stack, room, "carol", "VIDEO").await;
    track_sid(&stack, room, "carol", "AUDIO").await;

    let id = start_v2(&stack, json!({
        "room_name": room,
        "media": {
            "participant_video": { "identity": "carol" },
            "audio": { "routes": [{ "participant_identity": "carol", "channel": "AUDIO_CHANNEL_LEFT" }] },
        },
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
        "outputs": [{ "file": { "filepath": "media/{room_name}" } }],
    }))
    .await;
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    leave(publisher).await;

    let file = location(&done);
    let p = probe(&file).await;
    assert_eq!(
        p.video.as_ref().map(|v| (v.codec.as_str(), v.width)),
        Some(("h264", 640)),
        "{p:?}"
    );
    assert_eq!(
        p.audio.as_ref().map(|a| (a.codec.as_str(), a.channels)),
        Some(("aac", 2)),
        "{p:?}"
    );
    let (left, right) = (
        channel_volume(&file, 0).await,
        channel_volume(&file, 1).await,
    );
    eprintln!("media egress {id}: left {left} dB, right {right} dB");
    assert!(
        left > -40.0 && right < -80.0,
        "the tone belongs on the left only: left {left} dB, right {right} dB"
    );
}

#[tokio::test]
async fn a_v2_media_passthrough_of_one_track_is_a_track_egress() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "media-passthrough-room";
    let files = [media.audio.to_string_lossy().into_owned()];
    let publisher = lk_join(&stack.livekit, room, "dave", &files, stack.egress.dir());
    let sid = track_sid(&stack, room, "dave", "AUDIO").await;

    let id = start_v2(
        &stack,
        json!({
            "room_name": room,
            "media": { "audio": { "routes": [{ "track_id": sid }] } },
            // livekit-server 1.13.5 predates the PASSTHROUGH name: its number goes through.
            "preset": 8,
            "outputs": [{ "file": { "filepath": "passthrough/{track_id}" } }],
        }),
    )
    .await;
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    leave(publisher).await;
    assert_eq!(
        done["file_results"][0]["filename"],
        format!("passthrough/{sid}.ogg"),
        "{done:#}"
    );
    let p = probe(&location(&done)).await;
    assert_eq!(p.audio.map(|a| a.codec), Some("opus".to_owned()));
    assert!(p.video.is_none());
}

#[tokio::test]
async fn an_audio_only_track_composite_is_ogg_and_a_video_only_one_mp4() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "composite-kinds-room";
    let files = [
        media.video.to_string_lossy().into_owned(),
        media.audio.to_string_lossy().into_owned(),
    ];
    let publisher = lk_join(&stack.livekit, room, "erin", &files, stack.egress.dir());
    let video = track_sid(&stack, room, "erin", "VIDEO").await;
    let audio = track_sid(&stack, room, "erin", "AUDIO").await;

    let start = |request: Value| {
        let lk = &lk;
        async move {
            lk.egress_start("track-composite", &request.to_string())
                .await
                .expect("egress start")
                .egress_id
        }
    };
    let audio_only = start(json!({ "room_name": room, "audio_track_id": audio, "file_outputs": [{ "filepath": "kinds/audio" }] })).await;
    let video_only = start(json!({
        "room_name": room,
        "video_track_id": video,
        "file_outputs": [{ "filepath": "kinds/video" }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800 },
    }))
    .await;
    for id in [&audio_only, &video_only] {
        wait_for_status(&lk, id, status::ACTIVE, Duration::from_secs(40)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut files = Vec::new();
    for id in [&audio_only, &video_only] {
        lk.egress_stop(id).await.expect("egress stop");
        let (done, _) = wait_for_status(&lk, id, status::COMPLETE, Duration::from_secs(60)).await;
        files.push(location(&done));
    }
    leave(publisher).await;

    let a = probe(&files[0]).await;
    assert!(
        files[0].to_string_lossy().ends_with(".ogg"),
        "{:?}",
        files[0]
    );
    assert_eq!(
        a.audio.as_ref().map(|s| s.codec.as_str()),
        Some("opus"),
        "{a:?}"
    );
    assert!(a.video.is_none() && a.duration > 2.0, "{a:?}");
    assert!(mean_volume(&files[0]).await > -40.0, "the tone is missing");
    let v = probe(&files[1]).await;
    assert!(
        files[1].to_string_lossy().ends_with(".mp4"),
        "{:?}",
        files[1]
    );
    assert_eq!(
        v.video.as_ref().map(|s| (s.codec.as_str(), s.width)),
        Some(("h264", 640)),
        "{v:?}"
    );
    assert!(v.audio.is_none() && v.duration > 2.0, "{v:?}");
    assert!(
        decodes_cleanly(&files[1]).await,
        "the video-only file does not decode cleanly"
    );
}
