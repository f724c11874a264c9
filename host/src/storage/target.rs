//! Where an output goes: the Go egress's storage settings resolved to a sink plugin and the
//! JSON config that plugin gets.
//!
//! Resolution order (reference §2.7, Go's `getStorageConfig`): the output's own upload settings
//! (v1 `EncodedFileOutput.output`, v2 `Output.storage`), then the request's (`v2
//! StartEgressRequest.storage`), then the service's `storage:`; none of them means local files.
//! A per-request S3 upload inherits the retry settings of the service's S3 config, as in Go.
//!
//! Each provider maps to one plugin name: S3 and AliOSS (through its S3-compatible endpoint) to
//! `s3`, GCP to `gcs`, Azure to `azure`, local files to `file`. The plugin's own `plugins[i].config`
//! is the base; the fields resolved here override it (see [`StorageTarget::plugin_config`]), so
//! an operator can set what the Go config has no key for (a GCS emulator endpoint, S3 checksum
//! mode) once, in `plugins:`.

use std::fmt;

use serde_json::{Map, Value, json};

use egress_proto::livekit::{self, encoded_file_output, output, storage_config};
use egress_proto::rpc::{StartEgressRequest, start_egress_request as rpc_req};

use crate::config::{
    AliOssConfig, AzureConfig, GcpConfig, ProxyConfig, S3Config, ServiceConfig, StorageConfig,
};

/// A storage provider, as the Go egress names them in errors (`S3 upload failed: …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    S3,
    Gcp,
    Azure,
    AliOss,
    Local,
}

impl Provider {
    /// The name in user-facing errors.
    pub fn label(self) -> &'static str {
        match self {
            Provider::S3 => "S3",
            Provider::Gcp => "GCP",
            Provider::Azure => "Azure",
            Provider::AliOss => "AliOSS",
            Provider::Local => "Local",
        }
    }

    /// The sink plugin that serves this provider.
    pub fn plugin_name(self) -> &'static str {
        match self {
            Provider::S3 | Provider::AliOss => "s3",
            Provider::Gcp => "gcs",
            Provider::Azure => "azure",
            Provider::Local => "file",
        }
    }
}

/// One resolved destination: which plugin, with which settings, under which key prefix.
#[derive(Clone, PartialEq)]
pub struct StorageTarget {
    pub provider: Provider,
    /// `storage.prefix`, prepended to every key.
    pub prefix: String,
    /// Settings from the Go-format storage config, as the plugin's JSON (holds secrets: never
    /// log it; `Debug` prints only the keys).
    settings: Map<String, Value>,
    /// A feature the request needs that this service has turned off (Go's
    /// `ErrFeatureDisabled`): configuring the target fails with `<feature> is disabled for
    /// this account`.
    pub disabled_feature: Option<&'static str>,
}

impl fmt::Debug for StorageTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageTarget")
            .field("provider", &self.provider)
            .field("prefix", &self.prefix)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("disabled_feature", &self.disabled_feature)
            .finish()
    }
}

impl StorageTarget {
    pub fn local() -> StorageTarget {
        StorageTarget {
            provider: Provider::Local,
            prefix: String::new(),
            settings: Map::new(),
            disabled_feature: None,
        }
    }

    pub fn is_local(&self) -> bool {
        self.provider == Provider::Local
    }

    /// Whether the Go storage config set its own endpoint: Go's `custom_endpoint` metric label,
    /// which only S3 and AliOSS have (an endpoint set in the plugin's own `plugins:` config is
    /// not one: Go has no such key).
    pub fn custom_endpoint(&self) -> bool {
        matches!(self.provider, Provider::S3 | Provider::AliOss)
            && self
                .settings
                .get("endpoint")
                .and_then(Value::as_str)
                .is_some_and(|e| !e.is_empty())
    }

