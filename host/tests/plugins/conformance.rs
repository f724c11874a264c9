//! The conformance kit through each loader, for the `file` sink and the `http-put` example.
//!
//! One test runs the six combinations one after the other: the kit measures the resident set
//! while a large object streams, which only means something when nothing else in the process
//! allocates at the same time (cargo runs test binaries one at a time).

use std::sync::Arc;

use egress_http_put_test_server::{Fault, TestServer};
use egress_plugin_api::conformance::{
    DirInspector, Expect, FailureCase, Inspector, Kit, Options, Report,
};
// Linked for its `inventory` registration: the compiled-in case of the matrix.
use egress_plugin_http_put as _;
use serde_json::{Value, json};

use crate::support::{artifacts, load, q};

#[derive(Clone, Copy, Debug)]
enum Loader {
    Builtin,
    Dylib,
    Wasm,
}

fn options() -> Options {
    Options {
        large_size: 128 << 20,
        ..Options::default()
    }
}

/// The `plugins:` entry for `plugin` through `loader`, with `sandbox` lines for WASM.
fn entry(plugin: &str, loader: Loader, sandbox: &str, config: &Value) -> String {
    let a = match loader {
        Loader::Builtin => None,
        _ => Some(artifacts()),
    };
    let source = match (loader, plugin, a) {
        (Loader::Builtin, name, _) => format!("builtin: {name}"),
        (Loader::Dylib, "file", Some(a)) => format!("dylib: {}", q(&a.file_so)),
        (Loader::Dylib, _, Some(a)) => format!("dylib: {}", q(&a.http_put_so)),
        (Loader::Wasm, "file", Some(a)) => format!("wasm: {}\n    {sandbox}", q(&a.file_wasm)),
        (Loader::Wasm, _, Some(a)) => format!("wasm: {}\n    {sandbox}", q(&a.http_put_wasm)),
        _ => unreachable!("artifacts exist for every non-builtin loader"),
    };
    format!("  - {source}\n    config: {config}\n")
}

fn run_kit(
    yaml: &str,
    name: &str,
    config: Value,
    inspector: Arc<dyn Inspector>,
    kit: impl FnOnce(Kit) -> Kit,
) -> Report {
    let registry = match load(yaml) {
        Ok(r) => r,
        Err(e) => {
            return Report {
                results: vec![("load".into(), Err(e.to_string()))],
            };
        }
    };
    let active = registry.get(name).expect("plugin active");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(kit(Kit::new(active.plugin(), config, inspector).options(options())).run())
}

fn file_kit(loader: Loader) -> Report {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = json!({ "directory": dir.path() });
    let sandbox = format!("allowed_dirs: [{}]", q(dir.path()));
    let yaml = entry("file", loader, &sandbox, &config);
    run_kit(
        &yaml,
        "file",
        config.clone(),
        Arc::new(DirInspector::new(dir.path())),
        |kit| {
            kit.invalid_config(json!({ "directory": "" }), Some("directory"))
                .invalid_config(json!({ "fsync": "yes" }), Some("fsync"))
                .invalid_config(json!({ "dirctory": "/x" }), Some("dirctory"))
                .failure(FailureCase::new(
                    "key escapes the root",
                    config.clone(),
                    "../escape.bin",
                    Expect::Permanent,
                ))
                .failure(FailureCase::new(
                    "absolute key",
                    config.clone(),
                    "/etc/x",
                    Expect::Permanent,
                ))
        },
    )
}

fn http_put_kit(loader: Loader) -> Report {
    let server = TestServer::start();
    server.require_authorization("Bearer test-token");
    server.inject("fail-permanent", 0, 100, Fault::Status(400));
    server.inject("fail-retryable", 0, 100, Fault::Status(503));
    let config = json!({
        "url": server.url(),
        "authorization": "Bearer test-token",
        "part_size": 1 << 20,
        "timeout_ms": 5000,
        "max_attempts": 3,
        "backoff_initial_ms": 5,
        "backoff_max_ms": 20,
    });
    let mut no_auth = config.clone();
    no_auth["authorization"] = Value::Null;
    let mut refused = config.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    refused["url"] = json!(format!("http://127.0.0.1:{port}/objects"));
    let yaml = entry("http-put", loader, "allowed_hosts: [127.0.0.1]", &config);
    run_kit(
        &yaml,
        "http-put",
        config.clone(),
        server.inspector(),
        |kit| {
            kit.invalid_config(json!({}), Some("url"))
                .invalid_config(
                    json!({ "url": "http://x", "part_size": 1 }),
                    Some("part_size"),
                )
                .failure(FailureCase::new(
                    "missing credentials",
                    no_auth,
                    "k/auth.bin",
                    Expect::Auth,
                ))
                .failure(FailureCase::new(
                    "400",
                    config.clone(),
                    "k/fail-permanent.bin",
                    Expect::Permanent,
                ))
                .failure(
                    FailureCase::new(
                        "503 until retries run out",
                        config.clone(),
                        "k/fail-retryable.bin",
                        Expect::Retryable,
                    )
                    .write_bytes(3 << 20),
                )
                .failure(FailureCase::new(
                    "connection refused",
                    refused,
                    "k/refused.bin",
                    Expect::Retryable,
                ))
        },
    )
}

#[test]
fn every_sink_passes_the_kit_through_every_loader() {
    let mut failures = Vec::new();
    for loader in [Loader::Builtin, Loader::Dylib, Loader::Wasm] {
        for (plugin, report) in [
            ("file", file_kit(loader)),
            ("http-put", http_put_kit(loader)),
        ] {
            eprintln!("--- {plugin} via {loader:?}");
            for (check, result) in &report.results {
                match result {
                    Ok(note) => eprintln!("ok   {check} {note}"),
                    Err(e) => eprintln!("FAIL {check}: {e}"),
                }
            }
            failures.extend(
                report
                    .failures()
                    .into_iter()
                    .map(|f| format!("{plugin} via {loader:?}: {f}")),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
