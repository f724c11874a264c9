//! The host's layering, checked: a top-level module of `host/src` may import only modules that
//! stand below it, so the import graph between them has no circle and reads in the data's
//! order (service → handler process → recorder → outputs → storage → sink plugins).
//!
//! Reads every `.rs` file under `host/src` as text and finds the paths that name another
//! top-level module: `crate::<top>`, the groups of `use crate::{…}`, `super::` climbing out of
//! its top module, and `egress_host::<top>` in the binary. Comments and string literals are left
//! out. Test code counts too: a test that needs a higher module belongs beside that module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, top to bottom. A module may import any module on a lower floor; modules on one
/// floor do not import each other.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["service"],
    &["process"],
    &["pipeline"],
    &["outputs"],
    &["storage"],
    &["plugins"],
    &["core"],
    &["config", "rpc", "webrtc"],
];

fn floor(module: &str) -> Option<usize> {
    LAYERS.iter().position(|floor| floor.contains(&module))
}

fn order() -> String {
    LAYERS
        .iter()
        .map(|f| f.join(" | "))
        .collect::<Vec<_>>()
        .join(" → ")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("host/src is readable")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path a file defines (`pipeline/track/mod.rs` → `[pipeline, track]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The line without its comment and with its string and char literals emptied (roughly: enough
/// for `use` lines and paths, which never hide in raw strings here).
fn code_of(line: &str, in_block_comment: &mut bool) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if *in_block_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                *in_block_comment = false;
            }
            continue;
        }
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push_str("\"\"");
            }
            '/' if chars.peek() == Some(&'/') => break,
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                *in_block_comment = true;
            }
            _ => out.push(c),
        }
    }
    out
}

/// The top-level modules one line of code names, resolved from `module` (the path of the
/// module the line is in, inline `mod` blocks included).
fn named_tops(code: &str, module: &[String], in_binary: bool) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let word_start = |i: usize| {
        i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'$')
    };
    // `crate::x`, `crate::{x, y::z}` and, in the binary, `egress_host::x`.
    let roots: &[&str] = if in_binary {
        &["crate::", "egress_host::"]
    } else {
        &["crate::"]
    };
    for root in roots {
        let mut from = 0;
        while let Some(at) = code[from..].find(root).map(|i| i + from) {
            from = at + root.len();
            if !word_start(at) {
                continue;
            }
            let rest = &code[from..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let head = item.trim().split("::").next().unwrap_or("").trim();
                    if !head.is_empty() && head != "self" {
                        found.push((head.to_owned(), format!("{root}{{{}}}", group.trim())));
                    }
                }
            } else {
                let head: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    found.push((head.clone(), format!("{root}{head}")));
                }
            }
        }
    }
    // `super::super::x`: where the climb ends decides the top module.
    let mut from = 0;
    while let Some(at) = code[from..].find("super::").map(|i| i + from) {
        if !word_start(at) {
            from = at + 7;
            continue;
        }
        let mut ups = 0;
        let mut i = at;
        while code[i..].starts_with("super::") {
            ups += 1;
            i += 7;
        }
        from = i;
        if ups >= module.len() {
            let head: String = code[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !head.is_empty() {
                found.push((head, "super::".repeat(ups)));
            }
        }
    }
    found
}

struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
    text: String,
}

fn imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let tops: BTreeSet<&str> = LAYERS.iter().flat_map(|f| f.iter().copied()).collect();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src").to_path_buf();
        if rel == Path::new("lib.rs") {
            continue; // declares the top-level modules; imports none
        }
        let file_module = module_path(&rel);
        let Some(top) = file_module.first().cloned() else {
            continue;
        };
        assert!(
            tops.contains(top.as_str()),
            "host/src/{}: top-level module `{top}` is not in the layering ({})",
            rel.display(),
            order()
        );
        let text = std::fs::read_to_string(&path).expect("readable source");
        let mut in_block_comment = false;
        // Inline `mod x {` blocks: (name, brace depth at which it closes).
        let mut inline: Vec<(String, i32)> = Vec::new();
        let mut depth = 0i32;
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line, &mut in_block_comment);
            let mut module = file_module.clone();
            module.extend(inline.iter().map(|(m, _)| m.clone()));
            for (to, text) in named_tops(&code, &module, top == "main") {
                if to != top && tops.contains(to.as_str()) {
                    out.push(Import {
                        file: format!("host/src/{}", rel.display()),
                        line: n + 1,
                        from: top.clone(),
                        to,
                        text,
                    });
                }
            }
            let trimmed = code.trim_start();
            let opens_mod = trimmed
                .strip_prefix("pub ")
                .or(Some(trimmed))
                .and_then(|t| t.strip_prefix("mod "))
                .filter(|t| t.trim_end().ends_with('{'))
                .map(|t| t.trim_end_matches('{').trim().to_owned());
            depth += code.matches('{').count() as i32;
            if let Some(name) = opens_mod {
                inline.push((name, depth - 1));
            }
            depth -= code.matches('}').count() as i32;
            while inline
                .last()
                .is_some_and(|(_, closes_at)| depth <= *closes_at)
            {
                inline.pop();
            }
        }
    }
    out
}

#[test]
fn no_top_level_module_imports_one_above_it() {
    let mut violations = Vec::new();
    for i in imports() {
        let (Some(from), Some(to)) = (floor(&i.from), floor(&i.to)) else {
            continue;
        };
        if to <= from {
            let why = if to == from {
                "stands on the same floor"
            } else {
                "stands above it"
            };
            violations.push(format!(
                "{}:{}: `{}` imports `{}` ({}), but `{}` {why}",
                i.file, i.line, i.from, i.to, i.text, i.to
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "the host's layering is broken (allowed order, top to bottom: {}):\n{}",
        order(),
        violations.join("\n")
    );
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for i in imports() {
        edges
            .entry((i.from.clone(), i.to.clone()))
            .or_insert_with(|| format!("{}:{}", i.file, i.line));
    }
    let two_way: Vec<String> = edges
        .iter()
        .filter(|((a, b), _)| a < b && edges.contains_key(&(b.clone(), a.clone())))
        .map(|((a, b), at)| {
            format!(
                "`{a}` ⇄ `{b}` ({at} and {})",
                edges[&(b.clone(), a.clone())]
            )
        })
        .collect();
    assert!(
        two_way.is_empty(),
        "top-level modules that import each other:\n{}",
        two_way.join("\n")
    );
}

#[test]
fn the_checker_sees_the_paths_it_must() {
    let m = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let tops = |code: &str, module: &[String]| {
        named_tops(code, module, false)
            .into_iter()
            .map(|(t, _)| t)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tops("use crate::{config::X, rpc::Y};", &m(&["core", "errors"])),
        ["config", "rpc"]
    );
    assert_eq!(
        tops(
            "    crate::storage::salvage(a, b)",
            &m(&["service", "launcher"])
        ),
        ["storage"]
    );
    assert_eq!(
        tops(
            "use super::super::encoding::X;",
            &m(&["pipeline", "track", "config"])
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        tops("use super::super::pipeline::X;", &m(&["storage", "local"])),
        ["pipeline"]
    );
    let mut block = false;
    assert_eq!(
        code_of(
            r#"let s = "crate::pipeline"; // crate::service"#,
            &mut block
        ),
        r#"let s = ""; "#
    );
    assert_eq!(
        floor("pipeline").zip(floor("storage")).map(|(p, s)| p < s),
        Some(true)
    );
}
