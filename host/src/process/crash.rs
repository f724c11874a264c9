//! Crash reports: what a dying handler process says about itself, and what the service records
//! about a handler that died.
//!
//! In the handler ([`install`], once at start): on SIGSEGV, SIGBUS, SIGABRT, SIGILL or SIGFPE
//! (signal plumbing, alternate stacks and re-raising from the `crash-handler` crate) it writes
//! to stderr, which is the service's log:
//!
//! ```text
//! egress handler crashed: signal 11 (SIGSEGV) code 1 address 0x10 in thread 4242 "compositor0:src"; running egress ids: EG_a EG_b
//! egress handler crashed: raw backtrace (addr2line -f -C -e <egress binary> <+offset> for our frames):
//! /usr/lib/x86_64-linux-gnu/libgstbase-1.0.so.0(gst_aggregator_…+0x2f)[0x7f…]
//! …
//! egress handler crashed: symbolised backtrace:
//!    0: egress_host::…  at host/src/…:123
//! ```
//!
//! then dies of the same signal, so the service sees the real exit status and the kernel writes
//! the core where `core_pattern` says. The first two parts are async-signal-safe (no heap, no
//! locks: a fixed buffer, `write(2)`, glibc's `backtrace`, warmed up at install so it loads its
//! unwinder then, not in the handler). The symbolised backtrace needs the heap and the debug
//! info, which are not safe to touch in a crashed process (the crash may be inside malloc with
//! its lock held): a forked child of the crashed thread does it, and the parent gives it
//! [`SYMBOLISE_TIMEOUT`] before it re-raises whatever happened.
//!
//! The egress ids come from [`Running`] guards, which keep a pre-formatted copy in a static
//! buffer (a sequence lock over atomics) that the signal handler can read without a lock.
//!
//! In the service ([`core_file`]): where the kernel put the core of a handler that died with
//! one, from `/proc/sys/kernel/core_pattern`, for the log and the egress's details.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// How long the forked child may take to print the symbolised backtrace.
const SYMBOLISE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames of the raw backtrace.
const MAX_FRAMES: usize = 64;
/// Room for the running egress ids (64 egresses of a shared handler, ids of ~15 bytes).
const IDS_CAPACITY: usize = 2048;

// ---------- the running egress ids ----------

/// The ids of the egresses this process runs, and their pre-formatted copy.
static RUNNING: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The copy the signal handler reads: `IDS_SEQ` is odd while it is being written.
static IDS: [AtomicU8; IDS_CAPACITY] = [const { AtomicU8::new(0) }; IDS_CAPACITY];
static IDS_LEN: AtomicUsize = AtomicUsize::new(0);
static IDS_SEQ: AtomicUsize = AtomicUsize::new(0);

/// An egress running in this process, named in a crash report until dropped.
pub struct Running {
    egress_id: String,
}