    /// The config to create the sink with: `base` (the plugin's `plugins[i].config`) overlaid
    /// with the resolved settings. When the plugin serving the name is not ours (an operator
    /// bound, say, `file` to a third-party plugin with `name: file`), `ours` is false and the
    /// plugin gets only its own config: our field names mean nothing to it.
    pub fn plugin_config(&self, base: &Value, ours: bool) -> Value {
        let mut out = match base {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        if ours {
            for (k, v) in &self.settings {
                out.insert(k.clone(), v.clone());
            }
        }
        Value::Object(out)
    }

    /// The object key for a storage path: prefix + path, `/`-separated, with no leading `/`, no
    /// empty, `.` or `..` segments (Go's `path.Join` keeps absolute paths; object stores and the
    /// file sink want relative keys, and `..` must never climb out of a bucket or directory).
    pub fn key(&self, storage_path: &str) -> String {
        object_key(&self.prefix, storage_path)
    }
}

/// `prefix/storage_path` as an object key: `/`-separated, with no leading `/` and no empty, `.`
/// or `..` segments.
pub fn object_key(prefix: &str, storage_path: &str) -> String {
    prefix
        .split('/')
        .chain(storage_path.split('/'))
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect::<Vec<_>>()
        .join("/")
}

/// The primary destination of a file output and the service's backup, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub primary: StorageTarget,
    pub backup: Option<StorageTarget>,
}

/// Resolves the storage of the request's (single) file output.
pub fn for_file_output(config: &ServiceConfig, request: &StartEgressRequest) -> Targets {
    let primary = request_storage(config, request)
        .or_else(|| config.storage.as_ref().and_then(from_service))
        .unwrap_or_else(StorageTarget::local);
    let backup = config.backup.as_ref().and_then(from_service);
    Targets { primary, backup }
}

/// Resolves the storage of the request's segments output (Go's `getStorageConfig` for it): its
/// own upload (v1) or `Output.storage` (v2), then the v2 request's `storage`, then the
/// service's; plus the backup.
#[allow(deprecated)]
pub fn for_segments_output(config: &ServiceConfig, request: &StartEgressRequest) -> Targets {
    use livekit::segmented_file_output::Output as Up;
    let own = |s: &livekit::SegmentedFileOutput| {
        s.output.as_ref().map(|o| match o {
            Up::S3(s) => s3_request(s, config),
            Up::Gcp(g) => gcp_request(g),
            Up::Azure(a) => azure_request(a),
            Up::AliOss(a) => alioss_request(a),
        })
    };
    let v1 = |list: &[livekit::SegmentedFileOutput],
              single: Option<&livekit::SegmentedFileOutput>| {
        list.first().or(single).and_then(own)
    };
    let requested = match request.request.as_ref() {
        Some(rpc_req::Request::RoomComposite(r)) => v1(
            &r.segment_outputs,
            match &r.output {
                Some(livekit::room_composite_egress_request::Output::Segments(s)) => Some(s),
                _ => None,
            },
        ),
        Some(rpc_req::Request::Web(r)) => v1(
            &r.segment_outputs,
            match &r.output {
                Some(livekit::web_egress_request::Output::Segments(s)) => Some(s),
                _ => None,
            },
        ),
        Some(rpc_req::Request::TrackComposite(r)) => v1(
            &r.segment_outputs,
            match &r.output {
                Some(livekit::track_composite_egress_request::Output::Segments(s)) => Some(s),
                _ => None,
            },
        ),
        Some(rpc_req::Request::Participant(r)) => v1(&r.segment_outputs, None),
        Some(rpc_req::Request::Egress(r)) => {
            v2_output_storage(r, config, |c| matches!(c, output::Config::Segments(_)), 0)
        }
        _ => None,
    };
    with_fallbacks(config, requested)
}

/// Resolves the storage of the request's `nth` image output (counted from 0 among its image
/// outputs, in the request's order), as [`for_segments_output`].
pub fn for_image_output(
    config: &ServiceConfig,
    request: &StartEgressRequest,
    nth: usize,
) -> Targets {
    use livekit::image_output::Output as Up;
    let own = |i: &livekit::ImageOutput| {
        i.output.as_ref().map(|o| match o {
            Up::S3(s) => s3_request(s, config),
            Up::Gcp(g) => gcp_request(g),
            Up::Azure(a) => azure_request(a),
            Up::AliOss(a) => alioss_request(a),
        })
    };
    let requested = match request.request.as_ref() {
        Some(rpc_req::Request::RoomComposite(r)) => r.image_outputs.get(nth).and_then(own),
        Some(rpc_req::Request::Web(r)) => r.image_outputs.get(nth).and_then(own),
        Some(rpc_req::Request::TrackComposite(r)) => r.image_outputs.get(nth).and_then(own),
        Some(rpc_req::Request::Participant(r)) => r.image_outputs.get(nth).and_then(own),
        Some(rpc_req::Request::Egress(r)) => {
            v2_output_storage(r, config, |c| matches!(c, output::Config::Images(_)), nth)
        }
        _ => None,
    };
    with_fallbacks(config, requested)
}

