//! `scripts/demo` on a machine without the test tools installs none of them; `scripts/setup` (what
//! `scripts/test` runs) still installs every one.
//!
//! Both run as `--dry-run` on a pretend fresh machine: an empty `EGRESS_CACHE` in a temp dir and,
//! first on PATH, a `dpkg-query` that knows no installed package and a `rustup` that knows no
//! target or component, so every step looks missing. The installers themselves (`apt-get`,
//! `sudo`, `go`, `npm`, `pip`) are stand-ins that log their call and fail: a dry run must call none.
//!
//! The check cannot pass on an empty plan: the same pretend machine must make the test setup
//! plan every test tool (so the machine really lacks them), and the demo plan its own needs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use egress_e2e::TestDir;

/// What only the tests use, by the names the plan prints (apt packages, builds and installs).
const TEST_ONLY: &[&str] = &[
    // Storage emulators.
    "moto",
    "azurite",
    "s3s-fs",
    "nginx-light",
    "python3-venv",
    // Deploy linters.
    "helm",
    "hadolint",
    "yamllint",
    "kubernetes-validate",
    "python3-seccomp",
    // Stream servers.
    "mediamtx",
    "toxiproxy",
    "libnginx-mod-rtmp",
    "srt-tools",
    // The Go test publisher.
    "lk-publish",
    // Docker for the container tests (scripts/docker-setup).
    "docker.io",
    "debootstrap",
    // The plugin tests' WASM target and the tidy gate's tools.
    "wasm32-wasip2",
    "rustfmt",
    "clippy",
];

/// What the demo cannot run without, and must still plan on a fresh machine.
const DEMO_NEEDS: &[&str] = &[
    "livekit-server",
    "lk",
    "redis-server",
    "chromium",
    "xvfb",
    "pulseaudio",
    "gstreamer1.0-plugins-good",
    "protobuf-compiler",
    "ffmpeg",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A pretend fresh machine: its PATH (stand-ins first), its cache, and the installers' call log.
struct FreshMachine {
    dir: TestDir,
    path: String,
}

impl FreshMachine {
    fn new() -> FreshMachine {
        let dir = TestDir::new("setup-profiles");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let calls = dir.join("installer-calls");
        // Knows nothing installed.
        for name in ["dpkg-query", "rustup"] {
            script(&bin.join(name), "#!/bin/sh\nexit 0\n");
        }
        // Would install: logs the call and fails.
        for name in ["apt-get", "sudo", "go", "npm", "pip", "pip3", "dpkg"] {
            script(
                &bin.join(name),
                &format!(
                    "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 1\n",
                    calls.display()
                ),
            );
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        FreshMachine { dir, path }
    }

    /// Runs `script` (relative to the repo) with `args`; its stdout, after checking it succeeded.
    fn run(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(repo_root().join(script))
            .args(args)
            .env("PATH", &self.path)
            .env("EGRESS_CACHE", self.dir.join("cache"))
            .env_remove("EGRESS_BIN")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{script} {args:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn installer_calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("installer-calls")).unwrap_or_default()
    }
}

fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).expect("write stand-in");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The words of the plan's `would …` lines (a step's names, versions, packages).
fn planned_words(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter(|l| l.contains(": would "))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ',' || c == ':'))
        .map(|w| w.trim_matches(|c: char| "()'\"".contains(c)).to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

#[test]
fn the_demo_installs_no_test_tool_and_the_tests_still_get_all_of_them() {
    let machine = FreshMachine::new();

    let test_plan = machine.run("scripts/setup", &["--dry-run"]);
    let test_words = planned_words(&test_plan);
    for tool in TEST_ONLY.iter().chain(DEMO_NEEDS) {
        assert!(
            test_words.contains(*tool),
            "the test setup on a fresh machine does not plan {tool}:\n{test_plan}"
        );
    }

    let demo_plan = machine.run("scripts/demo", &["--dry-run"]);
    let demo_words = planned_words(&demo_plan);
    for need in DEMO_NEEDS {
        assert!(
            demo_words.contains(*need),
            "the demo on a fresh machine does not plan {need}:\n{demo_plan}"
        );
    }
    assert!(
        demo_plan.contains("would build the egress (cargo build -p egress-host)"),
        "{demo_plan}"
    );
    let installed_for_tests: Vec<&str> = TEST_ONLY
        .iter()
        .copied()
        .filter(|t| demo_words.contains(*t))
        .collect();
    assert!(
        installed_for_tests.is_empty(),
        "scripts/demo would install test-only tools {installed_for_tests:?}:\n{demo_plan}"
    );

    assert_eq!(machine.installer_calls(), "", "a dry run ran an installer");
    assert!(
        !machine.dir.join("cache").exists(),
        "a dry run wrote into EGRESS_CACHE"
    );
}
