//! `bench-tracks`: what concurrent passthrough track egresses cost on this host (issue 7).
//!
//! For each count N (default 10, 100, 300) it starts a fresh Redis + livekit-server + egress
//! whose `track_cpu_cost` is tiny (so that a 2-core worker admits all N: admission is not what
//! is measured here), publishes a fixed set of tracks (4 Opus, 2 VP8 and 2 H.264 at
//! 640x360@30 ~600 kbit/s, each its own `lk room join --publish`), and spreads N track egresses
//! over them round-robin: each egress is still its own subscriber (its own PeerConnection) and
//! writes its own file. One egress is started alone first (cold: its shared handler process
//! starts), then the other N−1 in one burst of concurrent Twirp `StartTrackEgress` calls.
//!
//! It prints:
//! * time to ACTIVE: from the Twirp call returning (the client's view of StartEgress) to the
//!   moment the egress went ACTIVE, which is the file's `started_at` in its EgressInfo (set by
//!   the handler at the first packet, for video the first keyframe; same host, same clock). The
//!   lag of livekit-server's ListEgress, polled to find out, is not in the figure;
//! * CPU over the measured window (after all are ACTIVE and a warm-up): the egress service's
//!   whole process tree (service and handler processes) in cores and millicores per egress;
//!   livekit-server's and the `lk` publishers' separately; and where the egress tree's time
//!   goes, per thread name;
//! * memory: peak summed RSS and PSS (/proc/PID/smaps_rollup) of the egress tree over the
//!   window, per egress, and per egress above the idle baseline (the service alone, measured
//!   before the first egress);
//! * handler processes, and after stopping all: how many completed and the bytes written.
//!
//! Nothing is asserted. Usage: `bench-tracks [--counts 10,100,300] [--seconds 20]`. Needs what
//! the track egress tests need (scripts/setup) and an egress binary: `EGRESS_BIN`, else
//! `target/debug/egress` (benchmark a release build: `cargo build --release -p egress-host` and
//! `EGRESS_BIN=target/release/egress`).

mod api;
mod procfs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egress_e2e::TestDir;
use egress_e2e::recording::*;
use serde_json::Value;

use api::{int, is_terminal, status_of};

const ROOM: &str = "bench-tracks";
/// Cores reserved per track egress at admission: 300 × 0.001 fits the 1.6 cores a 2-core
/// worker admits (Go's default, 1 core per track, would admit one).
const TRACK_CPU_COST: f64 = 0.001;
/// After the last egress turned ACTIVE: let start-up work (DTLS, first keyframes, handler
/// spawns) finish before measuring the steady state.
const WARM_UP: Duration = Duration::from_secs(3);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const BASELINE: Duration = Duration::from_secs(5);
/// Beyond the measured window, how long the published media must last (set-up, bursts of
/// StartEgress, waiting for ACTIVE, stopping).
const MEDIA_MARGIN_SECS: u32 = 300;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Opus,
    Vp8,
    H264,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Opus => "Opus",
            Kind::Vp8 => "VP8",
            Kind::H264 => "H.264",
        }
    }

    fn is_video(self) -> bool {
        self != Kind::Opus
    }
}

/// The published tracks, interleaved so that any N spreads over audio and video alike.
const TRACKS: [Kind; 8] = [
    Kind::Opus,
    Kind::Vp8,
    Kind::Opus,
    Kind::H264,
    Kind::Opus,
    Kind::Vp8,
    Kind::Opus,
    Kind::H264,
];

struct Media {
    opus: PathBuf,
    vp8: PathBuf,
    h264: PathBuf,
    _dir: TestDir,
}

/// A test pattern with per-frame noise at 640x360@30: the noise keeps the encoders at the
/// asked bit rate (a flat test pattern comes out of them at 20–60 kbit/s whatever is asked,
/// which would understate what an egress moves).
fn video_source(seconds: u32) -> String {
    format!("testsrc2=s=640x360:r=30:d={seconds},noise=alls=10:allf=t+u")
}

const VIDEO_RATE: [&str; 6] = ["-b:v", "600k", "-maxrate", "600k", "-bufsize", "600k"];