/// The v2 request's `nth` output of a kind: its own storage, else the request's.
fn v2_output_storage(
    r: &livekit::StartEgressRequest,
    config: &ServiceConfig,
    kind: impl Fn(&output::Config) -> bool,
    nth: usize,
) -> Option<StorageTarget> {
    let o = r
        .outputs
        .iter()
        .filter(|o| o.config.as_ref().is_some_and(&kind))
        .nth(nth);
    o.and_then(|o| o.storage.as_ref())
        .or(r.storage.as_ref())
        .and_then(|s| from_v2(s, config))
}

fn with_fallbacks(config: &ServiceConfig, requested: Option<StorageTarget>) -> Targets {
    let primary = requested
        .or_else(|| config.storage.as_ref().and_then(from_service))
        .unwrap_or_else(StorageTarget::local);
    let backup = config.backup.as_ref().and_then(from_service);
    Targets { primary, backup }
}

/// The upload settings a request gives its file output, if any.
#[allow(deprecated)]
fn request_storage(config: &ServiceConfig, request: &StartEgressRequest) -> Option<StorageTarget> {
    let v1 = |files: &[livekit::EncodedFileOutput], single: Option<&livekit::EncodedFileOutput>| {
        files
            .first()
            .or(single)
            .and_then(|f| f.output.as_ref())
            .map(|o| from_v1(o, config))
    };
    match request.request.as_ref()? {
        rpc_req::Request::RoomComposite(r) => {
            let single = match &r.output {
                Some(livekit::room_composite_egress_request::Output::File(f)) => Some(f),
                _ => None,
            };
            v1(&r.file_outputs, single)
        }
        rpc_req::Request::Web(r) => {
            let single = match &r.output {
                Some(livekit::web_egress_request::Output::File(f)) => Some(f),
                _ => None,
            };
            v1(&r.file_outputs, single)
        }
        rpc_req::Request::Participant(r) => v1(&r.file_outputs, None),
        rpc_req::Request::TrackComposite(r) => {
            let single = match &r.output {
                Some(livekit::track_composite_egress_request::Output::File(f)) => Some(f),
                _ => None,
            };
            v1(&r.file_outputs, single)
        }
        rpc_req::Request::Track(r) => match &r.output {
            Some(livekit::track_egress_request::Output::File(f)) => {
                f.output.as_ref().map(|o| match o {
                    livekit::direct_file_output::Output::S3(s) => s3_request(s, config),
                    livekit::direct_file_output::Output::Gcp(g) => gcp_request(g),
                    livekit::direct_file_output::Output::Azure(a) => azure_request(a),
                    livekit::direct_file_output::Output::AliOss(a) => alioss_request(a),
                })
            }
            _ => None,
        },
        rpc_req::Request::Egress(r) => {
            let file_output = r
                .outputs
                .iter()
                .find(|o| matches!(o.config, Some(output::Config::File(_))));
            file_output
                .and_then(|o| o.storage.as_ref())
                .or(r.storage.as_ref())
                .and_then(|s| from_v2(s, config))
        }
        _ => None,
    }
}

fn from_v1(o: &encoded_file_output::Output, config: &ServiceConfig) -> StorageTarget {
    match o {
        encoded_file_output::Output::S3(s) => s3_request(s, config),
        encoded_file_output::Output::Gcp(g) => gcp_request(g),
        encoded_file_output::Output::Azure(a) => azure_request(a),
        encoded_file_output::Output::AliOss(a) => alioss_request(a),
    }
}

fn from_v2(s: &livekit::StorageConfig, config: &ServiceConfig) -> Option<StorageTarget> {
    Some(match s.provider.as_ref()? {
        storage_config::Provider::S3(s) => s3_request(s, config),
        storage_config::Provider::Gcp(g) => gcp_request(g),
        storage_config::Provider::Azure(a) => azure_request(a),
        storage_config::Provider::AliOss(a) => alioss_request(a),
    })
}

