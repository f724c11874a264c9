//! The Redis message bus: Pub/Sub plus one `SET … NX` lock (spec §1.1, §1.3).
//!
//! One pub/sub connection per process carries every subscription; a managed multiplexed
//! connection carries `PUBLISH` and `SET`. When the pub/sub connection drops, a background task
//! reconnects with capped exponential backoff and resubscribes every channel that still has a
//! local subscriber. Messages published while disconnected are lost, as with Go's psrpc: callers
//! see timeouts, never duplicate execution.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::{Mutex, mpsc, watch};

/// How many undelivered messages a local subscriber may hold before new ones are dropped
/// (psrpc's `buffer_size` default).
const SUBSCRIBER_BUFFER: usize = 1000;
/// TTL of the queue lock, fixed by psrpc.
const LOCK_TTL_SECS: u64 = 5;

/// Where and how to reach Redis. Deliberately free of egress config types.
#[derive(Clone, Debug, Default)]
pub struct RedisTarget {
    pub address: String,
    pub username: String,
    pub password: String,
    pub db: i64,
    pub use_tls: bool,
    pub tls_insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid redis address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },
    #[error("redis at {address} is unreachable: {source}")]
    Unreachable {
        address: String,
        source: redis::RedisError,
    },
    #[error("redis command failed: {0}")]
    Command(#[from] redis::RedisError),
}

impl RedisTarget {
    fn connection_info(&self) -> Result<ConnectionInfo, BusError> {
        let invalid = |reason: &str| BusError::InvalidAddress {
            address: self.address.clone(),
            reason: reason.to_owned(),
        };
        let (host, port) = match self.address.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| invalid("port is not a number"))?,
            ),
            None => (self.address.as_str(), 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("empty host"));
        }
        let addr = if self.use_tls {
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: self.tls_insecure,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if !self.username.is_empty() {
            redis = redis.set_username(&self.username);
        }
        if !self.password.is_empty() {
            redis = redis.set_password(&self.password);
        }
        Ok(addr.into_connection_info()?.set_redis_settings(redis))
    }
}

type Routes = HashMap<String, Vec<(u64, mpsc::Sender<Bytes>)>>;

struct Inner {
    address: String,
    client: redis::Client,
    commands: ConnectionManager,
    /// Local subscribers per channel; read on every message, so a sync lock held briefly.
    routes: RwLock<Routes>,
    /// The live pub/sub sink. Held across SUBSCRIBE so that a reconnect and a new
    /// subscription cannot miss each other.
    sink: Mutex<Option<PubSubSink>>,
    next_id: AtomicU64,
    connected: watch::Sender<bool>,
}

/// A cheap, clonable handle on the bus.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

/// A subscription to one channel. Dropping it unsubscribes (UNSUBSCRIBE when it was the last).
pub struct Subscription {
    pub rx: mpsc::Receiver<Bytes>,
    guard: SubscriptionGuard,
}

struct SubscriptionGuard {
    bus: Bus,
    channel: String,
    id: u64,
}

impl Subscription {
    pub fn channel(&self) -> &str {
        &self.guard.channel
    }

    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        let last = {
            let mut routes = self
                .bus
                .inner
                .routes
                .write()
                .unwrap_or_else(|e| e.into_inner());
            match routes.get_mut(&self.channel) {
                Some(subs) => {
                    subs.retain(|(id, _)| *id != self.id);
                    if subs.is_empty() {
                        routes.remove(&self.channel);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if last {
            let bus = self.bus.clone();
            let channel = std::mem::take(&mut self.channel);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { bus.unsubscribe_if_unused(&channel).await });
            }
        }
    }
}

impl Bus {
    /// Connects to Redis. Fails when Redis cannot be reached at all at start-up (an operator
    /// wants that error right away); later outages are survived by reconnecting.
    pub async fn connect(target: &RedisTarget) -> Result<Bus, BusError> {
        let info = target.connection_info()?;
        let client = redis::Client::open(info)?;
        let unreachable = |source| BusError::Unreachable {
            address: target.address.clone(),
            source,
        };
        // The pub/sub connection first: a single attempt, so an unreachable Redis is reported
        // at once (the managed connection below retries internally).
        let (pubsub_sink, pubsub_stream) = client
            .get_async_pubsub()
            .await
            .map_err(unreachable)?
            .split();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let commands = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unreachable)?;
        let (connected, _) = watch::channel(true);
        let bus = Bus {
            inner: Arc::new(Inner {
                address: target.address.clone(),
                client,
                commands,
                routes: RwLock::new(HashMap::new()),
                sink: Mutex::new(Some(pubsub_sink)),
                next_id: AtomicU64::new(1),
                connected,
            }),
        };
        tokio::spawn(bus.clone().run_pubsub(pubsub_stream));
        Ok(bus)
    }

