//! The live-stream test servers themselves, without the egress: GStreamer (`gst-launch-1.0`,
//! the elements an egress would use) pushes a few seconds of H.264 + AAC to mediamtx over RTMP,
//! RTMPS and SRT, and to nginx-rtmp; the recordings are checked as a user would (codecs,
//! duration, first frame a keyframe, clean decode), and kicks, restarts and toxiproxy's
//! blackhole and stall do what the stream tests will rely on.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use egress_e2e::mediamtx::{Protocol, recording_gaps};
use egress_e2e::stream_check::{
    codecs, decode_errors, duration, first_video_frame, max_keyframe_interval, within,
};
use egress_e2e::{MediaMtx, MediaMtxOptions, NginxRtmp, Toxiproxy};
use tokio::process::{Child, Command};

const FPS: u32 = 30;
/// The test source's keyframe interval, in frames (1 s).
const GOP: u32 = 30;
const SRT_PASSPHRASE: &str = "correct-horse-battery";
const WAIT: Duration = Duration::from_secs(15);

/// A gst-launch description of `seconds` of 320x240@30 H.264 (a keyframe each second) and
/// 48 kHz stereo AAC, into the muxer named `mux`. The sources are not live: the muxer then
/// waits for both streams and interleaves them exactly, and the sink (rtmp2sink and srtsink
/// sync on the clock) paces the push in real time. (With live sources flvmux writes whichever
/// stream is ready when its latency, 0 by default, runs out, and clamps audio that arrives
/// after a later video frame to that frame's time: duplicate AAC timestamps, which ffmpeg
/// reports as "non monotonically increasing dts"; `latency=100000000` mostly, not always,
/// avoided it on a loaded host.)
fn av_source(seconds: u32) -> String {
    // 480 samples = 10 ms of audio per buffer.
    format!(
        "videotestsrc num-buffers={video} pattern=ball \
         ! video/x-raw,width=320,height=240,framerate={FPS}/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={GOP} bitrate=400 threads=1 \
         ! h264parse ! queue ! mux. \
         audiotestsrc num-buffers={audio} samplesperbuffer=480 \
         ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! queue ! mux.",
        video = seconds * FPS,
        audio = seconds * 100,
    )
}

/// FLV over RTMP(S) to `url`, with extra `rtmp2sink` properties.
fn rtmp_push(url: &str, sink_props: &str, seconds: u32) -> String {
    format!(
        "flvmux name=mux streamable=true ! rtmp2sink location={url} {sink_props} {}",
        av_source(seconds)
    )
}

/// MPEG-TS over SRT (caller) to `uri`. srtsink holds the stream until it is connected (with
/// `wait-for-connection=false` it drops what comes before, the first keyframe included).
fn srt_push(uri: &str, seconds: u32) -> String {
    format!(
        "mpegtsmux name=mux alignment=7 ! srtsink uri={uri} {}",
        av_source(seconds)
    )
}

/// Starts `gst-launch-1.0` on `description` (its tokens have no spaces: URIs go as they are).
fn spawn_push(description: &str) -> Child {
    Command::new("gst-launch-1.0")
        .args(description.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run gst-launch-1.0 (Debian gstreamer1.0-tools)")
}

struct Pushed {
    ok: bool,
    /// stdout and stderr: gst-launch prints element errors on either.
    output: String,
    took: Duration,
}

/// Waits up to `timeout` for a push to end.
async fn finish(child: Child, started: Instant, timeout: Duration) -> Pushed {
    let out: Output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("gst-launch did not end within {timeout:?}"))
        .expect("wait for gst-launch");
    Pushed {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took: started.elapsed(),
    }
}

/// Runs a push to its end (at most its length plus 20 s).
async fn push(description: String, seconds: u32) -> Pushed {
    let started = Instant::now();
    finish(
        spawn_push(&description),
        started,
        Duration::from_secs(u64::from(seconds) + 20),
    )
    .await
}

/// What a user checks on a received recording of a `seconds`-long push: H.264 + AAC, its
/// duration within `tolerance`, a keyframe first, every frame decodable, keyframes at most a
/// GOP (plus a frame) apart.
async fn assert_good_recording(file: &Path, seconds: f64, tolerance: f64) {
    let what = file.display();
    assert_eq!(
        codecs(file).await,
        ("h264".to_string(), "aac".to_string()),
        "{what}: codecs"
    );
    let d = duration(file).await;
    assert!(
        within(d, seconds, tolerance),
        "{what}: {d:.3} s recorded for a {seconds} s push"
    );
    let first = first_video_frame(file).await;
    assert!(
        first.key_frame,
        "{what}: the first video frame is not a keyframe: {first:?}"
    );
    let errors = decode_errors(file).await;
    assert!(errors.is_empty(), "{what}: decode errors: {errors}");
    let max_gap = max_keyframe_interval(file)
        .await
        .unwrap_or_else(|| panic!("{what}: fewer than two keyframes"));
    let limit = f64::from(GOP + 1) / f64::from(FPS) + 0.01;
    assert!(
        max_gap <= limit,
        "{what}: keyframes {max_gap:.3} s apart (limit {limit:.3} s)"
    );
}

