//! Live stream outputs end to end: a participant egress of a real publisher (`lk room join`),
//! requested through livekit-server, streamed to a real mediamtx over RTMP and SRT while also
//! recorded to MP4; what the server recorded is checked as a viewer would (codecs, keyframe
//! first, decodes cleanly, duration), and the status the way an operator reads it
//! (`stream_results` in `lk egress list`, the service's `/metrics`). Failures are real ones: a
//! destination black-holed by toxiproxy, servers stopped, a refused port; nginx-rtmp is the
//! second RTMP implementation. Tests that wait out the reconnect window set it to 5 s
//! (`stream_reconnect.window`).

use std::path::PathBuf;
use std::time::Duration;

use egress_e2e::mediamtx::{MediaMtx, MediaMtxOptions};
use egress_e2e::recording::*;
use egress_e2e::stream_check;
use egress_e2e::stream_check::status::{
    STREAM_ACTIVE, STREAM_FAILED, STREAM_FINISHED, int, status, wait_for,
};
use egress_e2e::{LiveKitServer, NginxRtmp, Toxiproxy, find_binary, free_port, http_get};
use serde_json::{Value, json};
use std::process::Stdio;
use tokio::process::{Child, Command};

/// `lk room join --publish VIDEO --publish AUDIO` in the background (killed on drop).
fn join(
    livekit: &LiveKitServer,
    room: &str,
    identity: &str,
    media: &TestMedia,
    log_dir: &std::path::Path,
) -> Child {
    let log = std::fs::File::create(log_dir.join(format!("publisher-{identity}.log")))
        .expect("publisher log");
    let mut cmd = Command::new(find_binary("lk"));
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
        "30",
        "--publish",
    ])
    .arg(&media.video)
    .arg("--publish")
    .arg(&media.audio)
    .arg(room)
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

fn stream<'a>(info: &'a Value, url_part: &str) -> &'a Value {
    info["stream_results"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|s| s["url"].as_str().is_some_and(|u| u.contains(url_part)))
        })
        .unwrap_or_else(|| panic!("no stream with {url_part:?}: {info:#}"))
}

/// What a viewer of a server-side recording checks: H.264 + AAC, decodes without errors. (Not
/// "starts on a keyframe": mediamtx starts an RTMP recording only after its 2 s probe of the
/// publish, wherever that lands; that every session starts on a keyframe on the wire is
/// checked by `outputs::stream::destination`'s tests.)
async fn assert_playable(file: &std::path::Path) {
    let (video, audio) = stream_check::codecs(file).await;
    assert_eq!(
        (video.as_str(), audio.as_str()),
        ("h264", "aac"),
        "{}",
        file.display()
    );
    let errors = stream_check::decode_errors(file).await;
    assert!(
        errors.trim().is_empty(),
        "{} has decode errors: {errors}",
        file.display()
    );
}

