//! The Docker images, built and run as a user would (issue 15).
//!
//! `scripts/docker-images` builds both images offline from this machine's binaries through the
//! Dockerfile's `EGRESS_SOURCE=prebuilt` path (same runtime stage as the registry path), on the
//! private dockerd of scripts/docker-setup. Then, against this test's Redis, livekit-server and
//! S3 emulator on 127.0.0.1 (containers run with `--network host`):
//!
//! * the full image, with `enable_chrome_sandbox: true` and only
//!   `--security-opt seccomp=deploy/seccomp/chrome.json` (no `--privileged`, no added
//!   capabilities), turns healthy by its own HEALTHCHECK; records a room composite of real
//!   publishers to a bind-mounted directory with Chrome's renderers sandboxed (own user
//!   namespace, Chrome's seccomp filter over the container's), and a track egress beside it;
//!   then a room composite to S3 during which `docker stop` is sent: the worker drains (503 on
//!   its health port, still running), the recording completes and is uploaded, and the
//!   container exits 0 well within the grace period;
//! * the slim image lists only the `file` sink and refuses a request naming S3 with the
//!   plugin's name;
//! * `docker run IMAGE validate` accepts the docs' sample configs and refuses a bad one naming
//!   the field; the full image loads its shipped dylib plugins.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egress_e2e::docker::{
    Container, ContainerOptions, chart_image, docker_ok, images, output_text,
};
use egress_e2e::recording::*;
use egress_e2e::storage::{S3_REGION, S3S_ACCESS_KEY, S3S_SECRET_KEY};
use egress_e2e::{LiveKitServer, Lk, Redis, S3sFs, TestDir, egress_config, free_port, http_get};
use serde_json::{Value, json};

const RECORD_SECS: f64 = 8.0;
const DURATION_TOLERANCE: f64 = 0.5;
/// How long Docker's HEALTHCHECK (first probe after 15 s) may take to say healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(90);
/// `docker stop -t`: the grace period before Docker kills the container.
const STOP_GRACE_SECS: u64 = 120;
const BUCKET: &str = "recordings";
/// Where the bind-mounted output directory is inside the container.
const OUT: &str = "/out";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn seccomp_profile() -> String {
    root()
        .join("deploy/seccomp/chrome.json")
        .display()
        .to_string()
}

/// `docker run --rm [-e …] [-v …] IMAGE validate`: (exit status 0?, output).
async fn validate(image: &str, env: &[(&str, &str)], volumes: &[(&Path, &str)]) -> (bool, String) {
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    for (host, inside) in volumes {
        args.push("-v".into());
        args.push(format!("{}:{inside}:ro", host.display()));
    }
    args.push(image.into());
    args.push("validate".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = egress_e2e::docker::docker_run_args(&refs, Duration::from_secs(120)).await;
    (out.status.success(), output_text(&out))
}

/// The `# active plugins:` lines of `egress validate`: (name, source).
fn active_plugins(report: &str) -> Vec<(String, String)> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("# active plugins:"))
        .skip(1)
        .take_while(|l| l.starts_with("#   "))
        .map(|l| {
            let words: Vec<&str> = l.trim_start_matches('#').split_whitespace().collect();
            let name = words.first().copied().unwrap_or("").to_owned();
            // name, version, "api", api version, source [path]
            let source = words.get(4..).map(|w| w.join(" ")).unwrap_or_default();
            (name, source)
        })
        .collect()
}

/// Makes `dir` writable by the image's user (uid/gid 1000), as a user's bind mount must be.
fn give_to_image_user(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(dir, Some(1000), Some(1000)).expect("chown the output dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The egress config for a container: this test's Redis and livekit-server, costs a 2-core
/// host bids on (a composite and a track at once), Chrome's sandbox on.
fn container_config(redis: &Redis, livekit: &LiveKitServer, health_port: u16) -> String {
    format!(
        "{}cpu_cost:\n  room_composite_cpu_cost: 1\n  web_cpu_cost: 1\n  track_cpu_cost: 0.5\n\
         enable_chrome_sandbox: true\n",
        egress_config(redis, livekit, health_port, free_port())
    )
}

/// A renderer of Chrome running in `container`, sandboxed: in a user namespace other than the
/// container's, under at least two seccomp filters (the container's and Chrome's own).
fn sandboxed_renderer(container: &Container) -> Option<String> {
    let pids = container.pids();
    // tini, PID 1 of the container: its user namespace is the container's.
    let container_userns = pids
        .iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with("/usr/bin/tini"))
        })
        .and_then(|p| std::fs::read_link(format!("/proc/{p}/ns/user")).ok())?;
    for pid in pids {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        if !cmdline.contains("--type=renderer") {
            continue;
        }
        assert!(
            !cmdline.contains("--no-sandbox"),
            "a renderer runs without the sandbox: {cmdline}"
        );
        let userns = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        let filters: u32 = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp_filters:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if userns.as_ref().is_some_and(|ns| ns != &container_userns) && filters >= 2 {
            return Some(format!(
                "renderer {pid}: user namespace {userns:?} (container's {container_userns:?}), {filters} seccomp filters"
            ));
        }
    }
    None
}

