//! Building the plugin crates as release cdylibs and WASM components for the benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Artifacts {
    pub file_so: PathBuf,
    pub http_put_so: PathBuf,
    pub testbed_so: PathBuf,
    pub file_wasm: PathBuf,
    pub http_put_wasm: PathBuf,
    pub testbed_wasm: PathBuf,
}

const CRATES: [&str; 3] = [
    "egress-plugin-file",
    "egress-plugin-http-put",
    "egress-plugin-testbed",
];

impl Artifacts {
    /// For runs with the compiled-in loader only.
    pub fn none() -> Self {
        let p = PathBuf::new;
        Artifacts {
            file_so: p(),
            http_put_so: p(),
            testbed_so: p(),
            file_wasm: p(),
            http_put_wasm: p(),
            testbed_wasm: p(),
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(target_dir: &Path, extra: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--release", "--lib"])
        .args(extra);
    for c in CRATES {
        cmd.args(["-p", c]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo {} failed:\n{}",
            extra.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Build into `<workspace>/target/bench-artifacts` (or `$CARGO_TARGET_DIR/bench-artifacts`).
pub fn build() -> Result<Artifacts, String> {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = base.join("bench-artifacts");
    let features: Vec<String> = CRATES.iter().map(|c| format!("{c}/dylib")).collect();
    cargo(&dir, &["--features", &features.join(",")])?;
    cargo(&dir, &["--target", "wasm32-wasip2"])
        .map_err(|e| format!("{e}\n(is the target installed? rustup target add wasm32-wasip2)"))?;
    let so = |n: &str| dir.join("release").join(format!("lib{n}.so"));
    let wasm = |n: &str| dir.join("wasm32-wasip2/release").join(format!("{n}.wasm"));
    Ok(Artifacts {
        file_so: so("egress_plugin_file"),
        http_put_so: so("egress_plugin_http_put"),
        testbed_so: so("egress_plugin_testbed"),
        file_wasm: wasm("egress_plugin_file"),
        http_put_wasm: wasm("egress_plugin_http_put"),
        testbed_wasm: wasm("egress_plugin_testbed"),
    })
}
