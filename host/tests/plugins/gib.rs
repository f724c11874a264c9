//! 1 GiB through the `http-put` example as a dylib and as a WASM component, loaded by config
//! alone: size and SHA-256 checked on both ends, resident set bounded.

use std::time::Instant;

use egress_http_put_test_server::TestServer;
use egress_plugin_api::conformance::{Pattern, PeakRss};
use serde_json::json;

use crate::http::{Loader, runtime, sink, upload};

const GIB: u64 = 1 << 30;

fn stream_one_gib(loader: Loader, label: &str) {
    let server = TestServer::start();
    server.require_authorization("Bearer big");
    let sink = sink(
        loader,
        &json!({ "url": server.url(), "authorization": "Bearer big", "timeout_ms": 60000 }),
    );
    let peak = PeakRss::start();
    let started = Instant::now();
    let (sha, result) = runtime().block_on(upload(&*sink, "big/one.bin", GIB, &Pattern::new(7)));
    let elapsed = started.elapsed();
    let growth = peak.stop();
    let receipt = result.unwrap_or_else(|e| panic!("{label}: upload failed: {e}"));
    assert_eq!(
        (receipt.size, receipt.sha256),
        (GIB, sha),
        "{label}: receipt"
    );
    let stored = server.object("big/one.bin").expect("stored on the server");
    assert_eq!(
        (stored.size, stored.sha256),
        (GIB, sha),
        "{label}: server side"
    );
    let mib_s = 1024.0 / elapsed.as_secs_f64();
    eprintln!(
        "{label}: 1 GiB in {:.1} s ({mib_s:.0} MiB/s), resident set +{} MiB",
        elapsed.as_secs_f64(),
        growth.map_or("?".into(), |g| (g >> 20).to_string())
    );
    if let Some(g) = growth {
        assert!(
            g < 192 << 20,
            "{label}: resident set grew by {} MiB streaming 1 GiB",
            g >> 20
        );
    }
}

/// Both loaders one after the other: the resident set is measured, so nothing else may run.
#[test]
fn one_gib_through_dylib_and_wasm() {
    stream_one_gib(Loader::Dylib, "dylib");
    stream_one_gib(Loader::Wasm, "wasm");
}
