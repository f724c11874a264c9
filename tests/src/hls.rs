//! What a user checks on HLS segments and images an egress stored, shared by the segments
//! tests (`record_segments.rs`, `segments_settings.rs`, …): playlists parsed by a player
//! library (m3u8-rs) and checked against RFC 8216 with the host's own checker, MPEG-TS
//! segments that start with PAT/PMT and a keyframe, image size and brightness with ffprobe;
//! and a publisher that joins with `lk room join --publish`.

use std::path::Path;
use std::process::Stdio;

use egress_host::outputs::segments::check::{ParsedPlaylist, check_playlist};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::recording::RecordingStack;

/// `lk room join --identity IDENTITY --fps FPS --publish …` in the background (killed on
/// drop), logging beside the egress.
pub fn lk_join(
    stack: &RecordingStack,
    room: &str,
    identity: &str,
    fps: u32,
    publish: &[&Path],
) -> Child {
    let log = std::fs::File::create(stack.egress.dir().join(format!("publisher-{identity}.log")))
        .expect("publisher log");
    let livekit = &stack.livekit;
    let mut cmd = Command::new(crate::find_binary("lk"));
    cmd.args([
        "--url",
        &livekit.http_url(),
        "--api-key",
        livekit.api_key(),
        "--api-secret",
        livekit.api_secret(),
    ])
    .args([
        "room",
        "join",
        "--identity",
        identity,
        "--fps",
        &fps.to_string(),
    ]);
    for p in publish {
        cmd.arg("--publish").arg(p);
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

/// Whether a TS file has a PAT and the PMT it points to.
pub fn has_pat_and_pmt(ts: &[u8]) -> bool {
    let mut pmt_pid = None;
    for p in ts.chunks_exact(188) {
        if p[0] != 0x47 {
            return false;
        }
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let start = p[1] & 0x40 != 0;
        let payload_at = if p[3] & 0x20 != 0 {
            5 + usize::from(p[4])
        } else {
            4
        };
        if pid == 0 && start && pmt_pid.is_none() {
            // Pointer field, then the PAT section: 8 header bytes, then the program entries.
            let s = payload_at + 1 + usize::from(p[payload_at]);
            let Some(entry) = p.get(s + 8..s + 12) else {
                return false;
            };
            pmt_pid = Some((u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]));
        } else if Some(pid) == pmt_pid && start {
            return true;
        }
    }
    false
}

/// `ffprobe -v error ARGS INPUT`, stdout (the test fails when ffprobe does).
pub async fn ffprobe(args: &[&str], input: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(input)
        .output()
        .await
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {args:?} {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags of the first video packet (`K` for a keyframe).
pub async fn first_video_packet_flags(ts: &Path) -> String {
    ffprobe(
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
        ts,
    )
    .await
}

/// Width and height of an image.
pub async fn dimensions(path: &Path) -> (u32, u32) {
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
    )
    .await;
    let mut it = wh
        .trim()
        .split(',')
        .map(|v| v.parse::<u32>().expect("a number"));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Mean luma (0–255) of an image.
pub async fn mean_luma(path: &Path) -> f64 {
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
    )
    .await;
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("YAVG from {out:?}"))
}

/// Checks a playlist text on its own (RFC 8216 by the host's checker, and m3u8-rs reads the
/// same segments and end); returns it parsed.
pub fn valid_playlist(text: &str, what: &str) -> ParsedPlaylist {
    let (parsed, violations) = check_playlist(text);
    assert!(
        violations.is_empty(),
        "{what} breaks RFC 8216: {violations:?}\n{text}"
    );
    let m3u8 = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: m3u8-rs: {e:?}\n{text}"));
    assert_eq!(
        m3u8.segments.len(),
        parsed.segments.len(),
        "{what}: m3u8-rs sees the same segments"
    );
    assert_eq!(m3u8.end_list, parsed.end_list);
    parsed
}

/// Checks every segment `playlist` lists in `dir`: stored, PAT and PMT, a keyframe first (when
/// `video`). Returns their total size.
pub async fn check_segments(playlist: &ParsedPlaylist, dir: &Path, video: bool) -> u64 {
    let mut size = 0u64;
    for s in &playlist.segments {
        let path = dir.join(&s.uri);
        let ts =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{} listed but not stored: {e}", s.uri));
        size += ts.len() as u64;
        assert!(has_pat_and_pmt(&ts), "{}: PAT and PMT", s.uri);
        if video {
            let flags = first_video_packet_flags(&path).await;
            assert!(
                flags.trim_start().starts_with('K'),
                "{} starts with a keyframe: {flags:?}",
                s.uri
            );
        }
    }
    size
}

/// A protobuf int64 as `lk … --json` prints it (a number or a string).
pub fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// The audio of `input` (a file or a playlist) as a player reads it: the first packet's time,
/// the span its packets cover, and every hole between two packets (where the next starts more
/// than `tolerance` after the previous one ended), as (at seconds, length seconds).
pub struct AudioTimeline {
    pub first_pts: f64,
    pub covered: f64,
    pub holes: Vec<(f64, f64)>,
    pub packets: usize,
}

pub async fn audio_timeline(input: &Path, tolerance: f64) -> AudioTimeline {
    let out = ffprobe(
        &[
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ],
        input,
    )
    .await;
    let mut packets: Vec<(f64, f64)> = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            let pts = it.next()?.trim().parse().ok()?;
            let dur = it.next()?.trim().parse().ok()?;
            Some((pts, dur))
        })
        .collect();
    packets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut holes = Vec::new();
    let mut covered = 0.0;
    for w in packets.windows(2) {
        let (pts, dur) = w[0];
        let gap = w[1].0 - (pts + dur);
        if gap > tolerance {
            holes.push((pts + dur, gap));
        }
    }
    for (_, dur) in &packets {
        covered += dur;
    }
    AudioTimeline {
        first_pts: packets.first().map(|p| p.0).unwrap_or(0.0),
        covered,
        holes,
        packets: packets.len(),
    }
}

/// Silences in the decoded audio of `input` (quieter than `noise_db` for at least `min_secs`),
/// as (start, end) seconds from ffmpeg's silencedetect; an open silence ends at `f64::MAX`.
pub async fn silences(input: &Path, noise_db: f64, min_secs: f64) -> Vec<(f64, f64)> {
    let filter = format!("silencedetect=noise={noise_db}dB:d={min_secs}");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(input)
        .args(["-vn", "-af", &filter, "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg silencedetect: {err}");
    let value = |line: &str, key: &str| -> Option<f64> {
        line.split(key)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let mut found = Vec::new();
    let mut start = None;
    for line in err.lines() {
        if let Some(s) = value(line, "silence_start: ") {
            start = Some(s);
        } else if let Some(e) = value(line, "silence_end: ") {
            found.push((start.take().unwrap_or(0.0), e));
        }
    }
    if let Some(s) = start {
        found.push((s, f64::MAX));
    }
    found
}

/// (frames, seconds) of the video of one segment, as ffprobe counts and times its packets.
pub async fn video_frames_and_span(ts: &Path) -> (usize, f64) {
    let out = ffprobe(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ],
        ts,
    )
    .await;
    let mut pts: Vec<f64> = out
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    pts.sort_by(f64::total_cmp);
    let span = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    (pts.len(), span)
}
