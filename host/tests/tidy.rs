//! ARCHITECTURE.md stays a map: small enough to read in one sitting, and naming only paths
//! that exist. Measurements, history and long rationale belong in `docs/notes.md` or beside a
//! benchmark (`bench/*/README.md`), which this test does not limit.
//!
//! A backticked span is taken for a repo path when it has a `/`, no whitespace, and starts with
//! a top-level folder of the repository (`host/`, `plugins/`, `docs/` …). A `#fragment` on a
//! Markdown file must name one of its headings. Placeholders (`<kind>`, `*`, `{…}`) are not
//! paths and are skipped. Fenced code blocks are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// 25 KB: rust-analyzer's whole architecture.md is about this size for a far larger codebase.
const MAX_BYTES: u64 = 25_600;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn architecture() -> String {
    std::fs::read_to_string(repo_root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is readable")
}

/// The repository's top-level folders (hidden ones like `.ci` included; not `.git` or a local
/// `target`, which are not part of the source).
fn top_level_folders() -> BTreeSet<String> {
    std::fs::read_dir(repo_root())
        .expect("the repository root is readable")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".git" && name != "target")
        .collect()
}

/// The backticked spans of a Markdown text outside fenced code blocks, with their line numbers.
fn backticked(text: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Odd pieces between backticks are code spans.
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 1 && !piece.is_empty() {
                spans.push((n + 1, piece.to_owned()));
            }
        }
    }
    spans
}

/// The span as a repo path (and its `#fragment`), if it looks like one.
fn as_repo_path<'a>(span: &'a str, tops: &BTreeSet<String>) -> Option<(&'a str, Option<&'a str>)> {
    if span.contains(char::is_whitespace) || !span.contains('/') {
        return None;
    }
    if span.contains(['<', '>', '*', '{', '}']) {
        return None;
    }
    let (path, fragment) = match span.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (span, None),
    };
    let top = path.split('/').next().unwrap_or("");
    tops.contains(top).then_some((path, fragment))
}

/// GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors_of(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn architecture_md_stays_a_brief_map() {
    let path = repo_root().join("ARCHITECTURE.md");
    let size = std::fs::metadata(&path)
        .expect("ARCHITECTURE.md exists")
        .len();
    assert!(
        size <= MAX_BYTES,
        "ARCHITECTURE.md is {size} bytes, over the limit of {MAX_BYTES}: it is the map of the \
         code (one paragraph and the invariants per room). Move measurements, history and long \
         rationale next to what they describe (bench/*/README.md, docs/notes.md) and link them."
    );
}

#[test]
fn every_path_architecture_md_names_exists() {
    let root = repo_root();
    let tops = top_level_folders();
    let mut missing = Vec::new();
    for (line, span) in backticked(&architecture()) {
        let Some((path, fragment)) = as_repo_path(&span, &tops) else {
            continue;
        };
        let file = root.join(path);
        if !file.exists() {
            missing.push(format!(
                "ARCHITECTURE.md:{line}: `{span}`: no such path `{path}`"
            ));
            continue;
        }
        if let Some(fragment) = fragment.filter(|_| path.ends_with(".md")) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if !anchors_of(&text).contains(fragment) {
                missing.push(format!(
                    "ARCHITECTURE.md:{line}: `{span}`: `{path}` has no heading `#{fragment}`"
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist (fix the map or the path):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_path_checker_sees_what_it_must() {
    let tops: BTreeSet<String> = ["host", "docs", "tests"].map(String::from).into();
    assert_eq!(
        as_repo_path("host/src/rpc/envelope.rs", &tops),
        Some(("host/src/rpc/envelope.rs", None))
    );
    assert_eq!(
        as_repo_path("docs/notes.md#track-recorder", &tops),
        Some(("docs/notes.md", Some("track-recorder")))
    );
    // Module names, relative names, placeholders, commands and paths outside the repo are not
    // checked.
    for not_a_path in [
        "core::request",
        "web/config.rs",
        "host/src/outputs/<kind>/",
        "cargo test -p egress-host",
        "../shared/spec/psrpc-redis.md",
        "main.rs",
    ] {
        assert_eq!(as_repo_path(not_a_path, &tops), None, "{not_a_path}");
    }
    assert_eq!(
        backticked("a `x/y` b\n```\n`host/no`\n```\n`c`"),
        [(1, "x/y".to_owned()), (5, "c".to_owned())]
    );
    assert_eq!(
        anchor(" Streams, segments and images"),
        "streams-segments-and-images"
    );
    assert_eq!(anchor(" WebRTC subscriber"), "webrtc-subscriber");
}
