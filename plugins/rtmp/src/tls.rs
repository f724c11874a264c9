//! The TLS client for `rtmps://`: rustls with the ring provider (the crypto the rest of the
//! binary uses), Mozilla's roots from `webpki-roots` (no dependency on the system store, the
//! same in every container), plus the PEM certificates of the config's `ca_file` (a private
//! ingest's CA; the tests' self-signed one).

use std::path::Path;
use std::sync::Arc;

use egress_plugin_api::SinkError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Build the client config. Reads `ca_file` (I/O: called on first connect, never in `create`).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, SinkError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad =
            |why: String| SinkError::config_field("ca_file", format!("{}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no PEM certificate in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::permanent(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