/// Maps a location the egress reported inside the container (under [`OUT`]) to the host.
fn on_host(location: &str, out_dir: &Path) -> PathBuf {
    let relative = location
        .strip_prefix(OUT)
        .unwrap_or_else(|| panic!("{location} is not under {OUT}"))
        .trim_start_matches('/');
    out_dir.join(relative)
}

async fn wait_health_status(port: u16, want: u16, timeout: Duration) -> Duration {
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{port}/");
    loop {
        let got = http_get(&url).await.map(|(s, _)| s).ok();
        if got == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "health port {port}: {got:?} after {timeout:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_images_validate_the_sample_configs_and_are_the_ones_the_chart_names() {
    let images = images();
    assert_eq!(
        images.full,
        chart_image(),
        "the chart's default image is the full image"
    );
    for image in [&images.full, &images.slim] {
        let config: Value = serde_json::from_str(&docker_ok(&["image", "inspect", image]).await)
            .expect("docker image inspect is JSON");
        let config = &config[0]["Config"];
        assert_eq!(config["User"], "1000:1000", "{image} runs as non-root");
        assert_eq!(
            config["Entrypoint"],
            json!(["/usr/local/bin/egress-entrypoint"]),
            "{image}"
        );
        assert_eq!(
            config["Healthcheck"]["Test"],
            json!(["CMD", "/usr/local/bin/egress-healthcheck"]),
            "{image}"
        );
    }

    // The docs' sample configs, as `docker run IMAGE validate` with the config in the env.
    let examples = root().join("deploy/examples");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("deploy/examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for path in &names {
        let body = std::fs::read_to_string(path).expect("read example");
        let (ok, report) = validate(&images.full, &[("EGRESS_CONFIG_BODY", &body)], &[]).await;
        assert!(ok, "{} refused in the image:\n{report}", path.display());
    }
    // As the README shows it: a config file bind-mounted into the container.
    let (ok, report) = validate(
        &images.full,
        &[("EGRESS_CONFIG_FILE", "/config/egress.yaml")],
        &[(&examples, "/config")],
    )
    .await;
    assert!(ok, "EGRESS_CONFIG_FILE: {report}");
    let plugins = active_plugins(&report);
    for name in ["file", "s3", "azure", "gcs"] {
        assert!(
            plugins.iter().any(|(n, s)| n == name && s == "builtin"),
            "{name} compiled into the full image: {plugins:?}\n{report}"
        );
    }
    // A bad config: non-zero, naming the key.
    let (ok, report) = validate(
        &images.full,
        &[(
            "EGRESS_CONFIG_BODY",
            "api_key: k\napi_secret: s\nws_url: ws://127.0.0.1:1\nredis:\n  address: 127.0.0.1:1\nhealth_port: eighty\n",
        )],
        &[],
    )
    .await;
    assert!(!ok, "a bad config passed: {report}");
    assert!(
        report.contains("health_port") && report.contains("line 6"),
        "{report}"
    );

    // The full image's dylib plugins load in it.
    let base =
        "api_key: k\napi_secret: s\nws_url: ws://127.0.0.1:1\nredis:\n  address: 127.0.0.1:1\n";
    let dylibs = ["s3", "azure", "gcs", "rtmp", "srt"];
    let mut with_dylibs = format!("{base}plugins:\n  - builtin: file\n");
    for name in dylibs {
        with_dylibs.push_str(&format!(
            "  - dylib: /usr/lib/egress/plugins/libegress_plugin_{name}.so\n"
        ));
    }
    let (ok, report) = validate(&images.full, &[("EGRESS_CONFIG_BODY", &with_dylibs)], &[]).await;
    assert!(ok, "{report}");
    for name in dylibs {
        let line = format!("dylib /usr/lib/egress/plugins/libegress_plugin_{name}.so");
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("#   {name} ")) && l.contains(&line)),
            "{name} not loaded from its dylib:\n{report}"
        );
    }

    // The slim image: the `file` sink only, and a plugin it lacks is refused by name.
    let (ok, report) = validate(&images.slim, &[("EGRESS_CONFIG_BODY", base)], &[]).await;
    assert!(ok, "{report}");
    assert_eq!(
        active_plugins(&report),
        vec![("file".to_owned(), "builtin".to_owned())],
        "{report}"
    );
    assert!(
        report.contains("# active live destinations: none"),
        "{report}"
    );
    let (ok, report) = validate(
        &images.slim,
        &[(
            "EGRESS_CONFIG_BODY",
            &format!("{base}plugins:\n  - builtin: s3\n"),
        )],
        &[],
    )
    .await;
    assert!(!ok, "{report}");
    assert!(
        report.contains("plugins[0].builtin") && report.contains("compiled in: file"),
        "{report}"
    );
    let shipped = docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "ls",
        &images.slim,
        "/usr/lib/egress/plugins",
    ])
    .await;
    assert_eq!(shipped.trim(), "", "the slim image ships no dylibs");
}

