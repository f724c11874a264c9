//! Where an RTMP URL points: host, port, TLS or not, application and stream key.
//!
//! The shape is Go egress's (`^(rtmps?://)(.*/)(.*/)(\S*)( live=1)?$`, error text "rtmp urls
//! must be of format rtmp(s)://{host}(/{path})/{app}/{stream_key}( live=1)"), and the split
//! is GStreamer rtmp2sink's, which publishes for Go: the stream key is what follows the last
//! `/`, the application everything between the host and that `/` (`rtmp://h/a/b/key`
//! publishes `key` on application `a/b`). The librtmp-style ` live=1` suffix is accepted and
//! dropped: RTMP publishing is live anyway.

use std::fmt;

use egress_plugin_api::SinkError;

/// Go's error text for a malformed RTMP URL.
pub const FORMAT_ERROR: &str =
    "rtmp urls must be of format rtmp(s)://{host}(/{path})/{app}/{stream_key}( live=1)";

const RTMP_PORT: u16 = 1935;
const RTMPS_PORT: u16 = 443;

/// A parsed RTMP URL. `Debug` and `Display` leave the stream key out: it is a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub app: String,
    pub stream_key: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, SinkError> {
        let bad = |why: &str| SinkError::config_field("url", format!("{FORMAT_ERROR} ({why})"));
        let url = url.trim();
        let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "rtmps://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "rtmp://") {
            (false, rest)
        } else {
            return Err(bad("the scheme is not rtmp:// or rtmps://"));
        };
        let rest = rest.strip_suffix(" live=1").unwrap_or(rest);
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no application and stream key"))?;
        let (app, stream_key) = path
            .rsplit_once('/')
            .ok_or_else(|| bad("no application before the stream key"))?;
        if app.is_empty() {
            return Err(bad("the application is empty"));
        }
        if stream_key.is_empty() {
            return Err(bad("the stream key is empty"));
        }
        if stream_key.chars().any(char::is_whitespace) {
            return Err(bad("the stream key contains white space"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        Ok(Target {
            tls,
            host: host.to_string(),
            port: port.unwrap_or(if tls { RTMPS_PORT } else { RTMP_PORT }),
            app: app.to_string(),
            stream_key: stream_key.to_string(),
        })
    }

    /// The `tcUrl` of the `connect` command: the URL without the stream key (some servers,
    /// nginx-rtmp and YouTube among them, require it).
    pub fn tc_url(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}/{}", self.port, self.app)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{{stream key}}", self.tc_url())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go_and_rtmp2sink() {
        let t = Target::parse("rtmp://localhost/live/key1").unwrap();
        assert_eq!(
            (
                t.tls,
                t.host.as_str(),
                t.port,
                t.app.as_str(),
                t.stream_key.as_str()
            ),
            (false, "localhost", 1935, "live", "key1")
        );
        assert_eq!(t.tc_url(), "rtmp://localhost:1935/live");
        let t = Target::parse("rtmps://global-live.mux.com:443/app/abc-def live=1").unwrap();
        assert_eq!(
            (t.tls, t.port, t.app.as_str(), t.stream_key.as_str()),
            (true, 443, "app", "abc-def")
        );
        let t = Target::parse("RTMPS://a.example/x/y/live_123?bandwidthtest=true").unwrap();
        assert_eq!(
            (t.port, t.app.as_str(), t.stream_key.as_str()),
            (443, "x/y", "live_123?bandwidthtest=true")
        );
        let t = Target::parse("rtmp://[::1]:19350/live/k").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 19350));
        assert_eq!(t.tc_url(), "rtmp://[::1]:19350/live");
    }

    #[test]
    fn refuses_what_go_refuses_with_its_text() {
        for url in [
            "rtmp://host/key",
            "rtmp://host//key",
            "rtmp://host/live/",
            "srt://host/live/key",
            "rtmp:///live/key",
            "rtmp://host:99999/live/key",
            "rtmp://user@host/live/key",
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(e.is_config(), "{url}: {e}");
            assert!(e.message().starts_with(FORMAT_ERROR), "{url}: {e}");
        }
    }

    #[test]
    fn display_hides_the_key() {
        let t = Target::parse("rtmp://h/live/secret-key").unwrap();
        assert!(!format!("{t} {t:?}").contains("secret-key"));
    }
}
