//! The `s3` sink's config: the Go egress's S3 storage fields, as JSON.
//!
//! Every field is optional, so that `{}` (or no config at all) creates a factory: the host
//! activates storage plugins without settings and passes the bucket and credentials with each
//! request. Such a factory fails `health_check` and `open` with a config error naming `bucket`.
//! Empty strings count as unset (protobuf-style requests send `""`).

use std::collections::BTreeMap;

use egress_objstore_sink::config::{self as shared, ProxyConfig, RetrySettings, Secret, non_empty};
use egress_objstore_sink::object_store::{RetryConfig, TagSet};
use egress_plugin_api::{SinkError, Value, config, json};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub access_key: Option<String>,
    pub secret: Option<Secret>,
    pub session_token: Option<Secret>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub force_path_style: bool,
    pub proxy: Option<ProxyConfig>,
    pub max_retries: u32,
    pub min_retry_delay_ms: u64,
    pub max_retry_delay_ms: u64,
    pub metadata: BTreeMap<String, String>,
    pub tagging: Option<String>,
    pub content_disposition: Option<String>,
    pub checksum: Checksum,
    pub assume_role_arn: Option<String>,
    pub assume_role_external_id: Option<String>,
    pub sts_endpoint: Option<String>,
    pub allow_http: Option<bool>,
}

/// Whether uploads carry `x-amz-checksum-sha256` (S3 checks it per part). Some S3-compatible
/// stores reject the header: `none` turns it off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    #[default]
    Sha256,
    None,
}

/// A checked config, ready to build a store from.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `(access key, secret, session token)`; `None`: the default credential chain.
    pub credentials: Option<(String, Secret, Option<Secret>)>,
    pub region: Option<String>,
    /// Normalised: with a scheme, without a trailing slash.
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub force_path_style: bool,
    /// The proxy URL, credentials included: a secret.
    pub proxy_url: Option<Secret>,
    pub retry: RetryConfig,
    pub metadata: BTreeMap<String, String>,
    pub tags: TagSet,
    pub content_disposition: String,
    pub checksum: Checksum,
    pub allow_http: bool,
    /// Upload with the temporary credentials of this role, assumed with `credentials`.
    pub assume_role: Option<AssumeRoleSettings>,
}

/// `assume_role_*` and `sts_endpoint`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleSettings {
    pub role_arn: String,
    pub external_id: Option<String>,
    /// Normalised like `endpoint`; `None`: AWS's, chosen by region.
    pub sts_endpoint: Option<String>,
    /// Plain http to the STS endpoint (an emulator's `http://` endpoint allows it).
    pub allow_http: bool,
}

/// Go's default `Content-Disposition`.
const DEFAULT_CONTENT_DISPOSITION: &str = "inline";

impl S3Settings {
    pub fn parse(value: &Value) -> Result<Self, SinkError> {
        let c: S3Config = config::parse(value)?;
        // An empty access key with a secret is refused below, whatever the role.
        let assume_role = assume_role(&c, non_empty(&c.access_key).is_some())?;
        let secret = c.secret.filter(|s| !s.is_empty());
        let session_token = c.session_token.filter(|s| !s.is_empty());
        let credentials = match (non_empty(&c.access_key), secret) {
            (Some(key), Some(secret)) => Some((key.to_string(), secret, session_token)),
            (Some(_), None) => {
                return Err(config::invalid("secret", "is required with access_key"));
            }
            (None, Some(_)) => {
                return Err(config::invalid("access_key", "is required with secret"));
            }
            (None, None) if session_token.is_some() => {
                return Err(config::invalid(
                    "access_key",
                    "is required with session_token",
                ));
            }
            (None, None) => None,
        };
        // Both end up in request headers; a value that is not one would make signing fail.
        if let Some((key, _, token)) = &credentials {
            if !is_header_value(key) {
                return Err(config::invalid("access_key", "must be printable ASCII"));
            }
            if token.as_ref().is_some_and(|t| !is_header_value(t.expose())) {
                return Err(config::invalid("session_token", "must be printable ASCII"));
            }
        }
        let endpoint = non_empty(&c.endpoint)
            .map(|e| shared::endpoint("endpoint", e))
            .transpose()?;
        let allow_http = shared::allow_http(c.allow_http, endpoint.as_deref())?;
        let bucket = non_empty(&c.bucket).map(str::to_string);
        if let Some(bucket) = &bucket {
            check_bucket(bucket)?;
        }
        let region = non_empty(&c.region).map(str::to_string);
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
        for (key, value) in &c.metadata {
            check_metadata(key, value)?;
        }
        let tags = parse_tagging(non_empty(&c.tagging).unwrap_or(""))?;
        let content_disposition = non_empty(&c.content_disposition)
            .unwrap_or(DEFAULT_CONTENT_DISPOSITION)
            .to_string();
        if !is_header_value(&content_disposition) {
            return Err(config::invalid(
                "content_disposition",
                "must be printable ASCII",
            ));
        }
        Ok(S3Settings {
            credentials,
            region,
            endpoint,
            bucket,
            force_path_style: c.force_path_style,
            proxy_url,
            retry,
            metadata: c.metadata,
            tags,
            content_disposition,
            checksum: c.checksum,
            allow_http,
            assume_role,
        })
    }
}

