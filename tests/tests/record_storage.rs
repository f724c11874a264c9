//! Recordings into object storage, end to end: a real livekit-server and egress recording the
//! local test page with Chrome, uploading through the s3 / azure / gcs sink plugins to real
//! emulators (s3s-fs checks SigV4; Azurite checks SharedKey; GCS through the XML facade; s3 also
//! as a dylib plugin), the Go upload metrics, and the safety net: backup storage, the local file
//! kept when every storage fails, a killed handler's partial file uploaded by the service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use egress_e2e::plugin_build::storage_plugin_dylib;
use egress_e2e::recording::*;
use egress_e2e::storage::{
    AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY, S3_REGION, S3S_ACCESS_KEY, S3S_SECRET_KEY,
};
use egress_e2e::{Azurite, GcsFacade, S3sFs, free_port};
use serde_json::{Value, json};

const BUCKET: &str = "recordings";

/// The plugins every test here activates; `extra` goes under the azure/gcs entries.
fn plugins_yaml(azure_endpoint: Option<&str>, gcs_base: Option<&str>) -> String {
    let mut y = String::from("plugins:\n  - builtin: file\n  - builtin: s3\n");
    match azure_endpoint {
        Some(e) => y.push_str(&format!(
            "  - builtin: azure\n    config:\n      endpoint: {e}\n"
        )),
        None => y.push_str("  - builtin: azure\n"),
    }
    match gcs_base {
        // An emulator needs no OAuth: a plugin setting, since the Go config has no key for it.
        Some(b) => y.push_str(&format!(
            "  - builtin: gcs\n    config:\n      endpoint: {b}\n      anonymous: true\n"
        )),
        None => y.push_str("  - builtin: gcs\n"),
    }
    y
}

/// Records the test page for about `secs` seconds after ACTIVE and returns the final info.
async fn record(
    stack: &RecordingStack,
    page: &TestPage,
    file_output: Value,
    secs: u64,
    want: i64,
) -> (String, Value) {
    let lk = stack.lk();
    let mut output = file_output;
    let request = json!({ "url": page.url(""), "file_outputs": [output.take()] });
    let started = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start");
    assert_eq!(started.status, "EGRESS_STARTING", "{}", started.stdout);
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, want, Duration::from_secs(120)).await;
    (id, done)
}

/// Writes `bytes` to a temp file and probes it as ffprobe would.
async fn probe_bytes(bytes: &[u8], name: &str) -> (Probe, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write download");
    (probe(&path).await, dir)
}

fn assert_playable_av(p: &Probe, min_secs: f64) {
    let v = p.video.as_ref().expect("video stream");
    let a = p.audio.as_ref().expect("audio stream");
    assert_eq!(
        (v.codec.as_str(), a.codec.as_str()),
        ("h264", "aac"),
        "{p:?}"
    );
    assert!(
        p.duration >= min_secs,
        "only {:.2}s recorded: {p:?}",
        p.duration
    );
}

