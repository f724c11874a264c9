//! How the `s3` settings become an `AmazonS3` store, object URLs and attributes.

use std::sync::Arc;

use egress_objstore_sink::Backend;
use egress_objstore_sink::config::client_options;
use egress_objstore_sink::location::{host_of, join};
use egress_objstore_sink::object_store::aws::{
    AmazonS3Builder, AmazonS3ConfigKey, AwsCredential, Checksum as OsChecksum,
};
use egress_objstore_sink::object_store::client::{HttpConnector, ReqwestConnector};
use egress_objstore_sink::object_store::{Attribute, Attributes, ObjectStore, TagSet};
use egress_plugin_api::{ObjectSpec, SinkError, config};

use crate::config::{AssumeRoleSettings, Checksum, S3Settings};
use crate::credentials::{RefreshingCredentials, StsFetch, SystemClock};
use crate::sts::{self, AssumeRole};

/// Region when neither the config nor the environment names one (as object_store and the AWS
/// SDKs do; the Go egress would ask the bucket, which needs a request).
const DEFAULT_REGION: &str = "us-east-1";

/// STS's global endpoint, for a role assumed without a region.
const GLOBAL_STS_ENDPOINT: &str = "https://sts.amazonaws.com";

/// The session name in the assumed role's ARN (`…:assumed-role/<role>/egress`), which is what
/// CloudTrail shows for our uploads.
const SESSION_NAME: &str = "egress";

/// Environment variables of the default credential chain, applied when the config has no
/// access key. Only these: the rest of the config comes from the config, never from `AWS_*`.
const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_STS_ENDPOINT",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
    "AWS_IMDSV1_FALLBACK",
];

pub struct S3Backend {
    pub settings: S3Settings,
}

impl S3Backend {
    fn bucket(&self) -> Result<&str, SinkError> {
        self.settings.bucket.as_deref().ok_or_else(|| {
            config::invalid(
                "bucket",
                "no bucket configured (set it in the plugin config or in the request)",
            )
        })
    }

    /// Virtual-hosted URLs (`<bucket>.<host>`), as the Go egress uses unless
    /// `force_path_style`. Not possible for an IP-address endpoint or a bucket with dots
    /// (TLS wildcards cover one label): those use path style.
    fn virtual_hosted(&self, bucket: &str) -> bool {
        if self.settings.force_path_style || bucket.contains('.') {
            return false;
        }
        match &self.settings.endpoint {
            None => true,
            Some(endpoint) => {
                let host = host_of(endpoint);
                let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
                name.parse::<std::net::IpAddr>().is_err()
                    && !name.starts_with('[')
                    && name != "localhost"
            }
        }
    }

    /// The region the config or the environment names, if any.
    fn named_region(&self) -> Option<String> {
        self.settings.region.clone().or_else(|| {
            ["AWS_DEFAULT_REGION", "AWS_REGION"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
        })
    }

    fn region(&self) -> String {
        self.named_region()
            .unwrap_or_else(|| DEFAULT_REGION.to_string())
    }

    /// `sts_endpoint`, else the region's own STS (as the AWS SDKs now default to), else the
    /// global one.
    fn sts_endpoint(&self, role: &AssumeRoleSettings) -> String {
        if let Some(endpoint) = &role.sts_endpoint {
            return endpoint.clone();
        }
        match self.named_region() {
            // The China partition has its own domain.
            Some(region) if region.starts_with("cn-") => {
                format!("https://sts.{region}.amazonaws.com.cn")
            }
            Some(region) => format!("https://sts.{region}.amazonaws.com"),
            None => GLOBAL_STS_ENDPOINT.to_string(),
        }
    }

    /// The credential provider for an assumed role: STS is called on the first request, not
    /// here.
    fn assume_role_provider(
        &self,
        role: &AssumeRoleSettings,
    ) -> Result<RefreshingCredentials<StsFetch, SystemClock>, SinkError> {
        let s = &self.settings;
        let Some((key, secret, token)) = &s.credentials else {
            // `S3Settings::parse` refuses a role without keys.
            return Err(config::invalid(
                "access_key",
                "is required with assume_role_arn",
            ));
        };
        let options = client_options(role.allow_http, s.proxy_url.as_ref().map(|p| p.expose()));
        let client = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| SinkError::config(format!("cannot configure the STS client: {e}")))?;
        let fetch = StsFetch {
            client,
            retry: s.retry.clone(),
            caller: AwsCredential {
                key_id: key.clone(),
                secret_key: secret.expose().to_string(),
                token: token.as_ref().map(|t| t.expose().to_string()),
            },
            request: AssumeRole {
                endpoint: self.sts_endpoint(role),
                region: self.region(),
                role_arn: role.role_arn.clone(),
                external_id: role.external_id.clone(),
                session_name: SESSION_NAME.to_string(),
                duration: sts::DURATION,
            },
        };
        Ok(RefreshingCredentials::new(fetch, SystemClock))
    }
}