/// The role to assume, if any. The caller's keys must be static: the host passes the
/// server's `s3_assume_role_key` when a request names a role without keys, as the Go egress
/// does, and the default credential chain cannot be combined with a role here.
fn assume_role(c: &S3Config, has_keys: bool) -> Result<Option<AssumeRoleSettings>, SinkError> {
    let sts_endpoint = non_empty(&c.sts_endpoint)
        .map(|e| shared::endpoint("sts_endpoint", e))
        .transpose()?;
    let Some(role_arn) = non_empty(&c.assume_role_arn) else {
        if non_empty(&c.assume_role_external_id).is_some() {
            return Err(config::invalid(
                "assume_role_external_id",
                "is only used with assume_role_arn",
            ));
        }
        return Ok(None);
    };
    if !has_keys {
        return Err(config::invalid(
            "access_key",
            "is required with assume_role_arn (the role is assumed with these static keys)",
        ));
    }
    let allow_http = shared::allow_http(c.allow_http, sts_endpoint.as_deref())?;
    Ok(Some(AssumeRoleSettings {
        role_arn: role_arn.to_string(),
        external_id: non_empty(&c.assume_role_external_id).map(str::to_string),
        sts_endpoint,
        allow_http,
    }))
}

/// S3's bucket naming rules, loosely: 3 to 63 of `a-z 0-9 . -` (plus `_` and upper case, which
/// older buckets and other stores allow). Anything else cannot be a bucket in a URL.
fn check_bucket(bucket: &str) -> Result<(), SinkError> {
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok_chars || bucket.len() > 255 {
        return Err(config::invalid(
            "bucket",
            format!("{bucket:?} is not a valid bucket name"),
        ));
    }
    Ok(())
}

/// User metadata becomes `x-amz-meta-<key>: <value>` headers.
fn check_metadata(key: &str, value: &str) -> Result<(), SinkError> {
    let field = format!("metadata.{key}");
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if key.is_empty() || !key.chars().all(token) {
        return Err(config::invalid(
            &field,
            "keys must be letters, digits and -_. (HTTP header name characters)",
        ));
    }
    if !is_header_value(value) {
        return Err(config::invalid(&field, "values must be printable ASCII"));
    }
    Ok(())
}

fn is_header_value(value: &str) -> bool {
    value.chars().all(|c| c == ' ' || c.is_ascii_graphic())
}

/// `k=v&k2=v2` (URL-encoded, as S3's `x-amz-tagging` header takes it) into a tag set.
pub fn parse_tagging(tagging: &str) -> Result<TagSet, SinkError> {
    let mut tags = TagSet::default();
    for (key, value) in url::form_urlencoded::parse(tagging.as_bytes()) {
        if key.is_empty() {
            return Err(config::invalid(
                "tagging",
                "has a tag without a key (expected k=v&k2=v2)",
            ));
        }
        tags.push(&key, &value);
    }
    Ok(tags)
}

