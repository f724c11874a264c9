//! What a process tree costs, from /proc: CPU time (utime + stime of every descendant) and
//! memory (summed RSS, which counts shared pages once per process, and summed PSS, which
//! shares them out). Used by the benchmarks (`bench/`), which print figures and assert nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc's CPU times.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (ppid, utime + stime ticks) of a process, from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `root` and all its descendants, with their CPU ticks.
pub fn tree(root: u32) -> HashMap<u32, u64> {
    let mut all = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some(s) = stat(pid)
            {
                all.insert(pid, s);
            }
        }
    }
    let mut out = HashMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        if let Some((_, ticks)) = all.get(&p) {
            out.insert(p, *ticks);
        }
        frontier.extend(
            all.iter()
                .filter(|(_, (ppid, _))| *ppid == p)
                .map(|(pid, _)| *pid),
        );
    }
    out
}

/// (RSS, PSS) of a process in KiB, from /proc/PID/smaps_rollup.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// What a process tree used over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU time / wall time: 1.0 is one core busy.
    pub cores: f64,
    pub peak_rss_mib: f64,
    pub peak_pss_mib: f64,
    /// The most processes seen in the tree at once.
    pub processes: usize,
}

/// Samples `root`'s tree every `every` for `window` and returns what it used.
pub async fn measure(root: u32, window: Duration, every: Duration) -> Usage {
    let hz = ticks_per_second();
    let start = tree(root);
    let started = Instant::now();
    let (mut peak_rss, mut peak_pss, mut processes) = (0u64, 0u64, 0usize);
    while started.elapsed() < window {
        let pids = tree(root);
        let (rss, pss) = pids
            .keys()
            .map(|p| memory_kib(*p))
            .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
        peak_rss = peak_rss.max(rss);
        peak_pss = peak_pss.max(pss);
        processes = processes.max(pids.len());
        tokio::time::sleep(every).await;
    }
    let end = tree(root);
    let wall = started.elapsed().as_secs_f64();
    let used: u64 = end
        .iter()
        .map(|(pid, t)| t.saturating_sub(*start.get(pid).unwrap_or(&0)))
        .sum();
    Usage {
        cores: used as f64 / hz / wall,
        peak_rss_mib: peak_rss as f64 / 1024.0,
        peak_pss_mib: peak_pss as f64 / 1024.0,
        processes,
    }
}