#[tokio::test]
async fn a_sandboxed_container_records_a_composite_and_a_track_and_drains_on_docker_stop() {
    let images = images();
    let _serial = serial().await;
    let redis = Redis::start().await;
    let livekit = LiveKitServer::start(&redis).await;
    let s3 = S3sFs::start().await;
    s3.create_bucket(BUCKET).await;
    let health_port = free_port();
    let config = container_config(&redis, &livekit, health_port);
    let out = TestDir::new("docker-out");
    give_to_image_user(out.path());

    let container = Container::run(
        &images.full,
        &ContainerOptions {
            env: vec![
                ("EGRESS_CONFIG_BODY".into(), config.clone()),
                ("EGRESS_LOCAL_STORAGE_DIR".into(), OUT.into()),
            ],
            volumes: vec![(out.path().to_path_buf(), OUT.into())],
            security_opts: vec![format!("seccomp={}", seccomp_profile())],
            args: vec![],
        },
    )
    .await;
    let host_config = container
        .inspect("{{.HostConfig.Privileged}} {{.HostConfig.CapAdd}} {{.HostConfig.SecurityOpt}}")
        .await;
    assert!(
        host_config.starts_with("false [] ") && host_config.contains("seccomp="),
        "no privileges beyond the seccomp profile: {host_config}"
    );
    let took = container.wait_healthy(HEALTHY_WITHIN).await;
    eprintln!("container {} healthy after {took:?}", container.name());

    let lk = Lk::new(&livekit);
    let media = TestMedia::generate(120).await;
    let room = "docker-room";
    let publishers_log = TestDir::new("docker-publishers");
    let video = Publisher::start(
        &livekit,
        room,
        "camera",
        &media.video,
        Some(30),
        publishers_log.path(),
    );
    let audio = Publisher::start(
        &livekit,
        room,
        "microphone",
        &media.audio,
        None,
        publishers_log.path(),
    );
    wait_for_publishers(&lk, room, 2, Duration::from_secs(30)).await;

    // A room composite to the bind mount, and the microphone's track beside it.
    let request = json!({ "room_name": room, "layout": "grid", "file_outputs": [{ "filepath": "rooms/{room_name}-{time}" }] });
    let composite = lk
        .egress_start_room_composite(&request.to_string())
        .await
        .expect("room composite start")
        .egress_id;
    let (active, _) =
        wait_for_status(&lk, &composite, status::ACTIVE, Duration::from_secs(60)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    let audio_sid = microphone_track_sid(&livekit, room).await;
    let track_request = json!({ "room_name": room, "track_id": audio_sid, "file": { "filepath": "tracks/{track_id}" } });
    let track = lk
        .egress_start("track", &track_request.to_string())
        .await
        .expect("track egress start")
        .egress_id;
    let (track_active, _) =
        wait_for_status(&lk, &track, status::ACTIVE, Duration::from_secs(30)).await;
    let track_started = track_active["file_results"][0]["started_at"]
        .as_i64()
        .expect("track file started_at when ACTIVE");

    // Chrome's renderers are sandboxed inside the container.
    let deadline = Instant::now() + Duration::from_secs(20);
    let evidence = loop {
        if let Some(e) = sandboxed_renderer(&container) {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no sandboxed Chrome renderer in the container; its processes: {:?}\n{}",
            container
                .pids()
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ")
                    .chars()
                    .take(120)
                    .collect::<String>())
                .collect::<Vec<_>>(),
            container.logs_tail(40).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("in the container: {evidence}");

    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    let track_asked = (unix_nanos() - track_started) as f64 / 1e9;
    lk.egress_stop(&composite).await.expect("stop composite");
    lk.egress_stop(&track).await.expect("stop track");
    let (done, _) =
        wait_for_status(&lk, &composite, status::COMPLETE, Duration::from_secs(60)).await;
    let (track_done, _) =
        wait_for_status(&lk, &track, status::COMPLETE, Duration::from_secs(60)).await;

    // The composite, as the user finds it in the bind-mounted directory.
    let location = done["file_results"][0]["location"]
        .as_str()
        .expect("location");
    let file = on_host(location, out.path());
    let p = probe(&file).await;
    let v = p.video.clone().expect("a video stream");
    let a = p.audio.clone().expect("an audio stream");
    assert_eq!(
        (v.codec.as_str(), v.width, v.height, a.codec.as_str()),
        ("h264", 1280, 720, "aac"),
        "{p:?}"
    );
    assert!(
        (p.duration - asked).abs() < DURATION_TOLERANCE,
        "recorded {:.2}s, asked for {asked:.2}s",
        p.duration
    );
    let level = mean_volume(&file).await;
    assert!(level > -40.0, "the published tone is missing: {level} dB");
    let colour = pixel(&file, p.duration / 2.0, 632, 400, 16).await;
    assert!(
        colour_distance(colour, VIDEO_RGB) < 30,
        "published colour {VIDEO_RGB:?}, recorded {colour:?}"
    );
    assert!(
        decodes_cleanly(&file).await,
        "{} does not decode cleanly",
        file.display()
    );
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&file).expect("stat recording").uid();
        assert_eq!(owner, 1000, "written by the image's non-root user");
    }

    // The track: Opus in Ogg, the tone, as long as asked.
    let track_file = on_host(
        track_done["file_results"][0]["location"]
            .as_str()
            .expect("track location"),
        out.path(),
    );
    let tp = probe(&track_file).await;
    assert_eq!(
        tp.audio.as_ref().map(|a| a.codec.as_str()),
        Some("opus"),
        "{tp:?}"
    );
    assert!(
        (tp.duration - track_asked).abs() < DURATION_TOLERANCE,
        "track recorded {:.2}s, asked for {track_asked:.2}s",
        tp.duration
    );
    assert!(mean_volume(&track_file).await > -40.0);

    // `docker stop` during a recording to S3: the worker drains, the recording completes and
    // is uploaded, the container exits 0 within the grace period.
    let request = json!({
        "room_name": room, "layout": "grid",
        "file_outputs": [{
            "filepath": "drain/{room_name}-{time}.mp4",
            "s3": {
                "access_key": S3S_ACCESS_KEY, "secret": S3S_SECRET_KEY, "region": S3_REGION,
                "endpoint": s3.endpoint(), "bucket": BUCKET, "force_path_style": true
            }
        }]
    });
    let draining = lk
        .egress_start_room_composite(&request.to_string())
        .await
        .expect("room composite to S3 start")
        .egress_id;
    wait_for_status(&lk, &draining, status::ACTIVE, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stop_started = Instant::now();
    let mut docker_stop = egress_e2e::docker::docker()
        .args(["stop", "-t", &STOP_GRACE_SECS.to_string(), container.id()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker stop");
    let to_503 = wait_health_status(health_port, 503, Duration::from_secs(20)).await;
    eprintln!("draining: health 503 {to_503:?} after docker stop");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = container.state().await;
    assert!(
        state.running,
        "the container left while recording: {state:?}\n{}",
        container.logs_tail(40).await
    );
    assert_eq!(
        status_of(
            &egress_info(&lk, &draining)
                .await
                .expect("the draining egress is listed")
        ),
        status::ACTIVE,
        "the recording goes on while the worker drains"
    );
    lk.egress_stop(&draining)
        .await
        .expect("stop the draining egress");
    let (drained, _) =
        wait_for_status(&lk, &draining, status::COMPLETE, Duration::from_secs(90)).await;
    let stopped = tokio::time::timeout(
        Duration::from_secs(STOP_GRACE_SECS + 30),
        docker_stop.wait(),
    )
    .await
    .expect("docker stop returns")
    .expect("docker stop runs");
    let stop_took = stop_started.elapsed();
    assert!(stopped.success(), "docker stop failed");
    let state = container.wait_exit(Duration::from_secs(10)).await;
    eprintln!("docker stop: container exited after {stop_took:?}: {state:?}");
    assert_eq!(
        (state.exit_code, state.oom_killed),
        (0, false),
        "the container exits 0 after draining:\n{}",
        container.logs_tail(40).await
    );
    assert!(
        stop_took < Duration::from_secs(STOP_GRACE_SECS - 10),
        "it left on its own, not at Docker's kill after {STOP_GRACE_SECS} s: {stop_took:?}"
    );

    let key = drained["file_results"][0]["filename"]
        .as_str()
        .expect("filename");
    let bytes = s3
        .read(BUCKET, key)
        .await
        .unwrap_or_else(|| panic!("{key} is not in the bucket: {drained:#}"));
    assert_eq!(
        drained["file_results"][0]["size"].as_i64(),
        Some(bytes.len() as i64)
    );
    let dir = TestDir::new("docker-s3");
    let downloaded = dir.join("drained.mp4");
    std::fs::write(&downloaded, &bytes).expect("write the download");
    let p = probe(&downloaded).await;
    assert!(p.video.is_some() && p.audio.is_some(), "{p:?}");
    assert!(p.duration > 5.0, "only {:.2}s uploaded", p.duration);
    assert!(mean_volume(&downloaded).await > -40.0);

    video.stop().await;
    audio.stop().await;
}

/// The SID of the `microphone` participant's track in `room`, from RoomService (what
/// `track_sid` does for a `RecordingStack`); waits up to 30 s for it.
async fn microphone_track_sid(livekit: &LiveKitServer, room: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = twirp(
            livekit,
            "RoomService/ListParticipants",
            json!({ "roomAdmin": true, "room": room }),
            &json!({ "room": room }),
        )
        .await;
        let sid = body["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["identity"] == "microphone")
            .flat_map(|p| p["tracks"].as_array().cloned().unwrap_or_default())
            .find_map(|t| t["sid"].as_str().map(str::to_owned));
        if let Some(sid) = sid {
            return sid;
        }
        assert!(
            Instant::now() < deadline,
            "no microphone track in {room}: HTTP {status} {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_slim_container_refuses_a_request_naming_s3_with_the_plugin() {
    let images = images();
    let _serial = serial().await;
    let redis = Redis::start().await;
    let livekit = LiveKitServer::start(&redis).await;
    let health_port = free_port();
    let container = Container::run(
        &images.slim,
        &ContainerOptions {
            env: vec![(
                "EGRESS_CONFIG_BODY".into(),
                container_config(&redis, &livekit, health_port),
            )],
            security_opts: vec![format!("seccomp={}", seccomp_profile())],
            ..Default::default()
        },
    )
    .await;
    container.wait_healthy(HEALTHY_WITHIN).await;
    let lk = Lk::new(&livekit);
    // A web egress: livekit-server forwards it without a room (a room composite needs one);
    // the worker refuses it at StartEgress, before any page is loaded.
    let request = json!({
        "url": "http://127.0.0.1:9/",
        "file_outputs": [{ "filepath": "x.mp4", "s3": { "bucket": "b", "region": "us-east-1" } }]
    });
    let text = match lk.egress_start("web", &request.to_string()).await {
        Ok(started) => started.status,
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("S3 storage is not available on this worker") && text.contains("\"s3\""),
        "StartEgress with S3 on the slim image: {text}\n{}",
        container.logs_tail(30).await
    );
    let state = container.state().await;
    assert!(state.running && state.health == "healthy", "{state:?}");
}