pub(crate) fn schema() -> Value {
    let string = |description: &str| json!({ "type": "string", "description": description });
    let secret = |description: &str| json!({ "type": "string", "writeOnly": true, "description": description });
    shared::object_schema(
        "s3 sink",
        &[
            json!({
                "access_key": string("Access key id. Empty: the default credential chain (AWS_* environment, web identity, container or instance role)."),
                "secret": secret("Secret access key."),
                "session_token": secret("Session token for temporary credentials."),
                "region": string("Region. Default: AWS_DEFAULT_REGION / AWS_REGION, else us-east-1."),
                "endpoint": string("S3-compatible endpoint URL (MinIO, AliOSS, …). Default: AWS."),
                "bucket": string("Bucket. May be left out and given per request."),
                "force_path_style": {
                    "type": "boolean", "default": false,
                    "description": "Path-style URLs (<endpoint>/<bucket>/<key>) instead of virtual-hosted (<bucket>.<endpoint>)."
                },
                "proxy": shared::proxy_schema(),
                "metadata": {
                    "type": "object", "additionalProperties": { "type": "string" },
                    "description": "User metadata (x-amz-meta-*) on every object."
                },
                "tagging": string("Object tags, URL-encoded: k=v&k2=v2."),
                "content_disposition": {
                    "type": "string", "default": DEFAULT_CONTENT_DISPOSITION,
                    "description": "Content-Disposition of every object."
                },
                "checksum": {
                    "enum": ["sha256", "none"], "default": "sha256",
                    "description": "Send x-amz-checksum-sha256 with uploads; none for stores that reject it."
                },
                "assume_role_arn": string("Role to assume with STS AssumeRole; uploads then use its temporary credentials (refreshed before they expire). Requires access_key/secret, the keys that assume it."),
                "assume_role_external_id": string("ExternalId for AssumeRole, if the role's trust policy asks for one. Only with assume_role_arn."),
                "sts_endpoint": string("STS endpoint for assume_role_arn (emulators, private clouds). Default: https://sts.<region>.amazonaws.com when a region is set, else https://sts.amazonaws.com."),
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

    fn parse(v: Value) -> Result<S3Settings, SinkError> {
        S3Settings::parse(&v)
    }

    fn field(v: Value) -> Option<String> {
        let e = parse(v).unwrap_err();
        assert!(e.is_config(), "{e}");
        e.field().map(str::to_string)
    }

    #[test]
    fn empty_configs_are_accepted() {
        for v in [Value::Null, json!({})] {
            let s = parse(v).unwrap();
            assert!(s.bucket.is_none() && s.credentials.is_none());
            assert_eq!(s.content_disposition, "inline");
            assert_eq!(s.checksum, Checksum::Sha256);
            assert_eq!(s.retry.max_retries, 5);
            assert!(!s.allow_http);
        }
        // Protobuf-style empty strings are unset too.
        let s = parse(
            json!({"access_key": "", "secret": "", "bucket": "", "endpoint": "",
                             "assume_role_arn": "", "tagging": ""}),
        )
        .unwrap();
        assert!(s.bucket.is_none() && s.credentials.is_none() && s.endpoint.is_none());
    }

    #[test]
    fn a_full_config() {
        let s = parse(json!({
            "access_key": "AK", "secret": "SK", "session_token": "TOK",
            "region": "eu-west-1", "endpoint": "http://127.0.0.1:9000/", "bucket": "rec",
            "force_path_style": true, "max_retries": 7, "min_retry_delay_ms": 50,
            "max_retry_delay_ms": 2000, "metadata": {"room": "r1"}, "tagging": "a=1&b=x%20y",
            "content_disposition": "attachment", "checksum": "none",
            "proxy": {"url": "http://proxy:3128", "username": "u", "password": "p"}
        }))
        .unwrap();
        let (key, secret, token) = s.credentials.clone().unwrap();
        assert_eq!((key.as_str(), secret.expose()), ("AK", "SK"));
        assert_eq!(token.unwrap().expose(), "TOK");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.allow_http);
        assert_eq!(s.retry.max_retries, 7);
        assert_eq!(s.tags.encoded(), "a=1&b=x+y");
        assert_eq!(s.checksum, Checksum::None);
        assert_eq!(
            s.proxy_url.as_ref().unwrap().expose(),
            "http://u:p@proxy:3128/"
        );
        let debug = format!("{s:?}");
        for secret in ["SK", "TOK", "u:p@"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field(json!({"bucket": 3})).as_deref(), Some("bucket"));
        assert_eq!(field(json!({"bucktet": "x"})).as_deref(), Some("bucktet"));
        assert_eq!(
            field(json!({"access_key": "AK"})).as_deref(),
            Some("secret")
        );
        assert_eq!(
            field(json!({"secret": "SK"})).as_deref(),
            Some("access_key")
        );
        assert_eq!(
            field(json!({"session_token": "T"})).as_deref(),
            Some("access_key")
        );
        assert_eq!(
            field(json!({"assume_role_arn": "arn:aws:iam::1:role/x"})).as_deref(),
            Some("access_key")
        );
        assert_eq!(
            field(
                json!({"assume_role_arn": "arn:aws:iam::1:role/x", "access_key": "AK",
                         "secret": "SK", "sts_endpoint": "ftp://sts"})
            )
            .as_deref(),
            Some("sts_endpoint")
        );
        assert_eq!(
            field(json!({"access_key": "AK\u{e9}", "secret": "SK"})).as_deref(),
            Some("access_key")
        );
        assert_eq!(
            field(json!({"access_key": "AK", "secret": "SK", "session_token": "a\nb"})).as_deref(),
            Some("session_token")
        );
        assert_eq!(
            field(json!({"assume_role_external_id": "x"})).as_deref(),
            Some("assume_role_external_id")
        );
        assert_eq!(
            field(json!({"endpoint": "ftp://x"})).as_deref(),
            Some("endpoint")
        );
        assert_eq!(
            field(json!({"endpoint": "http://x", "allow_http": false})).as_deref(),
            Some("allow_http")
        );
        assert_eq!(
            field(json!({"checksum": "md5"})).as_deref(),
            Some("checksum")
        );
        assert_eq!(field(json!({"tagging": "=v"})).as_deref(), Some("tagging"));
        assert_eq!(
            field(json!({"metadata": {"bad key": "v"}})).as_deref(),
            Some("metadata.bad key")
        );
        assert_eq!(
            field(json!({"metadata": {"k": "caf\u{e9}"}})).as_deref(),
            Some("metadata.k")
        );
        assert_eq!(
            field(json!({"proxy": {"url": "::"}})).as_deref(),
            Some("proxy.url")
        );
        assert_eq!(
            field(json!({"proxy": {"url": "http://p", "pasword": "x"}})).as_deref(),
            Some("proxy.pasword")
        );
        assert_eq!(
            field(json!({"min_retry_delay_ms": 10, "max_retry_delay_ms": 5})).as_deref(),
            Some("min_retry_delay_ms")
        );
        assert_eq!(field(json!({"bucket": "a/b"})).as_deref(), Some("bucket"));
        assert_eq!(
            field(json!({"force_path_style": "yes"})).as_deref(),
            Some("force_path_style")
        );
    }

    #[test]
    fn assume_role_settings() {
        let keys = json!({"access_key": "AK", "secret": "SK"});
        let s = parse(json!({"access_key": "AK", "secret": "SK",
                             "assume_role_arn": "arn:aws:iam::1:role/rec",
                             "assume_role_external_id": "ext"}))
        .unwrap();
        assert_eq!(
            s.assume_role,
            Some(AssumeRoleSettings {
                role_arn: "arn:aws:iam::1:role/rec".into(),
                external_id: Some("ext".into()),
                sts_endpoint: None,
                allow_http: false,
            })
        );
        let s = parse(json!({"access_key": "AK", "secret": "SK",
                             "assume_role_arn": "arn:aws:iam::1:role/rec",
                             "sts_endpoint": "http://127.0.0.1:5000/"}))
        .unwrap();
        let role = s.assume_role.unwrap();
        assert_eq!(role.sts_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(
            role.allow_http && !s.allow_http,
            "http only where the endpoint is http"
        );
        // sts_endpoint alone is harmless: an operator's base config for requests that may
        // name a role.
        let s = parse(with(&keys, json!({"sts_endpoint": "sts.example.com"}))).unwrap();
        assert!(s.assume_role.is_none());
    }

    fn with(base: &Value, extra: Value) -> Value {
        let mut out = base.clone();
        if let (Some(out), Some(extra)) = (out.as_object_mut(), extra.as_object()) {
            out.extend(extra.clone());
        }
        out
    }

    #[test]
    fn errors_never_echo_secrets() {
        let e = parse(json!({"secret": "hunter2"})).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = parse(json!({"secret": 12345})).unwrap_err();
        assert_eq!(e.field(), Some("secret"));
    }

    #[test]
    fn schema_marks_secrets() {
        let d = egress_plugin_api::Descriptor::new("s3", "0").with_config_schema(schema());
        let mut secrets = d.secret_fields();
        secrets.sort();
        assert_eq!(secrets, ["secret", "session_token"]);
        assert_eq!(
            schema()["properties"]["proxy"]["properties"]["password"]["writeOnly"],
            json!(true)
        );
    }
}
