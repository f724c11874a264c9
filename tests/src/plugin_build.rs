//! The object storage sink plugins built as dylib plugins (cdylibs with their `dylib` feature),
//! for the tests that load them through the host's dylib loader.
//!
//! They are built in `<target>/plugin-artifacts`, the directory (and profile settings) the host's
//! plugin tests use (`host/tests/plugins/support.rs`): a target directory of its own, so that
//! building the workspace, which links the same crates without `dylib`, never replaces them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The object storage plugin crates and their libraries' file names.
const CRATES: [(&str, &str); 2] = [
    ("egress-plugin-s3", "libegress_plugin_s3.so"),
    ("egress-plugin-azure", "libegress_plugin_azure.so"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The workspace's target directory (`CARGO_TARGET_DIR`, else the one this test binary is in:
/// `<target>/debug/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The dylib of `krate` (`egress-plugin-s3` or `egress-plugin-azure`), built once per process.
/// Blocking: cargo may take minutes the first time.
pub fn storage_plugin_dylib(krate: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let out_dir = target_dir().join("plugin-artifacts");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &out_dir)
            .args(["build", "--lib"]);
        let features: Vec<String> = CRATES.iter().map(|(c, _)| format!("{c}/dylib")).collect();
        for (c, _) in CRATES {
            cmd.args(["-p", c]);
        }
        cmd.args(["--features", &features.join(",")]);
        // The same settings as the host's plugin tests, so the two share their builds.
        cmd.args([
            "--config",
            "profile.dev.opt-level=2",
            "--config",
            "profile.dev.package.\"*\".opt-level=2",
            "--config",
            "profile.dev.debug=false",
        ]);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the storage plugin dylibs: {e}"));
        assert!(
            out.status.success(),
            "building the storage plugin dylibs failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_dir.join("debug")
    });
    let file = CRATES
        .iter()
        .find(|(c, _)| *c == krate)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("{krate} is not an object storage plugin crate"));
    let path = dir.join(file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
