//! The egress service under test.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::START_TIMEOUT;
use crate::http::http_get;
use crate::livekit::LiveKitServer;
use crate::process::{Proc, command};
use crate::redis::Redis;
use crate::tools::TestDir;

/// Env var prefixes removed from the egress environment, so that the developer's or CI's
/// credentials and LiveKit settings cannot leak into a test.
const CLEARED_PREFIXES: [&str; 4] = ["LIVEKIT_", "AWS_", "AZURE_", "GOOGLE_"];
const CLEARED_VARS: [&str; 2] = ["EGRESS_CONFIG_FILE", "EGRESS_CONFIG_BODY"];

/// The egress binary: `$EGRESS_BIN`, else `debug/egress` in `$CARGO_TARGET_DIR` or the
/// workspace's `target/`. Panics if it does not exist.
pub fn egress_bin() -> PathBuf {
    let path = if let Some(bin) = std::env::var_os("EGRESS_BIN").filter(|v| !v.is_empty()) {
        PathBuf::from(bin)
    } else {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
            Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
            Some(dir) => workspace.join(dir),
            None => workspace.join("target"),
        };
        target.join("debug").join("egress")
    };
    if !path.is_file() {
        panic!(
            "egress binary not found at {}: build it with `cargo build -p egress-host` (or run \
             scripts/test, which builds it and sets EGRESS_BIN)",
            path.display()
        );
    }
    path
}

/// The slim build (`--no-default-features --features file`): `$EGRESS_SLIM_BIN`, which
/// scripts/test builds and sets. Panics with how to build it when missing.
pub fn egress_slim_bin() -> PathBuf {
    match std::env::var_os("EGRESS_SLIM_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        Some(p) if p.is_file() => p,
        other => panic!(
            "slim egress binary not found ({other:?}): run scripts/test, which builds it with \
             `cargo build -p egress-host --no-default-features --features file` and sets EGRESS_SLIM_BIN"
        ),
    }
}

/// A YAML config for the egress service that points it at `redis` and `livekit`, with the
/// health and metrics servers on the given ports and debug logging.
pub fn egress_config(
    redis: &Redis,
    livekit: &LiveKitServer,
    health_port: u16,
    prometheus_port: u16,
) -> String {
    format!(
        "api_key: {key}\n\
         api_secret: {secret}\n\
         ws_url: {ws}\n\
         redis:\n  address: {redis}\n\
         health_port: {health_port}\n\
         prometheus_port: {prometheus_port}\n\
         template_port: {template_port}\n\
         logging:\n  level: debug\n",
        key = livekit.api_key(),
        secret = livekit.api_secret(),
        ws = livekit.ws_url(),
        redis = redis.addr(),
        // Each worker gets its own template port: the default (7980) is shared by every
        // worker on a host and tests run several at once.
        template_port = crate::free_port(),
    )
}

/// A running egress service. Killed (with its whole process group) on drop.
pub struct Egress {
    proc: Proc,
    dir: TestDir,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Egress {
    /// Starts `$EGRESS_BIN` with `EGRESS_CONFIG_BODY=config_yaml`, in a temp dir that is also its
    /// working directory. Does not wait: see [`wait_healthy`](Self::wait_healthy).
    pub async fn start(config_yaml: String) -> Egress {
        Egress::start_with(config_yaml, &[], &[]).await
    }

    /// Like [`start`](Self::start), with extra command-line arguments and env vars.
    pub async fn start_with(config_yaml: String, args: &[&str], env: &[(&str, &str)]) -> Egress {
        Egress::start_bin(&egress_bin(), config_yaml, args, env).await
    }

    /// Like [`start_with`](Self::start_with), running another build of the binary (the slim one).
    pub async fn start_bin(
        bin: &Path,
        config_yaml: String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Egress {
        let dir = TestDir::new("egress");
        dir.write("config.yaml", &config_yaml);
        let bin = bin.to_path_buf();
        let mut cmd = command(&bin, dir.path());
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if CLEARED_PREFIXES.iter().any(|p| k.starts_with(p))
                || CLEARED_VARS.contains(&k.as_ref())
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("EGRESS_CONFIG_BODY", &config_yaml);
        cmd.envs(env.iter().copied());
        cmd.args(args);
        let stdout = dir.join("egress.stdout.log");
        let stderr = dir.join("egress.stderr.log");
        let proc = Proc::spawn("egress", cmd, &stdout, &stderr);
        Egress {
            proc,
            dir,
            stdout,
            stderr,
        }
    }

    /// Waits until `GET http://127.0.0.1:{health_port}/` answers 200. Panics with the log tail if
    /// the process exits first or it takes longer than a minute.
    pub async fn wait_healthy(&mut self, health_port: u16) {
        let url = format!("http://127.0.0.1:{health_port}/");
        self.proc
            .wait_ready(&format!("GET {url} answered 200"), START_TIMEOUT, || {
                let url = url.clone();
                async move { matches!(http_get(&url).await, Ok((200, _))) }
            })
            .await;
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Sends `sig` (e.g. [`crate::SIGTERM`]) to the egress process itself.
    pub fn signal(&mut self, sig: i32) {
        self.proc.signal(sig);
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.proc.try_wait()
    }

    /// Waits for the process to exit. Panics with the log tail if it is still running after
    /// `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.proc.wait_exit(timeout).await {
            Some(status) => status,
            None => panic!(
                "egress (pid {}) still running after {timeout:?}\n{}",
                self.proc.pid(),
                self.proc.log_tail()
            ),
        }
    }

    /// Panics with the log tail if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.proc.try_wait() {
            panic!(
                "egress (pid {}) exited with {status}\n{}",
                self.proc.pid(),
                self.proc.log_tail()
            );
        }
    }

    /// stdout then stderr, as captured so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The last lines of stdout and stderr, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The temp dir the service runs in (its working directory; local outputs land here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
