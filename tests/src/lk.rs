//! The `lk` CLI (livekit-cli v2) against a [`LiveKitServer`].

use std::fmt;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::livekit::LiveKitServer;
use crate::tools::{TestDir, find_binary};

const LK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `lk --url … --api-key … --api-secret … ARGS` against `server`.
pub async fn lk(server: &LiveKitServer, args: &[&str]) -> Output {
    Lk::new(server).run(args).await
}

/// `lk` bound to one server. Runs with `LIVEKIT_*` env vars removed and `HOME` in a temp dir, so
/// that no personal lk config or project is picked up.
pub struct Lk {
    bin: PathBuf,
    url: String,
    api_key: String,
    api_secret: String,
    home: TestDir,
}

/// `lk` exited non-zero.
#[derive(Debug, Clone)]
pub struct LkError {
    pub args: Vec<String>,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for LkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`lk {}` failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

impl std::error::Error for LkError {}

/// What `lk egress start` printed: `EgressID: EG_… Status: EGRESS_STARTING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedEgress {
    pub egress_id: String,
    /// The status, or the error text if lk printed `EgressID: … Error: …`.
    pub status: String,
    pub stdout: String,
}

impl Lk {
    pub fn new(server: &LiveKitServer) -> Lk {
        Lk {
            bin: find_binary("lk"),
            url: server.http_url(),
            api_key: server.api_key().to_string(),
            api_secret: server.api_secret().to_string(),
            home: TestDir::new("lk-home"),
        }
    }

    /// Runs lk with the connection flags and `args`. Panics if lk cannot be started or takes
    /// longer than 60 s; a non-zero exit is returned, not a panic.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args([
            "--url",
            &self.url,
            "--api-key",
            &self.api_key,
            "--api-secret",
            &self.api_secret,
        ])
        .args(args)
        .current_dir(self.home.path())
        .env("HOME", self.home.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LIVEKIT_") {
                cmd.env_remove(&key);
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {} {}: {e}", self.bin.display(), args.join(" "))
        });
        match tokio::time::timeout(LK_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => panic!("lk {}: {e}", args.join(" ")),
            Err(_) => panic!("lk {}: no exit after {LK_TIMEOUT:?}", args.join(" ")),
        }
    }

    /// Runs lk and returns stdout, or an [`LkError`] with both outputs if it exits non-zero.
    pub async fn try_run(&self, args: &[&str]) -> Result<String, LkError> {
        let output = self.run(args).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(LkError {
                args: args.iter().map(|s| s.to_string()).collect(),
                status: output.status,
                stdout,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
    }

    /// Runs lk and returns stdout; panics with both outputs if it exits non-zero.
    pub async fn run_ok(&self, args: &[&str]) -> String {
        self.try_run(args).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs an lk `--json` listing. lk prints either a JSON array (Go's encoding/json of a
    /// slice; `null` when empty) or a protojson response message whose list is in `field`
    /// (omitted when empty, so `{}`).
    async fn json_list(&self, args: &[&str], field: &str) -> Vec<Value> {
        let stdout = self.run_ok(args).await;
        match serde_json::from_str::<Value>(&stdout) {
            Ok(Value::Array(items)) => items,
            Ok(Value::Null) => Vec::new(),
            Ok(Value::Object(mut map)) if map.is_empty() || map.contains_key(field) => {
                match map.remove(field) {
                    Some(Value::Array(items)) => items,
                    None | Some(Value::Null) => Vec::new(),
                    Some(other) => {
                        panic!("lk {}: `{field}` is not an array: {other}", args.join(" "))
                    }
                }
            }
            Ok(other) => panic!("lk {}: expected a JSON list, got {other}", args.join(" ")),
            Err(e) => panic!("lk {}: stdout is not JSON ({e}):\n{stdout}", args.join(" ")),
        }
    }

    /// `lk room list --json`: the rooms, as livekit.Room JSON objects.
    pub async fn room_list(&self) -> Vec<Value> {
        self.json_list(&["room", "list", "--json"], "rooms").await
    }

    /// `lk egress start --type TYPE REQUEST_JSON` (TYPE: room-composite, participant, track,
    /// track-composite, web; the JSON is the matching *EgressRequest, inline).
    pub async fn egress_start(
        &self,
        egress_type: &str,
        request_json: &str,
    ) -> Result<StartedEgress, LkError> {
        let args = ["egress", "start", "--type", egress_type, request_json];
        let stdout = self.try_run(&args).await?;
        Ok(parse_started(&stdout).unwrap_or_else(|| {
            panic!(
                "lk {}: unexpected output (no `EgressID: …`):\n{stdout}",
                args.join(" ")
            )
        }))
    }

    /// `lk egress start --type room-composite REQUEST_JSON`.
    pub async fn egress_start_room_composite(
        &self,
        request_json: &str,
    ) -> Result<StartedEgress, LkError> {
        self.egress_start("room-composite", request_json).await
    }

    /// `lk egress list --json`: all egresses, as livekit.EgressInfo JSON objects (Go's
    /// encoding/json: snake_case field names, enums as numbers).
    pub async fn egress_list(&self) -> Vec<Value> {
        self.json_list(&["egress", "list", "--json"], "items").await
    }

    /// `lk egress list --json` with extra filters, e.g. `["--active"]`, `["--room", "r"]`,
    /// `["--id", "EG_…"]`.
    pub async fn egress_list_with(&self, filters: &[&str]) -> Vec<Value> {
        let mut args = vec!["egress", "list", "--json"];
        args.extend_from_slice(filters);
        self.json_list(&args, "items").await
    }

    /// `lk egress stop --id ID`.
    pub async fn egress_stop(&self, egress_id: &str) -> Result<String, LkError> {
        self.try_run(&["egress", "stop", "--id", egress_id]).await
    }
}

fn parse_started(stdout: &str) -> Option<StartedEgress> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("EgressID:"))?;
    let rest = line.trim_start().strip_prefix("EgressID:")?.trim();
    let (egress_id, status) = match rest.split_once(' ') {
        Some((id, tail)) => {
            let tail = tail.trim();
            let status = tail
                .strip_prefix("Status:")
                .or_else(|| tail.strip_prefix("Error:"))
                .unwrap_or(tail)
                .trim();
            (id, status)
        }
        None => (rest, ""),
    };
    Some(StartedEgress {
        egress_id: egress_id.to_string(),
        status: status.to_string(),
        stdout: stdout.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_started;

    #[test]
    fn parses_egress_start_output() {
        let s = parse_started("EgressID: EG_abc Status: EGRESS_STARTING\n").unwrap();
        assert_eq!(
            (s.egress_id.as_str(), s.status.as_str()),
            ("EG_abc", "EGRESS_STARTING")
        );
        let e = parse_started("EgressID: EG_x Error: no response from servers\n").unwrap();
        assert_eq!(e.status, "no response from servers");
        assert!(parse_started("nothing").is_none());
    }
}