#[tokio::test]
async fn a_participant_streams_to_rtmp_with_a_file_reconnects_after_a_kick_and_updates_its_urls() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let mut mtx = MediaMtx::start().await;
    let media = TestMedia::generate(120).await;
    let room = "stream-rtmp-room";
    let mut publisher = join(&stack.livekit, room, "alice", &media, stack.egress.dir());
    track_sid(&stack, room, "alice", "VIDEO").await;
    track_sid(&stack, room, "alice", "AUDIO").await;

    let key1 = "live/s3cretkey-one";
    let key2 = "live/s3cretkey-two";
    let url1 = mtx.rtmp_url(key1);
    let url2 = mtx.rtmp_url(key2);
    let request = json!({
        "room_name": room,
        "identity": "alice",
        "file_outputs": [{ "filepath": "streams/{publisher_identity}.mp4" }],
        "stream_outputs": [{ "protocol": "RTMP", "urls": [url1] }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 1000, "key_frame_interval": 2 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    let s1 = stream(&active, "s3c");
    assert!(
        !s1["url"]
            .as_str()
            .unwrap_or_default()
            .contains("s3cretkey-one"),
        "the key is redacted: {s1:#}"
    );
    wait_for(
        &lk,
        &id,
        "first URL publishing",
        Duration::from_secs(15),
        |i| int(&i["stream_results"][0]["started_at"]) > 0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // UpdateStream: add a second URL; adding it again is a no-op (one publisher).
    lk.run_ok(&["egress", "update-stream", "--id", &id, "--add-urls", &url2])
        .await;
    lk.run_ok(&["egress", "update-stream", "--id", &id, "--add-urls", &url2])
        .await;
    let info = wait_for(
        &lk,
        &id,
        "second URL publishing",
        Duration::from_secs(10),
        |i| {
            i["stream_results"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && int(&a[1]["started_at"]) > 0)
        },
    )
    .await;
    assert_eq!(
        info["stream_results"].as_array().map(Vec::len),
        Some(2),
        "re-adding a live URL adds nothing: {info:#}"
    );
    // mediamtx registers an RTMP publisher after reading 2 s of it.
    mtx.wait_for_publisher(key2, Duration::from_secs(10)).await;
    let publishers = mtx
        .rtmp_conns()
        .await
        .into_iter()
        .filter(|c| c.path == key2)
        .count();
    assert_eq!(publishers, 1, "exactly one publisher to {key2}");

    // The server kicks the first publisher: it comes back, on a keyframe, and says so.
    tokio::time::sleep(Duration::from_secs(4)).await;
    mtx.kick_publisher(key1).await;
    let info = wait_for(
        &lk,
        &id,
        "a retry after the kick",
        Duration::from_secs(15),
        |i| int(&i["stream_results"][0]["retries"]) >= 1,
    )
    .await;
    assert_eq!(
        status(&info["stream_results"][0]),
        STREAM_ACTIVE,
        "{info:#}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Remove the second URL by the redacted form the status shows.
    let redacted2 = info["stream_results"][1]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(!redacted2.contains("s3cretkey-two"), "{redacted2}");
    lk.run_ok(&[
        "egress",
        "update-stream",
        "--id",
        &id,
        "--remove-urls",
        &redacted2,
    ])
    .await;
    let info = wait_for(
        &lk,
        &id,
        "second URL finished",
        Duration::from_secs(10),
        |i| status(&i["stream_results"][1]) == STREAM_FINISHED,
    )
    .await;
    assert_eq!(status(&info["stream_results"][0]), STREAM_ACTIVE);
    // Listing egresses shows no key.
    let listed = lk.run_ok(&["egress", "list", "--id", &id]).await;
    assert!(
        !listed.contains("s3cretkey"),
        "lk egress list shows a stream key: {listed}"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    lk.egress_stop(&id).await.expect("stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    let _ = publisher.kill().await;
    assert_eq!(
        status(&done["stream_results"][0]),
        STREAM_FINISHED,
        "{done:#}"
    );
    assert!(int(&done["stream_results"][0]["duration"]) > 0, "{done:#}");

    // The file is unaffected by the kick.
    let file = location(&done);
    let p = probe(&file).await;
    assert!(p.duration > 15.0, "file of {:.1} s", p.duration);
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );

    // The server recorded the first URL twice (before and after the kick), each playable
    // from its first frame, and the second once.
    let rec1 = mtx
        .wait_for_recordings(key1, 2, Duration::from_secs(15))
        .await;
    assert!(rec1.len() >= 2, "{rec1:?}");
    for f in &rec1 {
        assert_playable(f).await;
    }
    let total: f64 = {
        let mut t = 0.0;
        for f in &rec1 {
            t += stream_check::duration(f).await;
        }
        t
    };
    assert!(
        total > p.duration - 8.0,
        "the server recorded {total:.1} s of a {:.1} s egress",
        p.duration
    );
    let rec2 = mtx
        .wait_for_recordings(key2, 1, Duration::from_secs(15))
        .await;
    assert_playable(&rec2[0]).await;

    // No stream key in the service's or the handlers' logs.
    let logs = stack.egress.log();
    assert!(!logs.contains("s3cretkey"), "a stream key is in the logs");
}

#[tokio::test]
async fn srt_with_a_passphrase_streams_and_a_wrong_passphrase_fails_that_url_alone() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let pass = "correct-horse-battery";
    let mtx =
        MediaMtx::start_with(MediaMtxOptions::default().srt_publish_passphrase("srtpath", pass))
            .await;
    let media = TestMedia::generate(60).await;
    let room = "stream-srt-room";
    let mut publisher = join(&stack.livekit, room, "bob", &media, stack.egress.dir());
    track_sid(&stack, room, "bob", "VIDEO").await;
    track_sid(&stack, room, "bob", "AUDIO").await;

    let good = mtx.srt_url("srtpath", Some(pass));
    let bad = mtx.srt_url("srtpath", Some("wrong-passphrase-x"));
    let request = json!({
        "room_name": room,
        "identity": "bob",
        "file_outputs": [{ "filepath": "streams/{publisher_identity}-srt.mp4" }],
        "stream_outputs": [{ "protocol": "SRT", "urls": [good, bad] }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 1000 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    let t0 = tokio::time::Instant::now();
    let info = wait_for(
        &lk,
        &id,
        "wrong passphrase FAILED",
        Duration::from_secs(10),
        |i| status(&i["stream_results"][1]) == STREAM_FAILED,
    )
    .await;
    eprintln!("wrong passphrase failed {:?} after ACTIVE", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "a wrong passphrase fails at once"
    );
    assert_eq!(
        status(&info["stream_results"][0]),
        STREAM_ACTIVE,
        "{info:#}"
    );
    for s in info["stream_results"].as_array().expect("streams") {
        let url = s["url"].as_str().unwrap_or_default();
        assert!(
            !url.contains(pass) && !url.contains("wrong-passphrase"),
            "passphrase in StreamInfo.url: {url}"
        );
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    lk.egress_stop(&id).await.expect("stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    let _ = publisher.kill().await;
    assert_eq!(
        status(&done["stream_results"][0]),
        STREAM_FINISHED,
        "{done:#}"
    );
    assert_eq!(
        status(&done["stream_results"][1]),
        STREAM_FAILED,
        "{done:#}"
    );
    let rec = mtx
        .wait_for_recordings("srtpath", 1, Duration::from_secs(15))
        .await;
    let (video, audio) = stream_check::codecs(&rec[0]).await;
    assert_eq!((video.as_str(), audio.as_str()), ("h264", "aac"));
    assert!(stream_check::duration(&rec[0]).await > 5.0);
    assert!(decodes_cleanly(&location(&done)).await);
    let logs = stack.egress.log();
    assert!(!logs.contains(pass), "the SRT passphrase is in the logs");
}

#[tokio::test]
async fn a_stream_only_egress_whose_every_url_fails_ends_failed_and_bad_urls_are_refused() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let mtx = MediaMtx::start().await;
    let media = TestMedia::generate(60).await;
    let room = "stream-fail-room";
    let mut publisher = join(&stack.livekit, room, "carol", &media, stack.egress.dir());
    track_sid(&stack, room, "carol", "VIDEO").await;

    // Go's URL rule, answered at StartEgress, naming the URL redacted.
    let bad = json!({ "room_name": room, "identity": "carol", "stream_outputs": [{ "protocol": "RTMP", "urls": ["rtmp://127.0.0.1/onlykey"] }] });
    let err = lk
        .egress_start("participant", &bad.to_string())
        .await
        .expect_err("refused");
    let err = format!("{err:?}");
    assert!(err.contains("rtmp urls must be of format"), "{err}");

    // RTMPS to a certificate nobody trusts: a permanent error, so the URL fails at once, and
    // with no other output the egress fails with it.
    let request = json!({
        "room_name": room,
        "identity": "carol",
        "stream_outputs": [{ "protocol": "RTMP", "urls": [mtx.rtmps_url("live/untrusted-key")] }],
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let (failed, _) = wait_for_status(
        &lk,
        &started.egress_id,
        status::FAILED,
        Duration::from_secs(40),
    )
    .await;
    let _ = publisher.kill().await;
    assert_eq!(
        status(&failed["stream_results"][0]),
        STREAM_FAILED,
        "{failed:#}"
    );
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        !error.is_empty() && !error.contains("untrusted-key"),
        "{failed:#}"
    );
}

/// The service's metrics URL, from the stack's config.
fn metrics_url(stack: &RecordingStack) -> String {
    let port = stack
        .config
        .lines()
        .find_map(|l| l.strip_prefix("prometheus_port:"))
        .and_then(|p| p.trim().parse::<u16>().ok())
        .expect("prometheus_port in the stack's config");
    format!("http://127.0.0.1:{port}/metrics")
}

async fn scrape(url: &str) -> String {
    let (status, text) = http_get(url).await.expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the series `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

const BYTES: &str = "livekit_egress_stream_bytes_sent_total";
const RECONNECTS: &str = "livekit_egress_stream_reconnects_total";
const STATE: &str = "livekit_egress_stream_state";

#[tokio::test]
async fn each_destination_has_its_bytes_reconnects_and_state_in_the_metrics_without_its_key() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let metrics = metrics_url(&stack);
    let lk = stack.lk();
    let mtx = MediaMtx::start().await;
    let media = TestMedia::generate(60).await;
    let room = "stream-metrics-room";
    let mut publisher = join(&stack.livekit, room, "dave", &media, stack.egress.dir());
    track_sid(&stack, room, "dave", "VIDEO").await;
    track_sid(&stack, room, "dave", "AUDIO").await;

    // One URL that publishes, one whose server is not there (refused: retried all along).
    let live = mtx.rtmp_url("live/s3cretkey-metrics");
    let refused = format!("rtmp://127.0.0.1:{}/live/s3cretkey-refused", free_port());
    let request = json!({
        "room_name": room,
        "identity": "dave",
        "stream_outputs": [{ "protocol": "RTMP", "urls": [live, refused] }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 1000 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    let info = wait_for(&lk, &id, "publishing", Duration::from_secs(15), |i| {
        int(&i["stream_results"][0]["started_at"]) > 0
            && int(&i["stream_results"][1]["retries"]) >= 2
    })
    .await;
    let shown_url = |i: usize| {
        info["stream_results"][i]["url"]
            .as_str()
            .expect("url")
            .to_owned()
    };
    let (url0, url1) = (shown_url(0), shown_url(1));
    let dest = |n: &'static str, url: &str| -> Vec<(&'static str, String)> {
        vec![
            ("egress_id", id.clone()),
            ("destination", n.to_owned()),
            ("url", url.to_owned()),
        ]
    };
    let get = |text: &str, name: &str, labels: &[(&'static str, String)], state: Option<&str>| {
        let mut l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(s) = state {
            l.push(("state", s));
        }
        sample(text, name, &l)
    };
    let (d0, d1) = (dest("0", &url0), dest("1", &url1));

    // The handler reports every second; give the series a moment to appear.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        let text = scrape(&metrics).await;
        if get(&text, BYTES, &d0, None).is_some_and(|b| b > 0.0) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no bytes for the first destination in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = scrape(&metrics).await;
    eprintln!(
        "stream series:\n{}",
        second
            .lines()
            .filter(|l| l.starts_with("livekit_egress_stream_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let bytes = |t: &str| get(t, BYTES, &d0, None).unwrap_or(0.0);
    assert!(
        bytes(&second) > bytes(&first) + 10_000.0,
        "the bytes grow while it publishes: {} then {} 3 s later",
        bytes(&first),
        bytes(&second)
    );
    assert_eq!(get(&second, STATE, &d0, Some("publishing")), Some(1.0));
    assert_eq!(get(&second, STATE, &d0, Some("reconnecting")), Some(0.0));
    assert_eq!(get(&second, RECONNECTS, &d0, None), Some(0.0));
    assert_eq!(get(&second, STATE, &d1, Some("reconnecting")), Some(1.0));
    assert!(
        get(&second, RECONNECTS, &d1, None).is_some_and(|r| r >= 2.0),
        "the refused destination's reconnects"
    );
    assert_eq!(get(&second, BYTES, &d1, None), Some(0.0));
    // Labelled as the status shows the URL: redacted.
    for text in [&first, &second] {
        assert!(!text.contains("s3cretkey"), "a stream key in the metrics");
    }

    // The egress ends: both destinations FINISHED (the one still reconnecting too, at once).
    lk.egress_stop(&id).await.expect("stop");
    let t_stop = tokio::time::Instant::now();
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    eprintln!("stopped in {:?}", t_stop.elapsed());
    assert!(
        t_stop.elapsed() < Duration::from_secs(20),
        "a destination that is down holds the end: {:?}",
        t_stop.elapsed()
    );
    let _ = publisher.kill().await;
    assert_eq!(
        status(&done["stream_results"][1]),
        STREAM_FINISHED,
        "{done:#}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let last = loop {
        let text = scrape(&metrics).await;
        if get(&text, STATE, &d0, Some("finished")) == Some(1.0)
            && get(&text, STATE, &d1, Some("finished")) == Some(1.0)
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(bytes(&last) >= bytes(&second));
    assert!(!last.contains("s3cretkey"), "a stream key in the metrics");
}

/// Where the video of `file` stands still for half a second or more (ffmpeg's freezedetect),
/// in seconds from its start. The test video's box never stops.
async fn freezes(file: &std::path::Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-nostats", "-i"])
        .arg(file)
        .args([
            "-an",
            "-vf",
            "freezedetect=n=0.001:d=0.5",
            "-f",
            "null",
            "-",
        ])
        .output()
        .await
        .expect("run ffmpeg freezedetect");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.split("freeze_start: ").nth(1))
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

/// A composite stack whose stream destinations are given up after 5 s of outage
/// (`stream_reconnect.window`), so that the window can be waited out in a test.
async fn short_window_stack() -> RecordingStack {
    RecordingStack::start_with(|y| {
        format!(
            "{y}  participant_cpu_cost: 0.5\n  track_composite_cpu_cost: 0.5\nstream_reconnect:\n  window: 5s\n"
        )
    })
    .await
}

/// The reconnect window of [`short_window_stack`].
const WINDOW: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_black_holed_destination_fails_after_the_window_while_nginx_rtmp_and_the_file_go_on() {
    let _serial = serial().await;
    let stack = short_window_stack().await;
    let lk = stack.lk();
    let mtx = MediaMtx::start().await;
    let nginx = NginxRtmp::start().await;
    let toxi = Toxiproxy::start().await;
    let hole = toxi
        .proxy("hole", &format!("127.0.0.1:{}", mtx.rtmp_port()))
        .await;
    let media = TestMedia::generate(90).await;
    let room = "stream-blackhole-room";
    let mut publisher = join(&stack.livekit, room, "erin", &media, stack.egress.dir());
    track_sid(&stack, room, "erin", "VIDEO").await;
    track_sid(&stack, room, "erin", "AUDIO").await;

    let holed = format!("rtmp://{hole}/live/s3cretkey-hole");
    let nginx_key = "s3cretkey-nginx";
    let request = json!({
        "room_name": room,
        "identity": "erin",
        "file_outputs": [{ "filepath": "streams/{publisher_identity}-blackhole.mp4" }],
        "stream_outputs": [{ "protocol": "RTMP", "urls": [holed, nginx.rtmp_url(nginx_key)] }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 1000 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (_, active_at) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    wait_for(&lk, &id, "both publishing", Duration::from_secs(15), |i| {
        int(&i["stream_results"][0]["started_at"]) > 0
            && int(&i["stream_results"][1]["started_at"]) > 0
    })
    .await;
    nginx
        .wait_for_publisher(nginx_key, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Everything sent through the hole is dropped: the sender's writes still succeed, mediamtx
    // hears nothing and closes after its read timeout (10 s), and every reconnect is accepted
    // by the proxy and then never answered. The URL fails once the outage outlasts the window.
    toxi.blackhole("hole").await;
    let holed_at = tokio::time::Instant::now();
    let info = wait_for(
        &lk,
        &id,
        "the black-holed URL FAILED",
        Duration::from_secs(45),
        |i| status(&i["stream_results"][0]) == STREAM_FAILED,
    )
    .await;
    let took = holed_at.elapsed();
    eprintln!("black-holed URL failed {took:?} after the hole opened: {info:#}");
    let failed = &info["stream_results"][0];
    assert!(took >= WINDOW, "failed before its window ran out: {took:?}");
    assert!(int(&failed["retries"]) >= 1, "{failed:#}");
    assert!(
        !failed["error"].as_str().unwrap_or_default().is_empty(),
        "{failed:#}"
    );
    assert_eq!(
        status(&info["stream_results"][1]),
        STREAM_ACTIVE,
        "{info:#}"
    );
    assert_eq!(status_of(&info), status::ACTIVE, "the egress goes on");

    // The other server keeps receiving.
    let before = nginx.bytes_received(nginx_key).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = nginx.bytes_received(nginx_key).await;
    assert!(
        after > before,
        "nginx-rtmp stopped receiving: {before} → {after}"
    );

    lk.egress_stop(&id).await.expect("stop");
    let stopped_at = std::time::Instant::now();
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    let _ = publisher.kill().await;
    assert_eq!(
        status(&done["stream_results"][0]),
        STREAM_FAILED,
        "{done:#}"
    );
    assert_eq!(
        status(&done["stream_results"][1]),
        STREAM_FINISHED,
        "{done:#}"
    );
    assert_eq!(int(&done["stream_results"][1]["retries"]), 0, "{done:#}");

    // The file: as long as it says, covering the whole ACTIVE span (plus what the mixer's
    // latency still held at the stop), clean, and moving all along: the hole cost it nothing.
    let file = location(&done);
    let p = probe(&file).await;
    let reported = int(&done["file_results"][0]["duration"]) as f64 / 1e9;
    let active = stopped_at.duration_since(active_at).as_secs_f64();
    eprintln!(
        "file {:.2} s (reported {reported:.2} s), ACTIVE → stop {active:.2} s",
        p.duration
    );
    assert!(
        (p.duration - reported).abs() <= reported * 0.02,
        "file of {:.2} s, reported {reported:.2} s",
        p.duration
    );
    assert!(
        p.duration >= active - 0.5 && p.duration <= active + 4.0,
        "file of {:.2} s for {active:.2} s ACTIVE",
        p.duration
    );
    let freezes = freezes(&file).await;
    assert!(
        freezes.iter().all(|&at| at < 1.0),
        "the file's video froze at {freezes:?} s"
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );

    // The manifest beside the file lists both streams as they ended, URLs redacted.
    let manifest_path = PathBuf::from(
        done["manifest_location"]
            .as_str()
            .expect("manifest_location"),
    );
    let text = std::fs::read_to_string(&manifest_path).expect("manifest");
    assert!(
        !text.contains("s3cretkey"),
        "a stream key in the manifest: {text}"
    );
    let manifest: Value = serde_json::from_str(&text).expect("manifest json");
    let listed = manifest["streams"]
        .as_array()
        .expect("streams in the manifest");
    assert_eq!(listed.len(), 2, "{manifest:#}");
    for (i, (want, retried)) in [("FAILED", true), ("FINISHED", false)].iter().enumerate() {
        let (m, s) = (&listed[i], &done["stream_results"][i]);
        assert_eq!(m["url"], s["url"], "{manifest:#}");
        assert_eq!(m["status"], *want, "{manifest:#}");
        assert_eq!(int(&m["started_at"]), int(&s["started_at"]), "{manifest:#}");
        assert_eq!(int(&m["ended_at"]), int(&s["ended_at"]), "{manifest:#}");
        assert_eq!(int(&m["retries"]) > 0, *retried, "{manifest:#}");
    }
    assert_eq!(listed[0]["error"], done["stream_results"][0]["error"]);
    assert_eq!(
        manifest["files"][0]["location"],
        done["file_results"][0]["location"]
    );

    // nginx-rtmp (the second RTMP implementation) recorded one publish, as long as the file
    // less its start (the destination publishes from the first keyframe), and it plays.
    let recs = nginx
        .wait_for_recordings(nginx_key, 1, Duration::from_secs(15))
        .await;
    assert_eq!(recs.len(), 1, "one publish, no reconnect: {recs:?}");
    assert_playable(&recs[0]).await;
    let streamed = stream_check::duration(&recs[0]).await;
    eprintln!("nginx-rtmp recorded {streamed:.2} s");
    assert!(
        streamed > p.duration - 3.0 && streamed < p.duration + 1.0,
        "nginx-rtmp recorded {streamed:.2} s of a {:.2} s file",
        p.duration
    );

    let logs = stack.egress.log();
    assert!(!logs.contains("s3cretkey"), "a stream key is in the logs");
}

#[tokio::test]
async fn a_stream_only_egress_ends_failed_with_the_last_error_when_every_server_is_gone() {
    let _serial = serial().await;
    let stack = short_window_stack().await;
    let lk = stack.lk();
    let mut mtx = MediaMtx::start().await;
    let mut nginx = NginxRtmp::start().await;
    let media = TestMedia::generate(60).await;
    let room = "stream-alldown-room";
    let mut publisher = join(&stack.livekit, room, "frank", &media, stack.egress.dir());
    track_sid(&stack, room, "frank", "VIDEO").await;
    track_sid(&stack, room, "frank", "AUDIO").await;

    let request = json!({
        "room_name": room,
        "identity": "frank",
        "stream_outputs": [{ "protocol": "RTMP", "urls": [
            mtx.rtmp_url("live/s3cretkey-mtx"),
            nginx.rtmp_url("s3cretkey-nginx"),
        ] }],
        "advanced": { "width": 640, "height": 360, "framerate": 30, "video_bitrate": 1000 },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    wait_for(&lk, &id, "both publishing", Duration::from_secs(15), |i| {
        int(&i["stream_results"][0]["started_at"]) > 0
            && int(&i["stream_results"][1]["started_at"]) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Both servers go away (connections closed, new ones refused): each URL retries for the
    // window, then fails; with no other output the egress fails with the last error.
    mtx.stop().await;
    nginx.stop().await;
    let gone_at = tokio::time::Instant::now();
    let (failed, _) = wait_for_status(&lk, &id, status::FAILED, Duration::from_secs(40)).await;
    let took = gone_at.elapsed();
    let _ = publisher.kill().await;
    eprintln!("egress FAILED {took:?} after both servers went: {failed:#}");
    assert!(took >= WINDOW, "failed before the window ran out: {took:?}");
    assert!(took < WINDOW + Duration::from_secs(15), "{took:?}");
    let streams = failed["stream_results"].as_array().expect("stream_results");
    assert_eq!(streams.len(), 2, "{failed:#}");
    for s in streams {
        assert_eq!(status(s), STREAM_FAILED, "{failed:#}");
        assert!(int(&s["retries"]) >= 1, "retried within the window: {s:#}");
    }
    // The egress's error is the error of the URL that failed last.
    let last = streams
        .iter()
        .max_by_key(|s| int(&s["ended_at"]))
        .expect("a stream");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{failed:#}");
    assert_eq!(
        error,
        last["error"].as_str().unwrap_or_default(),
        "{failed:#}"
    );
    assert!(!error.contains("s3cretkey"), "{error}");
    let logs = stack.egress.log();
    assert!(!logs.contains("s3cretkey"), "a stream key is in the logs");
}
