//! The live-destination suite: the checks every live destination runs against a real
//! receiver (an RTMP/SRT server, a TCP listener), through any loader.
//!
//! ```ignore
//! let report = LiveKit::new(plugin, json!({}), receiver, LiveStream::from_flv(&flv)?)
//!     .invalid_url("rtmp://host/key")
//!     .failure(LiveFailure::new("closed port", "rtmp://127.0.0.1:9/live/k", Expect::Retryable))
//!     .run()
//!     .await;
//! report.assert_passed();
//! ```
//!
//! Checks: the descriptor (a scheme, the stream's format); validate and create; invalid
//! configs and URLs (config errors); a publish (connect, headers first, every media chunk,
//! `bytes_sent` growing, close, the receiver got the bytes); a second publish to the same URL
//! (what a reconnect does); two sessions at once; a session dropped without `close`
//! (released at once, the URL usable again); each failure case with its error class, in
//! bounded time. The notes carry the measured connect time and send rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::stream::LiveStream;
use super::{Expect, Report};
use crate::error::SinkError;
use crate::live::{LiveFactory, LiveSession, LoadedLive};
use crate::types::ApiVersion;

type Check = Result<String, String>;

/// The receiving end the kit publishes to, seen from outside the destination.
#[async_trait]
pub trait LiveReceiver: Send + Sync {
    /// A URL to publish to, distinct for each `name` (a stream key, a path, a port).
    fn url(&self, name: &str) -> String;

    /// Bytes the receiver got from the newest publish to `url`, which is live when the kit
    /// asks (payload or wire bytes, whatever the receiver counts; the kit checks only that
    /// some arrived, while the session is open: a server may forget a stream once its
    /// publisher left).
    async fn received(&self, url: &str) -> Result<u64, String>;
}

/// A URL (with a config, if not the kit's) that must fail with a class, within a time.
#[derive(Debug, Clone)]
pub struct LiveFailure {
    pub name: String,
    pub url: String,
    pub config: Option<Value>,
    pub expect: Expect,
    /// The connect (or the first sends) must have failed by then (default 5 s).
    pub within: Duration,
}

impl LiveFailure {
    pub fn new(name: &str, url: &str, expect: Expect) -> Self {
        LiveFailure {
            name: name.to_string(),
            url: url.to_string(),
            config: None,
            expect,
            within: Duration::from_secs(5),
        }
    }

    pub fn with_config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    pub fn within(mut self, within: Duration) -> Self {
        self.within = within;
        self
    }
}

/// The live kit. See the module docs.
pub struct LiveKit {
    plugin: Arc<dyn LoadedLive>,
    config: Value,
    receiver: Arc<dyn LiveReceiver>,
    stream: LiveStream,
    prefix: String,
    invalid_configs: Vec<(Value, Option<String>)>,
    invalid_urls: Vec<String>,
    failures: Vec<LiveFailure>,
    settle: Duration,
    pace: bool,
}

impl LiveKit {
    pub fn new(
        plugin: Arc<dyn LoadedLive>,
        config: Value,
        receiver: Arc<dyn LiveReceiver>,
        stream: LiveStream,
    ) -> Self {
        LiveKit {
            plugin,
            config,
            receiver,
            stream,
            prefix: "conformance".into(),
            invalid_configs: Vec::new(),
            invalid_urls: Vec::new(),
            failures: Vec::new(),
            settle: Duration::from_secs(5),
            pace: true,
        }
    }

    /// Send media in real time, by each chunk's `pts`, as the host does (default). Live
    /// transports may drop what comes faster: an SRT sender drops packets older than its
    /// latency. Turn it off for a transport that takes bursts, to run faster.
    pub fn pace(mut self, pace: bool) -> Self {
        self.pace = pace;
        self
    }

    /// Names passed to [`LiveReceiver::url`] start with this.
    pub fn name_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// A config `validate` must reject as a config error, naming `field` if given.
    pub fn invalid_config(mut self, config: Value, field: Option<&str>) -> Self {
        self.invalid_configs
            .push((config, field.map(str::to_string)));
        self
    }

