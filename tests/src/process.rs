//! A child process in its own process group, logging to files, killed on drop.

use std::fs::File;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of log shown when a service fails.
const TAIL_LINES: usize = 80;
/// How long a dropped service gets between SIGTERM and SIGKILL, by default.
const DROP_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Proc {
    name: String,
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
    logs: Vec<PathBuf>,
    /// Signals sent to the group on drop, each followed by up to its grace period for the
    /// process to exit; SIGKILL comes after the last.
    drop_signals: Vec<(i32, Duration)>,
}

fn create_log(name: &str, path: &Path) -> File {
    File::create(path)
        .unwrap_or_else(|e| panic!("{name}: cannot create log file {}: {e}", path.display()))
}

impl Proc {
    /// Starts `cmd` in a new process group with stdin from /dev/null and stdout/stderr to the
    /// given files (the same file for both if the paths are equal).
    pub fn spawn(name: &str, mut cmd: Command, stdout: &Path, stderr: &Path) -> Proc {
        let out = create_log(name, stdout);
        let err = if stdout == stderr {
            out.try_clone()
                .unwrap_or_else(|e| panic!("{name}: cannot dup log file handle: {e}"))
        } else {
            create_log(name, stderr)
        };
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // If the test process dies without running Drop (Ctrl-C, a killed test binary), take the
        // service with it: being in its own process group, it would not get the terminal's
        // SIGINT. (The signal fires when the spawning *thread* ends, so services must be
        // started from a thread that outlives them, as a test's own thread does.)
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "{name}: cannot start {}: {e}",
                cmd.get_program().to_string_lossy()
            )
        });
        let mut logs = vec![stdout.to_path_buf()];
        if stdout != stderr {
            logs.push(stderr.to_path_buf());
        }
        Proc {
            name: name.to_string(),
            pid: child.id(),
            child,
            status: None,
            logs,
            drop_signals: vec![(libc::SIGTERM, DROP_GRACE)],
        }
    }

    /// Replaces the drop sequence (default: SIGTERM, 5 s, SIGKILL).
    pub fn set_drop_signals(&mut self, signals: Vec<(i32, Duration)>) {
        self.drop_signals = signals;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, if the process has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(e) => panic!("{}: waitpid failed: {e}", self.name),
            }
        }
        self.status
    }

    /// Sends `sig` to the process itself (not its group), unless it has been reaped.
    pub fn signal(&mut self, sig: i32) {
        if self.try_wait().is_none() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        }
    }

    /// Sends `sig` to the whole process group (the process and everything it started that did
    /// not move to a group of its own).
    pub fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions. The group id is the leader's pid
        // (process_group(0)); it cannot be reused while any member of the group is alive.
        unsafe { libc::kill(-(self.pid as libc::pid_t), sig) };
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to the group, up to `grace` for the process to exit, then SIGKILL to the group
    /// (which also ends any of its children still around). Returns the exit status.
    pub async fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.signal_group(libc::SIGTERM);
        let status = self.wait_exit(grace).await;
        self.signal_group(libc::SIGKILL);
        match status {
            Some(status) => status,
            None => self.wait_blocking(),
        }
    }

    /// SIGKILL to the group, then reap.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal_group(libc::SIGKILL);
        self.wait_blocking()
    }

    fn wait_blocking(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match self.child.wait() {
            Ok(status) => {
                self.status = Some(status);
                status
            }
            Err(e) => panic!("{}: waitpid failed: {e}", self.name),
        }
    }

    /// Everything the process wrote, all log files concatenated.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            if self.logs.len() > 1 {
                out.push_str(&format!("----- {} -----\n", path.display()));
            }
            match std::fs::read(path) {
                Ok(bytes) => out.push_str(&String::from_utf8_lossy(&bytes)),
                Err(e) => out.push_str(&format!("(cannot read {}: {e})\n", path.display())),
            }
        }
        out
    }

    /// The last lines of each log file, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            out.push_str(&format!(
                "----- last {TAIL_LINES} lines of {} -----\n",
                path.display()
            ));
            match std::fs::read(path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let lines: Vec<&str> = text.lines().collect();
                    let start = lines.len().saturating_sub(TAIL_LINES);
                    for line in &lines[start..] {
                        out.push_str(line);
                        out.push('\n');
                    }
                    if lines.is_empty() {
                        out.push_str("(empty)\n");
                    }
                }
                Err(e) => out.push_str(&format!("(cannot read: {e})\n")),
            }
        }
        out
    }

    /// Polls `probe` every 50 ms until it returns true. Panics, with the log tail, if the
    /// process exits first or `timeout` passes.
    pub async fn wait_ready<F, Fut>(&mut self, what: &str, timeout: Duration, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                panic!(
                    "{} (pid {}) exited with {status} before {what}\n{}",
                    self.name,
                    self.pid,
                    self.log_tail()
                );
            }
            if probe().await {
                return;
            }
            if started.elapsed() >= timeout {
                panic!(
                    "{} (pid {}): timed out after {timeout:?} waiting for {what}\n{}",
                    self.name,
                    self.pid,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Blocking is fine here: a test is ending, and this takes a few seconds at most.
        for (sig, grace) in std::mem::take(&mut self.drop_signals) {
            if self.status.is_some() {
                break;
            }
            self.signal_group(sig);
            let deadline = Instant::now() + grace;
            while self.status.is_none() && Instant::now() < deadline {
                match self.child.try_wait() {
                    Ok(Some(status)) => self.status = Some(status),
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break,
                }
            }
        }
        self.signal_group(libc::SIGKILL);
        if self.status.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// A `Command` for `program` with `RUST_BACKTRACE=1` (unless set) and the given working dir.
pub(crate) fn command(program: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd);
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        cmd.env("RUST_BACKTRACE", "1");
    }
    cmd
}
