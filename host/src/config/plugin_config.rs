//! Printing plugin configs without their secrets.
//!
//! The host does not know a plugin's fields (the plugin validates its own config), so keys are
//! redacted by name: anything that looks like a credential. Plugins also mark secrets with
//! `"writeOnly": true` in their schema; `egress validate` redacts those too once the plugins are
//! loaded (`crate::plugins::validate_plugins`).

use serde::Serializer;
use serde_json::Value;

use super::secret::REDACTED;

/// Key fragments that mark a value as a secret.
const SECRET_KEYS: [&str; 9] = [
    "password",
    "secret",
    "token",
    "authorization",
    "credential",
    "private_key",
    "access_key",
    "api_key",
    "account_key",
];

pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| key.contains(s))
}

/// `value` with every non-empty value under a secret-looking (or `extra`) key replaced.
pub fn redact(value: &Value, extra: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let secret = is_secret_key(k) || extra.iter().any(|e| e == k);
                    let empty = v.is_null() || v.as_str().is_some_and(str::is_empty);
                    let v = if secret && !empty {
                        Value::String(REDACTED.to_string())
                    } else {
                        redact(v, &[])
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, &[])).collect()),
        other => other.clone(),
    }
}

pub(crate) fn serialize_redacted<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&redact(value, &[]), s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_by_key_name() {
        let v = json!({
            "url": "http://x",
            "authorization": "Bearer abc",
            "nested": { "client_secret": "s", "empty_token": "" },
            "list": [{ "password": "p" }],
            "custom": "c"
        });
        assert_eq!(
            redact(&v, &["custom".to_string()]),
            json!({
                "url": "http://x",
                "authorization": REDACTED,
                "nested": { "client_secret": REDACTED, "empty_token": "" },
                "list": [{ "password": REDACTED }],
                "custom": REDACTED
            })
        );
    }
}
