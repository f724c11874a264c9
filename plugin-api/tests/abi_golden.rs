//! Every change to the C header or the WIT package must be deliberate.
//!
//! The header and the WIT files are the plugin ABI: a plugin built against them must keep
//! loading. If this test fails, you changed one of them. Then:
//!
//! 1. decide what the change is: additive (new function appended to a table, new WIT function
//!    marked `@since`) bumps `API_VERSION_MINOR`; anything else (a field moved, a signature
//!    changed, something removed) bumps `API_VERSION_MAJOR` and the `_v1` of the entry symbol;
//! 2. update the versions in `src/lib.rs`, the header's `EGRESS_PLUGIN_ABI_*` and the WIT
//!    `package egress:plugin@x.y.0`;
//! 3. paste the new hash printed below into `GOLDEN`.

use std::path::Path;

use sha2::{Digest, Sha256};

/// SHA-256 of each ABI file (line endings normalised to `\n`).
const GOLDEN: &[(&str, &str)] = &[
    (
        "include/egress_plugin.h",
        "85e6ef2628ffe7590743d2ef62879c5d393a31c6dcb12700f0451c0464a2ee74",
    ),
    (
        "wit/egress-plugin.wit",
        "751c840f7efc15243b5e2bd85822137382e86e0794e6344a84d931a6a6a97c79",
    ),
];

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
        .replace("\r\n", "\n")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn abi_files_are_unchanged() {
    let mut changed = Vec::new();
    for (path, expected) in GOLDEN {
        let actual = hex(&Sha256::digest(read(path).as_bytes()));
        if actual != *expected {
            changed.push(format!("{path}: now {actual}"));
        }
    }
    assert!(
        changed.is_empty(),
        "the plugin ABI changed; see the steps at the top of tests/abi_golden.rs, then update GOLDEN:\n  {}",
        changed.join("\n  ")
    );
}

#[test]
fn every_wit_file_is_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    for entry in std::fs::read_dir(&dir).expect("wit/ exists") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let path = format!("wit/{name}");
        assert!(
            GOLDEN.iter().any(|(p, _)| *p == path),
            "{path} is part of the ABI: add it to GOLDEN"
        );
    }
}

#[test]
fn projections_carry_the_crate_version() {
    use egress_plugin_api::{API_VERSION_MAJOR as MAJOR, API_VERSION_MINOR as MINOR, abi};
    let header = read("include/egress_plugin.h");
    assert!(header.contains(&format!("#define EGRESS_PLUGIN_ABI_MAJOR {MAJOR}\n")));
    assert!(header.contains(&format!("#define EGRESS_PLUGIN_ABI_MINOR {MINOR}\n")));
    let symbol = format!("egress_plugin_entry_v{MAJOR}");
    assert!(
        header.contains(&format!("*{symbol}(void);")),
        "header declares {symbol}"
    );
    assert_eq!(abi::ENTRY_SYMBOL, format!("{symbol}\0").as_bytes());
    let wit = read("wit/egress-plugin.wit");
    assert!(
        wit.contains(&format!("package egress:plugin@{MAJOR}.{MINOR}.0;")),
        "the WIT package version is the API version"
    );
}
