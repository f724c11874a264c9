//! A private X display for one egress: `Xvfb` at the encoding size.
//!
//! Xvfb picks a free display number itself (`-displayfd`) and writes it to a pipe once it
//! accepts connections, which is both race-free against other egresses on the host and a
//! readiness signal. Like the Go egress it listens on neither TCP nor a socket file (Linux's
//! abstract socket still works for local clients). The process stays in the handler's process
//! group and is killed on drop, so it never outlives the egress.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::core::PipelineError;

const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Display {
    child: Child,
    number: u32,
}

fn failed(reason: impl std::fmt::Display) -> PipelineError {
    PipelineError::ProcessFailed {
        process: "xvfb",
        reason: reason.to_string(),
    }
}

/// A pipe whose write end a child can inherit (the read end stays close-on-exec).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own; O_CLOEXEC keeps them out of any
    // other child spawned concurrently.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Display {
    pub async fn start(width: i32, height: i32, depth: i32) -> Result<Display, PipelineError> {
        let (read_end, write_end) = pipe().map_err(failed)?;
        let write_fd = write_end.as_raw_fd();
        let mut cmd = Command::new("Xvfb");
        cmd.arg("-displayfd")
            .arg(write_fd.to_string())
            .args(["-screen", "0", &format!("{width}x{height}x{depth}")])
            .args(["-ac", "-nolisten", "tcp", "-nolisten", "unix"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: fcntl on an fd we own is async-signal-safe; it lets only this child inherit
        // the pipe's write end.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(write_fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(failed)?;
        // Our copy of the write end must go, or the read below never sees EOF if Xvfb dies.
        drop(write_end);

        // Xvfb writes "N\n" once it accepts connections; read up to the newline (or EOF if
        // it died) without relying on it closing the fd.
        let read = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::from(read_end);
            let mut text = Vec::new();
            let mut byte = [0u8; 1];
            while file.read(&mut byte)? == 1 && byte[0] != b'\n' && text.len() < 16 {
                text.push(byte[0]);
            }
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&text).into_owned())
        });
        let number = match tokio::time::timeout(START_TIMEOUT, read).await {
            Ok(Ok(Ok(text))) => text.trim().parse::<u32>().ok(),
            _ => None,
        };
        match number {
            Some(number) => {
                tracing::debug!(display = number, "X display ready");
                Ok(Display { child, number })
            }
            None => {
                let _ = child.start_kill();
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                Err(failed(format!("Xvfb did not report a display ({status})")))
            }
        }
    }

    /// `:N`, for `DISPLAY`, Chrome's `--display` and ximagesrc's `display-name`.
    pub fn name(&self) -> String {
        format!(":{}", self.number)
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
