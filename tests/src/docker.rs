//! The egress images and containers of them, on the private dockerd that scripts/docker-setup
//! starts (socket `$EGRESS_CACHE/docker/docker.sock`).
//!
//! * [`images`]: builds both images once per test process with `scripts/docker-images` (its
//!   output, with each image's build time and size, goes straight to the test's stdout so that
//!   CI logs show it) and returns their tags, the Helm chart's image reference.
//! * [`Container`]: `docker run -d --network host …` of an image, its Docker health status, exit
//!   code and logs; removed (`docker rm -f`) on drop. Containers left by a killed test run are
//!   removed by the next one.
//! * [`docker`]: the docker CLI bound to that daemon.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Debian's docker CLI (20.10): it speaks BuildKit to the daemon without the buildx plugin that a
/// newer CLI earlier on PATH would need.
const DOCKER_CLI: &str = "/usr/bin/docker";
/// Label on every container the tests start: the pid of the test process.
const OWNER_LABEL: &str = "egress-e2e.pid";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn cache_dir() -> PathBuf {
    std::env::var_os("EGRESS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/egress-rs"))
}

/// `DOCKER_HOST` of the private daemon.
pub fn docker_host() -> String {
    format!(
        "unix://{}",
        cache_dir().join("docker/docker.sock").display()
    )
}

/// The docker CLI, talking to the private daemon.
pub fn docker() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(DOCKER_CLI);
    cmd.env("DOCKER_HOST", docker_host())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn docker_blocking() -> std::process::Command {
    let mut cmd = std::process::Command::new(DOCKER_CLI);
    cmd.env("DOCKER_HOST", docker_host()).stdin(Stdio::null());
    cmd
}

/// stdout then stderr of a finished command.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `docker ARGS` (at most `timeout`), returning its output whatever the exit status.
pub async fn docker_run_args(args: &[&str], timeout: Duration) -> Output {
    let fut = docker().args(args).output();
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "cannot run {DOCKER_CLI} {}: {e} (is docker.io installed? run scripts/setup)",
            args.join(" ")
        ),
        Err(_) => panic!("docker {} did not finish in {timeout:?}", args.join(" ")),
    }
}

/// Runs `docker ARGS` and returns its stdout; panics with both outputs when it fails.
pub async fn docker_ok(args: &[&str]) -> String {
    let out = docker_run_args(args, Duration::from_secs(120)).await;
    assert!(
        out.status.success(),
        "docker {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The two images' tags.
#[derive(Debug, Clone)]
pub struct Images {
    /// Every plugin compiled in; rtmp, srt, s3, azure, gcs also as dylibs.
    pub full: String,
    /// `--no-default-features --features file`.
    pub slim: String,
}

/// The Helm chart's image reference: `image.repository` of values.yaml and the chart's
/// `appVersion` (the chart's default tag).
pub fn chart_image() -> String {
    let chart = workspace_root().join("deploy/helm/egress");
    let values = std::fs::read_to_string(chart.join("values.yaml")).expect("read values.yaml");
    let repository = values
        .lines()
        .skip_while(|l| !l.starts_with("image:"))
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.is_empty())
        .find_map(|l| l.trim().strip_prefix("repository:"))
        .map(|r| r.trim().trim_matches('"').to_owned())
        .expect("image.repository in deploy/helm/egress/values.yaml");
    let chart_yaml = std::fs::read_to_string(chart.join("Chart.yaml")).expect("read Chart.yaml");
    let version = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("appVersion in deploy/helm/egress/Chart.yaml");
    format!("{repository}:{version}")
}

/// Builds both images (once per process) with `scripts/docker-images` and returns their tags.
/// Blocking: a cold build takes minutes.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let script = workspace_root().join("scripts/docker-images");
        let started = Instant::now();
        // Inherited stdout/stderr: the script's timings and sizes reach the CI log even when
        // the test passes (the test harness captures only print!/eprint!).
        let status = std::process::Command::new("bash")
            .arg(&script)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            status.success(),
            "scripts/docker-images failed ({status}); see its output above"
        );
        eprintln!(
            "docker images ready after {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let full = chart_image();
        let slim = format!("{full}-slim");
        for image in [&full, &slim] {
            let out = docker_blocking()
                .args(["image", "inspect", "--format", "{{.Id}}", image])
                .output()
                .expect("run docker image inspect");
            assert!(
                out.status.success(),
                "scripts/docker-images did not produce {image}: {}",
                output_text(&out)
            );
        }
        Images { full, slim }
    })
}