    /// True while the pub/sub connection is up.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Watch the connection state (for health reporting).
    pub fn connection_state(&self) -> watch::Receiver<bool> {
        self.inner.connected.subscribe()
    }

    /// Subscribes to a channel. Returns once Redis confirmed the SUBSCRIBE (or, while
    /// disconnected, once the channel is registered for the resubscribe on reconnect).
    pub async fn subscribe(&self, channel: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut sink = self.inner.sink.lock().await;
        let first = {
            let mut routes = self.inner.routes.write().unwrap_or_else(|e| e.into_inner());
            let subs = routes.entry(channel.to_owned()).or_default();
            subs.push((id, tx));
            subs.len() == 1
        };
        if first
            && let Some(s) = sink.as_mut()
            && let Err(e) = s.subscribe(channel).await
        {
            // The reader task notices the broken connection and resubscribes everything.
            tracing::warn!(channel, error = %e, "subscribe failed; will retry on reconnect");
        }
        drop(sink);
        Subscription {
            rx,
            guard: SubscriptionGuard {
                bus: self.clone(),
                channel: channel.to_owned(),
                id,
            },
        }
    }

    async fn unsubscribe_if_unused(&self, channel: &str) {
        let mut sink = self.inner.sink.lock().await;
        let unused = !self
            .inner
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(channel);
        if unused && let Some(s) = sink.as_mut() {
            let _ = s.unsubscribe(channel).await;
        }
    }

    /// PUBLISH, in call order per channel.
    pub async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let mut conn = self.inner.commands.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// The queue-subscription lock: `SET <b64(sha256(payload))> <rand> EX 5 NX`. True when
    /// this process won the message. Errors count as "not won", as in psrpc.
    pub async fn try_lock(&self, payload: &[u8]) -> bool {
        let key = super::envelope::lock_key(payload);
        let token: u32 = rand::random::<u32>() >> 1;
        let mut conn = self.inner.commands.clone();
        let reply: Result<Option<String>, _> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("EX")
            .arg(LOCK_TTL_SECS)
            .arg("NX")
            .query_async(&mut conn)
            .await;
        matches!(reply, Ok(Some(ref ok)) if ok == "OK")
    }

    /// Reads the pub/sub stream, fans messages out, and reconnects when the stream ends.
    async fn run_pubsub(self, mut stream: redis::aio::PubSubStream) {
        let mut backoff = Duration::from_millis(100);
        loop {
            while let Some(msg) = stream.next().await {
                let channel = msg.get_channel_name().to_owned();
                let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                let targets: Vec<mpsc::Sender<Bytes>> = {
                    let routes = self.inner.routes.read().unwrap_or_else(|e| e.into_inner());
                    routes
                        .get(&channel)
                        .map(|s| s.iter().map(|(_, tx)| tx.clone()).collect())
                        .unwrap_or_default()
                };
                for tx in targets {
                    if tx.try_send(payload.clone()).is_err() {
                        tracing::warn!(channel, "subscriber is full or gone; message dropped");
                    }
                }
            }
            // The connection is gone. Stop publishing through the dead sink and reconnect.
            *self.inner.sink.lock().await = None;
            self.inner.connected.send_replace(false);
            tracing::warn!(address = %self.inner.address, "redis pub/sub connection lost; reconnecting");
            stream = loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match self.reconnect().await {
                    Ok(stream) => break stream,
                    Err(e) => {
                        tracing::warn!(address = %self.inner.address, error = %e, "redis reconnect failed")
                    }
                }
            };
            backoff = Duration::from_millis(100);
            self.inner.connected.send_replace(true);
            tracing::info!(address = %self.inner.address, "redis pub/sub reconnected");
        }
    }

    async fn reconnect(&self) -> Result<redis::aio::PubSubStream, BusError> {
        let (mut sink, stream) = self.inner.client.get_async_pubsub().await?.split();
        let mut slot = self.inner.sink.lock().await;
        let channels: Vec<String> = self
            .inner
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if !channels.is_empty() {
            sink.subscribe(channels).await?;
        }
        *slot = Some(sink);
        Ok(stream)
    }
}