/// RTMP and RTMPS to mediamtx are recorded intact; RTMPS is refused at once by a client that
/// does not trust the test CA, and accepted with full verification by one that does.
#[tokio::test]
async fn mediamtx_records_rtmp_and_rtmps() {
    let mtx = MediaMtx::start().await;
    let (rtmp, rtmps) = tokio::join!(
        push(rtmp_push(&mtx.rtmp_url("live/rtmp"), "", 4), 4),
        // GLib's TLS checks everything unless told otherwise; 0 turns validation off.
        push(
            rtmp_push(&mtx.rtmps_url("live/rtmps"), "tls-validation-flags=0", 4),
            4
        ),
    );
    assert!(rtmp.ok, "RTMP push failed:\n{}", rtmp.output);
    assert!(
        rtmps.ok,
        "RTMPS push (no validation) failed:\n{}",
        rtmps.output
    );

    // The test CA is not in the system's store: a validating client rejects the certificate
    // before publishing anything (a permanent error for an egress).
    let refused = push(rtmp_push(&mtx.rtmps_url("live/untrusted"), "", 3), 3).await;
    assert!(
        !refused.ok,
        "an RTMPS push with default validation succeeded against the test CA"
    );
    assert!(
        refused.output.contains("Unacceptable TLS certificate"),
        "RTMPS refusal without the TLS error:\n{}",
        refused.output
    );
    assert!(
        refused.took < Duration::from_secs(2),
        "the TLS refusal took {:?}",
        refused.took
    );

    let recorded = mtx.wait_for_recordings("live/rtmp", 1, WAIT).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_good_recording(&recorded[0], 4.0, 0.10).await;
    let recorded_tls = mtx.wait_for_recordings("live/rtmps", 1, WAIT).await;
    assert_eq!(recorded_tls.len(), 1, "{recorded_tls:?}");
    assert_good_recording(&recorded_tls[0], 4.0, 0.10).await;
    assert!(mtx.recordings("live/untrusted").is_empty());

    // A client that trusts the CA (ffmpeg, GnuTLS, verifying chain and the 127.0.0.1 name)
    // publishes; trusting another CA, it is refused.
    // (3 s: mediamtx records an RTMP publish only once it has read 2 s of it.)
    let ffmpeg_rtmps = |ca: &Path, path: &str| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error", "-nostdin", "-re", "-t", "3", "-i"])
            .arg(&recorded[0])
            .args(["-c", "copy", "-f", "flv", "-tls_verify", "1", "-ca_file"])
            .arg(ca)
            .arg(mtx.rtmps_url(path))
            .stdin(Stdio::null());
        cmd
    };
    let trusted = ffmpeg_rtmps(mtx.ca_pem(), "live/trusted")
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        trusted.status.success(),
        "ffmpeg trusting the test CA: {}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let other = ffmpeg_rtmps(mtx.untrusted_ca_pem(), "live/other-ca")
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        !other.status.success(),
        "ffmpeg trusting an unrelated CA published over RTMPS"
    );
    let trusted_rec = mtx.wait_for_recordings("live/trusted", 1, WAIT).await;
    assert_eq!(
        codecs(&trusted_rec[0]).await,
        ("h264".to_string(), "aac".to_string())
    );
    assert!(mtx.recordings("live/other-ca").is_empty());
}

