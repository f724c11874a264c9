//! The host side of `egress:plugin/http`: the only network a WASM plugin has.
//!
//! Every URL is checked against the plugin's `allowed_hosts` before any connection; redirects
//! are not followed (a redirect could leave the allowed hosts); `Host` and proxy headers from
//! the guest are refused; response bodies are capped.

use std::io::Read;
use std::time::{Duration, Instant};

use super::bindings::egress::plugin::http::{self, Error, Request, Response};
use super::store::StoreState;

/// Largest response body handed to a guest.
const MAX_RESPONSE: u64 = 1 << 20;
/// Timeout when the guest asks for none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeout a guest may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Headers the guest may not set: they would let it talk to another host than the URL's.
const FORBIDDEN_HEADERS: [&str; 3] = ["host", "proxy-authorization", "proxy-connection"];

/// An `allowed_hosts` entry: `example.com`, `example.com:8443`, `*.example.com`, `[::1]:80`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
    /// `*.example.com` matches subdomains of `example.com`, not `example.com` itself.
    wildcard: bool,
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Option<Self> {
        let (wildcard, rest) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (addr.to_string(), port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
                None => (rest.to_string(), None),
            }
        };
        (!host.is_empty()).then(|| HostPattern {
            host: host.to_ascii_lowercase(),
            port,
            wildcard,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            host == self.host
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// What one plugin may reach, and the client that reaches it.
pub struct HttpGate {
    allowed: Vec<HostPattern>,
    agent: ureq::Agent,
}

impl HttpGate {
    pub fn new(allowed: Vec<HostPattern>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        HttpGate { allowed, agent }
    }

    fn check(&self, url: &str) -> Result<(), Error> {
        let parsed =
            url::Url::parse(url).map_err(|e| Error::InvalidRequest(format!("{url}: {e}")))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(Error::Denied(format!(
                "scheme {} is not http or https",
                parsed.scheme()
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::InvalidRequest(
                "credentials in URLs are not allowed".into(),
            ));
        }
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port_or_known_default().unwrap_or(0);
        if self.allowed.iter().any(|p| p.matches(host, port)) {
            Ok(())
        } else {
            Err(Error::Denied(format!(
                "{host}:{port} is not in this plugin's allowed_hosts"
            )))
        }
    }

    pub fn send(&self, req: &Request) -> Result<Response, Error> {
        self.check(&req.url)?;
        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(req.url.as_str());
        for (name, value) in &req.headers {
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(Error::InvalidRequest(format!(
                    "header {name} is not allowed"
                )));
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(req.body.as_slice())
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let timeout = match req.timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)).min(MAX_TIMEOUT),
        };
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(timeout))
            .build();
        let mut response = self.agent.run(request).map_err(map_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::Connection(e.to_string()))?;
        if body.len() as u64 > MAX_RESPONSE {
            return Err(Error::InvalidRequest(format!(
                "response body exceeds {MAX_RESPONSE} bytes"
            )));
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn map_error(e: ureq::Error) -> Error {
    use ureq::Error as E;
    match e {
        E::Timeout(t) => Error::Timeout(t.to_string()),
        E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Error::Timeout(io.to_string()),
        E::BadUri(_) | E::Http(_) => Error::InvalidRequest(e.to_string()),
        other => Error::Connection(other.to_string()),
    }
}

impl http::Host for StoreState {
    fn send(&mut self, request: Request) -> Result<Response, Error> {
        let started = Instant::now();
        let result = self.http.send(&request);
        // Waiting on the network is not the guest's computing time.
        self.clock.in_host += started.elapsed();
        if let Err(e) = &result {
            tracing::debug!(plugin = %self.plugin, url = %request.url, error = ?e, "Plugin HTTP request failed.");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("example.com").matches("example.com", 443));
        assert!(p("Example.com").matches("EXAMPLE.com", 80));
        assert!(!p("example.com").matches("evil-example.com", 443));
        assert!(p("example.com:8443").matches("example.com", 8443));
        assert!(!p("example.com:8443").matches("example.com", 443));
        assert!(p("*.example.com").matches("a.example.com", 443));
        assert!(!p("*.example.com").matches("example.com", 443));
        assert!(!p("*.example.com").matches("aexample.com", 443));
        assert!(p("127.0.0.1:8080").matches("127.0.0.1", 8080));
        assert!(p("[::1]:80").matches("[::1]", 80));
        assert!(HostPattern::parse("example.com:x").is_none());
    }

    #[test]
    fn gate_checks_before_connecting() {
        let gate = HttpGate::new(vec![HostPattern::parse("127.0.0.1:9").unwrap()]);
        assert!(matches!(gate.check("http://127.0.0.1:9/x"), Ok(())));
        assert!(matches!(
            gate.check("http://127.0.0.2:9/x"),
            Err(Error::Denied(_))
        ));
        assert!(matches!(
            gate.check("file:///etc/passwd"),
            Err(Error::Denied(_))
        ));
        assert!(matches!(
            gate.check("http://u:p@127.0.0.1:9/"),
            Err(Error::InvalidRequest(_))
        ));
        let req = Request {
            method: "GET".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: vec![("Host".into(), "evil".into())],
            body: vec![],
            timeout_ms: 1,
        };
        assert!(matches!(gate.send(&req), Err(Error::InvalidRequest(_))));
    }
}
