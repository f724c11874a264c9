//! `bench-streams`: what live stream destinations cost a 720p30 room composite, how fast the
//! first packet reaches a server, and how destinations reconnect. Prints figures against the
//! targets of issue 13 and asserts nothing.
//!
//! 1. **Cost per destination.** The same two-publisher room recorded to an MP4 with 0, 1 and
//!    3 RTMP destinations (mediamtx), one egress after the other: CPU cores and peak PSS of
//!    the whole egress tree (service, handler, Chrome, Xvfb, PulseAudio) over the window.
//!    Target: each extra destination ≤ 2 % of one core and ≤ 10 MiB. Chrome's own variance
//!    between runs is of the same order, so run with `--seconds 60` for a steadier figure.
//! 2. **StartEgress → first packet** at the server (mediamtx's byte counter), per run.
//! 3. **Reconnect gap.** nginx-rtmp drops the publisher 20 times (`/control/drop/publisher`);
//!    the gap is from the drop to nginx seeing the next publish. Every publish is a recording
//!    of its own, whose first video frame must be a keyframe. Target: p95 ≤ 2 s, 20/20.
//! 4. **Attempts per second while a destination is down:** nginx stopped for 10 s, attempts
//!    counted by `StreamInfo.retries`. Target ≤ 1.
//!
//! Usage: `bench-streams [--seconds N] [--kicks N]`. Needs what the stream tests need
//! (scripts/setup: mediamtx, nginx with the RTMP module, built templates, `EGRESS_BIN` or a
//! built `target/debug/egress`).

use std::time::{Duration, Instant};

use egress_e2e::mediamtx::MediaMtx;
use egress_e2e::nginx_rtmp::NginxRtmp;
use egress_e2e::proc_stats::{Usage, measure};
use egress_e2e::recording::*;
use egress_e2e::stream_check;
use serde_json::{Value, json};

const ROOM: &str = "bench-streams";
/// Let the page, the encoder and the destinations settle before measuring.
const WARM_UP: Duration = Duration::from_secs(4);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Two publishers (camera + microphone each), published until the stack goes.
fn publish(stack: &RecordingStack, media: &TestMedia) -> Vec<Publisher> {
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
    publishers
}

fn request(urls: &[String], file: &str) -> String {
    let mut r = json!({ "room_name": ROOM, "layout": "grid", "preset": "H264_720P_30",
        "file_outputs": [{ "filepath": file }] });
    if !urls.is_empty() {
        r["stream_outputs"] = json!([{ "protocol": "RTMP", "urls": urls }]);
    }
    r.to_string()
}

struct CostRun {
    destinations: usize,
    usage: Usage,
    /// StartEgress → the first bytes at the server (destinations > 0).
    first_packet: Option<f64>,
}

