//! `file`: the local-directory sink.
//!
//! Each object is written to a hidden temp file next to its final path (same directory, so same
//! file system), fsynced, then renamed over the final name, and the directory is fsynced. So a
//! reader sees either nothing or the whole object, and a crash never leaves a truncated file
//! under the final name. `abort` (and dropping an unfinished object) removes the temp file.
//!
//! All file I/O runs on one worker thread per object (a [`Worker`]), never on the host's async
//! threads; in WASM it runs inline against the directories the host pre-opened.
//!
//! Config (JSON Schema in [`FileSink::describe`]):
//!
//! ```yaml
//! directory: /var/lib/egress/recordings   # default "."
//! create_directories: true                # create missing parent directories (default true)
//! fsync: true                             # fsync file and directory on finish (default true)
//! ```
//!
//! [`Worker`]: egress_plugin_api::blocking::Worker

mod config;
mod error;
mod object;

use std::path::PathBuf;

use egress_plugin_api::blocking::Worker;
use egress_plugin_api::{
    Capabilities, Descriptor, ObjectSpec, SinkError, SinkFactory, SinkObject, SinkPlugin, Value,
    async_trait, export_sink, key,
};

pub use config::FileConfig;
use error::FileError;

/// The `file` sink: objects are files under one directory.
pub struct FileSink {
    config: FileConfig,
}

impl SinkPlugin for FileSink {
    fn describe() -> Descriptor {
        Descriptor::new("file", env!("CARGO_PKG_VERSION"))
            .with_capabilities(Capabilities::none().streaming())
            .with_config_schema(config::schema())
    }

    fn validate(config: &Value) -> Result<(), SinkError> {
        FileConfig::parse(config).map(drop)
    }

    fn create(config: &Value) -> Result<Self, SinkError> {
        Ok(FileSink {
            config: FileConfig::parse(config)?,
        })
    }
}

#[async_trait]
impl SinkFactory for FileSink {
    async fn health_check(&self) -> Result<(), SinkError> {
        let config = self.config.clone();
        let worker = Worker::spawn("egress-file-health", ()).map_err(FileError::Thread)?;
        worker
            .run(move |_| probe(&config))
            .await
            .map_err(|e| SinkError::permanent(e.to_string()))?
            .map_err(SinkError::from)
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        // Refuses keys that could leave the directory (`..`, absolute) as permanent errors.
        let target = key::path_under(&self.config.directory, &spec.key)?;
        let object = object::FileObject::open(&self.config, target).await?;
        Ok(Box::new(object))
    }
}

/// Can we create, write, sync and remove a file in the directory?
fn probe(config: &FileConfig) -> Result<(), FileError> {
    let dir = &config.directory;
    if config.create_directories {
        std::fs::create_dir_all(dir).map_err(|e| FileError::io("create", dir, e))?;
    }
    let path: PathBuf = dir.join(format!(".egress-health-{}", object::unique_suffix()));
    let result = std::fs::write(&path, b"ok").map_err(|e| FileError::io("write", &path, e));
    // Remove even if the write failed half-way.
    let _ = std::fs::remove_file(&path);
    result
}

export_sink!(FileSink);
