//! How the `gcs` settings become a `GoogleCloudStorage` store and object URLs.

use std::sync::Arc;

use egress_objstore_sink::Backend;
use egress_objstore_sink::config::client_options;
use egress_objstore_sink::location::join;
use egress_objstore_sink::object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use egress_objstore_sink::object_store::{ObjectStore, StaticCredentialProvider};
use egress_plugin_api::{SinkError, config};

use crate::config::GcsSettings;

pub struct GcsBackend {
    pub settings: GcsSettings,
}

impl GcsBackend {
    fn bucket(&self) -> Result<&str, SinkError> {
        self.settings.bucket.as_deref().ok_or_else(|| {
            config::invalid(
                "bucket",
                "no bucket configured (set it in the plugin config or in the request)",
            )
        })
    }
}

impl Backend for GcsBackend {
    fn name(&self) -> &'static str {
        "gcs"
    }

    fn ready(&self) -> Result<(), SinkError> {
        self.bucket().map(drop)
    }

    /// Runs on a blocking thread: application default credentials are read from a file.
    fn build(&self) -> Result<Arc<dyn ObjectStore>, SinkError> {
        let s = &self.settings;
        let mut builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(self.bucket()?)
            .with_retry(s.retry.clone())
            .with_client_options(client_options(
                s.allow_http,
                s.proxy_url.as_ref().map(|p| p.expose()),
            ));
        if let Some(endpoint) = &s.endpoint {
            builder = builder.with_base_url(endpoint);
        }
        let credentials_field = if s.anonymous {
            // What object_store's `disable_oauth` does: an empty bearer token, no token fetch.
            builder =
                builder.with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
                    bearer: String::new(),
                })));
            "anonymous"
        } else if let Some(json) = &s.credentials_json {
            builder = builder.with_service_account_key(json.expose());
            "credentials_json"
        } else {
            // object_store reads gcloud's file by itself, but not this variable.
            if let Some(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
                .ok()
                .filter(|p| !p.is_empty())
            {
                builder = builder.with_application_credentials(path);
            }
            "credentials_json"
        };
        let store = builder.build().map_err(|e| {
            // Say which field to fix; object_store's message names no secret.
            config::invalid(credentials_field, format!("cannot configure GCS: {e}"))
        })?;
        Ok(Arc::new(store))
    }

    /// The Go egress's location, `https://<bucket>.storage.googleapis.com/<key>`, or
    /// `<endpoint>/<bucket>/<key>` with an endpoint.
    fn location(&self, key: &str) -> String {
        let bucket = self.settings.bucket.as_deref().unwrap_or_default();
        match &self.settings.endpoint {
            Some(endpoint) => join(endpoint, &[bucket, key]),
            None => join(&format!("https://{bucket}.storage.googleapis.com"), &[key]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_plugin_api::{Value, json};

    fn backend(v: Value) -> GcsBackend {
        GcsBackend {
            settings: GcsSettings::parse(&v).unwrap(),
        }
    }

    #[test]
    fn locations_match_the_go_egress() {
        let cases = [
            (
                json!({"bucket": "mybucket"}),
                "foo.mp4",
                "https://mybucket.storage.googleapis.com/foo.mp4",
            ),
            (
                json!({"bucket": "mybucket"}),
                "a/b/c.mp4",
                "https://mybucket.storage.googleapis.com/a/b/c.mp4",
            ),
            (
                json!({"bucket": "mybucket"}),
                "folder/my file.mp4",
                "https://mybucket.storage.googleapis.com/folder/my%20file.mp4",
            ),
            (
                json!({"bucket": "mybucket"}),
                "café/résumé.mp4",
                "https://mybucket.storage.googleapis.com/caf%C3%A9/r%C3%A9sum%C3%A9.mp4",
            ),
            (
                json!({"bucket": "rec", "endpoint": "http://127.0.0.1:4443/"}),
                "a/b.mp4",
                "http://127.0.0.1:4443/rec/a/b.mp4",
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
    fn no_bucket_is_a_config_error_naming_bucket() {
        let e = backend(json!({})).ready().unwrap_err();
        assert_eq!((e.is_config(), e.field()), (true, Some("bucket")));
    }

    #[test]
    fn anonymous_builds_without_io() {
        egress_objstore_sink::install_crypto_provider();
        let b =
            backend(json!({"bucket": "b", "anonymous": true, "endpoint": "http://127.0.0.1:1"}));
        assert!(b.build().is_ok());
    }
}
