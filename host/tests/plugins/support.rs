//! Shared by the plugin tests: building the plugin artifacts, loading plugins by config.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use egress_host::config::{self, EmptyEnv};
use egress_host::plugins::{PluginErrors, PluginRegistry};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The target directory this test binary was built in (`<target>/debug/deps/plugins-…`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The plugin crates, built as dylibs and as WASM components.
pub struct Artifacts {
    pub file_so: PathBuf,
    pub http_put_so: PathBuf,
    pub testbed_so: PathBuf,
    pub file_wasm: PathBuf,
    pub http_put_wasm: PathBuf,
    pub testbed_wasm: PathBuf,
    pub solid_so: PathBuf,
    pub solid_wasm: PathBuf,
}

const PLUGIN_CRATES: [&str; 4] = [
    "egress-plugin-file",
    "egress-plugin-http-put",
    "egress-plugin-testbed",
    "egress-plugin-solid-layout",
];

/// Where the plugin artifacts are built: a target directory of their own, so that building
/// the host's tests (which link the same crates without the `dylib` feature) never replaces
/// them.
fn artifact_dir() -> PathBuf {
    target_dir().join("plugin-artifacts")
}

fn cargo(args: &[&str], what: &str, hint: &str) {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", artifact_dir())
        .args(args)
        // Optimised (the 1 GiB streams and the benchmark-like checks would crawl at opt-level
        // 0, WASM guests especially), without debug info (faster links). Only this separate
        // target directory is affected.
        .args([
            "--config",
            "profile.dev.opt-level=2",
            "--config",
            "profile.dev.package.\"*\".opt-level=2",
            "--config",
            "profile.dev.debug=false",
        ]);
    for krate in PLUGIN_CRATES {
        cmd.args(["-p", krate]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(
        out.status.success(),
        "building {what} failed ({hint}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Build (once per process) the plugin crates as cdylibs (feature `dylib`) and as
/// wasm32-wasip2 components, in the tests' profile.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let features: Vec<String> = PLUGIN_CRATES.iter().map(|c| format!("{c}/dylib")).collect();
        cargo(
            &["build", "--lib", "--features", &features.join(",")],
            "the plugin cdylibs",
            "the dylib loader tests need them",
        );
        cargo(
            &["build", "--lib", "--target", "wasm32-wasip2"],
            "the plugin WASM components",
            "is the target installed? `rustup target add wasm32-wasip2` (scripts/setup does it)",
        );
        let target = artifact_dir();
        let so = |name: &str| target.join("debug").join(format!("lib{name}.so"));
        let wasm = |name: &str| {
            target
                .join("wasm32-wasip2/debug")
                .join(format!("{name}.wasm"))
        };
        let a = Artifacts {
            file_so: so("egress_plugin_file"),
            http_put_so: so("egress_plugin_http_put"),
            testbed_so: so("egress_plugin_testbed"),
            file_wasm: wasm("egress_plugin_file"),
            http_put_wasm: wasm("egress_plugin_http_put"),
            testbed_wasm: wasm("egress_plugin_testbed"),
            solid_so: so("egress_plugin_solid_layout"),
            solid_wasm: wasm("egress_plugin_solid_layout"),
        };
        for p in [
            &a.file_so,
            &a.http_put_so,
            &a.testbed_so,
            &a.file_wasm,
            &a.http_put_wasm,
            &a.testbed_wasm,
            &a.solid_so,
            &a.solid_wasm,
        ] {
            assert!(p.is_file(), "{} was not built", p.display());
        }
        a
    })
}

/// The minimal service config, plus `plugins_yaml` (a `plugins:` list, indented as a value).
pub fn service_yaml(plugins_yaml: &str) -> String {
    format!(
        "api_key: k\napi_secret: s\nws_url: ws://localhost:7880\nredis:\n  address: localhost:6379\nplugins:\n{plugins_yaml}"
    )
}

/// Load plugins exactly as the service does: YAML → config → registry.
pub fn load(plugins_yaml: &str) -> Result<PluginRegistry, PluginErrors> {
    let loaded = config::parse(&service_yaml(plugins_yaml), &EmptyEnv)
        .unwrap_or_else(|e| panic!("config rejected: {e}"));
    PluginRegistry::load(loaded.config.plugins.as_deref())
}

/// The load errors as lines.
pub fn load_errors(plugins_yaml: &str) -> Vec<String> {
    match load(plugins_yaml) {
        Ok(r) => panic!("expected errors, loaded {:?}", r.active()),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// The C compiler: `$CC`, else `cc`, else `clang`.
fn c_compiler() -> String {
    if let Ok(cc) = std::env::var("CC") {
        return cc;
    }
    let works = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("cc") {
        "cc".into()
    } else {
        "clang".into()
    }
}

/// Compile a C file against `egress_plugin.h` into a shared library.
pub fn compile_c(source: &Path, out: &Path, defines: &[&str]) -> PathBuf {
    let include = workspace_root().join("plugin-api/include");
    let mut cmd = Command::new(c_compiler());
    cmd.args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
        .arg(out)
        .arg("-I")
        .arg(include);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.arg(source);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc (a C compiler is needed for this test): {e}"));
    assert!(
        output.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out.to_path_buf()
}

/// YAML string quoting for paths.
pub fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}
