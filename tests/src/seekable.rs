//! What a player needs of a finished recording, checked as a user would: ffprobe reports its
//! duration in the format section (not `N/A`), seeking to its middle lands on a keyframe at most
//! one keyframe interval before the target, and, for WebM, the file is indexed (a SeekHead that
//! points at Cues, every element sized: what mkvinfo shows of a finished file).

use std::path::Path;

use tokio::process::Command;

/// Asserts that `file`, recorded for `recorded` seconds with a keyframe at least every
/// `keyframe_interval` seconds, is seekable: the format's duration within 0.5 s of `recorded`,
/// and a seek to the middle lands on a keyframe no more than one interval early. Returns the
/// format's duration.
pub async fn assert_seekable(file: &Path, recorded: f64, keyframe_interval: f64) -> f64 {
    let duration = format_duration(file).await.unwrap_or_else(|| {
        panic!(
            "ffprobe reports no duration in the format section of {}",
            file.display()
        )
    });
    assert!(
        (duration - recorded).abs() < 0.5,
        "{}: format duration {duration:.2} s, recorded {recorded:.2} s",
        file.display()
    );
    let middle = duration / 2.0;
    let (landed, keyframe) = seek(file, middle).await;
    assert!(
        keyframe,
        "seeking {} to {middle:.2} s landed on a frame that is not a keyframe (at {landed:.3} s)",
        file.display()
    );
    // A frame's length of slack: the keyframe may sit on the target's frame.
    assert!(
        landed <= middle + 0.05 && middle - landed <= keyframe_interval + 0.05,
        "seeking {} to {middle:.2} s landed at {landed:.3} s (keyframes every {keyframe_interval} s)",
        file.display()
    );
    if file.extension().is_some_and(|e| e == "webm") {
        assert_indexed_webm(file);
    }
    duration
}

/// The `duration` of ffprobe's format section, `None` when it says `N/A`.
pub async fn format_duration(file: &Path) -> Option<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .await
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Where a seek to `at` seconds lands, as a player seeks (ffprobe `-read_intervals`, which seeks
/// back to the keyframe at or before `at`): the first video packet's time (the first packet's,
/// without video) and whether it is a keyframe.
pub async fn seek(file: &Path, at: f64) -> (f64, bool) {
    let streams = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .await
        .expect("run ffprobe");
    let has_video = String::from_utf8_lossy(&streams.stdout).contains("video");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-read_intervals", &format!("{at:.3}%+#1")])
        .args(if has_video {
            &["-select_streams", "v:0"][..]
        } else {
            &[][..]
        })
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .await
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_else(|| {
        panic!(
            "seeking {} to {at:.2} s read no packet: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let (pts, flags) = first.split_once(',').unwrap_or((first, ""));
    let pts = pts
        .parse()
        .unwrap_or_else(|_| panic!("no packet time in {first:?}"));
    (pts, flags.starts_with('K'))
}

/// Asserts that a WebM is indexed as a finished file is: its Segment's top level, walked by the
/// element sizes, has a SeekHead that lists the Cues, the Cues themselves, and no element of
/// unknown size (a live, append-only file has Clusters of unknown size and neither of the two).
/// IDs and sizes are EBML variable-length integers (RFC 8794 §4); only they are read.
pub fn assert_indexed_webm(file: &Path) {
    const SEGMENT: u64 = 0x1853_8067;
    const SEEK_HEAD: u64 = 0x114D_9B74;
    const CUES: u64 = 0x1C53_BB6B;
    const SEEK_ID: [u8; 3] = [0x53, 0xAB, 0x84];
    let bytes = std::fs::read(file).expect("read the WebM");
    let name = file.display();
    // (value, length); the ID keeps its marker bit, a size loses it; None for "unknown".
    let vint = |at: usize, keep_marker: bool| -> (Option<u64>, usize) {
        let first = bytes[at];
        let len = first.leading_zeros() as usize + 1;
        assert!(len <= 8, "{name}: no EBML number at byte {at}");
        let first = if keep_marker {
            u64::from(first)
        } else {
            u64::from(first) & (0xFF >> len)
        };
        let value = bytes[at + 1..at + len]
            .iter()
            .fold(first, |v, b| (v << 8) | u64::from(*b));
        let unknown = !keep_marker && value == (1u64 << (7 * len)) - 1;
        ((!unknown).then_some(value), len)
    };
    let header = |at: usize| {
        let (id, id_len) = vint(at, true);
        let (size, size_len) = vint(at + id_len, false);
        (id.unwrap_or(0), at + id_len + size_len, size)
    };
    let (_, ebml_data, ebml_size) = header(0);
    let (segment, mut at, size) = header(ebml_data + ebml_size.expect("EBML header size") as usize);
    assert_eq!(segment, SEGMENT, "{name}: no Segment after the EBML header");
    assert!(size.is_some(), "{name}: the Segment's size is unknown");
    let (mut seek_head_lists_cues, mut cues) = (false, false);
    while at < bytes.len() {
        let (id, data, size) = header(at);
        let Some(size) = size else {
            panic!("{name}: element {id:#x} at byte {at} has an unknown size");
        };
        let end = data + size as usize;
        assert!(
            end <= bytes.len(),
            "{name}: element {id:#x} at byte {at} is cut off"
        );
        if id == SEEK_HEAD {
            seek_head_lists_cues = bytes[data..end]
                .windows(7)
                .any(|w| w[..3] == SEEK_ID && w[3..] == [0x1C, 0x53, 0xBB, 0x6B]);
        }
        cues |= id == CUES && size > 0;
        at = end;
    }
    assert!(cues, "{name}: no Cues");
    assert!(
        seek_head_lists_cues,
        "{name}: no SeekHead entry for the Cues"
    );
}
