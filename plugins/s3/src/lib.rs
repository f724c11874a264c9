//! `s3`: Amazon S3 and S3-compatible stores (MinIO, AliOSS through its S3 endpoint, …).
//!
//! Objects stream through a multipart upload (see `egress-objstore-sink`): parts of 5 MiB or
//! more (8 MiB when the size is unknown), two in flight, nothing visible before `finish`, which
//! completes the upload, checks the stored size with a `HEAD` and returns the location, size
//! and SHA-256. An object smaller than one part is a single `PUT`. Requests are signed with
//! SigV4 and carry `x-amz-checksum-sha256` unless `checksum: none`.
//!
//! The same source builds compiled into the host (feature `s3` of `egress-host`) and as a dylib
//! plugin (`cargo build -p egress-plugin-s3 --features dylib`). It cannot be a WASM component:
//! object_store needs sockets and a tokio runtime, which a component does not have.
//!
//! # Config
//!
//! The Go egress's S3 storage fields (JSON Schema in [`S3Sink::describe`]); all optional, so
//! the host can activate the plugin empty and pass the bucket with each request.
//!
//! ```yaml
//! access_key: AKIA…            # empty: AWS_* environment, web identity, container or instance role
//! secret: …                    # secret
//! session_token: …             # secret, optional
//! region: eu-west-1            # default: AWS_DEFAULT_REGION / AWS_REGION, else us-east-1
//! endpoint: https://minio.example.com   # S3-compatible stores; bare hosts mean https
//! bucket: recordings
//! force_path_style: false      # <endpoint>/<bucket>/<key> instead of <bucket>.<endpoint>/<key>
//! proxy: { url: http://proxy:3128, username: u, password: p }
//! max_retries: 5               # per request; Go defaults: 5, 100 ms, 5000 ms
//! min_retry_delay_ms: 100
//! max_retry_delay_ms: 5000
//! metadata: { room: demo }     # x-amz-meta-*
//! tagging: "k=v&k2=v2"
//! content_disposition: inline  # the default
//! checksum: sha256             # or none, for stores that reject x-amz-checksum-* headers
//! allow_http: false            # default: true iff the endpoint is http://
//! assume_role_arn: arn:aws:iam::123456789012:role/recorder   # upload as this role
//! assume_role_external_id: …   # if the role's trust policy asks for one
//! sts_endpoint: http://127.0.0.1:5000   # default: the region's STS, else sts.amazonaws.com
//! ```
//!
//! # Assumed roles
//!
//! With `assume_role_arn`, uploads are signed with temporary credentials from STS
//! `AssumeRole`, which is called with the static `access_key`/`secret` (the host passes the
//! server's `s3_assume_role_key` when a request names a role without keys, as the Go egress
//! does). STS is called on the first request, never in `create`; the credentials are cached and
//! replaced five minutes before they expire ([`credentials`]). A refusal (403, `AccessDenied`)
//! is an auth error; STS's 5xx are retried, then retryable ([`sts`]).
//!
//! # Addressing and locations
//!
//! Requests use virtual-hosted URLs (`<bucket>.<host>`) unless `force_path_style`, the bucket
//! has a dot, or the endpoint is an IP address or `localhost`, where path style is the only
//! option. Receipt locations are the Go egress's: `https://<bucket>.s3.amazonaws.com/<key>`
//! (`https://<bucket>.<endpoint host>/<key>` with an endpoint), or with `force_path_style`
//! `<endpoint, default https://s3.amazonaws.com>/<bucket>/<key>`. The region is not part of
//! the location, as in Go.

mod backend;
mod config;
pub mod credentials;
pub mod sts;

use egress_objstore_sink::ObjectStoreSink;
use egress_plugin_api::{
    Capabilities, Descriptor, ObjectSpec, SinkError, SinkFactory, SinkObject, SinkPlugin, Value,
    async_trait, export_sink,
};

pub use config::{AssumeRoleSettings, Checksum, S3Config, S3Settings, parse_tagging};

use backend::S3Backend;

/// The `s3` sink.
pub struct S3Sink {
    inner: ObjectStoreSink<S3Backend>,
}

impl SinkPlugin for S3Sink {
    fn describe() -> Descriptor {
        Descriptor::new("s3", env!("CARGO_PKG_VERSION"))
            .with_capabilities(Capabilities::none().streaming())
            .with_config_schema(config::schema())
    }

    fn validate(config: &Value) -> Result<(), SinkError> {
        S3Settings::parse(config).map(drop)
    }

    /// Pure: parses and checks the config; the runtime and the client start on first use.
    fn create(config: &Value) -> Result<Self, SinkError> {
        let settings = S3Settings::parse(config)?;
        Ok(S3Sink {
            inner: ObjectStoreSink::new(S3Backend { settings }),
        })
    }
}

#[async_trait]
impl SinkFactory for S3Sink {
    async fn health_check(&self) -> Result<(), SinkError> {
        self.inner.health_check().await
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        self.inner.open(spec).await
    }
}

export_sink!(S3Sink);