/// One egress with `n` RTMP destinations to mediamtx: its cost over `seconds`.
async fn cost_run(stack: &RecordingStack, mtx: &MediaMtx, n: usize, seconds: u64) -> CostRun {
    let lk = stack.lk();
    let paths: Vec<String> = (0..n).map(|i| format!("bench/d{n}-{i}")).collect();
    let urls: Vec<String> = paths.iter().map(|p| mtx.rtmp_url(p)).collect();
    let t0 = Instant::now();
    let id = lk
        .egress_start_room_composite(&request(&urls, &format!("bench-d{n}.mp4")))
        .await
        .expect("egress start")
        .egress_id;
    let mut first_packet = None;
    if let Some(path) = paths.first() {
        while t0.elapsed() < Duration::from_secs(60) {
            if mtx.bytes_received(path).await > 0 {
                first_packet = Some(t0.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(60)).await;
    tokio::time::sleep(WARM_UP).await;
    let usage = measure(
        stack.egress.pid(),
        Duration::from_secs(seconds),
        SAMPLE_EVERY,
    )
    .await;
    lk.egress_stop(&id).await.expect("egress stop");
    wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(120)).await;
    CostRun {
        destinations: n,
        usage,
        first_packet,
    }
}

struct Reconnects {
    gaps: Vec<f64>,
    keyframe_first: usize,
    recordings: usize,
    attempts_per_second: f64,
    down_secs: f64,
    back_after_outage: Option<f64>,
}

/// One egress streaming to nginx-rtmp: `kicks` drops, then a 10 s outage.
async fn reconnect_run(stack: &RecordingStack, kicks: usize) -> Reconnects {
    let lk = stack.lk();
    let mut nginx = NginxRtmp::start().await;
    let key = "benchkick";
    let id = lk
        .egress_start_room_composite(&request(&[nginx.rtmp_url(key)], "bench-kicks.mp4"))
        .await
        .expect("egress start")
        .egress_id;
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(60)).await;
    nginx.wait_for_publisher(key, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut gaps = Vec::new();
    for i in 0..kicks {
        let kicked = Instant::now();
        nginx.kick(key).await;
        // The next publish: one that began after the drop.
        let gap = loop {
            if let Some(p) = nginx.publisher(key).await
                && Duration::from_millis(p.time_ms) < kicked.elapsed()
                && p.bytes_in > 0
            {
                break kicked.elapsed().as_secs_f64() - p.time_ms as f64 / 1000.0;
            }
            if kicked.elapsed() > Duration::from_secs(30) {
                eprintln!("bench-streams: kick {i}: no publish within 30 s");
                break f64::NAN;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        gaps.push(gap);
        // A new second for the next recording's name (nginx names them by the second).
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }

    // The server goes away for 10 s: how often the destination tries meanwhile.
    let before = egress_info(&lk, &id).await.unwrap_or_default();
    let retries_before = int(&before["stream_results"][0]["retries"]);
    nginx.stop().await;
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = egress_info(&lk, &id).await.unwrap_or_default();
    let down_secs = down.elapsed().as_secs_f64();
    let attempts = int(&during["stream_results"][0]["retries"]) - retries_before;
    nginx.restart().await;
    let restarted = Instant::now();
    let mut back_after_outage = None;
    while restarted.elapsed() < Duration::from_secs(30) {
        if nginx.publisher(key).await.is_some_and(|p| p.bytes_in > 0) {
            back_after_outage = Some(restarted.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(120)).await;

    let files = nginx
        .wait_for_recordings(key, kicks + 1, Duration::from_secs(30))
        .await;
    let mut keyframe_first = 0;
    for f in &files {
        if stream_check::first_video_frame(f).await.key_frame {
            keyframe_first += 1;
        }
    }
    Reconnects {
        gaps,
        keyframe_first,
        recordings: files.len(),
        attempts_per_second: attempts as f64 / down_secs,
        down_secs,
        back_after_outage,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let kicks: usize = arg("--kicks").and_then(|s| s.parse().ok()).unwrap_or(20);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "bench-streams: {cores} cores, {seconds} s measured per run, {kicks} kicks; a 720p30 grid of two publishers (1280x720@30 + Opus each)"
    );
    let media =
        TestMedia::generate_sized(seconds as u32 * 3 + kicks as u32 * 4 + 180, 1280, 720, 1500)
            .await;
    let stack = RecordingStack::start().await;
    let publishers = publish(&stack, &media);
    wait_for_publishers(&stack.lk(), ROOM, 4, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mtx = MediaMtx::start().await;
    let mut runs = Vec::new();
    for n in [0, 1, 3] {
        eprintln!("bench-streams: {n} destination(s) ...");
        runs.push(cost_run(&stack, &mtx, n, seconds).await);
    }
    eprintln!("bench-streams: {kicks} kicks and a 10 s outage against nginx-rtmp ...");
    let r = reconnect_run(&stack, kicks).await;
    for p in publishers {
        p.stop().await;
    }

    println!();
    println!(
        "| destinations | CPU cores | peak PSS sum (MiB) | peak RSS sum (MiB) | StartEgress → first packet |"
    );
    println!("|---|---|---|---|---|");
    for run in &runs {
        println!(
            "| {} | {:.3} | {:.0} | {:.0} | {} |",
            run.destinations,
            run.usage.cores,
            run.usage.peak_pss_mib,
            run.usage.peak_rss_mib,
            run.first_packet
                .map_or("—".to_owned(), |s| format!("{s:.2} s"))
        );
    }
    let base = &runs[0].usage;
    for run in runs.iter().skip(1) {
        let n = run.destinations as f64;
        println!(
            "per extra destination ({} vs 0): {:+.1} % of a core, {:+.1} MiB PSS (targets ≤ 2 %, ≤ 10 MiB)",
            run.destinations,
            (run.usage.cores - base.cores) / n * 100.0,
            (run.usage.peak_pss_mib - base.peak_pss_mib) / n
        );
    }
    let mut gaps: Vec<f64> = r.gaps.iter().copied().filter(|g| g.is_finite()).collect();
    gaps.sort_by(f64::total_cmp);
    println!(
        "reconnect gap over {} kicks: p50 {:.2} s, p95 {:.2} s, max {:.2} s (target p95 ≤ 2 s); {} of {} reconnects seen",
        r.gaps.len(),
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.95),
        gaps.last().copied().unwrap_or(f64::NAN),
        gaps.len(),
        r.gaps.len()
    );
    println!(
        "first video frame a keyframe: {}/{} server recordings (target: all)",
        r.keyframe_first, r.recordings
    );
    println!(
        "while the server was down {:.1} s: {:.2} attempts/s (target ≤ 1); back {} after it returned",
        r.down_secs,
        r.attempts_per_second,
        r.back_after_outage
            .map_or("never".to_owned(), |s| format!("{s:.2} s"))
    );
}
