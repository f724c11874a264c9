//! Config pieces the three storage sinks share: secrets, the proxy, retries, endpoints, and the
//! `object_store` client options built from them.

use std::fmt;
use std::time::Duration;

use egress_plugin_api::{SinkError, Value, config, json};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use serde::Deserialize;
use url::Url;

/// A secret string: deserialized like a string, never printed. `Debug` shows whether it is set.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for handing to the store builder. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        })
    }
}

/// An HTTP(S) proxy for every request of the sink (Go's `proxy {url, username, password}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub url: String,
    pub username: String,
    pub password: Secret,
}

impl ProxyConfig {
    /// The proxy URL with the credentials in it (how reqwest takes basic auth for a proxy), or
    /// `None` when no proxy is configured. `field` is where the proxy sits in the config.
    pub fn resolve(&self, field: &str) -> Result<Option<String>, SinkError> {
        if self.url.is_empty() {
            if !self.username.is_empty() || !self.password.is_empty() {
                return Err(config::invalid(
                    &format!("{field}.url"),
                    "is required when a proxy username or password is set",
                ));
            }
            return Ok(None);
        }
        let mut url = Url::parse(&self.url)
            .map_err(|e| config::invalid(&format!("{field}.url"), format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err(config::invalid(
                &format!("{field}.url"),
                format!("scheme {:?} is not http, https or socks5", url.scheme()),
            ));
        }
        if !self.username.is_empty() {
            url.set_username(&self.username).map_err(|()| {
                config::invalid(&format!("{field}.username"), "cannot be set on this URL")
            })?;
        }
        if !self.password.is_empty() {
            url.set_password(Some(self.password.expose()))
                .map_err(|()| {
                    config::invalid(&format!("{field}.password"), "cannot be set on this URL")
                })?;
        }
        Ok(Some(url.into()))
    }
}

/// Go's storage retry knobs. `0` or absent means the Go default, as in the Go egress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct RetrySettings {
    #[serde(default)]
    pub max_retries: u32,
    #[serde(default)]
    pub min_retry_delay_ms: u64,
    #[serde(default)]
    pub max_retry_delay_ms: u64,
}

/// Go's defaults (`pkg/config/storage.go`): 5 retries, 100 ms to 5 s.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
pub const DEFAULT_MIN_RETRY_DELAY_MS: u64 = 100;
pub const DEFAULT_MAX_RETRY_DELAY_MS: u64 = 5_000;
/// The longest any one request may keep retrying, whatever the settings say.
const MAX_RETRY_TIMEOUT: Duration = Duration::from_secs(180);

impl RetrySettings {
    /// Check the settings (errors name the field) and build object_store's retry config:
    /// jittered exponential backoff from the min to the max delay, `max_retries` retries, and a
    /// `retry_timeout` of one max delay per attempt so that a request gives up in bounded time
    /// even when each attempt is slow.
    pub fn resolve(&self) -> Result<RetryConfig, SinkError> {
        let max_retries = match self.max_retries {
            0 => DEFAULT_MAX_RETRIES,
            n => n,
        };
        let min = match self.min_retry_delay_ms {
            0 => DEFAULT_MIN_RETRY_DELAY_MS,
            n => n,
        };
        let max = match self.max_retry_delay_ms {
            0 => DEFAULT_MAX_RETRY_DELAY_MS.max(min),
            n => n,
        };
        if min > max {
            return Err(config::invalid(
                "min_retry_delay_ms",
                format!("{min} ms is more than max_retry_delay_ms ({max} ms)"),
            ));
        }
        if max_retries > 100 {
            return Err(config::invalid(
                "max_retries",
                format!("{max_retries} is more than 100"),
            ));
        }
        let max_delay = Duration::from_millis(max);
        let retry_timeout = max_delay
            .saturating_mul(max_retries + 1)
            .clamp(Duration::from_secs(1), MAX_RETRY_TIMEOUT);
        Ok(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(min),
                max_backoff: max_delay,
                base: 2.0,
            },
            max_retries: max_retries as usize,
            retry_timeout,
        })
    }
}

/// A non-empty string, or `None` (protobuf-style configs send `""` for unset).
pub fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

