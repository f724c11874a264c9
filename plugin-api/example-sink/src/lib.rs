// src/lib.rs: objects become files under a directory. Each is written to a hidden `.name.part`
// and renamed into place by `finish`: nothing is visible under a key before then.
use std::{fs, io::Write, path::PathBuf};

use egress_plugin_api::{blocking::Worker, *};
use sha2::{Digest, Sha256};

/// The sink is its config: `{ directory: /srv/exports }`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSink {
    directory: PathBuf,
}

impl SinkPlugin for DirSink {
    fn describe() -> Descriptor {
        Descriptor::new("dir", env!("CARGO_PKG_VERSION"))
            .with_capabilities(Capabilities::none().streaming())
            .with_config_schema(json!({ "type": "object", "required": ["directory"],
                "properties": { "directory": { "type": "string" } } }))
    }
    // Pure: no I/O here. Errors name the field (`config::parse` does it for you).
    fn create(config: &Value) -> Result<Self, SinkError> {
        config::parse(config)
    }
}

fn failed(e: impl std::fmt::Display) -> SinkError {
    SinkError::permanent(e.to_string())
}

#[async_trait]
impl SinkFactory for DirSink {
    async fn health_check(&self) -> Result<(), SinkError> {
        fs::read_dir(&self.directory).map(drop).map_err(failed)
    }
    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        let path = key::path_under(&self.directory, &spec.key)?; // refuses `..` and absolute keys
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temp = path.with_file_name(format!(".{name}.part"));
        let part = Part {
            file: None,
            temp,
            path,
            sha: Sha256::new(),
            size: 0,
        };
        // Blocking I/O runs on the object's own thread (inline in WASM), never on the host's.
        let worker = Worker::spawn("dir-sink", part).map_err(failed)?;
        let create = worker.run(|p| {
            fs::create_dir_all(p.path.with_file_name(""))?;
            p.file = Some(fs::File::create(&p.temp)?);
            Ok::<_, std::io::Error>(())
        });
        create.await.map_err(failed)?.map_err(failed)?;
        Ok(Box::new(DirObject(worker)))
    }
}

/// An object, owned by its thread. However it ends unfinished (abort, a failed write, dropped
/// by the host), dropping it removes the temp file.
struct Part {
    file: Option<fs::File>,
    temp: PathBuf,
    path: PathBuf,
    sha: Sha256,
    size: u64,
}

impl Drop for Part {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.temp); // after `finish`, `temp` is empty: a no-op
    }
}

struct DirObject(Worker<Part>);

#[async_trait]
impl SinkObject for DirObject {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        let job = self.0.run(move |p| {
            p.sha.update(&chunk);
            p.size += chunk.len() as u64;
            p.file.as_mut().map_or(Ok(()), |f| f.write_all(&chunk))
        });
        job.await.map_err(failed)?.map_err(failed)
    }
    async fn finish(self: Box<Self>) -> Result<Receipt, SinkError> {
        let job = self.0.run(|p| {
            p.file.take().map_or(Ok(()), |f| f.sync_all())?;
            fs::rename(&p.temp, &p.path)?;
            p.temp = PathBuf::new();
            let sha = std::mem::take(&mut p.sha).finalize().into();
            Ok::<_, std::io::Error>(Receipt::new(p.path.display().to_string(), p.size, sha))
        });
        job.await.map_err(failed)?.map_err(failed)
    }
    async fn abort(self: Box<Self>) {} // dropping the worker drops the part
}

export_sink!(DirSink);
