//! The slim build (`cargo build -p egress-host --no-default-features --features file`, made by
//! scripts/test as `$EGRESS_SLIM_BIN`): only the `file` sink compiled in, no WASM loader. It
//! must validate configs, refuse plugins it does not have with an error naming the key, record
//! to local files, and answer a request for cloud storage with an error naming the storage.

use std::time::Duration;

use egress_e2e::recording::*;
use egress_e2e::{Egress, LiveKitServer, Lk, Redis, egress_config, egress_slim_bin, free_port};
use serde_json::json;

async fn validate(yaml: &str) -> (bool, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(egress_slim_bin())
            .arg("validate")
            .env("EGRESS_CONFIG_BODY", yaml)
            .env_remove("EGRESS_CONFIG_FILE")
            .output(),
    )
    .await
    .expect("egress validate did not exit within 30 s")
    .expect("cannot run the slim egress");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn slim_build_validates_records_locally_and_refuses_missing_plugins() {
    let _serial = serial().await;
    let redis = Redis::start().await;
    let livekit = LiveKitServer::start(&redis).await;
    let health_port = free_port();
    let base = egress_config(&redis, &livekit, health_port, free_port());

    // Only `file` is compiled in; asking for s3 or a wasm plugin fails, naming the key.
    let (ok, text) = validate(&base).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("file"),
        "the active plugins are listed: {text}"
    );
    assert!(!text.contains("s3 "), "no s3 in a slim build: {text}");
    let (ok, text) = validate(&format!("{base}plugins:\n  - builtin: s3\n")).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("plugins[0].builtin") && text.contains("compiled in: file"),
        "{text}"
    );
    let (ok, text) = validate(&format!("{base}plugins:\n  - wasm: /nonexistent/x.wasm\n")).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("plugins[0].wasm") && text.contains("without the WASM loader"),
        "{text}"
    );

    // The service runs and records a web page to a local file.
    let config = format!("{base}cpu_cost:\n  web_cpu_cost: 1\n");
    let mut egress = Egress::start_bin(&egress_slim_bin(), config, &[], &[]).await;
    egress.wait_healthy(health_port).await;
    let lk = Lk::new(&livekit);
    let page = TestPage::start().await;

    // Cloud storage names a plugin this build does not have: refused at StartEgress.
    let s3 = json!({
        "url": page.url(""),
        "file_outputs": [{ "filepath": "x.mp4", "s3": { "bucket": "b", "region": "us-east-1" } }]
    });
    let refused = lk.egress_start("web", &s3.to_string()).await;
    let text = match refused {
        Ok(started) => started.status,
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("S3 storage is not available on this worker") && text.contains("\"s3\""),
        "StartEgress with S3 on a slim build: {text}"
    );

    // A stream output needs the `rtmp` live-destination plugin: refused at StartEgress, naming it.
    let stream = json!({
        "url": page.url(""),
        "stream_outputs": [{ "urls": ["rtmp://127.0.0.1:1935/live/slimkey"] }]
    });
    let text = match lk.egress_start("web", &stream.to_string()).await {
        Ok(started) => started.status,
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("no active live destination serves rtmp:// URLs") && text.contains("`rtmp`"),
        "StartEgress with an RTMP stream on a slim build: {text}"
    );

    let request = json!({ "url": page.url(""), "file_outputs": [{ "filepath": "slim/page.mp4" }] });
    let started = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    let location = std::path::PathBuf::from(
        done["file_results"][0]["location"]
            .as_str()
            .expect("location"),
    );
    assert_eq!(
        location.canonicalize().ok(),
        egress.dir().join("slim/page.mp4").canonicalize().ok()
    );
    let p = probe(&location).await;
    assert!(p.video.is_some() && p.audio.is_some(), "{p:?}");
    assert!(p.duration > 2.5, "{p:?}");
}