impl Backend for S3Backend {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn ready(&self) -> Result<(), SinkError> {
        self.bucket().map(drop)
    }

    fn build(&self) -> Result<Arc<dyn ObjectStore>, SinkError> {
        let s = &self.settings;
        let bucket = self.bucket()?;
        let virtual_hosted = self.virtual_hosted(bucket);
        let mut builder = AmazonS3Builder::new();
        match (&s.assume_role, &s.credentials) {
            (Some(role), _) => {
                builder = builder.with_credentials(Arc::new(self.assume_role_provider(role)?));
            }
            (None, Some((key, secret, token))) => {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(secret.expose());
                if let Some(token) = token {
                    builder = builder.with_token(token.expose());
                }
            }
            (None, None) => {
                for name in CREDENTIAL_ENV {
                    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
                    let key = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>();
                    if let (Some(value), Ok(key)) = (value, key) {
                        builder = builder.with_config(key, value);
                    }
                }
            }
        }
        builder = builder
            .with_bucket_name(bucket)
            .with_region(self.region())
            .with_virtual_hosted_style_request(virtual_hosted)
            .with_retry(s.retry.clone())
            .with_client_options(client_options(
                s.allow_http,
                s.proxy_url.as_ref().map(|p| p.expose()),
            ));
        if let Some(endpoint) = &s.endpoint {
            // object_store takes a virtual-hosted endpoint with the bucket already in it.
            let endpoint = if virtual_hosted {
                let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                format!("{scheme}://{bucket}.{host}")
            } else {
                endpoint.clone()
            };
            builder = builder.with_endpoint(endpoint);
        }
        if s.checksum == Checksum::Sha256 {
            builder = builder.with_checksum_algorithm(OsChecksum::SHA256);
        }
        let store = builder
            .build()
            .map_err(|e| SinkError::config(format!("cannot configure S3: {e}")))?;
        Ok(Arc::new(store))
    }

    /// The Go egress's location: `https://<bucket>.<endpoint host or s3.amazonaws.com>/<key>`,
    /// or with `force_path_style` `<endpoint or https://s3.amazonaws.com>/<bucket>/<key>`.
    fn location(&self, key: &str) -> String {
        let bucket = self.settings.bucket.as_deref().unwrap_or_default();
        if self.settings.force_path_style {
            let base = self
                .settings
                .endpoint
                .as_deref()
                .unwrap_or("https://s3.amazonaws.com");
            join(base, &[bucket, key])
        } else {
            let host = self
                .settings
                .endpoint
                .as_deref()
                .map_or("s3.amazonaws.com", host_of);
            join(&format!("https://{bucket}.{host}"), &[key])
        }
    }

    fn attributes(&self, spec: &ObjectSpec) -> Attributes {
        let mut attributes = Attributes::new();
        if !spec.content_type.is_empty() {
            attributes.insert(Attribute::ContentType, spec.content_type.clone().into());
        }
        attributes.insert(
            Attribute::ContentDisposition,
            self.settings.content_disposition.clone().into(),
        );
        for (key, value) in &self.settings.metadata {
            attributes.insert(
                Attribute::Metadata(key.clone().into()),
                value.clone().into(),
            );
        }
        attributes
    }

