//! The websocket output of track egress end to end: a real room with an Opus tone published by
//! `lk room join --publish`, a `TrackEgressRequest` with `websocket_url` started over Twirp
//! (`StartTrackEgress`, whose STARTING info must already list the stream, as Go's does), and a
//! websocket server in the test that records what the egress sends (the upgrade's headers, the
//! PCM, the text and close messages), checked the way a consumer would: the header, the byte
//! rate against the active span, a tone that is not silent, the mute message and the final
//! EgressInfo. A video track and an unreachable receiver fail with Go's errors.

use std::time::Duration;

use egress_e2e::recording::*;
use egress_e2e::ws_receiver::{BYTES_PER_SECOND, receiver, rms};
use serde_json::{Value, json};

const RECORD_SECS: f64 = 5.0;
const RATE_TOLERANCE_SECS: f64 = 0.3;

#[tokio::test]
async fn an_opus_track_is_sent_to_a_websocket_as_pcm() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "ws-track-room";
    let audio = Publisher::start(
        &stack.livekit,
        room,
        "microphone",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 1, Duration::from_secs(30)).await;
    let sid = track_sid(&stack, room, "microphone", "AUDIO").await;
    let (addr, received) = receiver().await;
    let url = format!("ws://{addr}/pcm");

    // Started over Twirp to see the info StartTrackEgress returns (the STARTING one, which
    // livekit-server also stores): Go lists the websocket as an ACTIVE stream from the start.
    let request = json!({ "room_name": room, "track_id": sid, "websocket_url": url });
    let (code, starting) = twirp(
        &stack.livekit,
        "Egress/StartTrackEgress",
        json!({ "roomRecord": true }),
        &request,
    )
    .await;
    assert_eq!(code, 200, "StartTrackEgress: {starting}");
    // Twirp JSON: proto field names, enums by name, int64 as strings.
    assert_eq!(starting["status"], "EGRESS_STARTING", "{starting:#}");
    let listed = &starting["stream_results"];
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "no stream in the STARTING info: {starting:#}"
    );
    assert_eq!(listed[0]["url"], url.as_str(), "{starting:#}");
    assert_eq!(listed[0]["status"], "ACTIVE", "{starting:#}");
    let listed_at: i64 = listed[0]["started_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(
        listed_at > 0,
        "no started_at in the STARTING stream: {starting:#}"
    );
    assert_eq!(
        starting["stream"]["info"], *listed,
        "the deprecated result for older clients: {starting:#}"
    );
    let id = starting["egress_id"]
        .as_str()
        .expect("egress_id")
        .to_owned();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    let stream = &active["stream_results"][0];
    assert_eq!(stream["url"], url.as_str(), "{active:#}");
    let started_at = stream["started_at"]
        .as_i64()
        .expect("stream started_at when ACTIVE");

    // Record for about 5 s, then mute the track: livekit-server stops forwarding it and tells
    // the subscribers, so the receiver gets `{"muted":true}` and no more PCM.
    let mute_at = started_at + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((mute_at - unix_nanos()).max(0) as u64)).await;
    let muted_at = unix_nanos();
    let bytes = received.lock().unwrap().bytes_until(muted_at);
    let span = (muted_at - started_at) as f64 / 1e9;
    let (code, body) = twirp(
        &stack.livekit,
        "RoomService/MutePublishedTrack",
        json!({ "roomAdmin": true, "room": room }),
        &json!({ "room": room, "identity": "microphone", "track_sid": sid, "muted": true }),
    )
    .await;
    assert_eq!(code, 200, "MutePublishedTrack: {body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !received
        .lock()
        .unwrap()
        .texts
        .iter()
        .any(|t| t.contains("muted"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no mute message: {:?}",
            received.lock().unwrap().texts
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(30)).await;
    audio.stop().await;

    let r = received.lock().unwrap();
    assert_eq!(r.connections, 1);
    assert_eq!(r.content_type.as_deref(), Some("audio/x-raw"));
    let sent_secs = bytes as f64 / BYTES_PER_SECOND;
    eprintln!(
        "websocket track egress {id}: {bytes} bytes = {sent_secs:.3} s of PCM over {span:.3} s active, {} messages",
        r.binary.len()
    );
    assert!(
        (sent_secs - span).abs() < RATE_TOLERANCE_SECS,
        "{sent_secs:.3} s of PCM in {span:.3} s"
    );
    assert!(
        r.binary.iter().all(|(_, n)| *n > 0 && n % 4 == 0),
        "a message splits a stereo sample"
    );
    // Skip the decoder's first 100 ms; the published file is a 440 Hz tone at about -3 dBFS.
    let level = rms(&r.pcm[(BYTES_PER_SECOND as usize / 10).min(r.pcm.len())..]);
    assert!(level > 1000.0, "the PCM is (nearly) silent: rms {level:.0}");
    let mutes: Vec<Value> = r
        .texts
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    assert_eq!(
        mutes,
        vec![json!({ "muted": true })],
        "text messages: {:?}",
        r.texts
    );
    assert!(r.closed, "no close message at the end");

    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    let stream = &done["stream_results"][0];
    assert_eq!(stream["url"], url.as_str(), "{done:#}");
    // StreamInfo.Status FINISHED = 1.
    assert_eq!(stream["status"], 1, "{done:#}");
    assert!(
        stream["duration"].as_i64().unwrap_or(0) > (RECORD_SECS - 1.0) as i64 * 1_000_000_000,
        "{done:#}"
    );
    assert!(
        done["file_results"].as_array().is_none_or(Vec::is_empty),
        "{done:#}"
    );
}

#[tokio::test]
async fn a_video_track_or_an_unreachable_websocket_fails_with_the_go_error() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "ws-fail-room";
    let publisher = Publisher::start(
        &stack.livekit,
        room,
        "camera",
        &media.video,
        Some(30),
        stack.egress.dir(),
    );
    let audio = Publisher::start(
        &stack.livekit,
        room,
        "microphone",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 2, Duration::from_secs(30)).await;
    let video_sid = track_sid(&stack, room, "camera", "VIDEO").await;
    let audio_sid = track_sid(&stack, room, "microphone", "AUDIO").await;
    let (addr, received) = receiver().await;

    let request = json!({ "room_name": room, "track_id": video_sid, "websocket_url": format!("ws://{addr}/pcm") });
    let started = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start");
    let (failed, _) = wait_for_status(
        &lk,
        &started.egress_id,
        status::FAILED,
        Duration::from_secs(45),
    )
    .await;
    assert_eq!(
        failed["error"], "format websocket incompatible with codec video/h264",
        "{failed:#}"
    );
    assert_eq!(
        received.lock().unwrap().connections,
        0,
        "the receiver was dialled for a video track"
    );

    // A port nobody listens on: bind one, then free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let request = json!({ "room_name": room, "track_id": audio_sid, "websocket_url": format!("ws://{closed}/pcm") });
    let started = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start");
    let (failed, _) = wait_for_status(
        &lk,
        &started.egress_id,
        status::FAILED,
        Duration::from_secs(45),
    )
    .await;
    assert_eq!(
        failed["error"],
        format!("dial tcp {closed}: connect: connection refused"),
        "{failed:#}"
    );
    assert_eq!(
        failed["stream_results"][0]["status"], 2,
        "stream FAILED: {failed:#}"
    );

    publisher.stop().await;
    audio.stop().await;
}
