//! One live destination (one stream URL) of an egress: a task that connects through the
//! destination's plugin, sends the muxed stream, and reconnects by the [`ReconnectPolicy`]
//! when the connection drops.
//!
//! ```text
//!   Connecting ──ok──▶ Publishing ──send error / no progress──▶ Reconnecting(n) ──ok──▶ Publishing
//!       │                  │                                         │
//!       │ permanent error  │ stop, source ended                      │ window over
//!       ▼ (first connect)  ▼                                         ▼
//!     Failed            Finished                                   Failed
//! ```
//!
//! What every destination shares lives here, not in the plugins: the policy, the keyframe gate
//! (after each connect the stream headers go first, then media from the next keyframe, which
//! the encoder is asked for, so a player never starts on a delta frame: Go's egress has no such
//! gate and restreams show grey video until the next IDR), per-session timestamps from zero, the
//! bounded queue between the pipeline and the network, and the status events.
//!
//! The pipeline never waits for a destination: [`Destination::offer`] is a non-blocking push
//! onto a queue bounded in bytes. When a destination falls behind (or is reconnecting) the queue
//! fills, chunks are dropped, and the gate closes until the next keyframe, so what is sent
//! after a loss is again decodable. One slow destination costs only itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use bytes::Bytes;
use egress_plugin_api::{LiveChunk, LiveFactory, LiveSession, SinkError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::backoff::ReconnectPolicy;
use super::metrics::{DestinationState, DestinationStats};

/// A connect that takes longer than this failed (retryable); plugins have their own, shorter,
/// timeouts, this only bounds a plugin that has none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A send that makes no progress for this long means the connection is wedged (the peer stopped
/// reading, a black-holed route): the session is dropped and the destination reconnects.
/// Go's egress added the same check after an RTMP sink sat ACTIVE for an hour (#1244).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes that may wait between the pipeline and one destination: about 20 s at 3 Mbit/s, so a
/// reconnect within a couple of seconds loses nothing it would need (the queue is emptied on
/// connect anyway: a new session starts from "now").
const QUEUE_BYTES: usize = 8 << 20;
/// How long a graceful close may take before the session is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One piece of the muxed stream as the pipeline produced it: an FLV tag (without its
/// PreviousTagSize) or whole TS packets, with the pipeline's timestamp.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Bytes,
    pub pts: Duration,
    pub keyframe: bool,
}

/// How chunks of a format are rewritten for a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// FLV tags: each session's timestamps start at zero (an RTMP server starts a new recording
    /// per publish, and players expect it to start at 0).
    Flv,
    /// TS packets go as they are: PTS/PCR run on, and TS players expect arbitrary starts.
    MpegTs,
}

impl Framing {
    fn rebase(self, data: &Bytes, pts: Duration) -> Bytes {
        match self {
            Framing::Flv if data.len() >= 11 => {
                let ms = u32::try_from(pts.as_millis()).unwrap_or(u32::MAX);
                let mut tag = data.to_vec();
                tag[4..7].copy_from_slice(&ms.to_be_bytes()[1..4]);
                tag[7] = (ms >> 24) as u8;
                Bytes::from(tag)
            }
            _ => data.clone(),
        }
    }
}

/// The stream headers every session starts with (FLV: metadata and the codecs' sequence
/// headers; TS: PAT and PMT). Updated by the pipeline when its caps change.
pub type Headers = Arc<RwLock<Vec<Bytes>>>;

/// Asks the video encoder for a keyframe (rate-limited by the implementation).
pub type KeyframeRequester = Arc<dyn Fn() + Send + Sync>;

/// What happened to a destination, for its `StreamInfo`.
#[derive(Debug, Clone, PartialEq)]
pub enum DestinationEvent {
    /// A session is publishing (`first`: the destination's first one: the stream's start).
    Publishing { at: SystemTime, first: bool },
    /// The connection dropped or an attempt failed; attempt `attempt` of this outage follows.
    Retrying {
        at: SystemTime,
        attempt: u32,
        error: String,
    },
    /// Given up: a permanent error, or the outage outlasted the window.
    Failed { at: SystemTime, error: String },
    /// Stopped (removed, or the egress ended) after publishing or trying to.
    Finished { at: SystemTime },
}