    /// A URL `validate_url` and `connect` must reject as a config error.
    pub fn invalid_url(mut self, url: &str) -> Self {
        self.invalid_urls.push(url.to_string());
        self
    }

    pub fn failure(mut self, failure: LiveFailure) -> Self {
        self.failures.push(failure);
        self
    }

    /// How long the receiver may take to count what arrived (default 5 s).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Chunks for the shorter checks: two seconds of media (servers such as mediamtx take a
    /// publish as started only once they have seen a second or so of every track).
    fn short(&self) -> usize {
        let n = self
            .stream
            .media
            .iter()
            .take_while(|c| c.pts < Duration::from_secs(2))
            .count();
        n.max(1)
    }

    fn url(&self, check: &str) -> String {
        self.receiver.url(&format!("{}-{check}", self.prefix))
    }

    /// Run every check and collect the results (no check stops the others).
    pub async fn run(&self) -> Report {
        let mut report = Report::default();
        report.results.push(("describe".into(), self.describe()));
        let factory: Box<dyn LiveFactory> = match self.factory() {
            Ok(f) => {
                report
                    .results
                    .push(("validate and create".into(), Ok(String::new())));
                f
            }
            Err(e) => {
                report.results.push(("validate and create".into(), Err(e)));
                return report;
            }
        };
        report
            .results
            .push(("invalid configs".into(), self.invalid_configs()));
        report
            .results
            .push(("invalid URLs".into(), self.invalid_urls(&*factory).await));
        report
            .results
            .push(("publish".into(), self.publish(&*factory).await));
        report.results.push((
            "publish again to the same URL".into(),
            self.republish(&*factory).await,
        ));
        report.results.push((
            "two sessions at once".into(),
            self.concurrent(&*factory).await,
        ));
        report
            .results
            .push(("drop without close".into(), self.dropped(&*factory).await));
        for f in &self.failures {
            report.results.push((
                format!("error classification: {}", f.name),
                self.failure_case(&*factory, f).await,
            ));
        }
        report
    }

