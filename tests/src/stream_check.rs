//! What a user checks on a stream a server received (a mediamtx or nginx-rtmp recording), with
//! ffprobe and ffmpeg: codecs, duration, whether it starts on a keyframe, decode errors, and
//! the keyframe interval. Stream-level facts ([`probe`]) come from `recording.rs`.
//! Recipes: `../shared/reference/streaming.md` §4.3.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

pub use crate::recording::{Probe, StreamProbe, probe};

/// (video codec, audio codec) of `file` as ffprobe names them (`h264`, `aac`), empty for a
/// missing stream.
pub async fn codecs(file: &Path) -> (String, String) {
    let p = probe(file).await;
    (
        p.video.map(|v| v.codec).unwrap_or_default(),
        p.audio.map(|a| a.codec).unwrap_or_default(),
    )
}

/// The container's duration in seconds (0 when ffprobe reports none).
pub async fn duration(file: &Path) -> f64 {
    probe(file).await.duration
}

/// Whether `actual` is within `fraction` (0.1 = 10 %) of `expected`.
pub fn within(actual: f64, expected: f64, fraction: f64) -> bool {
    (actual - expected).abs() <= expected.abs() * fraction
}

async fn run(program: &str, args: &[&str], file: &Path, tail: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .arg(file)
        .args(tail)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// The first video frame of a file.
#[derive(Debug, Clone)]
pub struct FirstFrame {
    /// The first video packet is flagged a keyframe and decodes, on its own, to a key frame.
    pub key_frame: bool,
    /// `I`, `P` or `B`; empty when the first packet does not decode on its own (a stream cut
    /// in mid-GOP: a player shows nothing, or grey, until the next keyframe).
    pub pict_type: String,
}

/// The first video frame of `file`: the first packet's flags (`ffprobe -show_packets`), and
/// what decoding it alone gives (`ffprobe -select_streams v -show_frames -read_intervals
/// %+#1`). Panics if the file has no video packet.
pub async fn first_video_frame(file: &Path) -> FirstFrame {
    let ffprobe_json = |entries: &'static [&'static str]| async move {
        let mut args = vec![
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
        ];
        args.extend_from_slice(entries);
        args.extend_from_slice(&["-of", "json"]);
        let out = run("ffprobe", &args, file, &[]).await;
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ffprobe of {}: not JSON ({e}): {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let packets = ffprobe_json(&["-show_packets", "-show_entries", "packet=flags"]).await;
    let flags = packets["packets"]
        .get(0)
        .and_then(|p| p["flags"].as_str())
        .unwrap_or_else(|| panic!("{} has no video packet", file.display()))
        .to_string();
    let frames =
        ffprobe_json(&["-show_frames", "-show_entries", "frame=key_frame,pict_type"]).await;
    let frame = frames["frames"].get(0);
    FirstFrame {
        key_frame: flags.starts_with('K')
            && frame.is_some_and(|f| f["key_frame"].as_i64() == Some(1)),
        pict_type: frame
            .and_then(|f| f["pict_type"].as_str())
            .unwrap_or_default()
            .to_string(),
    }
}

/// Whether the first video frame of `file` is a keyframe (what a viewer needs to see a
/// picture at once, rather than grey until the next one).
pub async fn starts_with_keyframe(file: &Path) -> bool {
    first_video_frame(file).await.key_frame
}

/// What `ffmpeg -v error -i file -f null -` says (empty when every frame decodes cleanly).
pub async fn decode_errors(file: &Path) -> String {
    let out = run(
        "ffmpeg",
        &["-v", "error", "-nostdin", "-i"],
        file,
        &["-f", "null", "-"],
    )
    .await;
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() && errors.is_empty() {
        errors = format!("ffmpeg exited with {}", out.status);
    }
    errors
}

/// The timestamps (seconds) of the video keyframes of `file`, in order.
pub async fn keyframe_times(file: &Path) -> Vec<f64> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=best_effort_timestamp_time",
            "-of",
            "csv=p=0",
        ],
        file,
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "ffprobe keyframes of {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .collect()
}

/// The longest gap between consecutive keyframes of `file` in seconds (`None` with fewer than
/// two keyframes). Compare with the configured interval plus one frame.
pub async fn max_keyframe_interval(file: &Path) -> Option<f64> {
    keyframe_times(file)
        .await
        .windows(2)
        .map(|w| w[1] - w[0])
        .reduce(f64::max)
}

/// How long a player reads `input` for (a file or an HLS playlist): the last `time=` of
/// `ffmpeg -i INPUT -c copy -f null -`. Panics when ffmpeg fails.
pub async fn copy_duration(input: &Path) -> f64 {
    let out = run(
        "ffmpeg",
        &["-hide_banner", "-nostats", "-stats", "-i"],
        input,
        &["-c", "copy", "-f", "null", "-"],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg -i {}: {err}", input.display());
    let t = err
        .rsplit("time=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no time= in ffmpeg's output: {err}"));
    t.split(':')
        .map(|p| p.parse::<f64>().unwrap_or(0.0))
        .fold(0.0, |acc, p| acc * 60.0 + p)
}

/// A stream's status as an operator reads it (`stream_results` in `lk egress list`), and a poll
/// of the egress until its info says something.
pub mod status {
    use std::time::Duration;

    use serde_json::Value;

    use crate::Lk;
    use crate::recording::egress_info;

    /// `StreamInfo.Status` values.
    pub const STREAM_ACTIVE: i64 = 0;
    pub const STREAM_FINISHED: i64 = 1;
    pub const STREAM_FAILED: i64 = 2;

    /// A `StreamInfo`'s status, whether lk printed the name or the number (-1: unknown).
    pub fn status(s: &Value) -> i64 {
        match &s["status"] {
            Value::String(t) => match t.as_str() {
                "ACTIVE" => STREAM_ACTIVE,
                "FINISHED" => STREAM_FINISHED,
                "FAILED" => STREAM_FAILED,
                _ => -1,
            },
            v => v.as_i64().unwrap_or(STREAM_ACTIVE),
        }
    }

    /// An integer field, whether lk printed it as a number or a string (0 when absent).
    pub fn int(v: &Value) -> i64 {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    }

    /// Polls the egress until `pred` holds for its info; panics with `what` and the last info
    /// after `timeout`.
    pub async fn wait_for(
        lk: &Lk,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(info) = egress_info(lk, id).await
                && pred(&info)
            {
                return info;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {timeout:?}: {:#}",
                egress_info(lk, id).await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