impl Running {
    pub fn new(egress_id: &str) -> Running {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.push(egress_id.to_owned());
        publish_ids(&running);
        Running {
            egress_id: egress_id.to_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = running.iter().position(|id| *id == self.egress_id) {
            running.remove(at);
        }
        publish_ids(&running);
    }
}

/// Writes the ids, space-separated, into the buffer the signal handler reads (called with
/// `RUNNING` locked, so there is one writer at a time).
fn publish_ids(ids: &[String]) {
    let joined = ids.join(" ");
    let bytes = &joined.as_bytes()[..joined.len().min(IDS_CAPACITY)];
    IDS_SEQ.fetch_add(1, Ordering::AcqRel);
    for (slot, b) in IDS.iter().zip(bytes) {
        slot.store(*b, Ordering::Relaxed);
    }
    IDS_LEN.store(bytes.len(), Ordering::Relaxed);
    IDS_SEQ.fetch_add(1, Ordering::Release);
}

/// Copies the ids into `out` (async-signal-safe); `None` when they were being rewritten (the
/// crash may be on the thread that writes them, so this does not wait).
fn read_ids(out: &mut [u8; IDS_CAPACITY]) -> Option<usize> {
    for _ in 0..3 {
        let before = IDS_SEQ.load(Ordering::Acquire);
        if before % 2 == 1 {
            continue;
        }
        let len = IDS_LEN.load(Ordering::Relaxed).min(IDS_CAPACITY);
        for (o, slot) in out.iter_mut().zip(&IDS).take(len) {
            *o = slot.load(Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Acquire);
        if IDS_SEQ.load(Ordering::Relaxed) == before {
            return Some(len);
        }
    }
    None
}

// ---------- the signal handler ----------

/// Set by the first crash: a second one (another thread, or the symbolising child) only dies.
static CRASHING: AtomicBool = AtomicBool::new(false);

/// Installs the crash handler for the rest of the process's life. Call it early, before
/// anything else installs handlers for these signals (wasmtime installs its own for WASM
/// traps later and passes on the faults that are not its own).
pub fn install() {
    warm_up_backtrace();
    // SAFETY: the callback only does what is async-signal-safe until the fork; see `report`.
    let event =
        unsafe { crash_handler::make_crash_event(|cc: &crash_handler::CrashContext| report(cc)) };
    match crash_handler::CrashHandler::attach(event) {
        // The handler stays installed until the process ends.
        Ok(handler) => std::mem::forget(handler),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the crash handler; a crash will leave no report")
        }
    }
}

/// glibc's `backtrace` loads libgcc's unwinder on its first call (`dlopen`, which takes locks
/// and allocates): done here, so that the call in the signal handler does neither.
fn warm_up_backtrace() {
    let mut frames = [std::ptr::null_mut(); 4];
    // SAFETY: `frames` has room for the 4 entries asked for.
    unsafe { libc::backtrace(frames.as_mut_ptr(), frames.len() as libc::c_int) };
}

fn report(cc: &crash_handler::CrashContext) -> crash_handler::CrashEventResult {
    // Die with the signal (the crate restores the default action and re-raises it).
    let die = crash_handler::CrashEventResult::Handled(true);
    if CRASHING.swap(true, Ordering::SeqCst) {
        return die;
    }
    let signal = cc.siginfo.ssi_signo as i32;
    let mut line = StackText::new();
    let _ = std::fmt::Write::write_fmt(
        &mut line,
        format_args!(
            "egress handler crashed: signal {signal} ({}) code {} address {:#x} in thread {} \"",
            signal_name(signal),
            cc.siginfo.ssi_code,
            cc.siginfo.ssi_addr,
            cc.tid
        ),
    );
    line.push_bytes(thread_name(&mut [0u8; 17]));
    line.push_bytes(b"\"; running egress ids: ");
    write_all(line.as_bytes());
    let mut ids = [0u8; IDS_CAPACITY];
    match read_ids(&mut ids) {
        Some(0) => write_all(b"(none)"),
        Some(len) => write_all(&ids[..len]),
        None => write_all(b"(being updated)"),
    }
    write_all(b"\negress handler crashed: raw backtrace (addr2line -f -C -e <egress binary> <+offset> for our frames):\n");
    let mut frames = [std::ptr::null_mut(); MAX_FRAMES];
    // SAFETY: `frames` has room for MAX_FRAMES entries; fd 2 is stderr. Both calls are
    // async-signal-safe once the unwinder is loaded (`warm_up_backtrace`).
    unsafe {
        let n = libc::backtrace(frames.as_mut_ptr(), MAX_FRAMES as libc::c_int);
        libc::backtrace_symbols_fd(frames.as_ptr(), n, libc::STDERR_FILENO);
    }
    symbolise_in_child();
    write_all(b"egress handler crashed: dying of the signal now\n");
    die
}

/// Prints the symbolised backtrace of this (crashed) thread from a forked copy of it, and
/// waits for it at most [`SYMBOLISE_TIMEOUT`].
///
/// Hand-written because no crate does this part safely: the child is made with the raw
/// `fork` system call rather than glibc's `fork()`, whose fork handlers take malloc's locks in
/// the parent (a crash inside malloc would hang there). The child has only this thread; if a
/// lock it needs was held by another thread at the fork, it hangs and is killed.
fn symbolise_in_child() {
    // SAFETY: a raw fork; the child only runs `child_symbolise`, which ends in `_exit`.
    let pid = unsafe { libc::syscall(libc::SYS_fork) };
    if pid < 0 {
        write_all(b"egress handler crashed: no symbolised backtrace (fork failed)\n");
        return;
    }
    if pid == 0 {
        child_symbolise();
    }
    let pid = pid as libc::pid_t;
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child; async-signal-safe.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done != 0 {
            return;
        }
        if waited >= SYMBOLISE_TIMEOUT {
            write_all(b"\negress handler crashed: the symbolised backtrace took too long; see the core file\n");
            // SAFETY: kill and reap our own child; both async-signal-safe.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return;
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: step.as_nanos() as libc::c_long,
        };
        // SAFETY: nanosleep is async-signal-safe.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        waited += step;
    }
}