/// Everything a destination task needs.
pub struct DestinationSetup {
    /// The URL as the plugin needs it (with its secrets).
    pub url: String,
    /// The URL as it may be shown (logs, status): secrets redacted.
    pub redacted: String,
    pub factory: Arc<dyn LiveFactory>,
    pub framing: Framing,
    pub headers: Headers,
    pub keyframes: KeyframeRequester,
    pub policy: ReconnectPolicy,
    pub events: mpsc::UnboundedSender<DestinationEvent>,
}

/// The pipeline's handle on a running destination.
pub struct Destination {
    input: DestinationInput,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Where the pipeline's muxer puts chunks for one destination (cloned into the fan-out; the
/// destination finishes once every clone is dropped and the queue is sent).
#[derive(Clone)]
pub struct DestinationInput {
    tx: mpsc::UnboundedSender<Chunk>,
    shared: Arc<Shared>,
}

impl DestinationInput {
    /// Queues a chunk without waiting; drops it when the queue is full.
    pub fn offer(&self, chunk: Chunk) {
        let len = chunk.data.len();
        if self.shared.queued_bytes.load(Ordering::Relaxed) + len > QUEUE_BYTES {
            self.shared.dropped.store(true, Ordering::Relaxed);
            return;
        }
        self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if self.tx.send(chunk).is_err() {
            // The task has ended (failed or stopped): nothing to do.
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Shared {
    queued_bytes: AtomicUsize,
    /// Set when a chunk was dropped: the task closes its gate until the next keyframe.
    dropped: AtomicBool,
    /// Bytes, reconnects and state, for the metrics.
    stats: Arc<DestinationStats>,
}

impl Destination {
    pub fn spawn(setup: DestinationSetup) -> Destination {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(run(setup, rx, stop_rx, shared.clone()));
        Destination {
            input: DestinationInput { tx, shared },
            stop: Some(stop_tx),
            task,
        }
    }

    /// The input to put into the muxer's fan-out.
    pub fn input(&self) -> DestinationInput {
        self.input.clone()
    }

    /// Queues a chunk without waiting; drops it when the queue is full.
    pub fn offer(&self, chunk: Chunk) {
        self.input.offer(chunk);
    }

    /// Bytes handed to the transport over all sessions.
    pub fn bytes_sent(&self) -> u64 {
        self.input.shared.stats.bytes_sent()
    }

    /// The destination's counters (bytes, reconnects, state), for the metrics.
    pub fn stats(&self) -> Arc<DestinationStats> {
        self.input.shared.stats.clone()
    }

    /// Whether the task has ended (failed or finished).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends the destination: a publishing session is closed cleanly, a pending reconnect
    /// abandoned. Waits for the task, which reports `Finished` (or its failure).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }

    /// Ends the destination once everything queued has been sent (the source's EOS). Clones of
    /// its input must be gone (taken out of the fan-out) for this to return.
    pub async fn finish(self) {
        let Destination { input, stop, task } = self;
        drop(input);
        let _ = task.await;
        drop(stop);
    }
}

/// Why a publishing session ended.
enum SessionEnd {
    Stopped,
    SourceEnded,
    Failed(SinkError),
}

async fn run(
    setup: DestinationSetup,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    mut stop: oneshot::Receiver<()>,
    shared: Arc<Shared>,
) {
    let DestinationSetup {
        url,
        redacted,
        factory,
        framing,
        headers,
        keyframes,
        policy,
        events,
    } = setup;
    let stats = shared.stats.clone();
    let emit = |e: DestinationEvent| {
        match &e {
            DestinationEvent::Publishing { .. } => stats.set_state(DestinationState::Publishing),
            DestinationEvent::Retrying { .. } => stats.reconnecting(),
            DestinationEvent::Failed { .. } => stats.set_state(DestinationState::Failed),
            DestinationEvent::Finished { .. } => stats.set_state(DestinationState::Finished),
        }
        let _ = events.send(e);
    };
    let mut ever_published = false;
    let mut outage: Option<Instant> = None;
    let mut attempt: u32 = 0;
    let mut last_attempt: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        if let Some(began) = outage {
            if policy.gives_up_after(began.elapsed()) {
                tracing::warn!(url = %redacted, outage = ?began.elapsed(), error = %last_error, "stream destination given up");
                emit(DestinationEvent::Failed {
                    at: SystemTime::now(),
                    error: last_error,
                });
                return;
            }
            let delay = policy.delay(
                attempt,
                last_attempt.map(|t| t.elapsed()).unwrap_or(Duration::MAX),
            );
            tokio::select! {
                _ = &mut stop => {
                    emit(DestinationEvent::Finished { at: SystemTime::now() });
                    return;
                }
                _ = source_ended(&mut rx, &shared) => {
                    tracing::info!(url = %redacted, "the egress ended while the stream destination was down");
                    emit(DestinationEvent::Finished { at: SystemTime::now() });
                    return;
                }
                _ = tokio::time::sleep(delay) => {}
            }
            emit(DestinationEvent::Retrying {
                at: SystemTime::now(),
                attempt,
                error: last_error.clone(),
            });
        }
        last_attempt = Some(Instant::now());
        let connected = tokio::select! {
            _ = &mut stop => {
                emit(DestinationEvent::Finished { at: SystemTime::now() });
                return;
            }
            _ = source_ended(&mut rx, &shared) => {
                emit(DestinationEvent::Finished { at: SystemTime::now() });
                return;
            }
            r = tokio::time::timeout(CONNECT_TIMEOUT, factory.connect(&url)) => {
                r.unwrap_or_else(|_| Err(SinkError::retryable(format!("no answer within {CONNECT_TIMEOUT:?}"))))
            }
        };
        let error = match connected {
            Ok(session) => {
                tracing::info!(url = %redacted, first = !ever_published, "stream destination publishing");
                emit(DestinationEvent::Publishing {
                    at: SystemTime::now(),
                    first: !ever_published,
                });
                ever_published = true;
                outage = None;
                attempt = 0;
                match publish(
                    session, framing, &headers, &keyframes, &mut rx, &mut stop, &shared,
                )
                .await
                {
                    SessionEnd::Stopped | SessionEnd::SourceEnded => {
                        emit(DestinationEvent::Finished {
                            at: SystemTime::now(),
                        });
                        return;
                    }
                    SessionEnd::Failed(e) => e,
                }
            }
            Err(e) => e,
        };
        // A URL that never worked and fails for a reason time will not fix (a rejected key or
        // certificate, a name that does not resolve) is failed at once, as Go fails a bad URL.
        if !ever_published && !error.is_retryable() {
            tracing::warn!(url = %redacted, error = %error, "stream destination refused");
            emit(DestinationEvent::Failed {
                at: SystemTime::now(),
                error: error.to_string(),
            });
            return;
        }
        tracing::info!(url = %redacted, error = %error, attempt = attempt + 1, "stream destination disconnected; reconnecting");
        outage.get_or_insert_with(Instant::now);
        stats.set_state(DestinationState::Reconnecting);
        attempt += 1;
        last_error = error.to_string();
    }
}

/// Resolves when the source has ended (every input dropped) while no session is open: what it
/// queued meanwhile is discarded (a new session starts from a keyframe after connecting, so it
/// would have been anyway). Without this, a destination that is down when the egress ends would
/// hold the egress's end until its reconnect window ran out.
async fn source_ended(rx: &mut mpsc::UnboundedReceiver<Chunk>, shared: &Shared) {
    while let Some(c) = rx.recv().await {
        shared
            .queued_bytes
            .fetch_sub(c.data.len(), Ordering::Relaxed);
    }
}

/// Sends the headers, then media from the next keyframe, until the session fails, the
/// destination is stopped or the source ends.
async fn publish(
    mut session: Box<dyn LiveSession>,
    framing: Framing,
    headers: &Headers,
    keyframes: &KeyframeRequester,
    rx: &mut mpsc::UnboundedReceiver<Chunk>,
    stop: &mut oneshot::Receiver<()>,
    shared: &Shared,
) -> SessionEnd {
    // What queued while connecting is stale: a session starts from now, at a keyframe.
    while let Ok(c) = rx.try_recv() {
        shared
            .queued_bytes
            .fetch_sub(c.data.len(), Ordering::Relaxed);
    }
    shared.dropped.store(false, Ordering::Relaxed);
    keyframes();
    let mut sent_before = 0;
    let mut headers_sent = false;
    let mut gate_closed = true;
    let mut base = Duration::ZERO;
    loop {
        let chunk = tokio::select! {
            _ = &mut *stop => {
                close(session).await;
                return SessionEnd::Stopped;
            }
            c = rx.recv() => c,
        };
        let Some(chunk) = chunk else {
            close(session).await;
            return SessionEnd::SourceEnded;
        };
        shared
            .queued_bytes
            .fetch_sub(chunk.data.len(), Ordering::Relaxed);
        if shared.dropped.swap(false, Ordering::Relaxed) && !gate_closed {
            gate_closed = true;
            keyframes();
        }
        if gate_closed {
            if !chunk.keyframe {
                continue;
            }
            gate_closed = false;
            base = chunk.pts;
            // The headers go right before the session's first keyframe: read then, not at
            // connect, since a destination may connect before the encoders have produced them.
            if !headers_sent {
                headers_sent = true;
                let header_chunks: Vec<Bytes> =
                    headers.read().map(|h| h.clone()).unwrap_or_default();
                for h in &header_chunks {
                    if let Err(e) =
                        send(&mut session, LiveChunk::new(h, Duration::ZERO).header(true)).await
                    {
                        return SessionEnd::Failed(e);
                    }
                }
            }
        }
        let pts = chunk.pts.saturating_sub(base);
        let data = framing.rebase(&chunk.data, pts);
        let live = LiveChunk::new(&data, pts).keyframe(chunk.keyframe);
        if let Err(e) = send(&mut session, live).await {
            return SessionEnd::Failed(e);
        }
        let now = session.bytes_sent();
        shared.stats.add_bytes(now.saturating_sub(sent_before));
        sent_before = now;
    }
}

async fn send(session: &mut Box<dyn LiveSession>, chunk: LiveChunk<'_>) -> Result<(), SinkError> {
    match tokio::time::timeout(SEND_TIMEOUT, session.send(chunk)).await {
        Ok(r) => r,
        Err(_) => Err(SinkError::retryable(format!(
            "no progress for {SEND_TIMEOUT:?}: the destination stopped reading"
        ))),
    }
}

async fn close(session: Box<dyn LiveSession>) {
    match tokio::time::timeout(CLOSE_TIMEOUT, session.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "stream session did not close cleanly"),
        Err(_) => tracing::debug!("stream session close timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A transport that fails its first `fail_connects` connects with the given errors and
    /// records what each session received.
    struct Fake {
        connects: Mutex<Vec<Result<(), SinkError>>>,
        attempts: Mutex<Vec<Instant>>,
        received: Received,
        fail_send_after: Option<usize>,
    }

    /// What the fake sessions were sent: (session id, bytes, pts, keyframe, header).
    type Received = Arc<Mutex<Vec<(usize, Vec<u8>, Duration, bool, bool)>>>;

    struct FakeSession {
        id: usize,
        received: Received,
        sent: usize,
        fail_after: Option<usize>,
        bytes: u64,
    }

    #[egress_plugin_api::async_trait]
    impl LiveFactory for Fake {
        async fn connect(&self, _url: &str) -> Result<Box<dyn LiveSession>, SinkError> {
            let n = {
                let mut a = self.attempts.lock().unwrap();
                a.push(Instant::now());
                a.len()
            };
            let next = { self.connects.lock().unwrap().pop() };
            match next {
                Some(Err(e)) => Err(e),
                _ => Ok(Box::new(FakeSession {
                    id: n,
                    received: self.received.clone(),
                    sent: 0,
                    fail_after: self.fail_send_after.filter(|_| n == 1),
                    bytes: 0,
                })),
            }
        }
    }

    #[egress_plugin_api::async_trait]
    impl LiveSession for FakeSession {
        async fn send(&mut self, chunk: LiveChunk<'_>) -> Result<(), SinkError> {
            if self.fail_after.is_some_and(|n| self.sent >= n) {
                return Err(SinkError::retryable("connection closed remotely"));
            }
            self.sent += 1;
            self.bytes += chunk.data.len() as u64;
            self.received.lock().unwrap().push((
                self.id,
                chunk.data.to_vec(),
                chunk.pts,
                chunk.keyframe,
                chunk.header,
            ));
            Ok(())
        }
        async fn close(self: Box<Self>) -> Result<(), SinkError> {
            Ok(())
        }
        fn bytes_sent(&self) -> u64 {
            self.bytes
        }
    }

    fn fake(connects: Vec<Result<(), SinkError>>, fail_send_after: Option<usize>) -> Arc<Fake> {
        // popped from the end
        let mut connects = connects;
        connects.reverse();
        Arc::new(Fake {
            connects: Mutex::new(connects),
            attempts: Mutex::default(),
            received: Arc::default(),
            fail_send_after,
        })
    }

    fn flv_tag(ts_ms: u32, kind: u8) -> Bytes {
        let mut t = vec![kind, 0, 0, 1];
        t.extend_from_slice(&ts_ms.to_be_bytes()[1..4]);
        t.push((ts_ms >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0, 0xAB]);
        Bytes::from(t)
    }

    fn spawn(
        f: Arc<Fake>,
        policy: ReconnectPolicy,
    ) -> (
        Destination,
        mpsc::UnboundedReceiver<DestinationEvent>,
        Arc<AtomicUsize>,
    ) {
        let (events, rx) = mpsc::unbounded_channel();
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let d = Destination::spawn(DestinationSetup {
            url: "rtmp://h/app/secretkey".into(),
            redacted: "rtmp://h/app/{sec...key}".into(),
            factory: f,
            framing: Framing::Flv,
            headers: Arc::new(RwLock::new(vec![
                Bytes::from_static(b"HDR-META"),
                Bytes::from_static(b"HDR-AVC"),
            ])),
            keyframes: Arc::new(move || {
                a.fetch_add(1, Ordering::Relaxed);
            }),
            policy,
            events,
        });
        (d, rx, asked)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<DestinationEvent>) -> DestinationEvent {
        tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("an event")
            .expect("open")
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_starts_with_headers_then_a_keyframe_at_time_zero() {
        let f = fake(vec![], None);
        let (d, mut ev, asked) = spawn(f.clone(), ReconnectPolicy::default());
        assert!(matches!(
            next(&mut ev).await,
            DestinationEvent::Publishing { first: true, .. }
        ));
        for (ms, key) in [(1000, false), (1033, false), (1066, true), (1100, false)] {
            d.offer(Chunk {
                data: flv_tag(ms, 9),
                pts: Duration::from_millis(ms.into()),
                keyframe: key,
            });
        }
        d.finish().await;
        assert!(matches!(
            next(&mut ev).await,
            DestinationEvent::Finished { .. }
        ));
        let got = f.received.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            4,
            "two headers, the keyframe and the frame after it: {got:?}"
        );
        assert!(got[0].4 && got[1].4, "headers first");
        assert_eq!(
            got[2].2,
            Duration::ZERO,
            "the keyframe starts the session's time"
        );
        assert!(got[2].3);
        assert_eq!(&got[2].1[4..8], &[0, 0, 0, 0], "FLV timestamp rebased");
        assert_eq!(got[3].2, Duration::from_millis(34));
        assert_eq!(&got[3].1[4..8], &[0, 0, 34, 0]);
        assert!(
            asked.load(Ordering::Relaxed) >= 1,
            "a keyframe was asked for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_first_connect_fails_at_once() {
        let f = fake(
            vec![Err(SinkError::auth("publish refused: bad stream key"))],
            None,
        );
        let (_d, mut ev, _) = spawn(f.clone(), ReconnectPolicy::default());
        match next(&mut ev).await {
            DestinationEvent::Failed { error, .. } => {
                assert!(error.contains("bad stream key"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.attempts.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_session_reconnects_and_starts_again_on_a_keyframe() {
        let f = fake(vec![], Some(3));
        let (d, mut ev, asked) = spawn(f.clone(), ReconnectPolicy::default());
        assert!(matches!(
            next(&mut ev).await,
            DestinationEvent::Publishing { first: true, .. }
        ));
        // headers (2) + keyframe = 3 sends, then the 4th fails.
        d.offer(Chunk {
            data: flv_tag(0, 9),
            pts: Duration::ZERO,
            keyframe: true,
        });
        d.offer(Chunk {
            data: flv_tag(33, 9),
            pts: Duration::from_millis(33),
            keyframe: false,
        });
        match next(&mut ev).await {
            DestinationEvent::Retrying {
                attempt: 1, error, ..
            } => assert!(error.contains("closed remotely")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            next(&mut ev).await,
            DestinationEvent::Publishing { first: false, .. }
        ));
        // The metrics follow: one reconnect, publishing again, the bytes of both sessions.
        let stats = d.stats();
        assert_eq!(stats.reconnects(), 1);
        assert_eq!(stats.state(), DestinationState::Publishing);
        let first_session: usize = f
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.0 == 1)
            .map(|r| r.1.len())
            .sum();
        assert_eq!(stats.bytes_sent(), first_session as u64);
        d.offer(Chunk {
            data: flv_tag(2000, 9),
            pts: Duration::from_secs(2),
            keyframe: false,
        });
        d.offer(Chunk {
            data: flv_tag(2033, 9),
            pts: Duration::from_millis(2033),
            keyframe: true,
        });
        d.finish().await;
        assert_eq!(stats.state(), DestinationState::Finished);
        let got = f.received.lock().unwrap().clone();
        let second: Vec<_> = got.iter().filter(|r| r.0 == 2).collect();
        assert_eq!(
            second.len(),
            3,
            "headers again, then the keyframe (the delta before it dropped): {second:?}"
        );
        assert!(second[0].4 && second[1].4);
        assert!(second[2].3 && second[2].2 == Duration::ZERO);
        assert!(asked.load(Ordering::Relaxed) >= 2);
        let a = f.attempts.lock().unwrap().clone();
        assert!(
            a[1] - a[0] >= Duration::from_secs(1),
            "attempts a second apart at least"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_that_is_down_when_the_source_ends_finishes_at_once() {
        let errs: Vec<_> = (0..100)
            .map(|_| Err(SinkError::retryable("connection refused")))
            .collect();
        let f = fake(errs, None);
        let (d, mut ev, _) = spawn(f.clone(), ReconnectPolicy::default());
        assert!(matches!(
            next(&mut ev).await,
            DestinationEvent::Retrying { .. }
        ));
        d.offer(Chunk {
            data: flv_tag(0, 9),
            pts: Duration::ZERO,
            keyframe: true,
        });
        let stats = d.stats();
        let began = Instant::now();
        d.finish().await;
        assert!(
            began.elapsed() < Duration::from_secs(11),
            "waited for the window: {:?}",
            began.elapsed()
        );
        loop {
            match next(&mut ev).await {
                DestinationEvent::Retrying { .. } => {}
                DestinationEvent::Finished { .. } => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(stats.state(), DestinationState::Finished);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_window_fails_with_the_last_error() {
        let errs: Vec<_> = (0..100)
            .map(|_| Err(SinkError::retryable("connection refused")))
            .collect();
        let mut connects = vec![Ok(())];
        connects.extend(errs);
        let f = fake(connects, Some(2));
        let policy = ReconnectPolicy {
            window: Some(Duration::from_secs(30)),
            ..ReconnectPolicy::default()
        };
        let (d, mut ev, _) = spawn(f.clone(), policy);
        assert!(matches!(
            next(&mut ev).await,
            DestinationEvent::Publishing { .. }
        ));
        d.offer(Chunk {
            data: flv_tag(0, 9),
            pts: Duration::ZERO,
            keyframe: true,
        });
        let started = Instant::now();
        let mut retries = 0;
        loop {
            match next(&mut ev).await {
                DestinationEvent::Retrying { .. } => retries += 1,
                DestinationEvent::Failed { error, .. } => {
                    assert!(error.contains("connection refused"));
                    assert_eq!(d.stats().state(), DestinationState::Failed);
                    assert_eq!(d.stats().reconnects(), retries);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(30) && took < Duration::from_secs(45),
            "{took:?}"
        );
        let attempts = f.attempts.lock().unwrap().clone();
        for w in attempts.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_secs(1),
                "never more than one attempt a second"
            );
        }
        assert!((4..=12).contains(&retries), "{retries} retries in 30 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_waits_for_the_next_keyframe() {
        let f = fake(vec![], None);
        let (d, mut ev, _) = spawn(f.clone(), ReconnectPolicy::default());
        assert!(matches!(
            next(&mut ev).await,
            DestinationEvent::Publishing { .. }
        ));
        d.offer(Chunk {
            data: flv_tag(0, 9),
            pts: Duration::ZERO,
            keyframe: true,
        });
        tokio::task::yield_now().await;
        // Fill beyond the bound without letting the task run.
        let big = Bytes::from(vec![9u8; 1 << 20]);
        for i in 0..12 {
            d.offer(Chunk {
                data: big.clone(),
                pts: Duration::from_millis(100 + i),
                keyframe: false,
            });
        }
        d.offer(Chunk {
            data: flv_tag(500, 9),
            pts: Duration::from_millis(500),
            keyframe: false,
        });
        d.offer(Chunk {
            data: flv_tag(600, 9),
            pts: Duration::from_millis(600),
            keyframe: true,
        });
        d.finish().await;
        let got = f.received.lock().unwrap().clone();
        let media: Vec<_> = got.iter().filter(|r| !r.4).collect();
        assert!(
            media
                .iter()
                .all(|r| r.1.len() != 1 << 20 || r.2 < Duration::from_millis(500))
        );
        let last = media.last().unwrap();
        assert!(
            last.3,
            "after the loss, the next chunk sent is the keyframe"
        );
    }
}
