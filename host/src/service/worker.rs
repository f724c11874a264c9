//! The worker's admission state: what runs here, whether it may take more, and how it bids.
//!
//! Bidding follows the Go egress (`StartEgressAffinity`) so mixed Go/Rust fleets stay
//! predictable: no bid (-1) when shutting down, disconnected or out of CPU; 0.5 when idle; 1.0
//! when already busy (busy workers win, which packs small jobs and keeps idle workers for
//! composites). One addition: a request type this build cannot run yet gets a last-resort bid
//! of [`LAST_RESORT_AFFINITY`], so any capable worker (0.5 or 1.0) wins it, and only when none
//! exists do we take it — to refuse it with the Go egress's "not yet supported" error instead
//! of leaving the caller to time out with "no response from egress service".

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::core::request::{Classified, RequestType};

pub const AFFINITY_NONE: f32 = -1.0;
pub const AFFINITY_IDLE: f32 = 0.5;
pub const AFFINITY_BUSY: f32 = 1.0;
pub const LAST_RESORT_AFFINITY: f32 = 0.01;

/// One egress running on this worker.
#[derive(Debug, Clone)]
pub struct ActiveEgress {
    pub request_type: RequestType,
    /// Cores reserved at admission.
    pub cpu: f64,
}

pub struct Worker {
    pub node_id: String,
    cores: f64,
    max_cpu_utilization: f64,
    active: Mutex<HashMap<String, ActiveEgress>>,
    draining: AtomicBool,
    terminating: AtomicBool,
    connected: AtomicBool,
    /// Set once StartEgress is subscribed: before that the worker cannot take work.
    ready: AtomicBool,
}

impl Worker {
    pub fn new(node_id: String, cores: f64, max_cpu_utilization: f64) -> Worker {
        Worker {
            node_id,
            cores,
            max_cpu_utilization,
            active: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        }
    }

    /// Request types this build can run (see [`crate::pipeline::supports`]); a type not
    /// listed is refused honestly (see the module docs), never started as a fake.
    pub fn can_run(&self, request: &Classified) -> bool {
        crate::pipeline::supports(request)
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Marks the worker able to take work (its RPCs are subscribed).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Stop taking work (SIGTERM/SIGINT).
    pub fn start_draining(&self) {
        self.terminating.store(true, Ordering::Relaxed);
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::Relaxed)
    }

    /// `livekit_egress_is_disabled`: draining, or cut off from Redis (IO unhealthy).
    pub fn is_disabled(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || !self.is_connected()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActiveEgress>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn active_count(&self) -> usize {
        self.lock().len()
    }

    pub fn active_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn active_by_type(&self) -> HashMap<RequestType, usize> {
        let mut out = HashMap::new();
        for e in self.lock().values() {
            *out.entry(e.request_type).or_insert(0) += 1;
        }
        out
    }

    pub fn contains(&self, egress_id: &str) -> bool {
        self.lock().contains_key(egress_id)
    }

    /// Cores still available for admission (Go: all cores when idle, else the utilization cap
    /// minus what running egresses reserved).
    pub fn available_cpu(&self) -> f64 {
        let active = self.lock();
        if active.is_empty() {
            return self.cores;
        }
        let reserved: f64 = active.values().map(|e| e.cpu).sum();
        self.cores * self.max_cpu_utilization - reserved
    }

    pub fn can_accept(&self, cpu: f64) -> bool {
        !self.is_disabled() && self.available_cpu() >= cpu
    }

    /// The bid for a StartEgress request.
    pub fn affinity(&self, request: &Classified, cpu: f64) -> f32 {
        if !self.can_accept(cpu) {
            return AFFINITY_NONE;
        }
        if !self.can_run(request) {
            return LAST_RESORT_AFFINITY;
        }
        if self.active_count() == 0 {
            AFFINITY_IDLE
        } else {
            AFFINITY_BUSY
        }
    }

    /// Records an admitted egress. False if the id is already running here.
    pub fn admit(&self, egress_id: &str, egress: ActiveEgress) -> bool {
        let mut active = self.lock();
        if active.contains_key(egress_id) {
            return false;
        }
        active.insert(egress_id.to_owned(), egress);
        true
    }

    pub fn finish(&self, egress_id: &str) -> Option<ActiveEgress> {
        self.lock().remove(egress_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> Classified {
        Classified {
            request_type: RequestType::Track,
            uses_chrome: false,
            audio_only: false,
            passthrough: false,
        }
    }

    #[test]
    fn bids_like_the_go_egress() {
        let w = Worker::new("NE_test".into(), 2.0, 0.8);
        assert_eq!(
            w.affinity(&track(), 0.5),
            AFFINITY_NONE,
            "disconnected workers do not bid"
        );
        w.set_connected(true);
        assert_eq!(
            w.affinity(&track(), 0.5),
            LAST_RESORT_AFFINITY,
            "nothing runnable yet"
        );
        assert_eq!(
            w.affinity(&track(), 4.0),
            AFFINITY_NONE,
            "a 4-core job does not fit 2 cores"
        );
        assert!(w.admit(
            "EG_a",
            ActiveEgress {
                request_type: RequestType::Track,
                cpu: 1.5
            }
        ));
        assert!(!w.admit(
            "EG_a",
            ActiveEgress {
                request_type: RequestType::Track,
                cpu: 1.5
            }
        ));
        assert!((w.available_cpu() - 0.1).abs() < 1e-9);
        assert_eq!(w.affinity(&track(), 0.5), AFFINITY_NONE);
        w.finish("EG_a");
        w.start_draining();
        assert_eq!(
            w.affinity(&track(), 0.5),
            AFFINITY_NONE,
            "draining workers do not bid"
        );
        assert!(w.is_disabled() && w.is_terminating());
    }
}