/// Parse an endpoint URL at `field`, accepting a bare host (`s3.example.com`) as https, as the
/// Go egress does. Returns the URL without a trailing slash.
pub fn endpoint(field: &str, value: &str) -> Result<String, SinkError> {
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("https://{value}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| config::invalid(field, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config::invalid(
            field,
            format!("scheme {:?} is not http or https", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(config::invalid(field, "has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config::invalid(field, "must not have a query or fragment"));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// `allow_http` as configured, defaulting to "the endpoint is plain http". Plain http to an
/// endpoint while `allow_http: false` is a contradiction, reported at `allow_http`.
pub fn allow_http(allow_http: Option<bool>, endpoint: Option<&str>) -> Result<bool, SinkError> {
    let http_endpoint = endpoint.is_some_and(|e| e.starts_with("http://"));
    match allow_http {
        None => Ok(http_endpoint),
        Some(false) if http_endpoint => Err(config::invalid(
            "allow_http",
            "is false but the endpoint is http://",
        )),
        Some(allow) => Ok(allow),
    }
}

/// HTTP client options shared by every sink: plain http only when allowed, the proxy, and
/// timeouts sized for multi-MiB parts (object_store's default 30 s per request would fail a
/// part on a link slower than ~2 Mbit/s).
pub fn client_options(allow_http: bool, proxy_url: Option<&str>) -> ClientOptions {
    let mut options = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300));
    if let Some(proxy) = proxy_url {
        options = options.with_proxy_url(proxy);
    }
    options
}

/// JSON Schema properties of [`RetrySettings`].
pub fn retry_schema() -> Value {
    json!({
        "max_retries": {
            "type": "integer", "minimum": 0, "maximum": 100, "default": DEFAULT_MAX_RETRIES,
            "description": "Retries per request after the first attempt (0 means the default)."
        },
        "min_retry_delay_ms": {
            "type": "integer", "minimum": 0, "default": DEFAULT_MIN_RETRY_DELAY_MS,
            "description": "First backoff delay; doubles with jitter up to max_retry_delay_ms."
        },
        "max_retry_delay_ms": {
            "type": "integer", "minimum": 0, "default": DEFAULT_MAX_RETRY_DELAY_MS,
            "description": "Longest backoff delay between two attempts."
        }
    })
}

/// JSON Schema of [`ProxyConfig`].
pub fn proxy_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "HTTP proxy for every request.",
        "properties": {
            "url": { "type": "string", "description": "http://, https:// or socks5:// proxy URL." },
            "username": { "type": "string" },
            "password": { "type": "string", "writeOnly": true }
        }
    })
}

/// Merge several `properties` objects into one JSON Schema object.
pub fn object_schema(title: &str, parts: &[Value]) -> Value {
    let mut properties = serde_json::Map::new();
    for part in parts {
        if let Some(map) = part.as_object() {
            properties.extend(map.clone());
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "additionalProperties": false,
        "properties": properties
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let p = ProxyConfig {
            url: "http://proxy:3128".into(),
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn proxy_urls() {
        let p = ProxyConfig {
            url: "http://proxy:3128".into(),
            username: "me".into(),
            password: Secret::new("p@ss"),
        };
        assert_eq!(
            p.resolve("proxy").unwrap().as_deref(),
            Some("http://me:p%40ss@proxy:3128/")
        );
        assert_eq!(ProxyConfig::default().resolve("proxy").unwrap(), None);
        let e = ProxyConfig {
            url: "not a url".into(),
            ..Default::default()
        }
        .resolve("proxy")
        .unwrap_err();
        assert_eq!(e.field(), Some("proxy.url"));
        let e = ProxyConfig {
            username: "me".into(),
            ..Default::default()
        }
        .resolve("proxy")
        .unwrap_err();
        assert_eq!(e.field(), Some("proxy.url"));
        let e = ProxyConfig {
            url: "ftp://proxy".into(),
            ..Default::default()
        }
        .resolve("proxy")
        .unwrap_err();
        assert_eq!(e.field(), Some("proxy.url"));
    }

    #[test]
    fn retry_defaults_are_go_defaults() {
        let r = RetrySettings::default().resolve().unwrap();
        assert_eq!(r.max_retries, 5);
        assert_eq!(r.backoff.init_backoff, Duration::from_millis(100));
        assert_eq!(r.backoff.max_backoff, Duration::from_secs(5));
        assert_eq!(r.retry_timeout, Duration::from_secs(30));
    }

    #[test]
    fn retry_errors_name_the_field() {
        let e = RetrySettings {
            min_retry_delay_ms: 2000,
            max_retry_delay_ms: 1000,
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.field(), Some("min_retry_delay_ms"));
        let e = RetrySettings {
            max_retries: 1000,
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.field(), Some("max_retries"));
        // A min above the default max raises the default max instead of failing.
        let r = RetrySettings {
            min_retry_delay_ms: 8000,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.backoff.max_backoff, Duration::from_secs(8));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("endpoint", "s3.example.com").unwrap(),
            "https://s3.example.com"
        );
        assert_eq!(
            endpoint("endpoint", "http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        for bad in ["ftp://x", "http://", "http://x?a=b", "::"] {
            let e = endpoint("endpoint", bad).unwrap_err();
            assert_eq!(e.field(), Some("endpoint"), "{bad}: {e}");
        }
    }

    #[test]
    fn allow_http_follows_the_endpoint() {
        assert!(allow_http(None, Some("http://x")).unwrap());
        assert!(!allow_http(None, Some("https://x")).unwrap());
        assert!(!allow_http(None, None).unwrap());
        assert!(allow_http(Some(true), None).unwrap());
        let e = allow_http(Some(false), Some("http://x")).unwrap_err();
        assert_eq!(e.field(), Some("allow_http"));
    }
}
