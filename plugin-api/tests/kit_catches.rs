//! The conformance kit catches what it claims to: a directory sink that breaks one rule of the
//! contract at a time (chosen by its `flaw` config key) fails the check for that rule, and the
//! same sink without a flaw passes every check. A kit whose checks cannot fail proves nothing.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use egress_plugin_api::blocking::{Worker, block_on};
use egress_plugin_api::conformance::{DirInspector, Kit, Options};
use egress_plugin_api::*;
use sha2::{Digest, Sha256};

#[derive(serde::Deserialize, serde::Serialize, Default, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Flaw {
    #[default]
    None,
    /// Abort and drop leave `<key>.part` (not a dot-file) behind.
    LeavesPart,
    /// Writes straight to the final path: the object is visible before finish.
    InPlace,
    /// Holds the whole object in memory until finish.
    Buffers,
    /// Flattens the key's `/` into `_` (the README's sink once did).
    FlattensSlash,
    /// No cleanup when dropped unfinished.
    NoDropCleanup,
    /// Joins any key to its root, `..` and all.
    TrustsKeys,
    /// Refuses bad keys, but as retryable errors.
    WrongKeyClass,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    directory: PathBuf,
    #[serde(default)]
    flaw: Flaw,
}

struct Mutant {
    dir: PathBuf,
    flaw: Flaw,
}

impl SinkPlugin for Mutant {
    fn describe() -> Descriptor {
        Descriptor::new("mutant", "0.1.0").with_capabilities(Capabilities::none().streaming())
    }
    fn create(config: &Value) -> Result<Self, SinkError> {
        let c: Config = config::parse(config)?;
        Ok(Mutant {
            dir: c.directory,
            flaw: c.flaw,
        })
    }
}

fn io(e: std::io::Error) -> SinkError {
    SinkError::permanent(e.to_string())
}

/// The sink's own key check (the flawless one refuses what could escape its root).
fn checked(key: &str, flaw: Flaw) -> Result<String, SinkError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.split('/').any(|s| matches!(s, "" | "." | ".."));
    match (bad, flaw) {
        (false, _) | (true, Flaw::TrustsKeys) => Ok(key.to_string()),
        (true, Flaw::WrongKeyClass) => Err(SinkError::retryable(format!("bad key {key:?}"))),
        (true, _) => Err(SinkError::permanent(format!("bad key {key:?}"))),
    }
}

#[async_trait]
impl SinkFactory for Mutant {
    async fn health_check(&self) -> Result<(), SinkError> {
        match self.dir.is_dir() {
            true => Ok(()),
            false => Err(SinkError::permanent("no such directory")),
        }
    }
    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        let mut key = checked(&spec.key, self.flaw)?;
        if self.flaw == Flaw::FlattensSlash {
            key = key.replace('/', "_");
        }
        let target = self.dir.join(key);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let temp = match self.flaw {
            Flaw::InPlace => target.clone(),
            _ => PathBuf::from(format!("{}.part", target.display())),
        };
        let file = match self.flaw {
            Flaw::Buffers => None,
            _ => Some(File::create(&temp).map_err(io)?),
        };
        Ok(Box::new(Object {
            flaw: self.flaw,
            file,
            buffer: Vec::new(),
            temp,
            target,
            hasher: Sha256::new(),
            size: 0,
            done: false,
        }))
    }
}

struct Object {
    flaw: Flaw,
    file: Option<File>,
    buffer: Vec<u8>,
    temp: PathBuf,
    target: PathBuf,
    hasher: Sha256,
    size: u64,
    done: bool,
}

#[async_trait]
impl SinkObject for Object {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        match &mut self.file {
            Some(f) => f.write_all(&chunk).map_err(io),
            None => {
                self.buffer.extend_from_slice(&chunk);
                Ok(())
            }
        }
    }
    async fn finish(mut self: Box<Self>) -> Result<Receipt, SinkError> {
        self.done = true;
        if self.file.take().is_none() {
            fs::write(&self.temp, &self.buffer).map_err(io)?;
        }
        if self.temp != self.target {
            fs::rename(&self.temp, &self.target).map_err(io)?;
        }
        let sha = std::mem::take(&mut self.hasher).finalize().into();
        Ok(Receipt::new(
            self.target.display().to_string(),
            self.size,
            sha,
        ))
    }
    async fn abort(mut self: Box<Self>) {
        self.done = true;
        if self.flaw != Flaw::LeavesPart {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        if !self.done && !matches!(self.flaw, Flaw::LeavesPart | Flaw::NoDropCleanup) {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The names of the checks that fail for `flaw`. Every kit runs on one thread, one at a time:
/// the memory check measures the whole process, and a test thread of its own would measure
/// the allocator warming up a fresh arena as much as the sink.
fn failing_checks(flaw: Flaw) -> Vec<String> {
    static RUNNER: OnceLock<Mutex<Worker<()>>> = OnceLock::new();
    let runner = RUNNER.get_or_init(|| Mutex::new(Worker::spawn("kit", ()).expect("kit thread")));
    let run = runner
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .run(move |_| run_kit(flaw));
    block_on(run).expect("the kit thread panicked")
}

fn run_kit(flaw: Flaw) -> Vec<String> {
    let scratch = tempfile::tempdir().expect("temp dir");
    // The root is one level down, so that a sink that lets `..` escape writes into the scratch
    // directory, not beside it.
    let root = scratch.path().join("root");
    fs::create_dir(&root).expect("root");
    let config = json!({ "directory": root, "flaw": flaw });
    let plugin = Arc::new(BuiltinSink::of::<Mutant>());
    let kit = Kit::new(plugin, config, Arc::new(DirInspector::new(&root)))
        .options(Options {
            large_size: 64 << 20,
            memory_budget: 24 << 20,
            concurrent_size: 1 << 20,
            settle: Duration::from_millis(300),
            ..Options::default()
        })
        .invalid_config(json!({ "directory": 3 }), Some("directory"));
    let report = block_on(kit.run());
    for (name, result) in &report.results {
        eprintln!("{flaw:?}: {name}: {result:?}");
    }
    report
        .results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name.clone())
        .collect()
}

fn assert_fails(flaw: Flaw, expected: &[&str]) {
    let failing = failing_checks(flaw);
    assert_eq!(failing, expected, "{flaw:?}: checks that failed");
}

#[test]
fn a_sink_that_keeps_the_contract_passes() {
    assert_fails(Flaw::None, &[]);
}

#[test]
fn part_files_left_after_abort_and_drop_are_caught() {
    assert_fails(
        Flaw::LeavesPart,
        &["abort", "drop without finish", "nothing left behind"],
    );
}

#[test]
fn writing_in_place_is_caught() {
    assert_fails(Flaw::InPlace, &["ordered writes"]);
}

#[test]
fn buffering_the_whole_object_is_caught() {
    assert_fails(Flaw::Buffers, &["large object, bounded memory"]);
}

#[test]
fn flattened_keys_are_caught() {
    assert_fails(
        Flaw::FlattensSlash,
        &[
            "ordered writes",
            "empty object",
            "large object, bounded memory",
            "overwrite",
            "concurrent objects",
        ],
    );
}

#[test]
fn no_cleanup_on_drop_is_caught() {
    assert_fails(
        Flaw::NoDropCleanup,
        &["drop without finish", "nothing left behind"],
    );
}

#[test]
fn keys_escaping_the_root_are_caught() {
    assert_fails(Flaw::TrustsKeys, &["unsafe keys"]);
}

#[test]
fn a_bad_key_with_the_wrong_error_class_is_caught() {
    assert_fails(Flaw::WrongKeyClass, &["unsafe keys"]);
}