/// Nothing of the recording stays in the egress's local storage once it is uploaded.
fn assert_no_local_copy(dir: &Path, filename: &str) {
    let leftovers: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .contains(filename.rsplit('/').next().unwrap_or(filename))
            })
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "local copies left behind: {leftovers:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The value of the Prometheus sample `name` whose labels include every `labels` pair, from the
/// egress service's /metrics (`None` when there is no such sample).
async fn metric(stack: &RecordingStack, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let port = stack
        .config
        .lines()
        .find_map(|l| l.strip_prefix("prometheus_port:"))
        .and_then(|p| p.trim().parse::<u16>().ok())
        .expect("prometheus_port in the config");
    let text = egress_e2e::http_get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .1;
    let found = text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.rsplit_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    });
    if found.is_none() {
        eprintln!(
            "no {name} {labels:?} in:\n{}",
            text.lines()
                .filter(|l| l.contains("upload") || l.contains("backup"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    found
}

const UPLOADS: &str = "livekit_egress_pipeline_uploads";
const BACKUP_WRITES: &str = "livekit_egress_backup_storage_writes";
/// Go's name, typo included.
const UPLOAD_TIME: &str = "livekit_egress_pipline_upload_response_time_ms";

#[tokio::test]
async fn a_recording_streams_to_s3_with_its_manifest() {
    let _serial = serial().await;
    let s3 = S3sFs::start().await;
    s3.create_bucket(BUCKET).await;
    let stack = RecordingStack::start_with(|y| format!("{y}{}", plugins_yaml(None, None))).await;
    let page = TestPage::start().await;

    let output = json!({
        "filepath": "s3rec/page-{time}.mp4",
        "s3": {
            "access_key": S3S_ACCESS_KEY, "secret": S3S_SECRET_KEY, "region": S3_REGION,
            "endpoint": s3.endpoint(), "bucket": BUCKET, "force_path_style": true
        }
    });
    // Ten seconds, as an operator's first check would be.
    let (id, done) = record(&stack, &page, output, 10, status::COMPLETE).await;
    assert!(done.get("error").is_none_or(|e| e == ""), "{done:#}");
    assert!(
        done.get("backup_storage_used").is_none_or(|b| b == false),
        "{done:#}"
    );
    let file = &done["file_results"][0];
    let filename = file["filename"].as_str().expect("filename");
    assert_eq!(
        file["location"],
        format!("{}/{BUCKET}/{filename}", s3.endpoint()).as_str(),
        "{done:#}"
    );

    let bytes = s3
        .read(BUCKET, filename)
        .await
        .expect("the object is in the bucket");
    assert_eq!(
        file["size"].as_i64(),
        Some(bytes.len() as i64),
        "FileInfo.size is the object's size"
    );
    let (p, _dir) = probe_bytes(&bytes, "rec.mp4").await;
    assert_playable_av(&p, 9.0);

    let manifest_key = format!("s3rec/{id}.json");
    let manifest: Value = serde_json::from_slice(
        &s3.read(BUCKET, &manifest_key)
            .await
            .expect("manifest object"),
    )
    .expect("manifest json");
    assert_eq!(manifest["egress_id"], id.as_str());
    assert_eq!(manifest["files"][0]["location"], file["location"]);
    assert_eq!(
        done["manifest_location"],
        format!("{}/{BUCKET}/{manifest_key}", s3.endpoint()).as_str()
    );
    assert_no_local_copy(stack.egress.dir(), filename);
    // The MP4 was streamed as it grew and never patched afterwards: no second upload at stop.
    let log = stack.egress.log();
    assert!(
        log.contains("recording stored"),
        "the handler's log is not in the egress log"
    );
    assert!(
        !log.contains("rewritten at the end"),
        "the MP4 was uploaded twice:\n{}",
        stack.egress.log_tail()
    );
    // Go's upload counter, with its labels: the request named its own S3 endpoint.
    for content_type in ["video/mp4", "application/json"] {
        let labels = [
            ("type", content_type),
            ("status", "success"),
            ("custom_endpoint", "true"),
        ];
        assert_eq!(
            metric(&stack, UPLOADS, &labels).await,
            Some(1.0),
            "{content_type}"
        );
        // Go's response-time histogram, same labels: one observation of how long the finished
        // object waited (uploaded while recording, only the tail was left after stop).
        assert_eq!(
            metric(&stack, &format!("{UPLOAD_TIME}_count"), &labels).await,
            Some(1.0),
            "{content_type}"
        );
        let waited_ms = metric(&stack, &format!("{UPLOAD_TIME}_sum"), &labels)
            .await
            .expect("histogram sum");
        eprintln!("{content_type}: {waited_ms:.1} ms from complete to stored");
        assert!(
            (0.0..30_000.0).contains(&waited_ms),
            "{content_type}: {waited_ms} ms"
        );
    }
}

/// The storage a request names is served by whatever plugin holds that name: here `s3` is the
/// s3 plugin built as a cdylib, listed as `dylib:` in `plugins:` (and no compiled-in s3 is
/// active), so a v2 request with `storage: {s3: …}` is uploaded through the dylib loader.
#[tokio::test]
async fn a_v2_s3_storage_is_served_by_an_s3_plugin_loaded_as_a_dylib() {
    let _serial = serial().await;
    let so = tokio::task::spawn_blocking(|| storage_plugin_dylib("egress-plugin-s3"))
        .await
        .expect("building the s3 dylib");
    let s3 = S3sFs::start().await;
    s3.create_bucket(BUCKET).await;
    let plugins = format!(
        "plugins:\n  - builtin: file\n  - dylib: {:?}\n",
        so.display().to_string()
    );
    let stack = RecordingStack::start_with(|y| format!("{y}{plugins}")).await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let request = json!({
        "web": { "url": page.url("") },
        "outputs": [{ "file": { "filepath": "dylib/page.mp4" } }],
        "storage": { "s3": {
            "access_key": S3S_ACCESS_KEY, "secret": S3S_SECRET_KEY, "region": S3_REGION,
            "endpoint": s3.endpoint(), "bucket": BUCKET, "force_path_style": true
        } },
    });
    let (code, started) = twirp(
        &stack.livekit,
        "Egress/StartEgress",
        json!({ "roomRecord": true }),
        &request,
    )
    .await;
    assert_eq!(code, 200, "StartEgress: {started}");
    let id = started["egress_id"].as_str().expect("egress_id").to_owned();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(120)).await;

    let file = &done["file_results"][0];
    assert_eq!(
        file["location"],
        format!("{}/{BUCKET}/dylib/page.mp4", s3.endpoint()).as_str(),
        "{done:#}"
    );
    let bytes = s3
        .read(BUCKET, "dylib/page.mp4")
        .await
        .expect("the object is in the bucket");
    assert_eq!(
        file["size"].as_i64(),
        Some(bytes.len() as i64),
        "FileInfo.size is the object's size"
    );
    let (p, _dir) = probe_bytes(&bytes, "rec.mp4").await;
    assert_playable_av(&p, 3.0);
    // The service says which loader the active `s3` came from.
    let log = stack.egress.log();
    let loaded = log
        .lines()
        .find(|l| l.contains("Sink plugin active") && l.contains("libegress_plugin_s3.so"));
    assert!(
        loaded.is_some_and(|l| l.contains("dylib")),
        "no dylib s3 plugin in the log:\n{}",
        stack.egress.log_tail()
    );
}

#[tokio::test]
async fn backup_storage_takes_the_recording_when_the_primary_refuses_the_credentials() {
    let _serial = serial().await;
    let s3 = S3sFs::start().await;
    s3.create_bucket(BUCKET).await;
    let azurite = Azurite::start().await;
    azurite.create_container("backup").await;
    // Service-level storage (Go config keys) with a wrong secret; backup on Azure.
    let storage = format!(
        "storage:\n  s3:\n    access_key: {S3S_ACCESS_KEY}\n    secret: wrong-secret\n    region: {S3_REGION}\n    endpoint: {}\n    bucket: {BUCKET}\n    force_path_style: true\n\
         backup:\n  azure:\n    account_name: {AZURITE_ACCOUNT}\n    account_key: {AZURITE_ACCOUNT_KEY}\n    container_name: backup\n",
        s3.endpoint()
    );
    let plugins = plugins_yaml(Some(&azurite.endpoint()), None);
    let stack = RecordingStack::start_with(|y| format!("{y}{storage}{plugins}")).await;
    let page = TestPage::start().await;

    let t0 = std::time::Instant::now();
    let (_id, done) = record(
        &stack,
        &page,
        json!({ "filepath": "bk/page.mp4" }),
        4,
        status::COMPLETE,
    )
    .await;
    assert_eq!(done["backup_storage_used"], true, "{done:#}");
    let file = &done["file_results"][0];
    assert_eq!(
        file["location"],
        format!("{}/backup/bk/page.mp4", azurite.endpoint()).as_str(),
        "{done:#}"
    );
    let bytes = azurite
        .read("backup", "bk/page.mp4")
        .await
        .expect("the backup holds the recording");
    assert_eq!(file["size"].as_i64(), Some(bytes.len() as i64));
    let (p, _dir) = probe_bytes(&bytes, "rec.mp4").await;
    assert_playable_av(&p, 3.0);
    assert!(
        s3.read(BUCKET, "bk/page.mp4").await.is_none(),
        "nothing half-written in the primary"
    );
    // An auth error is not retried: the whole egress ends well within the retry budget.
    eprintln!("backup egress took {:?} end to end", t0.elapsed());
    let log = stack.egress.log();
    let attempts = log.matches("starting the object again").count();
    assert_eq!(
        attempts,
        0,
        "auth errors must not be retried:\n{}",
        stack.egress.log_tail()
    );
    // Operators see it in Prometheus as Go counts it: the primary's refusal is a 4xx upload,
    // the recording and its manifest are backup writes by MIME type.
    let refused = [
        ("type", "video/mp4"),
        ("status", "4xx"),
        ("custom_endpoint", "true"),
    ];
    assert_eq!(metric(&stack, UPLOADS, &refused).await, Some(1.0));
    assert_eq!(
        metric(&stack, UPLOADS, &[("status", "success")]).await,
        None,
        "nothing reached the primary"
    );
    assert_eq!(
        metric(&stack, BACKUP_WRITES, &[("output_type", "video/mp4")]).await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &stack,
            BACKUP_WRITES,
            &[("output_type", "application/json")]
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn the_local_file_is_kept_and_named_when_storage_is_unreachable() {
    let _serial = serial().await;
    // Nothing listens there; retries are kept short through the Go retry keys.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let storage = format!(
        "storage:\n  s3:\n    access_key: a\n    secret: b\n    region: {S3_REGION}\n    endpoint: {dead}\n    bucket: {BUCKET}\n    force_path_style: true\n    max_retries: 1\n    min_retry_delay: 10ms\n    max_retry_delay: 50ms\n"
    );
    let plugins = plugins_yaml(None, None);
    let stack = RecordingStack::start_with(|y| format!("{y}{storage}{plugins}")).await;
    let page = TestPage::start().await;

    let (_id, done) = record(
        &stack,
        &page,
        json!({ "filepath": "kept/page.mp4" }),
        4,
        status::FAILED,
    )
    .await;
    let error = done["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.starts_with("S3 upload failed: "), "{done:#}");
    let kept = error
        .rsplit("the recording was kept at ")
        .next()
        .map(str::trim)
        .map(PathBuf::from)
        .expect("kept path");
    assert!(
        kept.is_file(),
        "the error names a file that exists: {error}"
    );
    assert_eq!(
        done["file_results"][0]["location"],
        kept.to_string_lossy().as_ref(),
        "{done:#}"
    );
    let p = probe(&kept).await;
    assert_playable_av(&p, 3.0);
    // No HTTP answer at all: Go's `internal` status.
    let unreachable = [
        ("type", "video/mp4"),
        ("status", "internal"),
        ("custom_endpoint", "true"),
    ];
    assert_eq!(metric(&stack, UPLOADS, &unreachable).await, Some(1.0));
}

#[tokio::test]
async fn a_recording_streams_to_gcs_through_the_xml_api() {
    let _serial = serial().await;
    let gcs = GcsFacade::start().await;
    gcs.create_bucket(BUCKET).await;
    let stack =
        RecordingStack::start_with(|y| format!("{y}{}", plugins_yaml(None, Some(&gcs.base_url()))))
            .await;
    let page = TestPage::start().await;

    let output = json!({ "filepath": "g/page.mp4", "gcp": { "bucket": BUCKET } });
    let (_id, done) = record(&stack, &page, output, 4, status::COMPLETE).await;
    let file = &done["file_results"][0];
    assert_eq!(
        file["location"],
        format!("{}/{BUCKET}/g/page.mp4", gcs.base_url()).as_str(),
        "{done:#}"
    );
    let bytes = gcs
        .read(BUCKET, "g/page.mp4")
        .await
        .expect("the object is in the bucket");
    assert_eq!(file["size"].as_i64(), Some(bytes.len() as i64));
    let (p, _dir) = probe_bytes(&bytes, "rec.mp4").await;
    assert_playable_av(&p, 3.0);
}

#[tokio::test]
async fn a_killed_handlers_partial_recording_is_uploaded_by_the_service() {
    let _serial = serial().await;
    let s3 = S3sFs::start().await;
    s3.create_bucket(BUCKET).await;
    let stack = RecordingStack::start_with(|y| format!("{y}{}", plugins_yaml(None, None))).await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let request = json!({
        "url": page.url(""),
        "file_outputs": [{
            "filepath": "crash/page.mp4",
            "s3": { "access_key": S3S_ACCESS_KEY, "secret": S3S_SECRET_KEY, "region": S3_REGION,
                    "endpoint": s3.endpoint(), "bucket": BUCKET, "force_path_style": true }
        }]
    });
    let started = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id;
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = handler_pid(&id).expect("handler process");
    // SAFETY: a plain kill(2) of a process this test's egress started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (done, _) = wait_for_status(&lk, &id, status::FAILED, Duration::from_secs(60)).await;
    let file = &done["file_results"][0];
    assert_eq!(
        file["location"],
        format!("{}/{BUCKET}/crash/page.mp4", s3.endpoint()).as_str(),
        "{done:#}"
    );
    let bytes = s3
        .read(BUCKET, "crash/page.mp4")
        .await
        .expect("the partial recording is in the bucket");
    let (p, _dir) = probe_bytes(&bytes, "partial.mp4").await;
    assert_playable_av(&p, 2.0);
    // The service's own upload is counted too.
    let stored = [
        ("type", "video/mp4"),
        ("status", "success"),
        ("custom_endpoint", "true"),
    ];
    assert_eq!(metric(&stack, UPLOADS, &stored).await, Some(1.0));
}

#[tokio::test]
async fn wrong_credentials_fail_once_naming_the_storage_and_keep_the_file() {
    let _serial = serial().await;
    let s3 = S3sFs::start().await;
    s3.create_bucket(BUCKET).await;
    let stack = RecordingStack::start_with(|y| format!("{y}{}", plugins_yaml(None, None))).await;
    let page = TestPage::start().await;

    let output = json!({
        "filepath": "denied/page.mp4",
        "s3": { "access_key": S3S_ACCESS_KEY, "secret": "not-the-secret", "region": S3_REGION,
                "endpoint": s3.endpoint(), "bucket": BUCKET, "force_path_style": true }
    });
    let (_id, done) = record(&stack, &page, output, 3, status::FAILED).await;
    let error = done["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("S3 upload failed: "), "{done:#}");
    assert!(error.contains("the recording was kept at "), "{done:#}");
    assert_eq!(done["error_code"], 400, "{done:#}");
    let log = stack.egress.log();
    assert_eq!(
        log.matches("starting the object again").count(),
        0,
        "auth errors must not be retried"
    );
    assert!(s3.read(BUCKET, "denied/page.mp4").await.is_none());
    // Counted once (no retries), as a client error.
    let denied = [
        ("type", "video/mp4"),
        ("status", "4xx"),
        ("custom_endpoint", "true"),
    ];
    assert_eq!(metric(&stack, UPLOADS, &denied).await, Some(1.0));
}
