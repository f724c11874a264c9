//! What no well-behaved sink shows: panics stopped at the C boundary, a WASM guest that spins,
//! one that eats memory, one that calls a host it may not, one that looks for a directory it
//! was not given; and plugin logs reaching the host's log.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use egress_http_put_test_server::TestServer;
use egress_plugin_api::{ObjectSpec, SinkError, SinkFactory};

use crate::support::{artifacts, load, load_errors, q};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// Open, write `writes` chunks of 1 MiB, finish: the first error.
fn run(sink: &Arc<dyn SinkFactory>, writes: usize) -> Result<(), SinkError> {
    rt().block_on(async {
        let mut o = sink.open(ObjectSpec::new("k.bin")).await?;
        for _ in 0..writes {
            if let Err(e) = o.write(vec![1u8; 1 << 20].into()).await {
                o.abort().await;
                return Err(e);
            }
        }
        o.finish().await.map(drop)
    })
}

fn testbed(loader: &str, sandbox: &str, config: &str) -> Arc<dyn SinkFactory> {
    let a = artifacts();
    let path = if loader == "dylib" {
        &a.testbed_so
    } else {
        &a.testbed_wasm
    };
    let yaml = format!("  - {loader}: {}\n{sandbox}    config: {config}\n", q(path));
    load(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .sink("testbed")
        .expect("testbed active")
}

#[test]
fn dylib_panics_become_errors() {
    let sink = testbed("dylib", "", "{ panic_in: write }");
    let e = run(&sink, 1).expect_err("panics");
    assert!(e.is_permanent(), "{e}");
    assert!(
        e.message()
            .contains("plugin panicked: testbed: panic in write, as configured"),
        "{e}"
    );

    let a = artifacts();
    let errors = load_errors(&format!(
        "  - dylib: {}\n    config: {{ panic_in: create }}\n",
        q(&a.testbed_so)
    ));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("plugins[0].config (plugin testbed, dylib "),
        "{errors:?}"
    );
    assert!(
        errors[0].contains("plugin panicked: testbed: panic in create"),
        "{errors:?}"
    );
}

#[test]
fn wasm_panics_trap_the_instance_only() {
    let sink = testbed("wasm", "", "{ panic_in: write }");
    let e = run(&sink, 1).expect_err("traps");
    assert!(e.is_permanent(), "{e}");
    assert!(e.message().contains("the plugin trapped"), "{e}");
    assert!(
        e.message().contains("testbed: panic in write"),
        "guest stderr is reported: {e}"
    );
    // The plugin still works for the next object (a fresh instance).
    let healthy = testbed("wasm", "", "{}");
    run(&healthy, 3).expect("a fresh instance is unaffected");
}

#[test]
fn wasm_time_limit_stops_a_spinning_guest() {
    let sink = testbed(
        "wasm",
        "    max_call_time: 300ms\n",
        "{ spin_in_write: true }",
    );
    let started = std::time::Instant::now();
    let e = run(&sink, 1).expect_err("interrupted");
    assert!(
        e.message().contains("exceeded its time limit of 300ms"),
        "{e}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "stopped promptly"
    );
}

#[test]
fn wasm_memory_limit_stops_a_hungry_guest() {
    let sink = testbed(
        "wasm",
        "    max_memory_mb: 24\n",
        "{ leak_per_write: 4194304 }",
    );
    let e = run(&sink, 16).expect_err("out of memory");
    assert!(e.is_permanent(), "{e}");
    assert!(e.message().contains("the plugin trapped"), "{e}");
}

#[test]
fn wasm_network_is_limited_to_allowed_hosts() {
    let server = TestServer::start();
    let a = artifacts();
    let config = format!("{{ url: \"{}\", max_attempts: 1 }}", server.url());
    let yaml = format!(
        "  - wasm: {}\n    allowed_hosts: [\"uploads.example.com\", \"127.0.0.1:1\"]\n    config: {config}\n",
        q(&a.http_put_wasm)
    );
    let sink = load(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .sink("http-put")
        .expect("active");
    let e = rt().block_on(sink.health_check()).expect_err("denied");
    assert!(e.is_auth(), "{e}");
    assert!(
        e.to_string()
            .contains("is not in this plugin's allowed_hosts"),
        "{e}"
    );
    let e = run(&sink, 1).expect_err("denied");
    assert!(e.is_auth(), "{e}");
    assert_eq!(server.puts("k.bin"), 0, "nothing reached the server");
}

#[test]
fn wasm_sees_no_directory_it_was_not_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = artifacts();
    let yaml = format!(
        "  - wasm: {}\n    config: {{ directory: {} }}\n",
        q(&a.file_wasm),
        q(dir.path())
    );
    let sink = load(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .sink("file")
        .expect("active");
    assert!(run(&sink, 1).is_err());
    assert!(rt().block_on(sink.health_check()).is_err());
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "nothing written"
    );
}

/// Captures everything logged in this process (the dylib's host callback and the WASM log
/// import run on plugin threads, so a thread-local subscriber would miss them).
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        log
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plugin_logs_reach_the_host() {
    let log = captured();
    for loader in ["dylib", "wasm"] {
        let marker = format!("hello from the {loader} testbed");
        let sink = testbed(loader, "", &format!("{{ log_on_open: \"{marker}\" }}"));
        run(&sink, 0).expect("runs");
        let text =
            String::from_utf8_lossy(&log.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        assert!(
            text.contains(&format!("{marker} (k.bin)")),
            "{loader}: {text}"
        );
    }
}
