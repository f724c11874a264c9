//! `http-put`, compiled in, against the conformance kit and the test server. (The host's tests
//! run the same kit through the dylib and WASM loaders.)

use std::sync::Arc;

use egress_http_put_test_server::{Fault, TestServer};
use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::{Expect, FailureCase, Kit, Options, Pattern};
use egress_plugin_api::{BuiltinSink, LoadedPlugin, ObjectSpec, SinkFactory, SinkPlugin};
use egress_plugin_http_put::HttpPut;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn config(server: &TestServer) -> Value {
    json!({
        "url": server.url(),
        "authorization": "Bearer test-token",
        "part_size": 1 << 20,
        "timeout_ms": 5000,
        "max_attempts": 3,
        "backoff_initial_ms": 5,
        "backoff_max_ms": 20,
    })
}

#[test]
fn http_put_passes_the_kit() {
    let server = TestServer::start();
    server.require_authorization("Bearer test-token");
    server.inject("fail-permanent", 0, 100, Fault::Status(400));
    server.inject("fail-retryable", 0, 100, Fault::Status(503));
    let good = config(&server);
    let mut no_auth = good.clone();
    no_auth["authorization"] = Value::Null;
    let mut wrong_auth = good.clone();
    wrong_auth["authorization"] = json!("Bearer nope");
    let mut refused = good.clone();
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    refused["url"] = json!(format!("http://127.0.0.1:{port}/objects"));

    let plugin: Arc<dyn LoadedPlugin> = Arc::new(BuiltinSink::of::<HttpPut>());
    let kit = Kit::new(plugin, good.clone(), server.inspector())
        .options(Options {
            large_size: 128 << 20,
            ..Options::default()
        })
        .invalid_config(json!({}), Some("url"))
        .invalid_config(json!({ "url": "ftp://x" }), Some("url"))
        .invalid_config(json!({ "url": "http://u:p@x/" }), Some("url"))
        .invalid_config(
            json!({ "url": "http://x", "part_size": 1 }),
            Some("part_size"),
        )
        .invalid_config(json!({ "url": "http://x", "retries": 3 }), Some("retries"))
        .failure(FailureCase::new(
            "missing credentials",
            no_auth,
            "k/auth.bin",
            Expect::Auth,
        ))
        .failure(FailureCase::new(
            "wrong credentials",
            wrong_auth,
            "k/auth2.bin",
            Expect::Auth,
        ))
        .failure(FailureCase::new(
            "400",
            good.clone(),
            "k/fail-permanent.bin",
            Expect::Permanent,
        ))
        .failure(
            FailureCase::new(
                "503 until retries run out",
                good.clone(),
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
        ));
    block_on(kit.run()).assert_passed();
}

/// A part that fails twice (503, then a connection dropped mid-body) is retried and the object
/// arrives whole.
#[test]
fn transient_failures_mid_upload_are_retried() {
    let server = TestServer::start();
    server.inject("midway", 2, 1, Fault::Status(503));
    server.inject("midway", 3, 1, Fault::Disconnect);
    let factory = HttpPut::create(&config(&server)).expect("config");
    let pattern = Pattern::new(42);
    let size = 5u64 << 20;
    let receipt = block_on(async {
        let mut object = factory.open(ObjectSpec::new("midway.bin")).await?;
        let mut offset = 0;
        while offset < size {
            object.write(pattern.chunk(offset, 256 << 10)).await?;
            offset += 256 << 10;
        }
        object.finish().await
    })
    .expect("upload survives transient failures");
    let expected: [u8; 32] = Sha256::digest(pattern.chunk(0, size as usize)).into();
    assert_eq!((receipt.size, receipt.sha256), (size, expected));
    let stored = server.object("midway.bin").expect("stored");
    assert_eq!((stored.size, stored.sha256), (size, expected));
    // 5 parts + 2 failed attempts.
    assert_eq!(server.puts("midway.bin"), 7);
}
