//! The `http-put` sink's config.

use std::collections::BTreeMap;
use std::time::Duration;

use egress_plugin_api::{SinkError, Value, config};
use serde::Deserialize;

use crate::retry::RetryPolicy;

const MIN_PART: u64 = 64 << 10;
const MAX_PART: u64 = 512 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPutConfig {
    /// Base URL; an object goes to `url` + `/` + its key (each segment percent-encoded).
    pub url: String,
    /// Value of the `Authorization` header (e.g. `Bearer …`). A secret: never logged or printed.
    pub authorization: Option<String>,
    /// Extra headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// Bytes per request. Objects up to this size go in one plain PUT; larger ones in parts
    /// with `Content-Range`. Memory per open object is about one part.
    pub part_size: u64,
    /// Timeout of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts per request (1 = no retry).
    pub max_attempts: u32,
    /// First backoff, in milliseconds; doubles per attempt, with full jitter.
    pub backoff_initial_ms: u64,
    /// Longest backoff, in milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for HttpPutConfig {
    fn default() -> Self {
        HttpPutConfig {
            url: String::new(),
            authorization: None,
            headers: BTreeMap::new(),
            part_size: 8 << 20,
            timeout_ms: 30_000,
            max_attempts: 5,
            backoff_initial_ms: 200,
            backoff_max_ms: 10_000,
        }
    }
}

impl HttpPutConfig {
    pub fn parse(value: &Value) -> Result<Self, SinkError> {
        let c: HttpPutConfig = config::parse(value)?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), SinkError> {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return Err(config::invalid("url", "must be an http:// or https:// URL"));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(config::invalid(
                "url",
                format!("scheme {scheme:?} is not http or https"),
            ));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(config::invalid("url", "has no host"));
        }
        if authority.contains('@') {
            return Err(config::invalid(
                "url",
                "must not carry credentials; use `authorization`",
            ));
        }
        if rest.contains(['?', '#']) {
            return Err(config::invalid("url", "must not have a query or fragment"));
        }
        if !(MIN_PART..=MAX_PART).contains(&self.part_size) {
            return Err(config::invalid(
                "part_size",
                format!("{} is outside {MIN_PART}..={MAX_PART}", self.part_size),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(config::invalid("timeout_ms", "must be more than 0"));
        }
        if self.max_attempts == 0 {
            return Err(config::invalid("max_attempts", "must be at least 1"));
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return Err(config::invalid(
                "backoff_initial_ms",
                "must not exceed backoff_max_ms",
            ));
        }
        for (name, value) in &self.headers {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(config::invalid(
                    &format!("headers.{name}"),
                    "is not a header name",
                ));
            }
            if value.contains(['\r', '\n']) {
                return Err(config::invalid(
                    &format!("headers.{name}"),
                    "contains a line break",
                ));
            }
        }
        if self
            .authorization
            .as_deref()
            .is_some_and(|a| a.contains(['\r', '\n']))
        {
            return Err(config::invalid("authorization", "contains a line break"));
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial: Duration::from_millis(self.backoff_initial_ms),
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }

    /// Headers for every request: the extra ones, then `Authorization`.
    pub fn base_headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(auth) = &self.authorization {
            h.push(("Authorization".into(), auth.clone()));
        }
        h
    }

    /// The URL of the object at `key`: each segment percent-encoded, never outside `url`
    /// (`..`, `.`, empty segments and absolute keys are refused as permanent errors).
    pub fn object_url(&self, key: &str) -> Result<String, SinkError> {
        egress_plugin_api::key::url_under(&self.url, key)
    }
}

pub(crate) fn schema() -> Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "http-put sink",
        "type": "object",
        "additionalProperties": false,
        "required": ["url"],
        "properties": {
            "url": { "type": "string", "format": "uri", "description": "Base URL; objects go to url/key." },
            "authorization": { "type": "string", "writeOnly": true, "description": "Authorization header value." },
            "headers": { "type": "object", "additionalProperties": { "type": "string" } },
            "part_size": { "type": "integer", "minimum": MIN_PART, "maximum": MAX_PART, "default": 8 << 20 },
            "timeout_ms": { "type": "integer", "minimum": 1, "default": 30000 },
            "max_attempts": { "type": "integer", "minimum": 1, "default": 5 },
            "backoff_initial_ms": { "type": "integer", "minimum": 0, "default": 200 },
            "backoff_max_ms": { "type": "integer", "minimum": 0, "default": 10000 }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_fields() {
        let ok = HttpPutConfig::parse(&json!({"url": "http://127.0.0.1:8080/up/"})).unwrap();
        assert_eq!(
            ok.object_url("a b/c.mp4").unwrap(),
            "http://127.0.0.1:8080/up/a%20b/c.mp4"
        );
        assert!(ok.object_url("a/../../admin").unwrap_err().is_permanent());
        for (bad, field) in [
            (json!({}), "url"),
            (json!({"url": "ftp://x"}), "url"),
            (json!({"url": "http://"}), "url"),
            (json!({"url": "http://x", "part_size": 10}), "part_size"),
            (
                json!({"url": "http://x", "max_attempts": 0}),
                "max_attempts",
            ),
            (
                json!({"url": "http://x", "headers": {"a b": "c"}}),
                "headers.a b",
            ),
            (json!({"url": "http://x", "retries": 3}), "retries"),
            (json!({"url": "http://x", "timeout_ms": "1s"}), "timeout_ms"),
        ] {
            let e = HttpPutConfig::parse(&bad).unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
            assert_eq!(e.field(), Some(field), "{bad}: {e}");
        }
    }
}
