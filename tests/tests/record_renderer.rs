//! Layout renderer plugins end to end (issue 4): a room composite with `layout: solid-red`,
//! answered by the example renderer `plugins/solid-layout` loaded by config alone, as a dylib
//! and as a WASM component. Chrome loads the renderer's page (a local page that fills the
//! window with the colour it is asked for), and the MP4's middle frame is red. An unknown
//! layout fails at StartEgress, naming the layout.
//!
//! Needs what record_room_composite.rs needs, plus the wasm32-wasip2 target (scripts/setup).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use egress_e2e::recording::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RED: [u8; 3] = [0xff, 0x00, 0x00];
const RECORD_SECS: u64 = 4;

/// A page filling the window with `?color=<hex>` (black without one), signalling
/// START_RECORDING once painted, as the template contract asks of a renderer's page.
const COLOUR_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>solid</title>
<style>html,body{margin:0;height:100%;overflow:hidden;background:#000}</style></head>
<body><script>
const c = new URLSearchParams(location.search).get('color') || '000000';
document.body.style.background = '#' + c;
requestAnimationFrame(() => requestAnimationFrame(() => console.log('START_RECORDING')));
</script></body></html>
"#;

/// Serves [`COLOUR_PAGE`] on every path; returns its base URL.
async fn serve_colour_page() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind page server");
    let port = listener.local_addr().expect("local addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{COLOUR_PAGE}",
                    COLOUR_PAGE.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/solid"), task)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `solid-layout` as a cdylib and as a wasm32-wasip2 component, built once per process in the
/// plugin tests' target directory and profile (`host/tests/plugins/support.rs`).
fn solid_layout() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
            Some(d) => workspace_root().join(d),
            None => std::env::current_exe()
                .ok()
                .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
                .unwrap_or_else(|| workspace_root().join("target")),
        };
        let out_dir = target.join("plugin-artifacts");
        for extra in [
            &["--features", "egress-plugin-solid-layout/dylib"][..],
            &["--target", "wasm32-wasip2"][..],
        ] {
            let out = Command::new(env!("CARGO"))
                .current_dir(workspace_root())
                .env("CARGO_TARGET_DIR", &out_dir)
                .args(["build", "--lib", "-p", "egress-plugin-solid-layout"])
                .args(extra)
                .args([
                    "--config",
                    "profile.dev.opt-level=2",
                    "--config",
                    "profile.dev.package.\"*\".opt-level=2",
                    "--config",
                    "profile.dev.debug=false",
                ])
                .output()
                .expect("run cargo to build solid-layout");
            assert!(
                out.status.success(),
                "building solid-layout failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let so = out_dir.join("debug/libegress_plugin_solid_layout.so");
        let wasm = out_dir.join("wasm32-wasip2/debug/egress_plugin_solid_layout.wasm");
        assert!(
            so.is_file() && wasm.is_file(),
            "solid-layout artifacts missing"
        );
        (so, wasm)
    })
}

async fn record_solid_red(loader: &str, plugin: &Path) {
    let (page, server) = serve_colour_page().await;
    let plugins = format!(
        "plugins:\n  - builtin: file\n  - {loader}: {:?}\n    config: {{ url: \"{page}\" }}\n",
        plugin.display().to_string()
    );
    let stack = RecordingStack::start_with(|yaml| format!("{yaml}{plugins}")).await;
    let lk = stack.lk();
    let room = format!("renderer-{loader}");
    lk.run_ok(&["room", "create", &room]).await;

    // An unknown layout is refused at StartEgress, naming it.
    let request =
        json!({ "room_name": room, "layout": "grid", "file_outputs": [{ "filepath": "x.mp4" }] });
    let err = lk
        .egress_start_room_composite(&request.to_string())
        .await
        .expect_err("no renderer serves grid here");
    let out = format!("{}{}", err.stdout, err.stderr);
    assert!(
        out.contains("no active layout renderer serves layout \\\"grid\\\"")
            || out.contains("no active layout renderer serves layout \"grid\""),
        "{out}"
    );

    let request = json!({ "room_name": room, "layout": "solid-red", "file_outputs": [{ "filepath": "solid/{room_name}.mp4" }] });
    let started = lk
        .egress_start_room_composite(&request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(RECORD_SECS)).await;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    server.abort();

    let location = PathBuf::from(
        done["file_results"][0]["location"]
            .as_str()
            .expect("location"),
    );
    let p = probe(&location).await;
    let v = p.video.clone().expect("a video stream");
    assert_eq!(
        (v.codec.as_str(), v.width, v.height),
        ("h264", 1280, 720),
        "{p:?}"
    );
    let colour = pixel(&location, p.duration / 2.0, 632, 352, 16).await;
    eprintln!("{loader}: middle frame of {:.2}s is {colour:?}", p.duration);
    assert!(
        colour_distance(colour, RED) < 30,
        "{loader}: expected red, recorded {colour:?}"
    );
    let left = wait_no_processes(&id, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes of {id} still running: {left:?}");
}

#[tokio::test]
async fn solid_red_through_a_dylib_renderer() {
    let _serial = serial().await;
    let (so, _) = tokio::task::spawn_blocking(solid_layout)
        .await
        .expect("build");
    record_solid_red("dylib", so).await;
}

#[tokio::test]
async fn solid_red_through_a_wasm_renderer() {
    let _serial = serial().await;
    let (_, wasm) = tokio::task::spawn_blocking(solid_layout)
        .await
        .expect("build");
    record_solid_red("wasm", wasm).await;
}
