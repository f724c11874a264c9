//! One file being written: temp file → fsync → rename → directory fsync.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use egress_plugin_api::blocking::Worker;
use egress_plugin_api::{Bytes, Receipt, SinkError, SinkObject, async_trait, log};
use sha2::{Digest, Sha256};

use crate::config::FileConfig;
use crate::error::FileError;

/// State owned by the object's worker thread.
struct Writer {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    fsync: bool,
    hasher: Sha256,
    size: u64,
}

pub struct FileObject {
    worker: Worker<Writer>,
    /// Set once finish or abort ran, so that Drop knows whether to clean up.
    done: bool,
}

/// A suffix no other temp file of this or another process is likely to have. Not
/// `process::id()`: WASI has no processes.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{random:016x}")
}

impl FileObject {
    pub async fn open(config: &FileConfig, target: PathBuf) -> Result<Self, SinkError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = target.with_file_name(format!(".{name}.{}.part", unique_suffix()));
        let writer = Writer {
            file: None,
            temp,
            target,
            fsync: config.fsync,
            hasher: Sha256::new(),
            size: 0,
        };
        let worker = Worker::spawn("egress-file", writer).map_err(FileError::Thread)?;
        let create_dirs = config.create_directories;
        worker
            .run(move |w| w.create(create_dirs))
            .await
            .map_err(|_| FileError::WorkerGone)??;
        Ok(FileObject {
            worker,
            done: false,
        })
    }
}

impl Writer {
    fn create(&mut self, create_dirs: bool) -> Result<(), FileError> {
        if create_dirs && let Some(parent) = self.temp.parent() {
            fs::create_dir_all(parent).map_err(|e| FileError::io("create directory", parent, e))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.temp)
            .map_err(|e| FileError::io("create", &self.temp, e))?;
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        let file = self.file.as_mut().ok_or(FileError::WorkerGone)?;
        file.write_all(chunk)
            .map_err(|e| FileError::io("write", &self.temp, e))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<Receipt, FileError> {
        let file = self.file.take().ok_or(FileError::WorkerGone)?;
        if self.fsync {
            // Data before name: after a crash the final name never points at missing blocks.
            file.sync_all()
                .map_err(|e| FileError::io("fsync", &self.temp, e))?;
        }
        drop(file);
        fs::rename(&self.temp, &self.target)
            .map_err(|e| FileError::io("rename into place", &self.target, e))?;
        if self.fsync {
            sync_parent(&self.target);
        }
        let sha256 = std::mem::take(&mut self.hasher).finalize().into();
        Ok(Receipt::new(
            self.target.to_string_lossy(),
            self.size,
            sha256,
        ))
    }

    /// Remove the temp file (abort, failed finish, drop). Never fails: logs instead.
    fn discard(&mut self) {
        self.file = None;
        match fs::remove_file(&self.temp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn(format!(
                "file sink: cannot remove {}: {e}",
                self.temp.display()
            )),
        }
    }
}

/// Make the rename durable. Best effort: some file systems (and WASI) cannot open a
/// directory for syncing, and the data itself is already synced.
fn sync_parent(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        log::debug(format!(
            "file sink: cannot fsync directory {}: {e}",
            dir.display()
        ));
    }
}

#[async_trait]
impl SinkObject for FileObject {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.worker
            .run(move |w| w.write(&chunk))
            .await
            .map_err(|_| FileError::WorkerGone)?
            .map_err(SinkError::from)
    }

    async fn finish(mut self: Box<Self>) -> Result<Receipt, SinkError> {
        self.done = true;
        self.worker
            .run(|w| {
                let result = w.finish();
                if result.is_err() {
                    w.discard();
                }
                result
            })
            .await
            .map_err(|_| FileError::WorkerGone)?
            .map_err(SinkError::from)
    }

    async fn abort(mut self: Box<Self>) {
        self.done = true;
        let _ = self.worker.run(Writer::discard).await;
    }
}

impl Drop for FileObject {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled mid-object: leave nothing behind. Runs on the worker, after any write
            // still queued.
            self.worker.submit(Writer::discard);
        }
    }
}
