//! The `azure` sink's config: the Go egress's Azure storage fields, as JSON, plus an endpoint
//! override for Azurite and sovereign clouds.
//!
//! Every field is optional so that `{}` creates a factory (the host passes the container with
//! each request); such a factory fails `health_check` and `open` naming `container_name`.

use base64::Engine;
use egress_objstore_sink::config::{self as shared, RetrySettings, Secret, non_empty};
use egress_objstore_sink::object_store::RetryConfig;
use egress_plugin_api::{SinkError, Value, config, json};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    pub account_name: Option<String>,
    pub account_key: Option<Secret>,
    pub container_name: Option<String>,
    pub endpoint: Option<String>,
    pub max_retries: u32,
    pub min_retry_delay_ms: u64,
    pub max_retry_delay_ms: u64,
    pub allow_http: Option<bool>,
}

/// A checked config.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub account_name: Option<String>,
    /// `None`: object_store's own credential chain (managed identity, workload identity, CLI).
    pub account_key: Option<Secret>,
    /// Without surrounding slashes (Go trims them too).
    pub container_name: Option<String>,
    /// Normalised: with a scheme, without a trailing slash. For Azurite it includes the
    /// account: `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    pub retry: RetryConfig,
    pub allow_http: bool,
}

impl AzureSettings {
    pub fn parse(value: &Value) -> Result<Self, SinkError> {
        let c: AzureConfig = config::parse(value)?;
        let account_name = non_empty(&c.account_name).map(str::to_string);
        if let Some(name) = &account_name
            && !name.chars().all(|ch| ch.is_ascii_alphanumeric())
        {
            return Err(config::invalid(
                "account_name",
                "must be letters and digits only",
            ));
        }
        let account_key = c.account_key.filter(|k| !k.is_empty());
        if let Some(key) = &account_key {
            // object_store decodes it on first use; say so now, without echoing the key.
            base64::engine::general_purpose::STANDARD
                .decode(key.expose())
                .map_err(|_| config::invalid("account_key", "is not valid base64"))?;
        }
        let container_name = non_empty(&c.container_name)
            .map(|n| n.trim_matches('/').to_string())
            .filter(|n| !n.is_empty());
        if let Some(name) = &container_name
            && (name.contains('/')
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '$'))
        {
            return Err(config::invalid(
                "container_name",
                format!("{name:?} is not a valid container name"),
            ));
        }
        let endpoint = non_empty(&c.endpoint)
            .map(|e| shared::endpoint("endpoint", e))
            .transpose()?;
        let allow_http = shared::allow_http(c.allow_http, endpoint.as_deref())?;
        let retry = RetrySettings {
            max_retries: c.max_retries,
            min_retry_delay_ms: c.min_retry_delay_ms,
            max_retry_delay_ms: c.max_retry_delay_ms,
        }
        .resolve()?;
        Ok(AzureSettings {
            account_name,
            account_key,
            container_name,
            endpoint,
            retry,
            allow_http,
        })
    }
}

pub(crate) fn schema() -> Value {
    shared::object_schema(
        "azure sink",
        &[
            json!({
                "account_name": { "type": "string", "description": "Storage account." },
                "account_key": {
                    "type": "string", "writeOnly": true,
                    "description": "Shared key (base64). Empty: managed or workload identity, or the Azure CLI."
                },
                "container_name": {
                    "type": "string",
                    "description": "Container. May be left out and given per request."
                },
                "endpoint": {
                    "type": "string",
                    "description": "Blob service URL. Default https://<account>.blob.core.windows.net; Azurite: http://127.0.0.1:10000/<account>."
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

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn field(v: Value) -> Option<String> {
        let e = AzureSettings::parse(&v).unwrap_err();
        assert!(e.is_config(), "{e}");
        e.field().map(str::to_string)
    }

    #[test]
    fn empty_and_full_configs() {
        let s = AzureSettings::parse(&Value::Null).unwrap();
        assert!(s.container_name.is_none() && s.account_key.is_none());
        let s = AzureSettings::parse(&json!({
            "account_name": "devstoreaccount1", "account_key": KEY, "container_name": "/rec/",
            "endpoint": "http://127.0.0.1:10000/devstoreaccount1/", "max_retries": 3
        }))
        .unwrap();
        assert_eq!(s.container_name.as_deref(), Some("rec"));
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert!(s.allow_http);
        assert_eq!(s.retry.max_retries, 3);
        assert!(!format!("{s:?}").contains(KEY));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field(json!({"account_key": "not base64!"})).as_deref(),
            Some("account_key")
        );
        assert_eq!(
            field(json!({"account_name": "a-b"})).as_deref(),
            Some("account_name")
        );
        assert_eq!(
            field(json!({"container_name": "a/b"})).as_deref(),
            Some("container_name")
        );
        assert_eq!(
            field(json!({"endpoint": "ftp://x"})).as_deref(),
            Some("endpoint")
        );
        assert_eq!(
            field(json!({"container": "x"})).as_deref(),
            Some("container")
        );
        assert_eq!(
            field(json!({"endpoint": "http://x", "allow_http": false})).as_deref(),
            Some("allow_http")
        );
        assert_eq!(
            field(json!({"min_retry_delay_ms": 9, "max_retry_delay_ms": 1})).as_deref(),
            Some("min_retry_delay_ms")
        );
        let e = AzureSettings::parse(&json!({"account_key": "hunter2!"})).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn schema_marks_the_key_secret() {
        let d = egress_plugin_api::Descriptor::new("azure", "0").with_config_schema(schema());
        assert_eq!(d.secret_fields(), ["account_key"]);
    }
}
