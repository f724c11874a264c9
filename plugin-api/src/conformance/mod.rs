//! The conformance kit: the checks every sink in the repository runs, through every loader.
//!
//! A test builds a [`Kit`] from a loaded plugin (a [`LoadedPlugin`], whatever loaded it), a
//! working config and an [`Inspector`] that can look at the destination directly, adds the
//! plugin's invalid configs and failure cases, and runs it:
//!
//! ```ignore
//! let report = Kit::new(plugin, config, inspector)
//!     .invalid_config(json!({"directory": 3}), Some("directory"))
//!     .failure(FailureCase::new("bad key", config.clone(), "../escape", Expect::Permanent))
//!     .run()
//!     .await;
//! report.assert_passed();
//! ```
//!
//! Checks: the descriptor; validate, create and health check with the good config; invalid
//! configs; ordered writes of odd-sized chunks under a nested key, invisible until `finish`; an
//! empty object; a large object streamed with bounded memory (resident set sampled while
//! writing); abort and drop without finish (nothing at the key, no file of any name left
//! beside it); overwrite; concurrent objects; unsafe keys (`..`, `.`, empty segments, empty and
//! absolute keys: refused as permanent errors, never stored outside the root); the plugin's own
//! error classification cases; nothing left behind.
//!
//! `plugin-api/tests/kit_catches.rs` proves each check fails on a sink that breaks its rule.
//!
//! Live destinations (API 1.2) have a suite of their own, [`LiveKit`], run against a real
//! receiver ([`LiveReceiver`]) with real media ([`LiveStream`], cut from an FLV or MPEG-TS
//! file as the host cuts its muxer's output).

mod data;
mod dir;
mod live;
mod memory;
mod stream;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::SinkError;
use crate::plugin::LoadedPlugin;
use crate::sink::{SinkFactory, SinkObject};
use crate::types::{ApiVersion, ObjectSpec, Receipt};

pub use data::Pattern;
pub use dir::DirInspector;
pub use live::{LiveFailure, LiveKit, LiveReceiver};
pub use memory::{Exclusive, PeakRss, exclusive, resident_bytes};
pub use stream::{LiveStream, OwnedChunk};

/// What the destination holds at a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Looks at the destination without going through the sink.
#[async_trait]
pub trait Inspector: Send + Sync {
    /// The finished object visible at `key` (its receipt, when there is one, helps to find
    /// it), or `None` when nothing is visible.
    async fn stored(&self, key: &str, receipt: Option<&Receipt>) -> Result<Option<Stored>, String>;

    /// Anything under `prefix` that is not a finished object: temp files, partial uploads.
    /// An inspector that cannot tell finished objects from the rest may list everything under
    /// `prefix` by key (as [`DirInspector`] does): the kit ignores the keys it finished itself.
    async fn leftovers(&self, prefix: &str) -> Result<Vec<String>, String>;
}

/// Knobs for the expensive checks.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of the large object (default 256 MiB).
    pub large_size: u64,
    /// Chunk size for the large object (default 1 MiB).
    pub chunk_size: usize,
    /// How much the resident set may grow while the large object streams (default 96 MiB).
    pub memory_budget: u64,
    /// Objects written at once in the concurrency check (default 8)...
    pub concurrent_objects: usize,
    /// ...each this big (default 4 MiB).
    pub concurrent_size: u64,
    /// How long cleanup after abort or drop may take to become visible (default 5 s).
    pub settle: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            large_size: 256 << 20,
            chunk_size: 1 << 20,
            memory_budget: 96 << 20,
            concurrent_objects: 8,
            concurrent_size: 4 << 20,
            settle: Duration::from_secs(5),
        }
    }
}

/// The error kind a failure case must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Retryable,
    Permanent,
    Auth,
    Config,
}

impl Expect {
    fn matches(self, e: &SinkError) -> bool {
        match self {
            Expect::Retryable => e.is_retryable(),
            Expect::Permanent => e.is_permanent(),
            Expect::Auth => e.is_auth(),
            Expect::Config => e.is_config(),
        }
    }
}

/// A config (and key) that must make the sink fail with a given kind of error, at create, open,
/// write or finish.
#[derive(Debug, Clone)]
pub struct FailureCase {
    pub name: String,
    pub config: Value,
    pub key: String,
    /// Bytes written before finishing (default 256 KiB).
    pub write_bytes: u64,
    pub expect: Expect,
}

impl FailureCase {
    pub fn new(name: &str, config: Value, key: &str, expect: Expect) -> Self {
        FailureCase {
            name: name.to_string(),
            config,
            key: key.to_string(),
            write_bytes: 256 << 10,
            expect,
        }
    }

