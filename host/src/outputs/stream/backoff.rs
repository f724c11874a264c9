//! When a live destination that dropped is tried again, and when it is given up.
//!
//! Go's egress reconnects RTMP as fast as errors arrive (34 publishes in 8 s against Mux,
//! egress #1244) and gives up 30 s after the first disconnect. Here: a jittered exponential
//! delay (0.5 s doubling to 10 s, ±20 %), never two attempts within a second, and a give-up
//! window (default 60 s, as Mux's and Agora's) measured from the start of the outage, so a
//! destination that comes back within the window is published to again. Every knob is the
//! config's `stream_reconnect:` section ([`ReconnectPolicy::from_config`]).

use std::time::Duration;

use rand::Rng;

use super::url::StreamKind;
use crate::config::ServiceConfig;

/// The reconnect policy of one destination (shared by every destination of an egress).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// First delay after a failure.
    pub initial: Duration,
    /// Largest delay between two attempts.
    pub max: Duration,
    /// ± this fraction of each delay, so that many destinations of one ingest that dropped
    /// together do not all come back in the same instant.
    pub jitter: f64,
    /// Attempts start at least this far apart, whatever the delay says.
    pub min_interval: Duration,
    /// How long an outage may last before the destination is FAILED. `None`: never.
    pub window: Option<Duration>,
    /// Whether SRT destinations are retried at all (Go fails them at their first error).
    pub retry_srt: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            jitter: 0.2,
            min_interval: Duration::from_secs(1),
            window: Some(Duration::from_secs(60)),
            retry_srt: true,
        }
    }
}

impl ReconnectPolicy {
    /// The policy the config's `stream_reconnect:` section sets (its defaults are
    /// [`ReconnectPolicy::default`]).
    pub fn from_config(config: &ServiceConfig) -> ReconnectPolicy {
        let r = &config.stream_reconnect;
        ReconnectPolicy {
            initial: r.initial_delay,
            max: r.max_delay,
            jitter: r.jitter,
            min_interval: r.min_interval,
            window: Some(r.window),
            retry_srt: r.retry_srt,
        }
    }

    /// The policy of one destination of `kind`: an SRT destination is not retried when the
    /// config says so (a window of 0: it fails at its first drop, as in Go).
    pub fn for_kind(&self, kind: StreamKind) -> ReconnectPolicy {
        if kind == StreamKind::Srt && !self.retry_srt {
            ReconnectPolicy {
                window: Some(Duration::ZERO),
                ..*self
            }
        } else {
            *self
        }
    }

    /// The delay before attempt `n` of an outage (1 for the first retry), jittered, and never
    /// less than what keeps attempts `min_interval` apart given that the last one started
    /// `since_last_attempt` ago.
    pub fn delay(&self, n: u32, since_last_attempt: Duration) -> Duration {
        let exp = n.saturating_sub(1).min(16);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let jitter = if self.jitter > 0.0 {
            rand::rng().random_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        let jittered = base.mul_f64((1.0 + jitter).max(0.0));
        jittered.max(self.min_interval.saturating_sub(since_last_attempt))
    }

    /// Whether an outage that began `outage` ago has lasted too long.
    pub fn gives_up_after(&self, outage: Duration) -> bool {
        self.window.is_some_and(|w| outage >= w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter() {
        let p = ReconnectPolicy {
            min_interval: Duration::ZERO,
            ..ReconnectPolicy::default()
        };
        for (n, base) in [
            (1, 0.5),
            (2, 1.0),
            (3, 2.0),
            (4, 4.0),
            (5, 8.0),
            (6, 10.0),
            (30, 10.0),
        ] {
            for _ in 0..50 {
                let d = p.delay(n, Duration::ZERO).as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "attempt {n}: {d} s not within 20 % of {base} s"
                );
            }
        }
    }

    #[test]
    fn attempts_are_at_least_a_second_apart() {
        let p = ReconnectPolicy::default();
        // The first retry's 0.5 s is stretched: the failed attempt started 0.2 s ago.
        assert!(p.delay(1, Duration::from_millis(200)) >= Duration::from_millis(800));
        // A connect that took 3 s to fail is retried after the delay alone.
        assert!(p.delay(1, Duration::from_secs(3)) <= Duration::from_millis(600));
    }

    #[test]
    fn the_window_bounds_an_outage() {
        let p = ReconnectPolicy::default();
        assert!(!p.gives_up_after(Duration::from_secs(59)));
        assert!(p.gives_up_after(Duration::from_secs(60)));
        let forever = ReconnectPolicy { window: None, ..p };
        assert!(!forever.gives_up_after(Duration::from_secs(86_400)));
    }

    fn config(yaml: &str) -> ServiceConfig {
        let base = "api_key: k\napi_secret: s\nws_url: ws://x\nredis:\n  address: r\n";
        crate::config::parse(&format!("{base}{yaml}"), &crate::config::EmptyEnv)
            .expect("config")
            .config
    }

    #[test]
    fn the_config_sets_the_policy_and_its_defaults_are_the_built_in_ones() {
        assert_eq!(
            ReconnectPolicy::from_config(&config("")),
            ReconnectPolicy::default()
        );
        let p = ReconnectPolicy::from_config(&config(
            "stream_reconnect:\n  window: 5s\n  initial_delay: 200ms\n  max_delay: 2s\n  min_interval: 0s\n  jitter: 0\n",
        ));
        assert_eq!(
            p,
            ReconnectPolicy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(2),
                jitter: 0.0,
                min_interval: Duration::ZERO,
                window: Some(Duration::from_secs(5)),
                retry_srt: true,
            }
        );
        assert_eq!(p.delay(1, Duration::ZERO), Duration::from_millis(200));
        assert_eq!(p.delay(9, Duration::ZERO), Duration::from_secs(2));
        assert!(p.gives_up_after(Duration::from_secs(5)));
        // Go's RTMP behaviour: retries as fast as errors come, for 30 s.
        let go = ReconnectPolicy::from_config(&config(
            "stream_reconnect:\n  window: 30s\n  initial_delay: 0s\n  min_interval: 0s\n  jitter: 0\n",
        ));
        assert_eq!(go.delay(5, Duration::ZERO), Duration::ZERO);
        assert!(!go.gives_up_after(Duration::from_secs(29)));
    }

    #[test]
    fn srt_is_retried_unless_the_config_restores_gos_fail_at_once() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.for_kind(StreamKind::Srt), p);
        let go = ReconnectPolicy::from_config(&config("stream_reconnect:\n  retry_srt: false\n"));
        assert_eq!(go.for_kind(StreamKind::Rtmp), go);
        let srt = go.for_kind(StreamKind::Srt);
        assert_eq!(srt.window, Some(Duration::ZERO));
        assert!(
            srt.gives_up_after(Duration::ZERO),
            "an SRT drop fails at once"
        );
    }
}