    fn describe(&self) -> Check {
        let d = self.plugin.descriptor();
        if d.name.is_empty()
            || !d
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "name {:?} must be non-empty lower-case [a-z0-9-]",
                d.name
            ));
        }
        if d.version.is_empty() {
            return Err("version is empty".into());
        }
        ApiVersion::check_plugin(ApiVersion::CURRENT, d.api).map_err(|e| e.to_string())?;
        if d.schemes.is_empty() {
            return Err("serves no scheme".into());
        }
        if let Some(s) = d
            .schemes
            .iter()
            .find(|s| s.is_empty() || s.contains(':') || s.to_ascii_lowercase() != **s)
        {
            return Err(format!("scheme {s:?} must be lower case, without ://"));
        }
        if d.format != self.stream.format {
            return Err(format!(
                "takes {}, the kit was given {} media",
                d.format, self.stream.format
            ));
        }
        if d.config_schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(format!(
                "config schema is not an object schema: {}",
                d.config_schema
            ));
        }
        let url = self.receiver.url("x");
        let scheme = url
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !d.schemes.contains(&scheme) {
            return Err(format!(
                "the receiver's URLs are {scheme}://, the destination serves {}",
                d.schemes.join(", ")
            ));
        }
        Ok(format!(
            "{} {} api {}, {} as {}",
            d.name,
            d.version,
            d.api,
            d.schemes.join(", "),
            d.format
        ))
    }

    fn factory(&self) -> Result<Box<dyn LiveFactory>, String> {
        self.plugin
            .validate(&self.config)
            .map_err(|e| format!("validate rejected the good config: {e}"))?;
        self.plugin
            .create(&self.config)
            .map_err(|e| format!("create failed: {e}"))
    }

    fn invalid_configs(&self) -> Check {
        for (config, field) in &self.invalid_configs {
            match self.plugin.validate(config) {
                Ok(()) => return Err(format!("validate accepted {config}")),
                Err(e) if !e.is_config() => {
                    return Err(format!("validate({config}) is not a config error: {e}"));
                }
                Err(e) if field.is_some() && e.field() != field.as_deref() => {
                    return Err(format!(
                        "validate({config}) names field {:?}, expected {field:?}: {e}",
                        e.field()
                    ));
                }
                Err(_) => {}
            }
            if self.plugin.create(config).is_ok() {
                return Err(format!("create accepted {config} that validate rejects"));
            }
        }
        Ok(format!("{} rejected", self.invalid_configs.len()))
    }

    async fn invalid_urls(&self, factory: &dyn LiveFactory) -> Check {
        let good = self.url("validate");
        factory
            .validate_url(&good)
            .map_err(|e| format!("validate_url rejected a good URL: {e}"))?;
        for url in &self.invalid_urls {
            match factory.validate_url(url) {
                Ok(()) => return Err(format!("validate_url accepted {url:?}")),
                Err(e) if !e.is_config() => {
                    return Err(format!("validate_url({url:?}) is not a config error: {e}"));
                }
                Err(_) => {}
            }
            match factory.connect(url).await {
                Ok(_) => return Err(format!("connect accepted {url:?}")),
                Err(e) if !e.is_config() => {
                    return Err(format!("connect({url:?}) is not a config error: {e}"));
                }
                Err(_) => {}
            }
        }
        Ok(format!("{} rejected", self.invalid_urls.len()))
    }

    /// Connect, send the headers and `media` chunks; check `bytes_sent`.
    async fn push(
        &self,
        factory: &dyn LiveFactory,
        url: &str,
        media: usize,
    ) -> Result<(Box<dyn LiveSession>, Duration, Duration), String> {
        let started = Instant::now();
        let mut session = factory
            .connect(url)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        let connect_time = started.elapsed();
        let mut last = session.bytes_sent();
        let sending = Instant::now();
        for (i, c) in self
            .stream
            .headers
            .iter()
            .chain(self.stream.media.iter().take(media))
            .enumerate()
        {
            self.wait_for(c.pts, sending).await;
            session
                .send(c.as_chunk())
                .await
                .map_err(|e| format!("send of chunk {i} ({} bytes) failed: {e}", c.data.len()))?;
            let now = session.bytes_sent();
            if now < last {
                return Err(format!("bytes_sent went down from {last} to {now}"));
            }
            last = now;
        }
        Ok((session, connect_time, sending.elapsed()))
    }

    async fn publish(&self, factory: &dyn LiveFactory) -> Check {
        let url = self.url("publish");
        let n = self.stream.media.len();
        let (session, connect_time, send_time) = self.push(factory, &url, n).await?;
        let sent = session.bytes_sent();
        let payload = self.stream.media_bytes();
        // Framing differs (RTMP chunks, SRT headers), but what left cannot be much less.
        if sent < payload / 2 {
            return Err(format!(
                "bytes_sent is {sent} after sending {payload} media bytes"
            ));
        }
        let got = self.arrived(&url).await?;
        session
            .close()
            .await
            .map_err(|e| format!("close failed: {e}"))?;
        Ok(format!(
            "connect {} ms, {n} chunks ({:.1} s of media, {payload} bytes) sent in {} ms, {sent} bytes on the wire, receiver counted {got}",
            connect_time.as_millis(),
            self.stream.duration().as_secs_f64(),
            send_time.as_millis()
        ))
    }

    /// Wait until the receiver counts bytes for the live publish to `url`.
    async fn arrived(&self, url: &str) -> Result<u64, String> {
        let deadline = Instant::now() + self.settle;
        loop {
            let got = self.receiver.received(url).await?;
            if got > 0 {
                return Ok(got);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the receiver got nothing within {} ms",
                    self.settle.as_millis()
                ));
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    async fn republish(&self, factory: &dyn LiveFactory) -> Check {
        let url = self.url("again");
        let n = self.short();
        let (first, ..) = self.push(factory, &url, n).await?;
        first
            .close()
            .await
            .map_err(|e| format!("first close failed: {e}"))?;
        let (second, connect_time, _) = self
            .push(factory, &url, n)
            .await
            .map_err(|e| format!("second publish: {e}"))?;
        self.arrived(&url).await?;
        second
            .close()
            .await
            .map_err(|e| format!("second close failed: {e}"))?;
        Ok(format!("second connect {} ms", connect_time.as_millis()))
    }

    async fn concurrent(&self, factory: &dyn LiveFactory) -> Check {
        let (a, b) = (self.url("concurrent-a"), self.url("concurrent-b"));
        let mut sa = factory
            .connect(&a)
            .await
            .map_err(|e| format!("connect a failed: {e}"))?;
        let mut sb = factory
            .connect(&b)
            .await
            .map_err(|e| format!("connect b failed: {e}"))?;
        let sending = Instant::now();
        for c in self
            .stream
            .headers
            .iter()
            .chain(self.stream.media.iter().take(self.short()))
        {
            self.wait_for(c.pts, sending).await;
            sa.send(c.as_chunk())
                .await
                .map_err(|e| format!("send on a failed: {e}"))?;
            sb.send(c.as_chunk())
                .await
                .map_err(|e| format!("send on b failed: {e}"))?;
        }
        self.arrived(&a).await?;
        self.arrived(&b).await?;
        sa.close().await.map_err(|e| format!("close a: {e}"))?;
        sb.close().await.map_err(|e| format!("close b: {e}"))?;
        Ok(String::new())
    }

    async fn dropped(&self, factory: &dyn LiveFactory) -> Check {
        let url = self.url("dropped");
        let (session, ..) = self.push(factory, &url, self.short()).await?;
        let started = Instant::now();
        drop(session);
        let took = started.elapsed();
        if took > Duration::from_secs(1) {
            return Err(format!(
                "dropping a session blocked for {} ms",
                took.as_millis()
            ));
        }
        let (again, ..) = self
            .push(factory, &url, self.short())
            .await
            .map_err(|e| format!("publishing again after a drop: {e}"))?;
        again
            .close()
            .await
            .map_err(|e| format!("close after a drop: {e}"))?;
        Ok(format!("dropped in {} µs", took.as_micros()))
    }

    async fn failure_case(&self, factory: &dyn LiveFactory, f: &LiveFailure) -> Check {
        let own;
        let factory = match &f.config {
            Some(config) => {
                own = self
                    .plugin
                    .create(config)
                    .map_err(|e| format!("create with the case's config failed: {e}"))?;
                &*own
            }
            None => factory,
        };
        let started = Instant::now();
        let error = match factory.connect(&f.url).await {
            Err(e) => e,
            // Some transports learn of a refusal only when data flows (SRT): send a little.
            Ok(mut session) => match self.send_some(&mut *session).await {
                Err(e) => e,
                Ok(()) => return Err("connected and sent without an error".into()),
            },
        };
        let took = started.elapsed();
        if !f.expect.matches(&error) {
            return Err(format!("expected a {:?} error, got: {error}", f.expect));
        }
        if took > f.within {
            return Err(format!(
                "failed only after {} ms (limit {} ms): {error}",
                took.as_millis(),
                f.within.as_millis()
            ));
        }
        Ok(format!("{} ms: {error}", took.as_millis()))
    }

    async fn send_some(&self, session: &mut dyn LiveSession) -> Result<(), SinkError> {
        let sending = Instant::now();
        for c in self
            .stream
            .headers
            .iter()
            .chain(self.stream.media.iter().take(30))
        {
            self.wait_for(c.pts, sending).await;
            session.send(c.as_chunk()).await?;
        }
        Ok(())
    }

    /// When pacing, wait until `pts` after `start` (in steps of at least 20 ms).
    async fn wait_for(&self, pts: Duration, start: Instant) {
        if !self.pace {
            return;
        }
        if let Some(ahead) = pts.checked_sub(start.elapsed())
            && ahead >= Duration::from_millis(20)
        {
            sleep(ahead).await;
        }
    }
}

/// A runtime-neutral sleep (the kit runs under any executor): a thread wakes the task.
async fn sleep(d: Duration) {
    let worker = match crate::blocking::Worker::spawn("live-kit-sleep", ()) {
        Ok(w) => w,
        Err(_) => return std::thread::sleep(d),
    };
    let _ = worker.run(move |_| std::thread::sleep(d)).await;
}
