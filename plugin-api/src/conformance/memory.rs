//! Measuring the resident set while a sink streams: the only measure that covers memory held
//! by compiled-in code, a dylib's own allocator and a WASM instance alike.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Resident set size of this process in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples the resident set every few milliseconds until stopped, and reports the peak growth
/// over the value at start.
pub struct PeakRss {
    baseline: Option<u64>,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakRss {
    pub fn start() -> Self {
        let baseline = resident_bytes();
        let peak = Arc::new(AtomicU64::new(baseline.unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = baseline.and_then(|_| {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(rss) = resident_bytes() {
                            peak.fetch_max(rss, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .ok()
        });
        PeakRss {
            baseline,
            peak,
            stop,
            thread,
        }
    }

    /// Peak growth in bytes since `start`, or `None` when the OS does not tell.
    pub fn stop(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(rss) = resident_bytes() {
            self.peak.fetch_max(rss, Ordering::Relaxed);
        }
        let baseline = self.baseline?;
        Some(self.peak.load(Ordering::Relaxed).saturating_sub(baseline))
    }
}

static BUSY: Mutex<bool> = Mutex::new(false);
static FREED: Condvar = Condvar::new();

/// Held while a large object streams, so that two measurements in one process do not overlap.
/// Tests that stream large objects outside the kit take it too. Unlike a `MutexGuard` it may be
/// held across `.await` (it is `Send`).
pub struct Exclusive(());

/// Wait until no other measurement runs, then hold the slot until the returned value drops.
pub fn exclusive() -> Exclusive {
    let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
    while *busy {
        busy = FREED.wait(busy).unwrap_or_else(PoisonError::into_inner);
    }
    *busy = true;
    Exclusive(())
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(PoisonError::into_inner) = false;
        FREED.notify_one();
    }
}