    fn tags(&self) -> TagSet {
        self.settings.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_plugin_api::json;

    fn backend(v: egress_plugin_api::Value) -> S3Backend {
        S3Backend {
            settings: S3Settings::parse(&v).unwrap(),
        }
    }

    #[test]
    fn locations_match_the_go_egress() {
        let cases = [
            (
                json!({"bucket": "mybucket"}),
                "foo.mp4",
                "https://mybucket.s3.amazonaws.com/foo.mp4",
            ),
            (
                json!({"bucket": "mybucket", "endpoint": "s3.example.com"}),
                "foo.mp4",
                "https://mybucket.s3.example.com/foo.mp4",
            ),
            (
                json!({"bucket": "mybucket", "endpoint": "https://s3.example.com"}),
                "foo.mp4",
                "https://mybucket.s3.example.com/foo.mp4",
            ),
            (
                json!({"bucket": "mybucket", "endpoint": "http://s3.example.com"}),
                "foo.mp4",
                "https://mybucket.s3.example.com/foo.mp4",
            ),
            (
                json!({"bucket": "mybucket"}),
                "a/b/c.mp4",
                "https://mybucket.s3.amazonaws.com/a/b/c.mp4",
            ),
            (
                json!({"bucket": "mybucket"}),
                "folder/my file.mp4",
                "https://mybucket.s3.amazonaws.com/folder/my%20file.mp4",
            ),
            (
                json!({"bucket": "mybucket"}),
                "café/résumé.mp4",
                "https://mybucket.s3.amazonaws.com/caf%C3%A9/r%C3%A9sum%C3%A9.mp4",
            ),
            (
                json!({"bucket": "mybucket", "force_path_style": true}),
                "foo.mp4",
                "https://s3.amazonaws.com/mybucket/foo.mp4",
            ),
            (
                json!({"bucket": "mybucket", "endpoint": "https://minio.example.com",
                    "force_path_style": true}),
                "foo.mp4",
                "https://minio.example.com/mybucket/foo.mp4",
            ),
            (
                json!({"bucket": "rec", "endpoint": "http://127.0.0.1:9000/",
                    "force_path_style": true}),
                "a/b.mp4",
                "http://127.0.0.1:9000/rec/a/b.mp4",
            ),
        ];
        for (config, key, want) in cases {
            assert_eq!(
                backend(config.clone()).location(key),
                want,
                "{config} {key}"
            );
        }
    }

    #[test]
    fn addressing_style() {
        let b = backend(json!({"bucket": "b"}));
        assert!(b.virtual_hosted("b"));
        let b = backend(json!({"bucket": "b", "force_path_style": true}));
        assert!(!b.virtual_hosted("b"));
        let b = backend(json!({"bucket": "b", "endpoint": "http://127.0.0.1:9000"}));
        assert!(!b.virtual_hosted("b"));
        let b = backend(json!({"bucket": "b", "endpoint": "http://localhost:9000"}));
        assert!(!b.virtual_hosted("b"));
        let b = backend(json!({"bucket": "b", "endpoint": "https://oss-cn-hangzhou.aliyuncs.com"}));
        assert!(b.virtual_hosted("b"));
        assert!(!b.virtual_hosted("my.bucket"));
    }

    #[test]
    fn no_bucket_is_a_config_error_naming_bucket() {
        let e = backend(json!({})).ready().unwrap_err();
        assert_eq!((e.is_config(), e.field()), (true, Some("bucket")));
        let e = backend(json!({})).build().unwrap_err();
        assert_eq!(e.field(), Some("bucket"));
    }

    #[test]
    fn attributes_and_tags() {
        let b = backend(json!({"bucket": "b", "metadata": {"room": "r1"}, "tagging": "k=v"}));
        let attrs = b.attributes(&ObjectSpec::new("k").with_content_type("video/mp4"));
        assert_eq!(
            attrs.get(&Attribute::ContentType).map(|v| v.as_ref()),
            Some("video/mp4")
        );
        assert_eq!(
            attrs
                .get(&Attribute::ContentDisposition)
                .map(|v| v.as_ref()),
            Some("inline")
        );
        assert_eq!(
            attrs
                .get(&Attribute::Metadata("room".into()))
                .map(|v| v.as_ref()),
            Some("r1")
        );
        assert_eq!(b.tags().encoded(), "k=v");
    }

    #[test]
    fn sts_endpoint_by_region() {
        let role = |extra: egress_plugin_api::Value| {
            let mut config = json!({"bucket": "b", "access_key": "AK", "secret": "SK",
                                    "assume_role_arn": "arn:aws:iam::1:role/r"});
            if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
                c.extend(e.clone());
            }
            let b = backend(config);
            let role = b.settings.assume_role.clone().unwrap();
            b.sts_endpoint(&role)
        };
        assert_eq!(
            role(json!({"region": "eu-west-1"})),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            role(json!({"region": "cn-north-1"})),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            role(json!({"region": "eu-west-1", "sts_endpoint": "http://127.0.0.1:5000"})),
            "http://127.0.0.1:5000"
        );
        // Without a region (and none in this test's environment, unless the runner sets one),
        // the global endpoint.
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            assert_eq!(role(json!({})), GLOBAL_STS_ENDPOINT);
        }
    }

    #[test]
    fn builds_with_a_role_without_io() {
        egress_objstore_sink::install_crypto_provider();
        // Port 1 answers nothing: building must not call STS.
        let b = backend(json!({"bucket": "b", "access_key": "AK", "secret": "SK",
                               "assume_role_arn": "arn:aws:iam::1:role/r",
                               "sts_endpoint": "http://127.0.0.1:1",
                               "endpoint": "http://127.0.0.1:1", "force_path_style": true}));
        assert!(b.build().is_ok());
    }

    #[test]
    fn builds_without_io() {
        egress_objstore_sink::install_crypto_provider();
        let b = backend(json!({"bucket": "b", "access_key": "AK", "secret": "SK",
                               "endpoint": "http://127.0.0.1:1", "force_path_style": true}));
        assert!(b.build().is_ok());
    }
}