impl Media {
    /// Opus (48 kbit/s mono 440 Hz tone in Ogg, as `TestMedia`), VP8 (IVF) and H.264 (Annex B,
    /// baseline, no B-frames, what `lk` can packetize) ~600 kbit/s, `seconds` long, each
    /// with a keyframe every half second (a file publisher cannot answer keyframe requests).
    async fn generate(seconds: u32) -> Media {
        let dir = TestDir::new("bench-tracks-media");
        let video = video_source(seconds);
        let (opus, vp8, h264) = (
            dir.join("tone.ogg"),
            dir.join("video.ivf"),
            dir.join("video.h264"),
        );
        let tone = format!("sine=frequency={AUDIO_TONE_HZ}:sample_rate=48000:duration={seconds}");
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                &tone,
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
            ],
            &opus,
        )
        .await;
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            &video,
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-threads",
            "1",
        ];
        args.extend(["-pix_fmt", "yuv420p", "-g", "15", "-f", "ivf"]);
        args.extend(VIDEO_RATE);
        ffmpeg(&args, &vp8).await;
        let mut args = vec![
            "-f", "lavfi", "-i", &video, "-c:v", "libx264", "-preset", "veryfast", "-threads", "1",
        ];
        args.extend([
            "-profile:v",
            "baseline",
            "-level",
            "3.1",
            "-pix_fmt",
            "yuv420p",
            "-bf",
            "0",
            "-g",
            "15",
        ]);
        args.extend(["-bsf:v", "h264_mp4toannexb", "-f", "h264"]);
        args.extend(VIDEO_RATE);
        ffmpeg(&args, &h264).await;
        Media {
            opus,
            vp8,
            h264,
            _dir: dir,
        }
    }
}

async fn ffmpeg(args: &[&str], out: &Path) {
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .await;
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "ffmpeg {args:?} could not make {}: {other:?}",
            out.display()
        ),
    }
}

/// One egress of the run.
struct Egress {
    kind: Kind,
    started: api::Started,
}

impl Egress {
    fn id(&self) -> Option<&str> {
        self.started.result.as_ref().ok().map(String::as_str)
    }
}

/// Seconds from the StartTrackEgress call returning to ACTIVE (the file's `started_at`).
fn to_active(e: &Egress, info: &Value) -> Option<f64> {
    let active_ns = int(&info["file_results"][0]["started_at"]);
    (active_ns > 0).then(|| (active_ns - e.started.returned_ns) as f64 / 1e9)
}

/// (median, p95, max) of `v`; zeros when empty.
fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.95), v[v.len() - 1])
}

fn fmt_q((median, p95, max): (f64, f64, f64)) -> String {
    format!("{median:.2} / {p95:.2} / {max:.2}")
}

#[derive(Default)]
struct Row {
    n: usize,
    split: String,
    cold: f64,
    burst_all: (f64, f64, f64),
    burst_audio: (f64, f64, f64),
    burst_video: (f64, f64, f64),
    twirp_call: (f64, f64, f64),
    /// From the first burst call to the last egress's ACTIVE.
    burst_span: f64,
    start_errors: usize,
    active: usize,
    /// ACTIVE when the window began: what the per-egress figures divide by.
    running: usize,
    handlers: usize,
    egress_cores: f64,
    sfu_cores: f64,
    publisher_cores: f64,
    baseline_cores: f64,
    rss_kib: u64,
    pss_kib: u64,
    baseline_rss_kib: u64,
    baseline_pss_kib: u64,
    completed: usize,
    failed: usize,
    bytes: u64,
    bytes_on_disk: u64,
    /// (bytes, recorded seconds) per kind of track, for the recorded bit rate.
    recorded: HashMap<&'static str, (u64, f64)>,
    threads: Vec<(String, f64)>,
}

