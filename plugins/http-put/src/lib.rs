//! `http-put`: the worked example of a third-party sink. It streams each object to an HTTP
//! server with `PUT`, in bounded parts, with an `Authorization` header, per-request timeouts and
//! retries with exponential backoff and full jitter.
//!
//! It lives outside the host and depends only on `egress-plugin-api`. The same source builds:
//!
//! * as an rlib linked into a host binary (registered by [`export_sink!`]);
//! * as a cdylib: `cargo build -p egress-plugin-http-put --features dylib`
//!   (native HTTP: ureq with rustls);
//! * as a WASM component: `cargo build -p egress-plugin-http-put --target wasm32-wasip2`
//!   (HTTP through the host's import, restricted to the config's `allowed_hosts`).
//!
//! # Protocol
//!
//! An object of at most `part_size` bytes is one plain `PUT <url>/<key>`. A larger one is sent
//! as consecutive `PUT`s with `Content-Range: bytes <first>-<last>/*`, the last carrying the
//! total (`bytes <first>-<last>/<total>`); the server makes the object visible only then.
//! Re-sending a range is idempotent, so each part is retried on its own: 5xx, 408, 429,
//! timeouts and connection failures are retried up to `max_attempts`; 401 and 403 are auth
//! errors and other statuses permanent errors, not retried. `abort` after parts were sent is a
//! best-effort `DELETE` of the unfinished upload. Redirects are not followed.
//!
//! # Config
//!
//! ```yaml
//! url: https://uploads.example.com/recordings   # objects go to url/key
//! authorization: Bearer s3cr3t                  # optional; a secret
//! headers: { X-Tenant: acme }                   # optional
//! part_size: 8388608                            # bytes per request (64 KiB..512 MiB)
//! timeout_ms: 30000                             # per request
//! max_attempts: 5
//! backoff_initial_ms: 200
//! backoff_max_ms: 10000
//! ```

mod config;
mod error;
mod retry;
mod transport;
mod upload;

use egress_plugin_api::blocking::Worker;
use egress_plugin_api::{
    Bytes, Capabilities, Descriptor, ObjectSpec, Receipt, SinkError, SinkFactory, SinkObject,
    SinkPlugin, Value, async_trait, export_sink,
};

pub use config::HttpPutConfig;
use error::HttpPutError;
use transport::{DefaultTransport, Request, Transport};
use upload::{Target, Uploader};

/// The `http-put` sink.
pub struct HttpPut {
    config: HttpPutConfig,
    transport: DefaultTransport,
}

impl SinkPlugin for HttpPut {
    fn describe() -> Descriptor {
        Descriptor::new("http-put", env!("CARGO_PKG_VERSION"))
            .with_capabilities(Capabilities::none().streaming())
            .with_config_schema(config::schema())
    }

    fn validate(config: &Value) -> Result<(), SinkError> {
        HttpPutConfig::parse(config).map(drop)
    }

    fn create(config: &Value) -> Result<Self, SinkError> {
        let config = HttpPutConfig::parse(config)?;
        let transport = DefaultTransport::new(config.timeout());
        Ok(HttpPut { config, transport })
    }
}

#[async_trait]
impl SinkFactory for HttpPut {
    /// `HEAD` the base URL: reachable, and our credentials are not refused. Any other answer
    /// (even 404 or 405) proves both.
    async fn health_check(&self) -> Result<(), SinkError> {
        let mut transport = self.transport.clone();
        let url = self.config.url.clone();
        let headers = self.config.base_headers();
        let timeout = self.config.timeout();
        let worker = Worker::spawn("egress-http-put-health", ()).map_err(HttpPutError::Thread)?;
        let result = worker
            .run(move |_| {
                let header_refs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                transport.send(Request {
                    method: "HEAD",
                    url: &url,
                    headers: &header_refs,
                    body: &[],
                    timeout,
                })
            })
            .await
            .map_err(|_| HttpPutError::WorkerGone)?;
        let error = |status, source| -> SinkError {
            match source {
                Some(source) => HttpPutError::Transport {
                    method: "HEAD",
                    url: self.config.url.clone(),
                    range: String::new(),
                    attempts: 1,
                    source,
                },
                None => HttpPutError::Status {
                    method: "HEAD",
                    url: self.config.url.clone(),
                    range: String::new(),
                    status,
                    attempts: 1,
                    detail: String::new(),
                },
            }
            .into()
        };
        match result {
            Ok(r) if r.status == 401 || r.status == 403 || r.status >= 500 => {
                Err(error(r.status, None))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(error(0, Some(e))),
        }
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        // Refuses keys that could leave the base URL (`..`, absolute) as permanent errors.
        let url = self.config.object_url(&spec.key)?;
        let mut headers = self.config.base_headers();
        if !spec.content_type.is_empty() {
            headers.push(("Content-Type".into(), spec.content_type.clone()));
        }
        let target = Target {
            url,
            headers,
            timeout: self.config.timeout(),
            retry: self.config.retry(),
            part_size: self.config.part_size as usize,
            expected_size: spec.expected_size,
        };
        let uploader = Uploader::new(self.transport.clone(), target);
        let worker = Worker::spawn("egress-http-put", uploader).map_err(HttpPutError::Thread)?;
        Ok(Box::new(HttpPutObject {
            worker,
            done: false,
        }))
    }
}

/// One upload. The uploader lives on a worker thread: HTTP calls block, the host's tasks must
/// not.
struct HttpPutObject {
    worker: Worker<Uploader<DefaultTransport>>,
    done: bool,
}

#[async_trait]
impl SinkObject for HttpPutObject {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.worker
            .run(move |u| u.write(&chunk))
            .await
            .map_err(|_| HttpPutError::WorkerGone)?
            .map_err(SinkError::from)
    }

    async fn finish(mut self: Box<Self>) -> Result<Receipt, SinkError> {
        self.done = true;
        self.worker
            .run(|u| {
                let result = u.finish();
                if result.is_err() {
                    u.abort();
                }
                result
            })
            .await
            .map_err(|_| HttpPutError::WorkerGone)?
            .map_err(SinkError::from)
    }

    async fn abort(mut self: Box<Self>) {
        self.done = true;
        let _ = self.worker.run(|u| u.abort()).await;
    }
}

impl Drop for HttpPutObject {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled mid-object: discard the partial upload, after queued writes.
            self.worker.submit(|u| u.abort());
        }
    }
}

export_sink!(HttpPut);
