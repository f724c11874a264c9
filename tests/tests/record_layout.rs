//! UpdateLayout end to end: a room composite of two publishers in distinct colours starts in
//! `grid`, is switched to `speaker` and then to `single-speaker-light` through livekit-server
//! (`lk egress update-layout`, which sets the recorder's participant metadata), and frames
//! from each stretch of the recording show that layout.
//!
//! Geometry (1280x720, style.css): grid puts two 16:9 tiles of 628x353 side by side, centred
//! vertically (y 183-536) on the dark background; speaker puts the first participant in a
//! main tile (x 225-1272, y 8-712) beside a carousel column (x 8-217) holding the other;
//! single-speaker shows only the first participant over the whole frame. The first
//! participant is a portrait camera, so it is shown whole with the theme's background on both
//! sides: white for `-light`.

use std::path::Path;
use std::time::Duration;

use egress_e2e::recording::*;
use serde_json::json;

const RED: [u8; 3] = [0xd0, 0x20, 0x20];
const BLUE: [u8; 3] = [0x20, 0x40, 0xd0];
const DARK: [u8; 3] = [0x11, 0x11, 0x11];
const WHITE: [u8; 3] = [0xff, 0xff, 0xff];
/// Largest per-channel difference still counted as the same colour (H.264 and scaling shift
/// solid colours a little).
const SAME: u8 = 40;
/// How long each layout is recorded.
const STRETCH_SECS: u64 = 4;
/// When to sample after a layout change (the page re-renders well within a second).
const SETTLE_SECS: f64 = 2.5;

async fn colour(file: &Path, at: f64, x: u32, y: u32) -> [u8; 3] {
    pixel(file, at, x - 8, y - 8, 16).await
}

fn is(colour: [u8; 3], want: [u8; 3]) -> bool {
    colour_distance(colour, want) < SAME
}

#[tokio::test]
async fn update_layout_switches_a_live_room_composite() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let room = "layout-room";
    let portrait = TestMedia::generate_coloured(90, 360, 640, 600, RED).await;
    let landscape = TestMedia::generate_coloured(90, 640, 360, 600, BLUE).await;
    // Red joins first, so it leads in speaker and single-speaker (no one speaks: join order
    // decides, and join times are kept in whole seconds).
    let red = Publisher::start(
        &stack.livekit,
        room,
        "red",
        &portrait.video,
        Some(30),
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let blue = Publisher::start(
        &stack.livekit,
        room,
        "blue",
        &landscape.video,
        Some(30),
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 2, Duration::from_secs(30)).await;

    let request = json!({ "room_name": room, "layout": "grid", "file_outputs": [{ "filepath": "layout/{room_name}.mp4" }] });
    let id = lk
        .egress_start_room_composite(&request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    let since_start = || (unix_nanos() - file_started) as f64 / 1e9;

    let mut changes = Vec::new();
    for layout in ["speaker", "single-speaker-light"] {
        tokio::time::sleep(Duration::from_secs(STRETCH_SECS)).await;
        changes.push(since_start());
        lk.run_ok(&["egress", "update-layout", "--id", &id, "--layout", layout])
            .await;
    }
    tokio::time::sleep(Duration::from_secs(STRETCH_SECS)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    red.stop().await;
    blue.stop().await;

    let file = Path::new(
        done["file_results"][0]["location"]
            .as_str()
            .expect("location"),
    )
    .to_owned();
    let p = probe(&file).await;
    assert!(
        p.duration > changes[1] + SETTLE_SECS + 0.5,
        "recorded {:.2}s, last change at {:.2}s",
        p.duration,
        changes[1]
    );

    // grid: two tiles side by side, dark above and below them.
    let at = changes[0] - 1.5;
    let (left, right) = (
        colour(&file, at, 322, 360).await,
        colour(&file, at, 958, 360).await,
    );
    assert!(
        (is(left, RED) && is(right, BLUE)) || (is(left, BLUE) && is(right, RED)),
        "grid at {at:.1}s: tiles {left:?} and {right:?}"
    );
    for (x, y) in [(748, 150), (748, 600)] {
        let c = colour(&file, at, x, y).await;
        assert!(
            is(c, DARK),
            "grid at {at:.1}s: ({x},{y}) should be the dark background, is {c:?}"
        );
    }

    // speaker: red large where the grid had background, blue in the carousel.
    let at = changes[0] + SETTLE_SECS;
    for (x, y) in [(748, 150), (748, 600)] {
        let c = colour(&file, at, x, y).await;
        assert!(
            is(c, RED),
            "speaker at {at:.1}s: ({x},{y}) should be the main speaker (red), is {c:?}"
        );
    }
    let c = colour(&file, at, 112, 360).await;
    assert!(
        is(c, BLUE),
        "speaker at {at:.1}s: the carousel should show blue, is {c:?}"
    );

    // single-speaker-light: only red, whole, on white; blue gone.
    let at = changes[1] + SETTLE_SECS;
    let c = colour(&file, at, 640, 400).await;
    assert!(
        is(c, RED),
        "single-speaker-light at {at:.1}s: the centre should be red, is {c:?}"
    );
    for (x, y) in [(200, 360), (1080, 360), (112, 360)] {
        let c = colour(&file, at, x, y).await;
        assert!(
            is(c, WHITE),
            "single-speaker-light at {at:.1}s: ({x},{y}) should be the light background, is {c:?}"
        );
    }

    let left = wait_no_processes(&id, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes of {id} still running: {left:?}");
}
