//! How the `azure` settings become a `MicrosoftAzure` store and object URLs.

use std::sync::Arc;

use egress_objstore_sink::Backend;
use egress_objstore_sink::config::client_options;
use egress_objstore_sink::location::join;
use egress_objstore_sink::object_store::ObjectStore;
use egress_objstore_sink::object_store::azure::MicrosoftAzureBuilder;
use egress_plugin_api::{SinkError, config};

use crate::config::AzureSettings;

pub struct AzureBackend {
    pub settings: AzureSettings,
}

impl AzureBackend {
    fn container(&self) -> Result<&str, SinkError> {
        self.settings.container_name.as_deref().ok_or_else(|| {
            config::invalid(
                "container_name",
                "no container configured (set it in the plugin config or in the request)",
            )
        })
    }

    fn account(&self) -> Result<&str, SinkError> {
        self.settings
            .account_name
            .as_deref()
            .ok_or_else(|| config::invalid("account_name", "no storage account configured"))
    }
}

impl Backend for AzureBackend {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn ready(&self) -> Result<(), SinkError> {
        self.container()?;
        self.account().map(drop)
    }

    fn build(&self) -> Result<Arc<dyn ObjectStore>, SinkError> {
        let s = &self.settings;
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(self.account()?)
            .with_container_name(self.container()?)
            .with_retry(s.retry.clone())
            .with_client_options(client_options(s.allow_http, None));
        if let Some(key) = &s.account_key {
            builder = builder.with_access_key(key.expose());
        }
        if let Some(endpoint) = &s.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let store = builder
            .build()
            .map_err(|e| SinkError::config(format!("cannot configure Azure Blob: {e}")))?;
        Ok(Arc::new(store))
    }

    /// The Go egress's location, `https://<account>.blob.core.windows.net/<container>/<key>`,
    /// or `<endpoint>/<container>/<key>` with an endpoint.
    fn location(&self, key: &str) -> String {
        let s = &self.settings;
        let container = s.container_name.as_deref().unwrap_or_default();
        let base = match &s.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!(
                "https://{}.blob.core.windows.net",
                s.account_name.as_deref().unwrap_or_default()
            ),
        };
        join(&base, &[container, key])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_plugin_api::{Value, json};

    fn backend(v: Value) -> AzureBackend {
        AzureBackend {
            settings: AzureSettings::parse(&v).unwrap(),
        }
    }

    #[test]
    fn locations_match_the_go_egress() {
        let cases = [
            (
                json!({"account_name": "acct", "container_name": "mycontainer"}),
                "foo.mp4",
                "https://acct.blob.core.windows.net/mycontainer/foo.mp4",
            ),
            (
                json!({"account_name": "acct", "container_name": "/mycontainer"}),
                "foo.mp4",
                "https://acct.blob.core.windows.net/mycontainer/foo.mp4",
            ),
            (
                json!({"account_name": "acct", "container_name": "mycontainer/"}),
                "a/b/c.mp4",
                "https://acct.blob.core.windows.net/mycontainer/a/b/c.mp4",
            ),
            (
                json!({"account_name": "acct", "container_name": "mycontainer"}),
                "my file.mp4",
                "https://acct.blob.core.windows.net/mycontainer/my%20file.mp4",
            ),
            (
                json!({"account_name": "acct", "container_name": "mycontainer"}),
                "café/résumé.mp4",
                "https://acct.blob.core.windows.net/mycontainer/caf%C3%A9/r%C3%A9sum%C3%A9.mp4",
            ),
            (
                json!({"account_name": "devstoreaccount1", "container_name": "rec",
                    "endpoint": "http://127.0.0.1:10000/devstoreaccount1"}),
                "a.mp4",
                "http://127.0.0.1:10000/devstoreaccount1/rec/a.mp4",
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
    fn missing_fields_are_config_errors() {
        let e = backend(json!({})).ready().unwrap_err();
        assert_eq!(e.field(), Some("container_name"));
        let e = backend(json!({"container_name": "c"})).ready().unwrap_err();
        assert_eq!(e.field(), Some("account_name"));
        assert!(
            backend(json!({"container_name": "c", "account_name": "a"}))
                .ready()
                .is_ok()
        );
    }
}