/// A service-level `storage:`/`backup:` section; `None` when it names no provider.
pub fn from_service(s: &StorageConfig) -> Option<StorageTarget> {
    let mut t = if let Some(s3) = &s.s3 {
        s3_service(s3)
    } else if let Some(a) = &s.azure {
        azure_service(a)
    } else if let Some(g) = &s.gcp {
        gcp_service(g)
    } else if let Some(a) = &s.alioss {
        alioss_service(a)
    } else {
        return None;
    };
    t.prefix = s.prefix.trim_matches('/').to_owned();
    Some(t)
}

/// Builds a settings map, leaving out empty strings, `false` and empty objects so that the
/// plugin's defaults (and its `plugins:` config) apply to everything the storage config leaves
/// unset.
struct Settings(Map<String, Value>);

impl Settings {
    fn new() -> Self {
        Settings(Map::new())
    }
    fn str(mut self, key: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(key.into(), Value::String(v.into()));
        }
        self
    }
    fn flag(mut self, key: &str, v: bool) -> Self {
        if v {
            self.0.insert(key.into(), Value::Bool(true));
        }
        self
    }
    fn value(mut self, key: &str, v: Value) -> Self {
        let empty = match &v {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            _ => false,
        };
        if !empty {
            self.0.insert(key.into(), v);
        }
        self
    }
    fn target(self, provider: Provider) -> StorageTarget {
        StorageTarget {
            provider,
            prefix: String::new(),
            settings: self.0,
            disabled_feature: None,
        }
    }
}

fn proxy_json(url: &str, username: &str, password: &str) -> Value {
    if url.is_empty() {
        return Value::Null;
    }
    let mut m = Map::new();
    m.insert("url".into(), url.into());
    if !username.is_empty() {
        m.insert("username".into(), username.into());
    }
    if !password.is_empty() {
        m.insert("password".into(), password.into());
    }
    Value::Object(m)
}

fn service_proxy(p: &Option<ProxyConfig>) -> Value {
    p.as_ref().map_or(Value::Null, |p| {
        proxy_json(&p.url, &p.username, p.password.expose())
    })
}

fn request_proxy(p: &Option<livekit::ProxyConfig>) -> Value {
    p.as_ref().map_or(Value::Null, |p| {
        proxy_json(&p.url, &p.username, &p.password)
    })
}

fn retries(s: Settings, s3: Option<&S3Config>) -> Settings {
    let Some(s3) = s3 else { return s };
    let mut s = s;
    if s3.max_retries > 0 {
        s.0.insert("max_retries".into(), json!(s3.max_retries));
    }
    if !s3.min_retry_delay.is_zero() {
        s.0.insert(
            "min_retry_delay_ms".into(),
            json!(s3.min_retry_delay.as_millis() as u64),
        );
    }
    if !s3.max_retry_delay.is_zero() {
        s.0.insert(
            "max_retry_delay_ms".into(),
            json!(s3.max_retry_delay.as_millis() as u64),
        );
    }
    s
}

fn s3_service(c: &S3Config) -> StorageTarget {
    let s = Settings::new()
        .str("access_key", c.access_key.expose())
        .str("secret", c.secret.expose())
        .str("session_token", c.session_token.expose())
        .str("assume_role_arn", &c.assume_role_arn)
        .str("assume_role_external_id", &c.assume_role_external_id)
        .str("region", &c.region)
        .str("endpoint", &c.endpoint)
        .str("bucket", &c.bucket)
        .flag("force_path_style", c.force_path_style)
        .value("proxy", service_proxy(&c.proxy_config))
        .value("metadata", json!(c.metadata))
        .str("tagging", &c.tagging)
        .str("content_disposition", &c.content_disposition);
    retries(s, Some(c)).target(Provider::S3)
}

