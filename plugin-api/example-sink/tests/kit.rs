//! The README's example sink, for real: the conformance kit, compiled in, and the README
//! shows this crate's source verbatim (checked below), so the example cannot rot.

use std::path::Path;
use std::sync::Arc;

use dir_sink::DirSink;
use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::{DirInspector, Expect, FailureCase, Kit};
use egress_plugin_api::{BuiltinSink, json};

#[test]
fn the_example_sink_passes_the_kit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = json!({ "directory": dir.path() });
    let kit = Kit::new(
        Arc::new(BuiltinSink::of::<DirSink>()),
        config.clone(),
        Arc::new(DirInspector::new(dir.path())),
    )
    .invalid_config(json!({}), Some("directory"))
    .invalid_config(json!({ "directory": 3 }), Some("directory"))
    .invalid_config(json!({ "directory": "/x", "rot": 1 }), Some("rot"))
    .failure(FailureCase::new(
        "directory is a file",
        json!({ "directory": dir.path().join("conformance/empty/0.bin") }),
        "a/b.bin",
        Expect::Permanent,
    ));
    block_on(kit.run()).assert_passed();
}

/// Lines of code in `src/lib.rs`: not blank, not only a comment.
fn code_lines(source: &str) -> usize {
    source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

#[test]
fn the_readme_shows_this_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/lib.rs")).expect("source");
    let readme = std::fs::read_to_string(root.join("../README.md")).expect("README");
    assert!(
        readme.contains(&format!("```rust\n{source}```")),
        "plugin-api/README.md must show plugin-api/example-sink/src/lib.rs verbatim in a ```rust block"
    );
    let test = std::fs::read_to_string(root.join("tests/kit.rs")).expect("test");
    let shown = &test[..test.find("/// Lines of code in").expect("marker")];
    assert!(
        readme.contains(&format!("```rust,ignore\n{}\n```", shown.trim_end())),
        "plugin-api/README.md must show plugin-api/example-sink/tests/kit.rs up to `code_lines`"
    );
    let (lines, code) = (source.lines().count(), code_lines(&source));
    eprintln!("example sink: {lines} lines, {code} of code");
    assert!(
        readme.contains(&format!("{lines} lines ({code} of code)")),
        "the README must give the example's size as `{lines} lines ({code} of code)`"
    );
}
