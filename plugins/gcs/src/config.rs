//! The `gcs` sink's config: the Go egress's GCP storage fields, as JSON, plus what emulators
//! need (`endpoint`, `anonymous`).
//!
//! Every field is optional so that `{}` creates a factory (the host passes the bucket with each
//! request); such a factory fails `health_check` and `open` naming `bucket`.

use egress_objstore_sink::config::{self as shared, ProxyConfig, RetrySettings, Secret, non_empty};
use egress_objstore_sink::object_store::RetryConfig;
use egress_plugin_api::{SinkError, Value, config, json};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    pub credentials_json: Option<Secret>,
    pub bucket: Option<String>,
    pub proxy: Option<ProxyConfig>,
    pub endpoint: Option<String>,
    pub anonymous: bool,
    pub max_retries: u32,
    pub min_retry_delay_ms: u64,
    pub max_retry_delay_ms: u64,
    pub allow_http: Option<bool>,
}

/// A checked config.
#[derive(Debug, Clone)]
pub struct GcsSettings {
    /// A service-account key (JSON). `None`: application default credentials.
    pub credentials_json: Option<Secret>,
    pub bucket: Option<String>,
    /// The proxy URL, credentials included: a secret.
    pub proxy_url: Option<Secret>,
    /// Normalised: with a scheme, without a trailing slash.
    pub endpoint: Option<String>,
    pub anonymous: bool,
    pub retry: RetryConfig,
    pub allow_http: bool,
}

impl GcsSettings {
    pub fn parse(value: &Value) -> Result<Self, SinkError> {
        let c: GcsConfig = config::parse(value)?;
        let credentials_json = c.credentials_json.filter(|s| !s.is_empty());
        if let Some(json) = &credentials_json {
            check_credentials(json)?;
        }
        let bucket = non_empty(&c.bucket).map(str::to_string);
        if let Some(bucket) = &bucket
            && !bucket
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
        {
            return Err(config::invalid(
                "bucket",
                format!("{bucket:?} is not a valid bucket name"),
            ));
        }
        let endpoint = non_empty(&c.endpoint)
            .map(|e| shared::endpoint("endpoint", e))
            .transpose()?;
        let allow_http = shared::allow_http(c.allow_http, endpoint.as_deref())?;
        let proxy_url = match &c.proxy {
            Some(proxy) => proxy.resolve("proxy")?.map(Secret::new),
            None => None,
        };
        let retry = RetrySettings {
            max_retries: c.max_retries,
            min_retry_delay_ms: c.min_retry_delay_ms,
            max_retry_delay_ms: c.max_retry_delay_ms,
        }
        .resolve()?;
        Ok(GcsSettings {
            credentials_json,
            bucket,
            proxy_url,
            endpoint,
            anonymous: c.anonymous,
            retry,
            allow_http,
        })
    }
}

/// The JSON must be a service-account key: object_store signs its own tokens from one and
/// supports no other kind inline. Messages never quote the JSON (it holds a private key).
fn check_credentials(json: &Secret) -> Result<(), SinkError> {
    let field = "credentials_json";
    let value: Value = serde_json::from_str(json.expose()).map_err(|e| {
        config::invalid(
            field,
            format!("is not JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(config::invalid(field, "is not a JSON object"));
    };
    match object.get("type").and_then(Value::as_str) {
        None | Some("service_account") => {}
        Some(other) => {
            return Err(config::invalid(
                field,
                format!("has type {other:?}; only service_account keys are supported"),
            ));
        }
    }
    for key in ["client_email", "private_key"] {
        if object.get(key).and_then(Value::as_str).is_none() {
            return Err(config::invalid(
                field,
                format!("has no {key}: not a service-account key"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn schema() -> Value {
    shared::object_schema(
        "gcs sink",
        &[
            json!({
                "credentials_json": {
                    "type": "string", "writeOnly": true,
                    "description": "Service-account key, as JSON text. Empty: application default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, or the metadata server)."
                },
                "bucket": { "type": "string", "description": "Bucket. May be left out and given per request." },
                "proxy": shared::proxy_schema(),
                "endpoint": {
                    "type": "string",
                    "description": "Base URL instead of https://storage.googleapis.com (emulators)."
                },
                "anonymous": {
                    "type": "boolean", "default": false,
                    "description": "Send no OAuth token (emulators)."
                },
                "allow_http": {
                    "type": "boolean",
                    "description": "Allow plain http. Default: true iff the endpoint is http://."
                }
            }),
            shared::retry_schema(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: Value) -> Option<String> {
        let e = GcsSettings::parse(&v).unwrap_err();
        assert!(e.is_config(), "{e}");
        e.field().map(str::to_string)
    }

    #[test]
    fn empty_and_full_configs() {
        let s = GcsSettings::parse(&Value::Null).unwrap();
        assert!(s.bucket.is_none() && s.credentials_json.is_none() && !s.anonymous);
        let key = json!({"type": "service_account", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----x", "private_key_id": "1"}).to_string();
        let s = GcsSettings::parse(&json!({
            "credentials_json": key, "bucket": "rec", "endpoint": "http://127.0.0.1:4443",
            "anonymous": true, "proxy": {"url": "http://p:1", "password": "pw", "username": "u"}
        }))
        .unwrap();
        assert!(s.allow_http && s.anonymous);
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("PRIVATE KEY") && !debug.contains("pw"),
            "{debug}"
        );
    }

    #[test]
    fn errors_name_the_field_and_hide_the_key() {
        let e = GcsSettings::parse(&json!({"credentials_json": "{\"private_key\": \"SECRET"}))
            .unwrap_err();
        assert_eq!(e.field(), Some("credentials_json"));
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert_eq!(
            field(json!({"credentials_json": "[]"})).as_deref(),
            Some("credentials_json")
        );
        assert_eq!(
            field(json!({"credentials_json": "{\"type\": \"authorized_user\"}"})).as_deref(),
            Some("credentials_json")
        );
        assert_eq!(field(json!({"bucket": "a/b"})).as_deref(), Some("bucket"));
        assert_eq!(
            field(json!({"endpoint": "ftp://x"})).as_deref(),
            Some("endpoint")
        );
        assert_eq!(
            field(json!({"anonymous": "yes"})).as_deref(),
            Some("anonymous")
        );
        assert_eq!(
            field(json!({"credentials": "{}"})).as_deref(),
            Some("credentials")
        );
        assert_eq!(
            field(json!({"proxy": {"url": "::"}})).as_deref(),
            Some("proxy.url")
        );
    }

    #[test]
    fn schema_marks_secrets() {
        let d = egress_plugin_api::Descriptor::new("gcs", "0").with_config_schema(schema());
        assert_eq!(d.secret_fields(), ["credentials_json"]);
    }
}
