//! Parsing a plugin's JSON config into a typed struct, with errors that name the field.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::SinkError;

/// Deserialize `config` into `T`. A failure is a config [`SinkError`] whose
/// [`field`](SinkError::field) is the dotted path of the offending key (`retry.max_attempts`,
/// `headers[2]`), so that the host can say which plugin and which field are wrong.
///
/// Use `#[serde(deny_unknown_fields)]` on `T` to reject typos.
pub fn parse<T: DeserializeOwned>(config: &Value) -> Result<T, SinkError> {
    // `null` (no `config:` key at all) means "all defaults".
    let empty = Value::Object(Default::default());
    let config = if config.is_null() { &empty } else { config };
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // An unknown key is in the path already; a missing one only in the message (the path
        // stops at its parent).
        let field = match (path.as_str(), unknown_or_missing_field(&message)) {
            (".", Some(key)) => key,
            (p, Some(key)) if p.rsplit('.').next() == Some(key.as_str()) => p.to_string(),
            (parent, Some(key)) => format!("{parent}.{key}"),
            (".", None) => String::new(),
            (path, None) => path.to_string(),
        };
        SinkError::config_field(field, message)
    })
}

fn unknown_or_missing_field(message: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

/// A config error at `field` for a value that has the right type but is not allowed.
pub fn invalid(field: &str, message: impl Into<String>) -> SinkError {
    SinkError::config_field(field, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        url: String,
        #[serde(default)]
        retries: u32,
    }

    #[test]
    fn names_unknown_and_missing_fields() {
        let e = parse::<Conf>(&serde_json::json!({"url": "x", "retires": 3})).unwrap_err();
        assert!(e.is_config());
        assert_eq!(e.field(), Some("retires"));
        let e = parse::<Conf>(&serde_json::json!({})).unwrap_err();
        assert_eq!(e.field(), Some("url"));
        let e = parse::<Conf>(&serde_json::json!({"url": 3})).unwrap_err();
        assert_eq!(e.field(), Some("url"), "{e}");
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Outer {
            #[allow(dead_code)]
            inner: Conf,
        }
        let e = parse::<Outer>(&serde_json::json!({"inner": {"url": "x", "x": 1}})).unwrap_err();
        assert_eq!(e.field(), Some("inner.x"));
        let e = parse::<Outer>(&serde_json::json!({"inner": {}})).unwrap_err();
        assert_eq!(e.field(), Some("inner.url"));
        let ok = parse::<Conf>(&serde_json::json!({"url": "x"})).unwrap();
        assert_eq!((ok.url.as_str(), ok.retries), ("x", 0));
    }
}
