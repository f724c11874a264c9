//! A stream output with a `ws://` URL on a composite (participant) egress end to end: a real
//! publisher with camera and microphone (`lk room join`), a participant egress whose only
//! output is the test's websocket receiver. As Go, the egress sends the mixed audio as raw PCM
//! (S16LE 48 kHz stereo, 20 ms binary messages) after an upgrade with `Content-Type:
//! audio/x-raw`, drops the video, and closes the connection at the end; checked as a consumer
//! would: the header, the message size, the byte rate, a tone that is not silent, the close,
//! and the final EgressInfo (COMPLETE, the stream FINISHED, no file).

use std::time::Duration;

use egress_e2e::hls::lk_join;
use egress_e2e::recording::*;
use egress_e2e::ws_receiver::{BYTES_PER_SECOND, receiver, rms};
use serde_json::json;

const RECORD_SECS: u64 = 5;
/// One message: 20 ms of S16LE 48 kHz stereo.
const MESSAGE_BYTES: usize = 3840;

#[tokio::test]
async fn a_participant_egress_sends_its_audio_to_a_websocket_as_pcm() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "ws-composite-room";
    let mut publisher = lk_join(&stack, room, "alice", 30, &[&media.video, &media.audio]);
    track_sid(&stack, room, "alice", "VIDEO").await;
    track_sid(&stack, room, "alice", "AUDIO").await;
    let (addr, received) = receiver().await;
    let url = format!("ws://{addr}/pcm");

    let request = json!({
        "room_name": room,
        "identity": "alice",
        "stream_outputs": [{ "urls": [url] }],
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    assert_eq!(
        active["stream_results"][0]["url"],
        url.as_str(),
        "{active:#}"
    );
    tokio::time::sleep(Duration::from_secs(RECORD_SECS)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(40)).await;
    let _ = publisher.kill().await;

    let r = received.lock().unwrap();
    assert_eq!(r.connections, 1);
    assert_eq!(r.content_type.as_deref(), Some("audio/x-raw"));
    let bytes = r.pcm.len();
    let sent_secs = bytes as f64 / BYTES_PER_SECOND;
    eprintln!(
        "websocket participant egress {id}: {bytes} bytes = {sent_secs:.3} s of PCM, {} messages",
        r.binary.len()
    );
    // Every message but the last (the rest at EOS) is 20 ms.
    let (last, whole) = r.binary.split_last().expect("no PCM was sent");
    assert!(
        whole.iter().all(|(_, n)| *n == MESSAGE_BYTES),
        "message sizes: {:?}",
        whole.iter().map(|(_, n)| n).collect::<Vec<_>>()
    );
    assert!(last.1 > 0 && last.1 <= MESSAGE_BYTES && last.1 % 4 == 0);
    assert!(
        sent_secs > RECORD_SECS as f64 - 1.0 && sent_secs < RECORD_SECS as f64 + 10.0,
        "{sent_secs:.3} s of PCM for about {RECORD_SECS} s recorded"
    );
    // The published file is a 440 Hz tone at about -3 dBFS; the first second may be the
    // mixer's silence before the track's audio comes in.
    let level = rms(&r.pcm[(BYTES_PER_SECOND as usize).min(r.pcm.len())..]);
    assert!(level > 1000.0, "the PCM is (nearly) silent: rms {level:.0}");
    assert!(r.closed, "no close message at the end");

    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    let stream = &done["stream_results"][0];
    assert_eq!(stream["url"], url.as_str(), "{done:#}");
    // StreamInfo.Status FINISHED = 1.
    assert_eq!(stream["status"], 1, "{done:#}");
    assert!(
        done["file_results"].as_array().is_none_or(Vec::is_empty),
        "no file for a websocket-only egress: {done:#}"
    );
}