/// In the forked child: capture and print the backtrace (heap and debug info are fine here:
/// at worst this process hangs and is killed), then leave without running anything else.
fn child_symbolise() -> ! {
    // Capturing walks this thread's stack (the crashed one's copy), which is cheap; resolving
    // the symbols needs more stack than a signal stack has (16 KiB), so it runs on a thread of
    // its own.
    let trace = std::backtrace::Backtrace::force_capture();
    let text = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || format!("egress handler crashed: symbolised backtrace:\n{trace}\n"))
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or_else(|| {
            "egress handler crashed: the backtrace could not be symbolised\n".to_owned()
        });
    write_all(text.as_bytes());
    // SAFETY: ends the child at once (no atexit handlers, no destructors of the parent's state).
    unsafe { libc::_exit(0) }
}

/// `write(2)` all of `bytes` to stderr (async-signal-safe).
fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid slice to fd 2.
        let n = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// This thread's name (`prctl(PR_GET_NAME)`, async-signal-safe): GStreamer names its
/// streaming threads after their pad ("compositor0:src").
fn thread_name(buf: &mut [u8; 17]) -> &[u8] {
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL-terminated, into `buf`.
    if unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) } != 0 {
        return b"?";
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(16);
    &buf[..len]
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTRAP => "SIGTRAP",
        _ => "?",
    }
}

/// A line formatted on the stack (`core::fmt` of numbers and strings does not allocate).
struct StackText {
    buf: [u8; 256],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            buf: [0; 256],
            len: 0,
        }
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

// ---------- the service's side: where the core went ----------

/// Where the kernel put the core of a process that died with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreFile {
    /// A file: the newest one matching `core_pattern` for this pid.
    Path(PathBuf),
    /// `core_pattern` pipes cores to a program (systemd-coredump, apport …): ask it.
    Piped(String),
    /// No file matching the pattern was found.
    NotFound(String),
}

impl std::fmt::Display for CoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreFile::Path(p) => write!(f, "core file {}", p.display()),
            CoreFile::Piped(program) => write!(f, "core handed to {program}"),
            CoreFile::NotFound(pattern) => {
                write!(f, "core file not found (core_pattern {pattern})")
            }
        }
    }
}

/// For a process that died of a crash signal: where its core went, or why there is none.
pub fn core_of_crash(pid: u32, status: &std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let signal = status.signal()?;
    if !matches!(
        signal,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGABRT | libc::SIGILL | libc::SIGFPE
    ) {
        return None;
    }
    if !status.core_dumped() {
        return Some("no core file (core dumps are off: ulimit -c)".to_owned());
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    Some(core_file(pid, &cwd).to_string())
}

/// Finds the core of process `pid` (which ran in `cwd`), from the kernel's `core_pattern` and
/// `core_uses_pid`.
pub fn core_file(pid: u32, cwd: &Path) -> CoreFile {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let pattern = match read("core_pattern") {
        p if p.is_empty() => "core".to_owned(),
        p => p,
    };
    find_core(&pattern, read("core_uses_pid") == "1", pid, cwd)
}

fn find_core(pattern: &str, uses_pid: bool, pid: u32, cwd: &Path) -> CoreFile {
    if let Some(program) = pattern.strip_prefix('|') {
        return CoreFile::Piped(
            program
                .split_whitespace()
                .next()
                .unwrap_or(program)
                .to_owned(),
        );
    }
    let not_found = || CoreFile::NotFound(pattern.to_owned());
    let mut pattern = pattern.to_owned();
    if uses_pid && !pattern.contains("%p") {
        pattern.push_str(".%p");
    }
    let full = if pattern.starts_with('/') {
        PathBuf::from(&pattern)
    } else {
        cwd.join(&pattern)
    };
    let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str())) else {
        return not_found();
    };
    if dir.to_string_lossy().contains('%') {
        return not_found();
    }
    let glob = name_glob(name, pid);
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| glob_matches(&glob, n))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    newest.map_or_else(not_found, |(_, path)| CoreFile::Path(path))
}