/// Peak summed (RSS, PSS) in KiB of the egress tree, and the most handler processes, sampled
/// until `until`.
async fn sample_memory(root: u32, until: Instant) -> (u64, u64, usize) {
    let (mut rss, mut pss, mut handlers) = (0, 0, 0);
    loop {
        let pids = procfs::tree(&[root]);
        let (r, p) = procfs::tree_memory_kib(pids.keys());
        rss = rss.max(r);
        pss = pss.max(p);
        handlers = handlers.max(
            pids.keys()
                .filter(|p| procfs::cmdline(**p).contains("run-handler"))
                .count(),
        );
        if Instant::now() >= until {
            return (rss, pss, handlers);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Per thread-name CPU ticks of every process in the egress tree.
fn thread_ticks(root: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for pid in procfs::tree(&[root]).keys() {
        let role = if procfs::cmdline(*pid).contains("run-handler") {
            "handler"
        } else {
            "service"
        };
        for (name, t) in procfs::thread_ticks(*pid) {
            *out.entry(format!("{role}: {name}")).or_insert(0) += t;
        }
    }
    out
}

async fn run(n: usize, seconds: u64, media: &Media) -> Row {
    let mut row = Row {
        n,
        ..Row::default()
    };
    let stack =
        RecordingStack::start_with(|yaml| format!("{yaml}  track_cpu_cost: {TRACK_CPU_COST}\n"))
            .await;
    let mut publishers = Vec::new();
    let mut identities = Vec::new();
    for (i, kind) in TRACKS.iter().enumerate() {
        let identity = format!("{}-{i}", kind.name().to_lowercase().replace('.', ""));
        let (file, fps) = match kind {
            Kind::Opus => (&media.opus, None),
            Kind::Vp8 => (&media.vp8, Some(30)),
            Kind::H264 => (&media.h264, Some(30)),
        };
        publishers.push(Publisher::start(
            &stack.livekit,
            ROOM,
            &identity,
            file,
            fps,
            stack.egress.dir(),
        ));
        identities.push(identity);
    }
    wait_for_publishers(
        &stack.lk(),
        ROOM,
        TRACKS.len() as i64,
        Duration::from_secs(60),
    )
    .await;
    let mut sids = Vec::new();
    for (kind, identity) in TRACKS.iter().zip(&identities) {
        let want = if kind.is_video() { "VIDEO" } else { "AUDIO" };
        match api::track_sid(&stack, ROOM, identity, want).await {
            Some(sid) => sids.push(sid),
            None => panic!("no {want} track of {identity} in {ROOM}"),
        }
    }
    let root = stack.egress.pid();
    let http_url = stack.livekit.http_url();

    // Idle baseline: the service alone, publishers up, no egress.
    let t = procfs::tree(&[root]);
    let since = Instant::now();
    let (rss, pss, _) = sample_memory(root, Instant::now() + BASELINE).await;
    row.baseline_cores = procfs::cores(&t, &procfs::tree(&[root]), since.elapsed().as_secs_f64());
    (row.baseline_rss_kib, row.baseline_pss_kib) = (rss, pss);

    let path =
        |i: usize, kind: Kind| format!("bench/{}-{i}", kind.name().to_lowercase().replace('.', ""));
    // Cold: the first egress starts the shared handler process.
    let first = Egress {
        kind: TRACKS[0],
        started: api::start_track_egress(&stack, ROOM, &sids[0], &path(0, TRACKS[0])).await,
    };
    let first_id = first.id().map(str::to_owned).unwrap_or_else(|| {
        panic!(
            "first StartTrackEgress: {:?}",
            first.started.result.as_ref().err()
        )
    });
    let infos = api::wait_until(
        &stack,
        ROOM,
        std::slice::from_ref(&first_id),
        |i| status_of(i) >= status::ACTIVE,
        Duration::from_secs(60),
    )
    .await;
    row.cold = infos
        .first()
        .and_then(|(_, info)| to_active(&first, info))
        .unwrap_or(f64::NAN);

    // The burst: the other N−1 at once.
    let burst_at = unix_nanos();
    let calls = (1..n).map(|i| {
        let (stack, sids) = (&stack, &sids);
        let kind = TRACKS[i % TRACKS.len()];
        async move {
            Egress {
                kind,
                started: api::start_track_egress(
                    stack,
                    ROOM,
                    &sids[i % TRACKS.len()],
                    &path(i, kind),
                )
                .await,
            }
        }
    });
    let mut egresses = vec![first];
    egresses.extend(futures_util::future::join_all(calls).await);
    let count = |k: Kind| egresses.iter().filter(|e| e.kind == k).count();
    row.split = format!(
        "{} Opus, {} VP8, {} H.264",
        count(Kind::Opus),
        count(Kind::Vp8),
        count(Kind::H264)
    );
    for e in &egresses {
        if let Err(error) = &e.started.result {
            row.start_errors += 1;
            eprintln!("bench-tracks: StartTrackEgress failed: {error}");
        }
    }
    let ids: Vec<String> = egresses
        .iter()
        .filter_map(|e| e.id().map(str::to_owned))
        .collect();
    let infos: HashMap<String, Value> = api::wait_until(
        &stack,
        ROOM,
        &ids,
        |i| status_of(i) >= status::ACTIVE,
        Duration::from_secs(180),
    )
    .await
    .into_iter()
    .collect();
    let burst: Vec<(&Egress, f64)> = egresses[1..]
        .iter()
        .filter_map(|e| Some((e, to_active(e, infos.get(e.id()?)?)?)))
        .collect();
    row.active = infos
        .values()
        .filter(|i| int(&i["file_results"][0]["started_at"]) > 0)
        .count();
    row.burst_all = quantiles(burst.iter().map(|(_, s)| *s).collect());
    row.burst_audio = quantiles(
        burst
            .iter()
            .filter(|(e, _)| !e.kind.is_video())
            .map(|(_, s)| *s)
            .collect(),
    );
    row.burst_video = quantiles(
        burst
            .iter()
            .filter(|(e, _)| e.kind.is_video())
            .map(|(_, s)| *s)
            .collect(),
    );
    row.twirp_call = quantiles(
        egresses[1..]
            .iter()
            .map(|e| (e.started.returned_ns - e.started.sent_ns) as f64 / 1e9)
            .collect(),
    );
    let last_active = infos
        .values()
        .map(|i| int(&i["file_results"][0]["started_at"]))
        .max()
        .unwrap_or(0);
    row.burst_span = (last_active - burst_at) as f64 / 1e9;
    row.running = infos
        .values()
        .filter(|i| status_of(i) == status::ACTIVE)
        .count();
    for (id, info) in &infos {
        if is_terminal(info) {
            eprintln!(
                "bench-tracks: {id} ended before the window: {} {}",
                status_of(info),
                info["error"]
            );
        }
    }

    // The steady state.
    tokio::time::sleep(WARM_UP).await;
    let publisher_pids = procfs::with_cmdline(&["room join", &http_url]);
    let (egress0, sfu0, pub0, threads0) = (
        procfs::tree(&[root]),
        procfs::tree(&[stack.livekit.pid()]),
        procfs::tree(&publisher_pids),
        thread_ticks(root),
    );
    let handler_pids: Vec<u32> = egress0
        .keys()
        .copied()
        .filter(|p| procfs::cmdline(*p).contains("run-handler"))
        .collect();
    // For profiling the window from another shell (perf record -p, /proc/PID/task, the log).
    eprintln!(
        "bench-tracks: {n}: measuring {seconds} s: egress service pid {root}, handler pids {handler_pids:?}, \
         livekit-server pid {}, egress log in {}",
        stack.livekit.pid(),
        stack.egress.dir().display()
    );
    let window = Instant::now();
    let (rss, pss, handlers) = sample_memory(root, window + Duration::from_secs(seconds)).await;
    let secs = window.elapsed().as_secs_f64();
    let (egress1, sfu1, pub1, threads1) = (
        procfs::tree(&[root]),
        procfs::tree(&[stack.livekit.pid()]),
        procfs::tree(&publisher_pids),
        thread_ticks(root),
    );
    row.egress_cores = procfs::cores(&egress0, &egress1, secs);
    row.sfu_cores = procfs::cores(&sfu0, &sfu1, secs);
    row.publisher_cores = procfs::cores(&pub0, &pub1, secs);
    (row.rss_kib, row.pss_kib, row.handlers) = (rss, pss, handlers);
    let hz = procfs::ticks_per_second();
    let mut threads: Vec<(String, f64)> = threads1
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                t.saturating_sub(*threads0.get(name).unwrap_or(&0)) as f64 / hz / secs,
            )
        })
        .filter(|(_, cores)| *cores > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads.truncate(8);
    row.threads = threads;

    // Stop them all at once and count what was delivered.
    let stops = ids.iter().map(|id| api::stop_egress(&stack, id));
    for error in futures_util::future::join_all(stops)
        .await
        .into_iter()
        .filter_map(Result::err)
    {
        eprintln!("bench-tracks: {error}");
    }
    let done = api::wait_until(&stack, ROOM, &ids, is_terminal, Duration::from_secs(180)).await;
    let kinds: HashMap<&str, Kind> = egresses
        .iter()
        .filter_map(|e| Some((e.id()?, e.kind)))
        .collect();
    for (id, info) in &done {
        match status_of(info) {
            status::COMPLETE => row.completed += 1,
            s if s > status::COMPLETE => {
                row.failed += 1;
                eprintln!(
                    "bench-tracks: {id} ended with status {s}: {}",
                    info["error"]
                );
            }
            _ => eprintln!(
                "bench-tracks: {id} still not finished (status {})",
                status_of(info)
            ),
        }
        let file = &info["file_results"][0];
        let size = int(&file["size"]).max(0) as u64;
        row.bytes += size;
        if let Some(kind) = kinds.get(id.as_str()) {
            let entry = row.recorded.entry(kind.name()).or_insert((0, 0.0));
            entry.0 += size;
            entry.1 += int(&file["duration"]) as f64 / 1e9;
        }
        let location = file["location"].as_str().unwrap_or_default();
        row.bytes_on_disk += std::fs::metadata(Path::new(location))
            .map(|m| m.len())
            .unwrap_or(0);
    }
    for p in publishers {
        p.stop().await;
    }
    row
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main]
async fn main() {
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let counts: Vec<usize> = arg("--counts")
        .unwrap_or_else(|| "10,100,300".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "bench-tracks: {cores} cores, egress {}, {seconds} s measured per count, track_cpu_cost {TRACK_CPU_COST} \
         (tiny, so one worker admits them all), tracks published: 4 Opus + 2 VP8 + 2 H.264 640x360@30 ~600 kbit/s",
        egress_e2e::egress_bin().display()
    );
    let media = Media::generate(seconds as u32 + MEDIA_MARGIN_SECS).await;
    let mut rows = Vec::new();
    for n in counts {
        eprintln!("bench-tracks: {n} track egresses ...");
        let row = run(n, seconds, &media).await;
        eprintln!("bench-tracks: {n}: where the egress tree's CPU went (cores, by thread name):");
        for (name, c) in &row.threads {
            eprintln!("    {c:.3}  {name}");
        }
        rows.push(row);
    }

    println!();
    println!(
        "Time to ACTIVE, seconds from the StartTrackEgress call returning to the egress's file started_at (median / p95 / max):"
    );
    println!();
    println!(
        "| egresses | split | cold (first alone) | burst, all | burst, audio | burst, video | StartTrackEgress call | burst → last ACTIVE | reached ACTIVE | start errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {} | {} | {} | {:.2} | {} | {} |",
            r.n,
            r.split,
            r.cold,
            fmt_q(r.burst_all),
            fmt_q(r.burst_audio),
            fmt_q(r.burst_video),
            fmt_q(r.twirp_call),
            r.burst_span,
            r.active,
            r.start_errors
        );
    }
    println!();
    println!(
        "Steady state over {seconds} s (egress tree = service + handler processes; per egress = tree / R, and (tree − idle service) / R, \
         R = egresses running, ACTIVE when the window began):"
    );
    println!();
    println!(
        "| egresses | running (R) | handler procs | egress CPU cores | mcores/egress | idle service cores | livekit-server cores | lk publishers cores | RSS MiB (idle) | PSS MiB (idle) | RSS/egress MiB | PSS/egress MiB | (RSS−idle)/R MiB | (PSS−idle)/R MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let n = r.running.max(1) as f64;
        println!(
            "| {} | {} | {} | {:.3} | {:.1} | {:.3} | {:.3} | {:.3} | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.n,
            r.running,
            r.handlers,
            r.egress_cores,
            r.egress_cores * 1000.0 / n,
            r.baseline_cores,
            r.sfu_cores,
            r.publisher_cores,
            mib(r.rss_kib),
            mib(r.baseline_rss_kib),
            mib(r.pss_kib),
            mib(r.baseline_pss_kib),
            mib(r.rss_kib) / n,
            mib(r.pss_kib) / n,
            mib(r.rss_kib.saturating_sub(r.baseline_rss_kib)) / n,
            mib(r.pss_kib.saturating_sub(r.baseline_pss_kib)) / n,
        );
    }
    println!();
    println!("After stopping all:");
    println!();
    println!(
        "| egresses | completed | failed | bytes (EgressInfo) | bytes on disk | recorded kbit/s per egress (bytes / file duration) |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let rates: Vec<String> = [Kind::Opus, Kind::Vp8, Kind::H264]
            .iter()
            .filter_map(|k| {
                let (bytes, secs) = r.recorded.get(k.name())?;
                (*secs > 0.0)
                    .then(|| format!("{} {:.0}", k.name(), *bytes as f64 * 8.0 / 1000.0 / secs))
            })
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.n,
            r.completed,
            r.failed,
            r.bytes,
            r.bytes_on_disk,
            rates.join(", ")
        );
    }
}