/// Go's `getStorageConfig` for an S3 upload in a request: the server's retry settings, and
/// its assume-role settings (a request without a role gets the server's
/// `s3_assume_role_arn`/`s3_assume_role_external_id`; a role without keys is assumed with the
/// server's `s3_assume_role_key`/`secret`, and without those the request is refused).
fn s3_request(r: &livekit::S3Upload, config: &ServiceConfig) -> StorageTarget {
    let metadata: Map<String, Value> = r
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let (role_arn, external_id) = if r.assume_role_arn.is_empty() {
        (
            config.s3_assume_role_arn.as_str(),
            config.s3_assume_role_external_id.as_str(),
        )
    } else {
        (
            r.assume_role_arn.as_str(),
            r.assume_role_external_id.as_str(),
        )
    };
    // Go drops an external id that comes without a role (it is only read with one).
    let external_id = if role_arn.is_empty() { "" } else { external_id };
    let mut disabled_feature = None;
    let (access_key, secret) = if !role_arn.is_empty() && r.access_key.is_empty() {
        if config.s3_assume_role_key.expose().is_empty() {
            disabled_feature = Some("S3 upload using AssumeRole");
        }
        (
            config.s3_assume_role_key.expose(),
            config.s3_assume_role_secret.expose(),
        )
    } else {
        (r.access_key.as_str(), r.secret.as_str())
    };
    let s = Settings::new()
        .str("access_key", access_key)
        .str("secret", secret)
        .str("session_token", &r.session_token)
        .str("assume_role_arn", role_arn)
        .str("assume_role_external_id", external_id)
        .str("region", &r.region)
        .str("endpoint", &r.endpoint)
        .str("bucket", &r.bucket)
        .flag("force_path_style", r.force_path_style)
        .value("proxy", request_proxy(&r.proxy))
        .value("metadata", Value::Object(metadata))
        .str("tagging", &r.tagging)
        .str("content_disposition", &r.content_disposition);
    let server_s3 = config.storage.as_ref().and_then(|s| s.s3.as_ref());
    let mut target = retries(s, server_s3).target(Provider::S3);
    target.disabled_feature = disabled_feature;
    target
}

fn gcp_service(c: &GcpConfig) -> StorageTarget {
    // `GOOGLE_APPLICATION_CREDENTIALS` names a file; read it now (the handler runs with the
    // service's environment, so this is the same file the operator pointed at).
    let from_file;
    let credentials = if c.credentials_json.expose().is_empty() {
        from_file = c
            .credentials_file
            .as_ref()
            .and_then(|p| match std::fs::read_to_string(p) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot read GOOGLE_APPLICATION_CREDENTIALS");
                    None
                }
            })
            .unwrap_or_default();
        from_file.as_str()
    } else {
        c.credentials_json.expose()
    };
    Settings::new()
        .str("credentials_json", credentials)
        .str("bucket", &c.bucket)
        .value("proxy", service_proxy(&c.proxy_config))
        .target(Provider::Gcp)
}

fn gcp_request(r: &livekit::GcpUpload) -> StorageTarget {
    Settings::new()
        .str("credentials_json", &r.credentials)
        .str("bucket", &r.bucket)
        .value("proxy", request_proxy(&r.proxy))
        .target(Provider::Gcp)
}

fn azure_service(c: &AzureConfig) -> StorageTarget {
    Settings::new()
        .str("account_name", &c.account_name)
        .str("account_key", c.account_key.expose())
        .str("container_name", &c.container_name)
        .target(Provider::Azure)
}

fn azure_request(r: &livekit::AzureBlobUpload) -> StorageTarget {
    Settings::new()
        .str("account_name", &r.account_name)
        .str("account_key", &r.account_key)
        .str("container_name", &r.container_name)
        .target(Provider::Azure)
}

/// AliOSS through its S3-compatible API: virtual-hosted addressing on the OSS endpoint, with
/// the region taken from the endpoint's host (`oss-cn-hangzhou.aliyuncs.com` → `oss-cn-hangzhou`),
/// since Go ignores the request's region for AliOSS.
fn alioss(access_key: &str, secret: &str, endpoint: &str, bucket: &str) -> StorageTarget {
    let endpoint = if endpoint.is_empty() || endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    let region = host.split('.').next().unwrap_or("");
    Settings::new()
        .str("access_key", access_key)
        .str("secret", secret)
        .str("endpoint", &endpoint)
        .str("region", region)
        .str("bucket", bucket)
        .target(Provider::AliOss)
}

fn alioss_service(c: &AliOssConfig) -> StorageTarget {
    alioss(
        c.access_key.expose(),
        c.secret.expose(),
        &c.endpoint,
        &c.bucket,
    )
}

