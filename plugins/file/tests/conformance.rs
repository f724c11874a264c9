//! The `file` sink, compiled in, against the conformance kit. (The host's tests run the same kit
//! through the dylib and WASM loaders.)

use std::sync::Arc;

use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::{DirInspector, Expect, FailureCase, Kit, Options};
use egress_plugin_api::{BuiltinSink, LoadedPlugin};
use egress_plugin_file::FileSink;
use serde_json::json;

#[test]
fn file_sink_passes_the_kit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = json!({ "directory": dir.path() });
    let plugin: Arc<dyn LoadedPlugin> = Arc::new(BuiltinSink::of::<FileSink>());
    let kit = Kit::new(
        plugin,
        config.clone(),
        Arc::new(DirInspector::new(dir.path())),
    )
    .options(Options {
        large_size: 128 << 20,
        ..Options::default()
    })
    .invalid_config(json!({ "directory": "" }), Some("directory"))
    .invalid_config(json!({ "directory": 3 }), Some("directory"))
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
    .failure(FailureCase::new(
        "directory is a file",
        json!({ "directory": dir.path().join("conformance/ordered/nested/key/0.bin") }),
        "x/y.bin",
        Expect::Permanent,
    ));
    block_on(kit.run()).assert_passed();
}

#[test]
fn registered_with_inventory() {
    let names: Vec<String> = BuiltinSink::iter().map(|p| p.descriptor().name).collect();
    assert!(names.contains(&"file".to_string()), "{names:?}");
}
