//! CPU and memory of process trees, read from /proc (as bench-composite does).

use std::collections::HashMap;

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

/// Every live process: pid → (ppid, CPU ticks).
fn all() -> HashMap<u32, (u32, u64)> {
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
    all
}

/// `roots` and all their descendants, with their CPU ticks.
pub fn tree(roots: &[u32]) -> HashMap<u32, u64> {
    let all = all();
    let mut out = HashMap::new();
    let mut frontier = roots.to_vec();
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

/// Cores used between two [`tree`] samples `secs` apart. A process present only in `end`
/// counts from zero (it started in the window); one gone by `end` is lost (none should exit
/// while the egresses run).
pub fn cores(start: &HashMap<u32, u64>, end: &HashMap<u32, u64>, secs: f64) -> f64 {
    let used: u64 = end
        .iter()
        .map(|(pid, t)| t.saturating_sub(*start.get(pid).unwrap_or(&0)))
        .sum();
    used as f64 / ticks_per_second() / secs
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

/// Summed (RSS, PSS) in KiB of the processes in `pids`.
pub fn tree_memory_kib<'a>(pids: impl IntoIterator<Item = &'a u32>) -> (u64, u64) {
    pids.into_iter()
        .map(|p| memory_kib(*p))
        .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1))
}

/// The command line of a process, arguments joined by spaces ("" when it is gone).
pub fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

/// Live processes whose command line contains every one of `needles`.
pub fn with_cmdline(needles: &[&str]) -> Vec<u32> {
    all()
        .into_keys()
        .filter(|pid| {
            let cmd = cmdline(*pid);
            needles.iter().all(|n| cmd.contains(n))
        })
        .collect()
}

/// CPU ticks per thread of `pid`: thread name → ticks (threads of the same name summed).
pub fn thread_ticks(pid: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in entries.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = text.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|(_, n)| n).unwrap_or("?");
        // Numbered workers (tokio-runtime-w, writer-12…) are one pool: group them by their
        // name without trailing digits.
        let name = name
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_owned();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_insert(0) += ticks;
    }
    out
}
