//! The `http-put` example loaded as a dylib and as a WASM component by config alone: uploads
//! that fail mid-way (transient failures retried, permanent ones surfaced). The 1 GiB streams
//! are in `plugins_stream.rs`.

use egress_http_put_test_server::{Fault, TestServer};
use egress_plugin_api::conformance::Pattern;
use serde_json::{Value, json};

use crate::http::{Loader, runtime, sink, upload};

fn small_config(server: &TestServer) -> Value {
    json!({
        "url": server.url(),
        "part_size": 1 << 20,
        "timeout_ms": 5000,
        "max_attempts": 3,
        "backoff_initial_ms": 5,
        "backoff_max_ms": 20,
    })
}

/// Part 3 fails with a 503, part 5 loses its connection half-way: both retried, the object
/// arrives whole.
fn transient_failures_are_retried(loader: Loader) {
    let server = TestServer::start();
    server.inject("midway", 2, 1, Fault::Status(503));
    server.inject("midway", 5, 1, Fault::Disconnect);
    let sink = sink(loader, &small_config(&server));
    let size = 6 << 20;
    let (sha, result) = runtime().block_on(upload(&*sink, "midway.bin", size, &Pattern::new(8)));
    let receipt = result.expect("transient failures are retried");
    assert_eq!((receipt.size, receipt.sha256), (size, sha));
    let stored = server.object("midway.bin").expect("stored");
    assert_eq!((stored.size, stored.sha256), (size, sha));
    assert_eq!(server.puts("midway.bin"), 6 + 2, "6 parts and 2 retries");
}

/// A 400 on part 3 is permanent (not retried), a 403 is an auth error; the partial upload is
/// discarded; 503s beyond the retry budget surface as retryable.
fn permanent_failures_are_surfaced(loader: Loader) {
    let server = TestServer::start();
    server.inject("bad-request", 2, 100, Fault::Status(400));
    server.inject("forbidden", 1, 100, Fault::Status(403));
    server.inject("unavailable", 2, 100, Fault::Status(503));
    let sink = sink(loader, &small_config(&server));
    let rt = runtime();
    let size = 6 << 20;

    let (_, result) = rt.block_on(upload(&*sink, "bad-request.bin", size, &Pattern::new(9)));
    let e = result.expect_err("a 400 fails the upload");
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains("HTTP 400 after 1 attempt(s)"), "{e}");
    assert_eq!(server.puts("bad-request.bin"), 3, "no retry of a 400");

    let (_, result) = rt.block_on(upload(&*sink, "forbidden.bin", size, &Pattern::new(9)));
    let e = result.expect_err("a 403 fails the upload");
    assert!(e.is_auth(), "{e}");

    let (_, result) = rt.block_on(upload(&*sink, "unavailable.bin", size, &Pattern::new(9)));
    let e = result.expect_err("503s beyond the budget fail the upload");
    assert!(e.is_retryable(), "{e}");
    assert_eq!(
        server.puts("unavailable.bin"),
        2 + 3,
        "2 parts, then 3 attempts"
    );

    for key in ["bad-request.bin", "forbidden.bin", "unavailable.bin"] {
        assert!(server.object(key).is_none(), "{key} must not be visible");
    }
    assert!(
        server.partial_keys().is_empty(),
        "aborted uploads are deleted: {:?}",
        server.partial_keys()
    );
}

#[test]
fn dylib_retries_transient_failures() {
    transient_failures_are_retried(Loader::Dylib);
}

#[test]
fn wasm_retries_transient_failures() {
    transient_failures_are_retried(Loader::Wasm);
}

#[test]
fn dylib_surfaces_permanent_failures() {
    permanent_failures_are_surfaced(Loader::Dylib);
}

#[test]
fn wasm_surfaces_permanent_failures() {
    permanent_failures_are_surfaced(Loader::Wasm);
}