/// The file-name part of a core pattern as a glob: `%p`/`%P` become the pid, `%%` a percent
/// sign, every other specifier (`%e` name, `%t` time, `%h` host …) a `*`.
fn name_glob(name: &str, pid: u32) -> String {
    let mut out = String::new();
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('p') | Some('P') => out.push_str(&pid.to_string()),
            Some('%') => out.push('%'),
            Some(_) => out.push('*'),
            None => {}
        }
    }
    out
}

/// Whether `name` matches `glob`, where `*` stands for any run of characters.
fn glob_matches(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    let (first, rest) = parts.split_first().expect("split yields one part at least");
    let Some(mut tail) = name.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if last {
            return tail.ends_with(part);
        }
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    tail.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_pattern_becomes_a_glob_with_the_pid() {
        assert_eq!(name_glob("core.%e.%p.%t", 42), "core.*.42.*");
        assert_eq!(name_glob("core", 42), "core");
        assert_eq!(name_glob("100%%-%P", 7), "100%-7");
        assert!(glob_matches("core.*.42.*", "core.egress.42.1700000000"));
        assert!(!glob_matches("core.*.42.*", "core.egress.421.1700000000"));
        assert!(glob_matches("core", "core"));
        assert!(!glob_matches("core", "core.1"));
        assert!(glob_matches("*", "anything"));
    }

    #[test]
    fn the_core_of_the_pid_is_found_and_a_pipe_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("core.egress.41.1"), b"").expect("write");
        std::fs::write(dir.path().join("core.egress.42.1"), b"").expect("write");
        let pattern = format!("{}/core.%e.%p.%t", dir.path().display());
        assert_eq!(
            find_core(&pattern, false, 42, Path::new("/")),
            CoreFile::Path(dir.path().join("core.egress.42.1"))
        );
        assert_eq!(
            find_core(&pattern, false, 43, Path::new("/")),
            CoreFile::NotFound(pattern.clone())
        );
        // A relative pattern is the process's working directory; core_uses_pid appends the pid.
        std::fs::write(dir.path().join("core.42"), b"").expect("write");
        assert_eq!(
            find_core("core", true, 42, dir.path()),
            CoreFile::Path(dir.path().join("core.42"))
        );
        assert_eq!(
            find_core(
                "|/usr/lib/systemd/systemd-coredump %P %u",
                false,
                42,
                dir.path()
            ),
            CoreFile::Piped("/usr/lib/systemd/systemd-coredump".into())
        );
    }

    #[test]
    fn the_running_ids_are_readable_without_a_lock() {
        let a = Running::new("EG_crash_a");
        let b = Running::new("EG_crash_b");
        let mut buf = [0u8; IDS_CAPACITY];
        let len = read_ids(&mut buf).expect("not being written");
        let ids = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert!(
            ids.contains("EG_crash_a") && ids.contains("EG_crash_b"),
            "{ids}"
        );
        drop(a);
        let len = read_ids(&mut buf).expect("not being written");
        let ids = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert!(
            !ids.contains("EG_crash_a") && ids.contains("EG_crash_b"),
            "{ids}"
        );
        drop(b);
    }
}