    pub fn write_bytes(mut self, n: u64) -> Self {
        self.write_bytes = n;
        self
    }
}

/// The outcome of each check.
#[derive(Debug, Default)]
pub struct Report {
    pub results: Vec<(String, Result<String, String>)>,
}

impl Report {
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect()
    }

    /// Panic with every failed check, or print what passed.
    pub fn assert_passed(&self) {
        for (name, r) in &self.results {
            match r {
                Ok(note) if note.is_empty() => eprintln!("conformance: ok   {name}"),
                Ok(note) => eprintln!("conformance: ok   {name} ({note})"),
                Err(e) => eprintln!("conformance: FAIL {name}: {e}"),
            }
        }
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "{} conformance check(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

type Check = Result<String, String>;

/// The kit. See the module docs.
pub struct Kit {
    plugin: Arc<dyn LoadedPlugin>,
    config: Value,
    inspector: Arc<dyn Inspector>,
    options: Options,
    prefix: String,
    invalid: Vec<(Value, Option<String>)>,
    failures: Vec<FailureCase>,
    /// Keys of the objects the kit finished and verified: not leftovers.
    finished: Mutex<BTreeSet<String>>,
}

impl Kit {
    pub fn new(
        plugin: Arc<dyn LoadedPlugin>,
        config: Value,
        inspector: Arc<dyn Inspector>,
    ) -> Self {
        Kit {
            plugin,
            config,
            inspector,
            options: Options::default(),
            prefix: "conformance".to_string(),
            invalid: Vec::new(),
            failures: Vec::new(),
            finished: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Keys start with this (so that several kits can share one destination).
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_matches('/').to_string();
        self
    }

    /// A config `validate` must reject as a config error, naming `field` if given.
    pub fn invalid_config(mut self, config: Value, field: Option<&str>) -> Self {
        self.invalid.push((config, field.map(str::to_string)));
        self
    }

    pub fn failure(mut self, case: FailureCase) -> Self {
        self.failures.push(case);
        self
    }

    fn key(&self, check: &str, n: usize) -> String {
        format!("{}/{check}/{n}.bin", self.prefix)
    }

    /// Run every check and collect the results (no check stops the others).
    pub async fn run(&self) -> Report {
        let mut report = Report::default();
        report.results.push(("describe".into(), self.describe()));
        let factory = match self.factory().await {
            Ok(f) => {
                report
                    .results
                    .push(("create and health check".into(), Ok(String::new())));
                f
            }
            Err(e) => {
                report
                    .results
                    .push(("create and health check".into(), Err(e)));
                return report;
            }
        };
        report
            .results
            .push(("invalid configs".into(), self.invalid_configs()));
        report.results.push((
            "ordered writes".into(),
            self.ordered_writes(&*factory).await,
        ));
        report
            .results
            .push(("empty object".into(), self.empty_object(&*factory).await));
        report.results.push((
            "large object, bounded memory".into(),
            self.large_object(&*factory).await,
        ));
        report
            .results
            .push(("abort".into(), self.abort(&*factory).await));
        report
            .results
            .push(("drop without finish".into(), self.dropped(&*factory).await));
        report
            .results
            .push(("overwrite".into(), self.overwrite(&*factory).await));
        report.results.push((
            "concurrent objects".into(),
            self.concurrent(&*factory).await,
        ));
        report
            .results
            .push(("unsafe keys".into(), self.unsafe_keys(&*factory).await));
        for case in &self.failures {
            report.results.push((
                format!("error classification: {}", case.name),
                self.failure_case(case).await,
            ));
        }
        report
            .results
            .push(("nothing left behind".into(), self.nothing_left().await));
        report
    }

    fn describe(&self) -> Check {
        let d = self.plugin.descriptor();
        let name_ok = !d.name.is_empty()
            && d.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(format!(
                "name {:?} must be non-empty lower-case [a-z0-9-]",
                d.name
            ));
        }
        if d.version.is_empty() {
            return Err("version is empty".into());
        }
        ApiVersion::check_plugin(ApiVersion::CURRENT, d.api).map_err(|e| e.to_string())?;
        if d.config_schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(format!(
                "config schema is not an object schema: {}",
                d.config_schema
            ));
        }
        Ok(format!("{} {} api {}", d.name, d.version, d.api))
    }

    async fn factory(&self) -> Result<Box<dyn SinkFactory>, String> {
        self.plugin
            .validate(&self.config)
            .map_err(|e| format!("validate rejected the good config: {e}"))?;
        let factory = self
            .plugin
            .create(&self.config)
            .map_err(|e| format!("create failed: {e}"))?;
        factory
            .health_check()
            .await
            .map_err(|e| format!("health check failed: {e}"))?;
        Ok(factory)
    }

    fn invalid_configs(&self) -> Check {
        for (config, field) in &self.invalid {
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
            if let Ok(_factory) = self.plugin.create(config) {
                return Err(format!("create accepted {config} that validate rejects"));
            }
        }
        Ok(format!("{} rejected", self.invalid.len()))
    }

    async fn ordered_writes(&self, factory: &dyn SinkFactory) -> Check {
        let sizes = [
            0usize,
            1,
            2,
            3,
            1000,
            4096,
            65_536,
            65_537,
            1 << 20,
            7,
            (1 << 20) + 13,
            0,
            5,
        ];
        // A nested key: a key's `/` are path (or URL) separators, kept as they are.
        let key = format!("{}/ordered/nested/key/0.bin", self.prefix);
        let pattern = Pattern::new(1);
        let mut object = open(factory, &key, None).await?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        for (i, size) in sizes.into_iter().enumerate() {
            let chunk = pattern.chunk(offset, size);
            hasher.update(&chunk);
            offset += size as u64;
            object
                .write(chunk)
                .await
                .map_err(|e| format!("write of {size} bytes at {offset} failed: {e}"))?;
            if i == sizes.len() / 2 {
                self.invisible_before_finish(&key).await?;
            }
        }
        let receipt = finish(object).await?;
        self.verify(&key, &receipt, offset, hasher.finalize().into())
            .await?;
        Ok(format!("{} chunks, {offset} bytes", sizes.len()))
    }

    async fn empty_object(&self, factory: &dyn SinkFactory) -> Check {
        let key = self.key("empty", 0);
        let object = open(factory, &key, Some(0)).await?;
        let receipt = finish(object).await?;
        self.verify(&key, &receipt, 0, Sha256::digest(b"").into())
            .await?;
        Ok(String::new())
    }

    async fn large_object(&self, factory: &dyn SinkFactory) -> Check {
        // One large check per process at a time, so that the resident set measures one sink.
        let _serial = memory::exclusive();
        let size = self.options.large_size;
        let chunk_size = self.options.chunk_size.max(1);
        let key = self.key("large", 0);
        let pattern = Pattern::new(3);
        let peak = PeakRss::start();
        let started = Instant::now();
        let mut object = open(factory, &key, Some(size)).await?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        while offset < size {
            let n = chunk_size.min((size - offset) as usize);
            let chunk = pattern.chunk(offset, n);
            hasher.update(&chunk);
            offset += n as u64;
            object
                .write(chunk)
                .await
                .map_err(|e| format!("write at {offset} failed: {e}"))?;
        }
        let receipt = finish(object).await?;
        let elapsed = started.elapsed();
        let growth = peak.stop();
        self.verify(&key, &receipt, size, hasher.finalize().into())
            .await?;
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let rate = mib(size) / elapsed.as_secs_f64().max(1e-9);
        match growth {
            Some(g) if g > self.options.memory_budget => Err(format!(
                "resident set grew by {:.1} MiB while streaming {:.0} MiB (budget {:.0} MiB): the sink buffers",
                mib(g),
                mib(size),
                mib(self.options.memory_budget)
            )),
            Some(g) => Ok(format!(
                "{:.0} MiB at {rate:.0} MiB/s, resident set +{:.1} MiB",
                mib(size),
                mib(g)
            )),
            None => Ok(format!(
                "{:.0} MiB at {rate:.0} MiB/s, memory not measured on this OS",
                mib(size)
            )),
        }
    }

    async fn abort(&self, factory: &dyn SinkFactory) -> Check {
        let key = self.key("abort", 0);
        let mut object = open(factory, &key, None).await?;
        let pattern = Pattern::new(4);
        for i in 0..3u64 {
            object
                .write(pattern.chunk(i * 100_000, 100_000))
                .await
                .map_err(|e| format!("write failed: {e}"))?;
        }
        object.abort().await;
        self.absent(&key).await?;
        self.clean(&format!("{}/abort", self.prefix)).await?;
        Ok(String::new())
    }

    async fn dropped(&self, factory: &dyn SinkFactory) -> Check {
        let key = self.key("dropped", 0);
        let mut object = open(factory, &key, None).await?;
        object
            .write(Pattern::new(5).chunk(0, 100_000))
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        drop(object);
        self.absent(&key).await?;
        self.clean(&format!("{}/dropped", self.prefix)).await?;
        Ok(String::new())
    }

    async fn overwrite(&self, factory: &dyn SinkFactory) -> Check {
        let key = self.key("overwrite", 0);
        for (seed, size) in [(6u64, 300_000usize), (7, 200_000)] {
            let chunk = Pattern::new(seed).chunk(0, size);
            let sha: [u8; 32] = Sha256::digest(&chunk).into();
            let mut object = open(factory, &key, None).await?;
            object
                .write(chunk)
                .await
                .map_err(|e| format!("write failed: {e}"))?;
            let receipt = finish(object).await?;
            self.verify(&key, &receipt, size as u64, sha).await?;
        }
        Ok(String::new())
    }

    async fn concurrent(&self, factory: &dyn SinkFactory) -> Check {
        let n = self.options.concurrent_objects.max(2);
        let size = self.options.concurrent_size;
        let runs = (0..n).map(|i| {
            let key = self.key("concurrent", i);
            async move {
                let pattern = Pattern::new(100 + i as u64);
                let mut object = open(factory, &key, Some(size)).await?;
                let mut hasher = Sha256::new();
                let mut offset = 0u64;
                while offset < size {
                    // Different chunk sizes per object, so that writes interleave unevenly.
                    let n = (16_384 * (i + 1)).min((size - offset) as usize);
                    let chunk = pattern.chunk(offset, n);
                    hasher.update(&chunk);
                    offset += n as u64;
                    object
                        .write(chunk)
                        .await
                        .map_err(|e| format!("{key}: write failed: {e}"))?;
                }
                let receipt = finish(object).await?;
                let sha: [u8; 32] = hasher.finalize().into();
                Ok::<_, String>((key, receipt, sha))
            }
        });
        let results = futures_util::future::join_all(runs).await;
        for r in results {
            let (key, receipt, sha) = r?;
            self.verify(&key, &receipt, size, sha).await?;
        }
        Ok(format!("{n} objects of {size} bytes"))
    }

    async fn failure_case(&self, case: &FailureCase) -> Check {
        let outcome = async {
            let factory = self.plugin.create(&case.config)?;
            let mut object = factory.open(ObjectSpec::new(case.key.clone())).await?;
            let pattern = Pattern::new(9);
            let mut offset = 0u64;
            while offset < case.write_bytes {
                let n = (64 << 10).min((case.write_bytes - offset) as usize);
                if let Err(e) = object.write(pattern.chunk(offset, n)).await {
                    object.abort().await;
                    return Err(e);
                }
                offset += n as u64;
            }
            object.finish().await
        }
        .await;
        match outcome {
            Ok(receipt) => Err(format!(
                "expected a {:?} error, but the object was stored at {}",
                case.expect, receipt.location
            )),
            Err(e) => {
                let kinds = [
                    e.is_retryable(),
                    e.is_permanent(),
                    e.is_auth(),
                    e.is_config(),
                ];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    return Err(format!("error predicates are not exclusive: {e:?}"));
                }
                if case.expect.matches(&e) {
                    Ok(e.to_string())
                } else {
                    Err(format!("expected a {:?} error, got: {e}", case.expect))
                }
            }
        }
    }

    async fn nothing_left(&self) -> Check {
        self.clean(&self.prefix).await?;
        Ok(String::new())
    }

    /// Nothing under `prefix` but the objects the kit finished, allowing asynchronous cleanup
    /// some time. Names do not matter: `x.part` is as much a leftover as `.x.tmp`.
    async fn clean(&self, prefix: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.options.settle;
        loop {
            let left: Vec<String> = {
                let found = self.inspector.leftovers(prefix).await?;
                let finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
                found
                    .into_iter()
                    .filter(|k| !finished.contains(k))
                    .collect()
            };
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("left behind under {prefix}: {}", left.join(", ")));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The contract says nothing is visible under a key until `finish` returns.
    async fn invisible_before_finish(&self, key: &str) -> Result<(), String> {
        match self.inspector.stored(key, None).await? {
            None => Ok(()),
            Some(s) => Err(format!(
                "{key}: {} bytes visible before finish (write under a temporary name and move \
                 it into place in finish)",
                s.size
            )),
        }
    }

    /// Keys that could escape the sink's root must be refused with a permanent error before
    /// anything is written. An absolute key may instead be stored without its leading `/`
    /// (object stores do, as the Go egress does), but never outside the root.
    async fn unsafe_keys(&self, factory: &dyn SinkFactory) -> Check {
        let p = &self.prefix;
        let refused = [
            format!("{p}/unsafe/../../../escape.bin"),
            format!("../{p}-escape.bin"),
            format!("{p}/unsafe/./dot.bin"),
            format!("{p}/unsafe//empty-segment.bin"),
            String::new(),
        ];
        for key in &refused {
            match store_small(factory, key).await {
                Ok(receipt) => {
                    return Err(format!(
                        "key {key:?} was accepted and stored at {}; keys with `..`, `.` or \
                         empty segments must be refused (permanent error)",
                        receipt.location
                    ));
                }
                Err(e) if !e.is_permanent() => {
                    return Err(format!(
                        "key {key:?} was refused with the wrong class (want permanent): {e}"
                    ));
                }
                Err(_) => {}
            }
        }
        let absolute = format!("/{p}/unsafe/absolute.bin");
        let relative = &absolute[1..];
        match store_small(factory, &absolute).await {
            Err(e) if e.is_permanent() => {}
            Err(e) => {
                return Err(format!(
                    "key {absolute:?} was refused with the wrong class (want permanent): {e}"
                ));
            }
            Ok(receipt) => match self.inspector.stored(relative, Some(&receipt)).await? {
                Some(_) => self.remember(relative),
                None => {
                    return Err(format!(
                        "key {absolute:?} was stored outside the root, at {}; refuse absolute \
                         keys (permanent error) or drop the leading `/`",
                        receipt.location
                    ));
                }
            },
        }
        Ok(format!("{} refused", refused.len() + 1))
    }

    fn remember(&self, key: &str) {
        self.finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string());
    }

    async fn verify(
        &self,
        key: &str,
        receipt: &Receipt,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<(), String> {
        if receipt.size != size {
            return Err(format!(
                "{key}: receipt size {} != {size} bytes written",
                receipt.size
            ));
        }
        if receipt.sha256 != sha256 {
            return Err(format!(
                "{key}: receipt SHA-256 does not match the bytes written"
            ));
        }
        if receipt.location.is_empty() {
            return Err(format!("{key}: receipt has no location"));
        }
        self.remember(key);
        match self.inspector.stored(key, Some(receipt)).await? {
            None => Err(format!(
                "{key}: nothing stored at the key after finish (receipt location {}; a key's \
                 `/` separate path segments and must be kept)",
                receipt.location
            )),
            Some(s) if s.size != size => {
                Err(format!("{key}: stored {} bytes, wrote {size}", s.size))
            }
            Some(s) if s.sha256 != sha256 => {
                Err(format!("{key}: stored bytes differ from written bytes"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Nothing visible at `key`, allowing asynchronous cleanup some time.
    async fn absent(&self, key: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.options.settle;
        loop {
            match self.inspector.stored(key, None).await? {
                None => return Ok(()),
                Some(s) if Instant::now() >= deadline => {
                    return Err(format!("{key}: an object of {} bytes is visible", s.size));
                }
                Some(_) => sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

async fn open(
    factory: &dyn SinkFactory,
    key: &str,
    size: Option<u64>,
) -> Result<Box<dyn SinkObject>, String> {
    let mut spec = ObjectSpec::new(key).with_content_type("application/octet-stream");
    if let Some(size) = size {
        spec = spec.with_expected_size(size);
    }
    factory
        .open(spec)
        .await
        .map_err(|e| format!("{key}: open failed: {e}"))
}

/// Open, write 1000 bytes and finish, keeping the sink's error as it is.
async fn store_small(factory: &dyn SinkFactory, key: &str) -> Result<Receipt, SinkError> {
    let mut object = factory.open(ObjectSpec::new(key)).await?;
    if let Err(e) = object.write(Pattern::new(11).chunk(0, 1000)).await {
        object.abort().await;
        return Err(e);
    }
    object.finish().await
}

async fn finish(object: Box<dyn SinkObject>) -> Result<Receipt, String> {
    object
        .finish()
        .await
        .map_err(|e| format!("finish failed: {e}"))
}

/// A runtime-neutral sleep: a thread sleeps and wakes the task.
async fn sleep(d: Duration) {
    let worker = crate::blocking::Worker::spawn("conformance-sleep", ());
    if let Ok(w) = worker {
        let _ = w.run(move |_| std::thread::sleep(d)).await;
    }
}

/// `Bytes` helper for tests that feed sinks directly.
pub fn chunk_of(pattern: &Pattern, offset: u64, len: usize) -> Bytes {
    pattern.chunk(offset, len)
}
