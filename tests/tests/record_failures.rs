//! How web recordings end when things go wrong: a page that never signals start, page and
//! template errors, and a handler killed mid-recording. Real livekit-server, egress and Chrome.

use std::time::Duration;

use egress_e2e::recording::*;
use serde_json::json;

#[tokio::test]
async fn a_page_that_never_signals_start_is_aborted_on_stop() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let request = json!({ "url": page.url(""), "await_start_signal": true, "file_outputs": [{ "filepath": "never.mp4" }] });
    let id = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    // Chrome is up and the page loaded, but no START_RECORDING comes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let info = egress_info(&lk, &id).await.expect("egress info");
    assert_eq!(status_of(&info), status::STARTING, "{info:#}");
    assert!(
        processes_mentioning(&id)
            .iter()
            .any(|(_, cmd)| cmd.contains("chrom")),
        "Chrome should be running"
    );

    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::ABORTED, Duration::from_secs(30)).await;
    assert_eq!(done["error"], "Start signal not received", "{done:#}");
    assert_eq!(done["error_code"], 412, "{done:#}");
    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    assert!(
        !stack.output("never.mp4").exists(),
        "nothing is delivered for an aborted egress"
    );
    let left = wait_no_processes(&id, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes of {id} still running: {left:?}");
}

#[tokio::test]
async fn page_load_and_template_errors_fail_the_egress() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let missing = json!({ "url": page.url("/missing"), "file_outputs": [{ "filepath": "x.mp4" }] });
    let id = lk
        .egress_start("web", &missing.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let (done, _) = wait_for_status(&lk, &id, status::FAILED, Duration::from_secs(30)).await;
    assert_eq!(done["error"], "page load error: Not Found", "{done:#}");
    assert_eq!(done["error_code"], 400, "{done:#}");

    let erroring =
        json!({ "url": page.url("error=room+is+gone"), "file_outputs": [{ "filepath": "y.mp4" }] });
    let id = lk
        .egress_start("web", &erroring.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let (done, _) = wait_for_status(&lk, &id, status::FAILED, Duration::from_secs(30)).await;
    assert_eq!(done["error"], "template error: room is gone", "{done:#}");

    // Refused before anything starts, with the Go egress's texts.
    let stream = json!({ "url": page.url(""), "stream_outputs": [{ "urls": ["rtmp://127.0.0.1/onlykey"] }] });
    let err = lk
        .egress_start("web", &stream.to_string())
        .await
        .expect_err("an RTMP URL without an app is refused");
    assert!(
        err.to_string().contains("rtmp urls must be of format"),
        "{err}"
    );
    let bad_url = json!({ "url": "file:///etc/passwd", "file_outputs": [{ "filepath": "z.mp4" }] });
    let err = lk
        .egress_start("web", &bad_url.to_string())
        .await
        .expect_err("non-http URLs are refused");
    assert!(
        err.to_string()
            .contains("request has missing or invalid field: web url"),
        "{err}"
    );
}

#[tokio::test]
async fn a_killed_handler_fails_the_egress_and_keeps_a_playable_partial_file() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let request =
        json!({ "url": page.url(""), "file_outputs": [{ "filepath": "crash/partial.mp4" }] });
    let id = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let pid = handler_pid(&id).expect("the handler process");
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (done, _) = wait_for_status(&lk, &id, status::FAILED, Duration::from_secs(30)).await;
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("handler process ended unexpectedly"),
        "{done:#}"
    );

    let file = &done["file_results"][0];
    assert_eq!(file["filename"], "crash/partial.mp4", "{done:#}");
    let location = std::path::PathBuf::from(
        file["location"]
            .as_str()
            .expect("the partial file was delivered"),
    );
    assert_eq!(
        location.canonicalize().ok(),
        stack.output("crash/partial.mp4").canonicalize().ok()
    );
    let p = probe(&location).await;
    assert!(p.video.is_some() && p.audio.is_some(), "{p:?}");
    // Fragmented MP4: everything up to the last complete one-second fragment survives.
    assert!(
        p.duration >= 4.0,
        "only {:.2}s of ~6 s survived",
        p.duration
    );
    assert!(
        decodes_cleanly(&location).await,
        "the partial file does not decode cleanly"
    );

    let left = wait_no_processes(&id, Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "Chrome/Xvfb/PulseAudio of {id} outlived the handler: {left:?}"
    );
}
