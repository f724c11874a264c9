//! Loading the `http-put` example by config and streaming through it.

use egress_plugin_api::conformance::Pattern;
use egress_plugin_api::{ObjectSpec, Receipt, SinkError, SinkFactory};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{artifacts, load, q};

const CHUNK: usize = 1 << 20;

#[derive(Clone, Copy)]
pub enum Loader {
    Dylib,
    Wasm,
}

pub fn sink(loader: Loader, config: &Value) -> std::sync::Arc<dyn SinkFactory> {
    let a = artifacts();
    let yaml = match loader {
        Loader::Dylib => format!("  - dylib: {}\n    config: {config}\n", q(&a.http_put_so)),
        Loader::Wasm => format!(
            "  - wasm: {}\n    max_memory_mb: 64\n    allowed_hosts: [127.0.0.1]\n    config: {config}\n",
            q(&a.http_put_wasm)
        ),
    };
    let registry = load(&yaml).unwrap_or_else(|e| panic!("load failed:\n{e}"));
    registry.sink("http-put").expect("http-put is active")
}

/// Write `size` bytes of `pattern` in 1 MiB chunks; the SHA-256 of what was written, and the
/// outcome. A failed write aborts the object, as the host does.
pub async fn upload(
    sink: &dyn SinkFactory,
    key: &str,
    size: u64,
    pattern: &Pattern,
) -> ([u8; 32], Result<Receipt, SinkError>) {
    let mut hasher = Sha256::new();
    let result = async {
        let mut object = sink
            .open(ObjectSpec::new(key).with_expected_size(size))
            .await?;
        let mut offset = 0u64;
        while offset < size {
            let n = CHUNK.min((size - offset) as usize);
            let chunk = pattern.chunk(offset, n);
            hasher.update(&chunk);
            offset += n as u64;
            if let Err(e) = object.write(chunk).await {
                object.abort().await;
                return Err(e);
            }
        }
        object.finish().await
    }
    .await;
    (hasher.finalize().into(), result)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
