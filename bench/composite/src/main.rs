//! `bench-composite`: what one room-composite recording costs on this host.
//!
//! For each preset (default 720p30 and 1080p30) it starts a fresh Redis + livekit-server +
//! egress, publishes a two-publisher room (each a 1280x720@30 H.264 test pattern plus an Opus
//! tone, through `lk room join --publish`), records a grid composite to a local MP4 and prints:
//!
//! * time from StartEgress to ACTIVE: as the egress reports it (EgressInfo `started_at` to the
//!   first captured frame) and as a client sees it (`lk egress start` until `lk egress list`
//!   says ACTIVE);
//! * CPU cores used by the whole egress (the service and everything below it: handler, Chrome,
//!   Xvfb, PulseAudio) over the measured window;
//! * peak memory of that process tree, as summed RSS (counts pages Chrome's processes share
//!   once per process) and as summed PSS (shares them out: the honest total);
//! * the recorded file's frame rate (frames / duration), and how many of those frames are
//!   distinct (the published boxes move every frame, so repeats mean Chrome or the capture fell
//!   behind and videorate filled in).
//!
//! Nothing is asserted. Usage: `bench-composite [--seconds N] [--presets 720p30,1080p30]`.
//! Needs what the recording tests need (scripts/setup, built templates, `EGRESS_BIN` or a
//! built `target/debug/egress`).

use std::time::{Duration, Instant};

use egress_e2e::proc_stats::measure;
use egress_e2e::recording::*;
use serde_json::json;

const ROOM: &str = "bench-room";
/// Let the page settle (layout, decoders, encoder warm-up) before measuring.
const WARM_UP: Duration = Duration::from_secs(3);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

struct Preset {
    name: &'static str,
    /// `EncodingOptionsPreset` as lk's JSON names it.
    proto: &'static str,
}

const PRESETS: [Preset; 2] = [
    Preset {
        name: "720p30",
        proto: "H264_720P_30",
    },
    Preset {
        name: "1080p30",
        proto: "H264_1080P_30",
    },
];

struct Result {
    preset: &'static str,
    to_active_egress: f64,
    to_active_client: f64,
    cores: f64,
    peak_rss_mib: f64,
    peak_pss_mib: f64,
    processes: usize,
    fps: f64,
    /// Distinct frames per second: what Chrome actually rendered (the published boxes move
    /// every frame).
    rendered_fps: f64,
    file_secs: f64,
}

async fn run(preset: &Preset, seconds: u64, media: &TestMedia) -> Result {
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let mut publishers = Vec::new();
    for who in ["alice", "bob"] {
        publishers.push(Publisher::start(
            &stack.livekit,
            ROOM,
            &format!("{who}-video"),
            &media.video,
            Some(30),
            stack.egress.dir(),
        ));
        publishers.push(Publisher::start(
            &stack.livekit,
            ROOM,
            &format!("{who}-audio"),
            &media.audio,
            None,
            stack.egress.dir(),
        ));
    }
    wait_for_publishers(&lk, ROOM, 4, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let request = json!({ "room_name": ROOM, "layout": "grid", "preset": preset.proto,
        "file_outputs": [{ "filepath": format!("bench-{}.mp4", preset.name) }] });
    let t0 = Instant::now();
    let id = lk
        .egress_start_room_composite(&request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let (active, seen) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(60)).await;
    let to_active_client = (seen - t0).as_secs_f64();
    let created = active["started_at"].as_i64().unwrap_or(0);
    let first_frame = active["file_results"][0]["started_at"]
        .as_i64()
        .unwrap_or(0);
    let to_active_egress = (first_frame - created) as f64 / 1e9;

    tokio::time::sleep(WARM_UP).await;
    let usage = measure(
        stack.egress.pid(),
        Duration::from_secs(seconds),
        SAMPLE_EVERY,
    )
    .await;

    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(120)).await;
    for p in publishers {
        p.stop().await;
    }
    let location = std::path::PathBuf::from(
        done["file_results"][0]["location"]
            .as_str()
            .unwrap_or_default(),
    );
    let (fps, file_secs) = frames_per_second(&location).await;
    let (distinct, _) = unique_frames(&location).await;
    let rendered_fps = if file_secs > 0.0 {
        distinct as f64 / file_secs
    } else {
        0.0
    };
    Result {
        preset: preset.name,
        to_active_egress,
        to_active_client,
        cores: usage.cores,
        peak_rss_mib: usage.peak_rss_mib,
        peak_pss_mib: usage.peak_pss_mib,
        processes: usage.processes,
        fps,
        rendered_fps,
        file_secs,
    }
}

/// Decoded frames / duration of the recorded video (ffprobe counts the frames).
async fn frames_per_second(file: &std::path::Path) -> (f64, f64) {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets,duration",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .await;
    let Ok(out) = out else { return (0.0, 0.0) };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let s = &v["streams"][0];
    let frames: f64 = s["nb_read_packets"]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    let secs: f64 = s["duration"]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    (if secs > 0.0 { frames / secs } else { 0.0 }, secs)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let wanted: Vec<String> = arg("--presets")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| PRESETS.iter().map(|p| p.name.to_owned()).collect());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "bench-composite: {cores} cores, {seconds} s measured per preset, two publishers of 1280x720@30 video + Opus audio"
    );
    let media = TestMedia::generate_sized(seconds as u32 + 90, 1280, 720, 1500).await;
    let mut results = Vec::new();
    for preset in PRESETS
        .iter()
        .filter(|p| wanted.iter().any(|w| w == p.name))
    {
        eprintln!("bench-composite: recording {} ...", preset.name);
        results.push(run(preset, seconds, &media).await);
    }
    println!();
    println!(
        "| preset | StartEgress→ACTIVE (egress) | StartEgress→ACTIVE (client) | CPU cores | peak RSS sum (MiB) | peak PSS sum (MiB) | processes | recorded fps | distinct fps | file s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {:.1} |",
            r.preset,
            r.to_active_egress,
            r.to_active_client,
            r.cores,
            r.peak_rss_mib,
            r.peak_pss_mib,
            r.processes,
            r.fps,
            r.rendered_fps,
            r.file_secs
        );
    }
}
