//! Temporary credentials for object_store, from STS `AssumeRole`, cached until shortly before
//! they expire.
//!
//! object_store asks its `CredentialProvider` before every request, so the provider must be
//! cheap when the cached credentials are fresh, and must not send a burst of STS calls when
//! they are not: one lock, held across the refresh, makes concurrent requests wait for a single
//! call. Credentials are refreshed [`REFRESH_AHEAD`] before their expiry (half their lifetime
//! when that is shorter), so that a request signed with them does not outlive them while it
//! retries. If a refresh fails while the cached credentials are still valid, those are used and
//! the failure is logged; the next request tries again.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use egress_objstore_sink::object_store::aws::AwsCredential;
use egress_objstore_sink::object_store::client::{CredentialProvider, HttpClient};
use egress_objstore_sink::object_store::{self, RetryConfig};
use egress_plugin_api::{async_trait, log};
use tokio::sync::Mutex;

use crate::sts::{self, AssumeRole, StsError, TemporaryCredentials};

/// How long before their expiry credentials are replaced.
pub const REFRESH_AHEAD: TimeDelta = TimeDelta::minutes(5);

/// Where "now" comes from: the system clock, or a test's.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A source of temporary credentials: STS, or a test's.
#[async_trait]
pub trait Fetch: Send + Sync + fmt::Debug {
    async fn fetch(&self) -> Result<TemporaryCredentials, StsError>;
}

/// STS `AssumeRole` with static caller keys.
pub struct StsFetch {
    pub client: HttpClient,
    pub retry: RetryConfig,
    /// The static keys that assume the role.
    pub caller: AwsCredential,
    pub request: AssumeRole,
}

impl fmt::Debug for StsFetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // AwsCredential's own Debug redacts the secret and the token.
        f.debug_struct("StsFetch")
            .field("caller", &self.caller)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Fetch for StsFetch {
    async fn fetch(&self) -> Result<TemporaryCredentials, StsError> {
        sts::assume_role(&self.client, &self.retry, &self.caller, &self.request).await
    }
}

struct Cached {
    credential: Arc<AwsCredential>,
    expiration: DateTime<Utc>,
    /// When to fetch new ones.
    refresh_at: DateTime<Utc>,
}

/// object_store's credential provider for an assumed role.
#[derive(Debug)]
pub struct RefreshingCredentials<F: Fetch, C: Clock = SystemClock> {
    source: F,
    clock: C,
    cached: Mutex<Option<Cached>>,
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("expiration", &self.expiration)
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

impl<F: Fetch, C: Clock> RefreshingCredentials<F, C> {
    /// No call is made until the first request needs credentials.
    pub fn new(source: F, clock: C) -> Self {
        RefreshingCredentials {
            source,
            clock,
            cached: Mutex::new(None),
        }
    }

    async fn credential(&self) -> Result<Arc<AwsCredential>, StsError> {
        let mut slot = self.cached.lock().await;
        let now = self.clock.now();
        if let Some(cached) = slot.as_ref()
            && now < cached.refresh_at
        {
            return Ok(cached.credential.clone());
        }
        match self.source.fetch().await {
            Ok(fresh) => {
                let lifetime = fresh.expiration - now;
                let ahead = REFRESH_AHEAD.min(lifetime / 2);
                log::debug(format!(
                    "s3 sink: assumed the role; credentials expire at {}",
                    fresh.expiration.to_rfc3339()
                ));
                let credential = Arc::new(fresh.credential);
                *slot = Some(Cached {
                    credential: credential.clone(),
                    expiration: fresh.expiration,
                    refresh_at: fresh.expiration - ahead,
                });
                Ok(credential)
            }
            Err(e) => match slot.as_ref() {
                Some(cached) if now < cached.expiration => {
                    log::warn(format!(
                        "s3 sink: cannot refresh the assumed role's credentials ({e}); using \
                         the current ones until {}",
                        cached.expiration.to_rfc3339()
                    ));
                    Ok(cached.credential.clone())
                }
                _ => Err(e),
            },
        }
    }
}

#[async_trait]
impl<F: Fetch, C: Clock> CredentialProvider for RefreshingCredentials<F, C> {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        Ok(self.credential().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex as StdMutex, PoisonError};

    use http::StatusCode;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[derive(Debug, Clone, Default)]
    struct FakeClock(Arc<StdMutex<TimeDelta>>);