fn alioss_request(r: &livekit::AliOssUpload) -> StorageTarget {
    alioss(&r.access_key, &r.secret, &r.endpoint, &r.bucket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmptyEnv, Secret, parse};

    fn base_config() -> ServiceConfig {
        let yaml = "api_key: devkey\napi_secret: secret\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\n";
        parse(yaml, &EmptyEnv).unwrap().config
    }

    fn service_with_s3() -> ServiceConfig {
        let mut c = base_config();
        c.storage = Some(StorageConfig {
            prefix: "/rec/".into(),
            s3: Some(S3Config {
                access_key: Secret::new("AK"),
                secret: Secret::new("SK"),
                bucket: "svc-bucket".into(),
                region: "eu-west-1".into(),
                max_retries: 7,
                min_retry_delay: std::time::Duration::from_millis(100),
                max_retry_delay: std::time::Duration::from_secs(5),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    fn web(output: Option<encoded_file_output::Output>) -> StartEgressRequest {
        StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(rpc_req::Request::Web(livekit::WebEgressRequest {
                url: "https://example.com".into(),
                file_outputs: vec![livekit::EncodedFileOutput {
                    filepath: "a.mp4".into(),
                    output,
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn service_storage_applies_with_prefix_and_retries() {
        let t = for_file_output(&service_with_s3(), &web(None));
        assert_eq!(t.primary.provider, Provider::S3);
        assert_eq!(t.primary.key("/x/../y.mp4"), "rec/x/y.mp4");
        let cfg = t.primary.plugin_config(&Value::Null, true);
        assert_eq!(cfg["bucket"], "svc-bucket");
        assert_eq!(cfg["max_retries"], 7);
        assert_eq!(cfg["max_retry_delay_ms"], 5000);
        assert!(
            cfg.get("endpoint").is_none(),
            "empty fields are left to the plugin: {cfg}"
        );
        assert!(!t.primary.custom_endpoint());
        assert!(t.backup.is_none());
        assert!(
            !format!("{t:?}").contains("SK"),
            "Debug must not print secrets"
        );
    }

    #[test]
    fn request_storage_wins_and_inherits_server_retries() {
        let out = encoded_file_output::Output::S3(livekit::S3Upload {
            bucket: "req-bucket".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            force_path_style: true,
            ..Default::default()
        });
        let t = for_file_output(&service_with_s3(), &web(Some(out)));
        assert!(
            t.primary.custom_endpoint(),
            "Go labels uploads to a request's own S3 endpoint"
        );
        let cfg = t
            .primary
            .plugin_config(&json!({"checksum": "none", "bucket": "base"}), true);
        assert_eq!(cfg["bucket"], "req-bucket");
        assert_eq!(cfg["checksum"], "none", "the plugins: config is the base");
        assert_eq!(cfg["force_path_style"], true);
        assert_eq!(cfg["max_retries"], 7);
        assert_eq!(
            t.primary.prefix, "",
            "a request's own upload has no service prefix"
        );
    }

    fn s3_out(upload: livekit::S3Upload) -> StartEgressRequest {
        web(Some(encoded_file_output::Output::S3(upload)))
    }

    #[test]
    fn request_without_role_inherits_the_server_role_and_keys() {
        let mut c = service_with_s3();
        c.s3_assume_role_arn = "arn:aws:iam::1:role/server".into();
        c.s3_assume_role_external_id = "server-ext".into();
        c.s3_assume_role_key = Secret::new("ROLE-AK");
        c.s3_assume_role_secret = Secret::new("ROLE-SK");
        let t = for_file_output(
            &c,
            &s3_out(livekit::S3Upload {
                bucket: "b".into(),
                ..Default::default()
            }),
        );
        assert_eq!(t.primary.disabled_feature, None);
        let cfg = t.primary.plugin_config(&Value::Null, true);
        assert_eq!(cfg["assume_role_arn"], "arn:aws:iam::1:role/server");
        assert_eq!(cfg["assume_role_external_id"], "server-ext");
        assert_eq!(
            (&cfg["access_key"], &cfg["secret"]),
            (&json!("ROLE-AK"), &json!("ROLE-SK"))
        );

        // The request's own role and keys win; its keys assume the server's role when it
        // names none (as in Go).
        let own = livekit::S3Upload {
            bucket: "b".into(),
            access_key: "REQ-AK".into(),
            secret: "REQ-SK".into(),
            ..Default::default()
        };
        let cfg = for_file_output(&c, &s3_out(own.clone()))
            .primary
            .plugin_config(&Value::Null, true);
        assert_eq!(
            (&cfg["access_key"], &cfg["assume_role_arn"]),
            (&json!("REQ-AK"), &json!("arn:aws:iam::1:role/server"))
        );
        let own_role = livekit::S3Upload {
            assume_role_arn: "arn:aws:iam::2:role/req".into(),
            ..own
        };
        let cfg = for_file_output(&c, &s3_out(own_role))
            .primary
            .plugin_config(&Value::Null, true);
        assert_eq!(cfg["assume_role_arn"], "arn:aws:iam::2:role/req");
        assert!(
            cfg.get("assume_role_external_id").is_none(),
            "the server's id goes with the server's role: {cfg}"
        );
        assert_eq!(cfg["access_key"], "REQ-AK");
    }

    #[test]
    fn role_without_keys_needs_the_server_assume_role_key() {
        let c = service_with_s3();
        let upload = livekit::S3Upload {
            bucket: "b".into(),
            assume_role_arn: "arn:aws:iam::1:role/r".into(),
            ..Default::default()
        };
        let t = for_file_output(&c, &s3_out(upload.clone()));
        assert_eq!(
            t.primary.disabled_feature,
            Some("S3 upload using AssumeRole")
        );
        // StartEgress is answered with Go's error (PermissionDenied, 403).
        let registry = crate::plugins::PluginRegistry::load(None).expect("built-in plugins");
        let e = crate::storage::check(&c, &s3_out(upload.clone()), &registry).unwrap_err();
        assert_eq!(e.code, crate::rpc::Code::PermissionDenied);
        assert_eq!(
            e.message,
            "S3 upload using AssumeRole is disabled for this account"
        );

        // No role anywhere: plain keys, nothing disabled, a stray external id dropped.
        let plain = livekit::S3Upload {
            assume_role_external_id: "x".into(),
            ..Default::default()
        };
        let t = for_file_output(&c, &s3_out(plain));
        assert_eq!(t.primary.disabled_feature, None);
        assert!(
            t.primary
                .plugin_config(&Value::Null, true)
                .get("assume_role_external_id")
                .is_none()
        );

        let mut c = c;
        c.s3_assume_role_key = Secret::new("ROLE-AK");
        c.s3_assume_role_secret = Secret::new("ROLE-SK");
        let t = for_file_output(&c, &s3_out(upload));
        assert_eq!(t.primary.disabled_feature, None);
        let cfg = t.primary.plugin_config(&Value::Null, true);
        assert_eq!(
            (&cfg["access_key"], &cfg["secret"]),
            (&json!("ROLE-AK"), &json!("ROLE-SK"))
        );
        assert!(!format!("{t:?}").contains("ROLE-SK"));
    }

    #[test]
    fn local_without_storage_and_backup_resolved() {
        let mut c = base_config();
        c.backup = Some(StorageConfig {
            azure: Some(AzureConfig {
                account_name: "acct".into(),
                container_name: "c".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let t = for_file_output(&c, &web(None));
        assert!(t.primary.is_local());
        let b = t.backup.expect("backup");
        assert_eq!(
            (b.provider, b.provider.plugin_name()),
            (Provider::Azure, "azure")
        );
        // A plugin that is not ours gets only its own config.
        assert_eq!(
            b.plugin_config(&json!({"url": "x"}), false),
            json!({"url": "x"})
        );
    }

    #[test]
    fn v2_output_storage_then_request_storage() {
        let gcp = livekit::StorageConfig {
            provider: Some(storage_config::Provider::Gcp(livekit::GcpUpload {
                bucket: "g".into(),
                ..Default::default()
            })),
        };
        let req = StartEgressRequest {
            request: Some(rpc_req::Request::Egress(livekit::StartEgressRequest {
                outputs: vec![livekit::Output {
                    config: Some(output::Config::File(livekit::FileOutput::default())),
                    storage: None,
                }],
                storage: Some(gcp),
                ..Default::default()
            })),
            ..Default::default()
        };
        let t = for_file_output(&base_config(), &req);
        assert_eq!(t.primary.provider, Provider::Gcp);
        assert_eq!(t.primary.plugin_config(&Value::Null, true)["bucket"], "g");
    }

    #[test]
    fn alioss_goes_through_s3_with_region_from_endpoint() {
        let t = alioss("a", "s", "oss-cn-hangzhou.aliyuncs.com", "b");
        let cfg = t.plugin_config(&Value::Null, true);
        assert_eq!(t.provider.plugin_name(), "s3");
        assert_eq!(cfg["endpoint"], "https://oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(cfg["region"], "oss-cn-hangzhou");
    }
}