/// How to start a [`Container`].
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// `-e NAME=VALUE`
    pub env: Vec<(String, String)>,
    /// `-v HOST:CONTAINER`
    pub volumes: Vec<(PathBuf, String)>,
    /// `--security-opt …`
    pub security_opts: Vec<String>,
    /// Arguments after the image (to `egress`, through the entrypoint).
    pub args: Vec<String>,
}

/// A container started with `docker run -d --network host`; removed with `docker rm -f` on
/// drop.
pub struct Container {
    name: String,
    id: String,
}

/// The state `docker inspect` reports.
#[derive(Debug, Clone)]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// `starting`, `healthy`, `unhealthy`, or empty without a HEALTHCHECK.
    pub health: String,
}

impl Container {
    /// `docker run -d --network host` of `image` with `options`. Panics with docker's output if
    /// it cannot start.
    pub async fn run(image: &str, options: &ContainerOptions) -> Container {
        remove_orphans().await;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "egress-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--label".into(),
            format!("{OWNER_LABEL}={}", std::process::id()),
            // Services the tests start listen on 127.0.0.1 of the host; no bridge exists here.
            "--network".into(),
            "host".into(),
        ];
        for (k, v) in &options.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        for (host, inside) in &options.volumes {
            args.push("-v".into());
            args.push(format!("{}:{inside}", host.display()));
        }
        for opt in &options.security_opts {
            args.push("--security-opt".into());
            args.push(opt.clone());
        }
        args.push(image.into());
        args.extend(options.args.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker_ok(&refs).await.trim().to_owned();
        Container { name, id }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full container id (also the name of its cgroup).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.id])
            .await
            .trim()
            .to_owned()
    }

    pub async fn state(&self) -> ContainerState {
        let line = self
            .inspect(
                "{{.State.Status}}|{{.State.Running}}|{{.State.ExitCode}}|{{.State.OOMKilled}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            )
            .await;
        let parts: Vec<&str> = line.split('|').collect();
        let field = |i: usize| parts.get(i).copied().unwrap_or("");
        ContainerState {
            status: field(0).to_owned(),
            running: field(1) == "true",
            exit_code: field(2).parse().unwrap_or(-1),
            oom_killed: field(3) == "true",
            health: field(4).to_owned(),
        }
    }

    /// Waits until Docker's HEALTHCHECK reports `healthy`. Panics with the container's log if it
    /// exits, turns `unhealthy`, or takes longer than `timeout`.
    pub async fn wait_healthy(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let state = self.state().await;
            if state.health == "healthy" {
                return started.elapsed();
            }
            if !state.running || state.health == "unhealthy" || started.elapsed() > timeout {
                panic!(
                    "container {} is not healthy after {:?}: {state:?}\n{}\nlog:\n{}",
                    self.name,
                    started.elapsed(),
                    self.inspect("{{json .State.Health}}").await,
                    self.logs_tail(60).await
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits for the container to exit and returns its state. Panics after `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> ContainerState {
        let started = Instant::now();
        loop {
            let state = self.state().await;
            if !state.running {
                return state;
            }
            if started.elapsed() > timeout {
                panic!(
                    "container {} still running after {timeout:?}\n{}",
                    self.name,
                    self.logs_tail(60).await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Everything the container wrote to stdout and stderr.
    pub async fn logs(&self) -> String {
        output_text(&docker_run_args(&["logs", &self.id], Duration::from_secs(60)).await)
    }

    /// The last `lines` lines of [`logs`](Self::logs).
    pub async fn logs_tail(&self, lines: usize) -> String {
        let logs = self.logs().await;
        let all: Vec<&str> = logs.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Host pids of the processes in this container (its cgroup names the container id).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if cgroup.contains(&self.id) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::env::var_os("EGRESS_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("egress-e2e: container {} kept", self.name);
            return;
        }
        let _ = docker_blocking()
            .args(["rm", "-f", "-v", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes containers of test processes that no longer run (killed before their drop).
async fn remove_orphans() {
    let listing = docker_run_args(
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label={OWNER_LABEL}"),
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}"),
        ],
        Duration::from_secs(60),
    )
    .await;
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = docker_run_args(&["rm", "-f", "-v", id], Duration::from_secs(60)).await;
        }
    }
}