/// SRT with the path's passphrase is recorded; a wrong or missing passphrase is refused at
/// once; a kicked SRT publisher (GStreamer's srtsink) reconnects by itself into a new recording.
#[tokio::test]
async fn mediamtx_srt_passphrase_and_kick() {
    let mut mtx = MediaMtx::start_with(
        MediaMtxOptions::default().srt_publish_passphrase("live/srt", SRT_PASSPHRASE),
    )
    .await;
    let good = push(
        srt_push(&mtx.srt_url("live/srt", Some(SRT_PASSPHRASE)), 4),
        4,
    )
    .await;
    assert!(
        good.ok,
        "SRT push with the passphrase failed:\n{}",
        good.output
    );

    for (what, passphrase) in [
        ("a wrong passphrase", Some("not-the-passphrase")),
        ("no passphrase", None),
    ] {
        let refused = push(srt_push(&mtx.srt_url("live/srt", passphrase), 3), 3).await;
        assert!(!refused.ok, "SRT push with {what} succeeded");
        assert!(
            refused.took < Duration::from_secs(2),
            "SRT with {what} failed only after {:?}",
            refused.took
        );
    }
    assert!(
        mtx.log().contains("invalid passphrase"),
        "mediamtx did not log the refusal:\n{}",
        mtx.log()
    );

    let recorded = mtx.wait_for_recordings("live/srt", 1, WAIT).await;
    assert_eq!(
        recorded.len(),
        1,
        "only the good push is recorded: {recorded:?}"
    );
    // The sender closes without lingering, so the tail of the stream may be lost (≈0.2 s here).
    assert_good_recording(&recorded[0], 4.0, 0.10).await;

    // Kick an SRT publisher mid-stream: srtsink reconnects, and mediamtx starts a new recording.
    let started = Instant::now();
    let pusher = spawn_push(&srt_push(&mtx.srt_url("live/srt-kick", None), 6));
    let conn = mtx.wait_for_publisher("live/srt-kick", WAIT).await;
    assert_eq!(conn.protocol, Protocol::Srt);
    assert!(
        mtx.srt_conns()
            .await
            .iter()
            .any(|c| c.id == conn.id && c.is_publishing())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    mtx.kick_srt(&conn.id).await;
    let pushed = finish(pusher, started, WAIT).await;
    assert!(
        pushed.ok,
        "srtsink did not ride out the kick:\n{}",
        pushed.output
    );
    let recorded = mtx.wait_for_recordings("live/srt-kick", 2, WAIT).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    // Not checked further: srtsink resumes the MPEG-TS mid-stream, and the second recording
    // has had undecodable H.264 at its start ("sps_id out of range"). An egress must restart
    // its stream on a keyframe after a reconnect; this sender does not.
}

/// An RTMP publisher kicked through the API gets an error at once; its next publish is a new
/// recording that starts on a keyframe; mediamtx restarts on the same ports and recordings dir.
#[tokio::test]
async fn mediamtx_kick_and_restart() {
    let mut mtx = MediaMtx::start().await;
    let path = "live/kick";
    let started = Instant::now();
    let first = spawn_push(&rtmp_push(&mtx.rtmp_url(path), "", 30));
    let conn = mtx.wait_for_publisher(path, WAIT).await;
    assert_eq!(conn.protocol, Protocol::Rtmp);
    assert_eq!(mtx.publishers().await.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        mtx.bytes_received(path).await > 10_000,
        "{:?}",
        mtx.path(path).await
    );
    let kicked_at = Instant::now();
    let kicked = mtx.kick_publisher(path).await;
    assert_eq!(kicked.id, conn.id);
    let first = finish(first, started, Duration::from_secs(5)).await;
    assert!(!first.ok, "the kicked push ended well");
    assert!(
        first.output.contains("connection closed remotely"),
        "kicked push:\n{}",
        first.output
    );
    assert!(
        kicked_at.elapsed() < Duration::from_secs(2),
        "the kick took {:?} to reach the client",
        kicked_at.elapsed()
    );

    // 4 s: mediamtx reads 2 s of an RTMP stream before it records it, and a publish that
    // ends soon after that loses its tail (a 2 s push recorded 1 s).
    let second = push(rtmp_push(&mtx.rtmp_url(path), "", 4), 4).await;
    assert!(second.ok, "push after the kick failed:\n{}", second.output);
    let recorded = mtx.wait_for_recordings(path, 2, WAIT).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_good_recording(&recorded[1], 4.0, 0.10).await;
    let gaps = recording_gaps(&recorded).await;
    assert!(
        gaps[0] > 0.0 && gaps[0] < 10.0,
        "gap between the recordings: {gaps:?}"
    );

    let port = mtx.rtmp_port();
    mtx.restart().await;
    assert_eq!(mtx.rtmp_port(), port);
    let third = push(rtmp_push(&mtx.rtmp_url(path), "", 4), 4).await;
    assert!(third.ok, "push after the restart failed:\n{}", third.output);
    let recorded = mtx.wait_for_recordings(path, 3, WAIT).await;
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    assert_good_recording(&recorded[2], 4.0, 0.10).await;
}

/// A live RTMP push through toxiproxy to mediamtx.
struct Proxied {
    mtx: MediaMtx,
    toxiproxy: Toxiproxy,
    url: String,
    pusher: Child,
    started: Instant,
}

const PROXIED_PATH: &str = "live/proxied";

/// mediamtx and toxiproxy, and a 20 s push through the proxy `rtmp`, publishing.
async fn proxied_push() -> Proxied {
    let mut mtx = MediaMtx::start().await;
    let toxiproxy = Toxiproxy::start().await;
    let listen = toxiproxy
        .proxy("rtmp", &format!("127.0.0.1:{}", mtx.rtmp_port()))
        .await;
    let url = format!("rtmp://{listen}/{PROXIED_PATH}");
    let started = Instant::now();
    let pusher = spawn_push(&rtmp_push(&url, "", 20));
    mtx.wait_for_publisher(PROXIED_PATH, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Proxied {
        mtx,
        toxiproxy,
        url,
        pusher,
        started,
    }
}

impl Proxied {
    /// Asserts that no byte reaches mediamtx for 2 s while the push goes on without an error.
    async fn assert_nothing_arrives(&mut self) -> u64 {
        // What was in flight when the toxic went in may still land.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = self.mtx.bytes_received(PROXIED_PATH).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            self.mtx.bytes_received(PROXIED_PATH).await,
            before,
            "bytes got through"
        );
        assert!(
            self.pusher.try_wait().expect("poll gst-launch").is_none(),
            "the push ended: it should not notice"
        );
        assert!(
            self.mtx.publisher(PROXIED_PATH).await.is_some(),
            "mediamtx dropped the publisher"
        );
        before
    }
}

/// A blackhole: the push goes on without an error while mediamtx receives nothing; lifting
/// it closes the black-holed connection (toxiproxy does), and a new one goes through.
#[tokio::test]
async fn toxiproxy_blackhole_drops_a_push() {
    let mut p = proxied_push().await;
    p.toxiproxy.blackhole("rtmp").await;
    p.assert_nothing_arrives().await;

    p.toxiproxy.restore("rtmp").await;
    let cut = finish(p.pusher, p.started, Duration::from_secs(5)).await;
    assert!(!cut.ok, "the black-holed push survived the restore");
    // 3 s: mediamtx only records an RTMP publish once it has read 2 s of it.
    let again = push(rtmp_push(&p.url, "", 3), 3).await;
    assert!(
        again.ok,
        "push after the blackhole failed:\n{}",
        again.output
    );
    assert_eq!(
        p.mtx.wait_for_recordings(PROXIED_PATH, 2, WAIT).await.len(),
        2
    );
}

/// A stall: nothing arrives while it lasts, everything held back arrives after it, on the
/// same connection; disabling the proxy cuts the connection, enabling it lets a new one in.
#[tokio::test]
async fn toxiproxy_stall_holds_a_push() {
    let mut p = proxied_push().await;
    p.toxiproxy.stall("rtmp").await;
    let held_at = p.assert_nothing_arrives().await;

    p.toxiproxy.restore("rtmp").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        p.mtx.bytes_received(PROXIED_PATH).await > held_at,
        "nothing arrived after the stall"
    );
    assert!(
        p.pusher.try_wait().expect("poll gst-launch").is_none(),
        "the push ended after the stall"
    );

    p.toxiproxy.disable("rtmp").await;
    let cut = finish(p.pusher, p.started, Duration::from_secs(5)).await;
    assert!(!cut.ok, "the push survived a disabled proxy");
    p.toxiproxy.enable("rtmp").await;
    // 3 s: mediamtx only records an RTMP publish once it has read 2 s of it.
    let again = push(rtmp_push(&p.url, "", 3), 3).await;
    assert!(
        again.ok,
        "push through the re-enabled proxy failed:\n{}",
        again.output
    );
    assert_eq!(
        p.mtx.wait_for_recordings(PROXIED_PATH, 2, WAIT).await.len(),
        2
    );
}

/// nginx-rtmp records each publish to FLV; dropping a publisher through its control API ends
/// the push, and the next publish is a new recording.
#[tokio::test]
async fn nginx_rtmp_records_and_kicks() {
    let nginx = NginxRtmp::start().await;
    let started = Instant::now();
    let first = spawn_push(&rtmp_push(&nginx.rtmp_url("key"), "", 30));
    nginx.wait_for_publisher("key", WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(nginx.bytes_received("key").await > 10_000);
    nginx.kick("key").await;
    let first = finish(first, started, Duration::from_secs(5)).await;
    assert!(!first.ok, "the dropped push ended well");
    assert!(
        first.output.contains("connection closed remotely"),
        "dropped push:\n{}",
        first.output
    );

    // Recordings are named by the second they start in: be in the next one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = push(rtmp_push(&nginx.rtmp_url("key"), "", 3), 3).await;
    assert!(second.ok, "push after the drop failed:\n{}", second.output);
    let recorded = nginx.wait_for_recordings("key", 2, WAIT).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_good_recording(&recorded[1], 3.0, 0.10).await;
}