    impl FakeClock {
        fn advance(&self, by: TimeDelta) {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> DateTime<Utc> {
            t0() + *self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Hands out `key-1`, `key-2`, … valid for `lifetime` from the fake clock's now, or fails
    /// while `failing` is set.
    #[derive(Debug)]
    struct FakeSts {
        clock: FakeClock,
        lifetime: TimeDelta,
        calls: AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
    }

    impl FakeSts {
        fn new(clock: &FakeClock, lifetime: TimeDelta) -> Self {
            FakeSts {
                clock: clock.clone(),
                lifetime,
                calls: AtomicUsize::new(0),
                failing: Default::default(),
            }
        }
    }

    #[async_trait]
    impl Fetch for Arc<FakeSts> {
        async fn fetch(&self) -> Result<TemporaryCredentials, StsError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.failing.load(Ordering::SeqCst) {
                return Err(StsError::Refused {
                    endpoint: "fake".into(),
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "ServiceUnavailable".into(),
                    message: "down".into(),
                });
            }
            Ok(TemporaryCredentials {
                credential: AwsCredential {
                    key_id: format!("key-{n}"),
                    secret_key: "secret".into(),
                    token: Some("token".into()),
                },
                expiration: self.clock.now() + self.lifetime,
            })
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn key(p: &RefreshingCredentials<Arc<FakeSts>, FakeClock>) -> String {
        p.get_credential().await.unwrap().key_id.clone()
    }

    #[test]
    fn caches_until_five_minutes_before_expiry() {
        rt().block_on(async {
            let clock = FakeClock::default();
            let sts = Arc::new(FakeSts::new(&clock, TimeDelta::hours(1)));
            let p = RefreshingCredentials::new(sts.clone(), clock.clone());
            assert_eq!(
                sts.calls.load(Ordering::SeqCst),
                0,
                "no call before first use"
            );
            assert_eq!(key(&p).await, "key-1");
            clock.advance(TimeDelta::minutes(54));
            assert_eq!(key(&p).await, "key-1", "still 6 minutes left");
            assert_eq!(sts.calls.load(Ordering::SeqCst), 1);
            clock.advance(TimeDelta::minutes(1));
            assert_eq!(key(&p).await, "key-2", "5 minutes left: refreshed");
            assert_eq!(key(&p).await, "key-2");
            assert_eq!(sts.calls.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn short_lived_credentials_are_kept_for_half_their_life() {
        rt().block_on(async {
            let clock = FakeClock::default();
            let sts = Arc::new(FakeSts::new(&clock, TimeDelta::minutes(4)));
            let p = RefreshingCredentials::new(sts.clone(), clock.clone());
            assert_eq!(key(&p).await, "key-1");
            clock.advance(TimeDelta::seconds(119));
            assert_eq!(key(&p).await, "key-1");
            clock.advance(TimeDelta::seconds(1));
            assert_eq!(key(&p).await, "key-2");
        });
    }

    #[test]
    fn a_failed_refresh_keeps_valid_credentials_then_fails() {
        rt().block_on(async {
            let clock = FakeClock::default();
            let sts = Arc::new(FakeSts::new(&clock, TimeDelta::hours(1)));
            let p = RefreshingCredentials::new(sts.clone(), clock.clone());
            assert_eq!(key(&p).await, "key-1");
            sts.failing.store(true, Ordering::SeqCst);
            clock.advance(TimeDelta::minutes(57));
            assert_eq!(key(&p).await, "key-1", "3 minutes left: still usable");
            clock.advance(TimeDelta::minutes(3));
            let e = p.get_credential().await.unwrap_err();
            assert!(e.to_string().contains("ServiceUnavailable"), "{e}");
            sts.failing.store(false, Ordering::SeqCst);
            assert_eq!(key(&p).await, "key-4");
        });
    }

    #[test]
    fn concurrent_requests_share_one_call() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let clock = FakeClock::default();
            let sts = Arc::new(FakeSts::new(&clock, TimeDelta::hours(1)));
            let p = Arc::new(RefreshingCredentials::new(sts.clone(), clock.clone()));
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let p = p.clone();
                    tokio::spawn(async move { p.get_credential().await.unwrap().key_id.clone() })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap(), "key-1");
            }
            assert_eq!(sts.calls.load(Ordering::SeqCst), 1);
        });
    }
}
