//! What an `srt://` URL asks for, checked without I/O: caller mode to `host:port`, with the
//! query parameters of libsrt's URI syntax that a sender needs: `passphrase`, `pbkeylen`,
//! `streamid`, `latency` (ms). Others (`maxbw`, `tlpktdrop`, …) are ignored, with a log line
//! at connect. Values that libsrt would refuse later with a vaguer error are refused here.

use std::fmt;

use egress_plugin_api::SinkError;
use url::Url;

/// SRT's passphrase rule (libsrt refuses others at connect).
const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

/// A checked SRT URL. `Debug`/`Display` show host and port only: the query holds secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub passphrase: Option<String>,
    pub pbkeylen: Option<i32>,
    pub streamid: Option<String>,
    pub latency_ms: Option<u32>,
    /// Query keys we do not apply (logged at connect).
    pub ignored: Vec<String>,
}

impl Target {
    pub fn parse(uri: &str) -> Result<Target, SinkError> {
        let bad = |why: String| SinkError::config_field("url", format!("invalid srt url: {why}"));
        let url = Url::parse(uri.trim()).map_err(|e| bad(e.to_string()))?;
        if !url.scheme().eq_ignore_ascii_case("srt") {
            return Err(bad(format!(
                "the scheme is {}://, not srt://",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().ok_or_else(|| bad("no port".into()))?;
        let mut t = Target {
            host,
            port,
            passphrase: None,
            pbkeylen: None,
            streamid: None,
            latency_ms: None,
            ignored: Vec::new(),
        };
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "mode" if value != "caller" && value != "client" => {
                    return Err(bad(format!(
                        "mode {value:?}: an egress publishes as the caller (mode=caller)"
                    )));
                }
                "mode" => {}
                "passphrase" if !PASSPHRASE_LEN.contains(&value.chars().count()) => {
                    return Err(bad("the passphrase must have 10 to 79 characters".into()));
                }
                "passphrase" => t.passphrase = Some(value.into_owned()),
                "pbkeylen" => match value.as_ref() {
                    "0" | "16" | "24" | "32" => t.pbkeylen = value.parse().ok(),
                    _ => return Err(bad(format!("pbkeylen {value:?} is not 16, 24 or 32"))),
                },
                "streamid" if value.len() > 512 => {
                    return Err(bad("the streamid is longer than 512 bytes".into()));
                }
                "streamid" => t.streamid = Some(value.into_owned()),
                "latency" => {
                    t.latency_ms = Some(value.parse::<u32>().map_err(|_| {
                        bad(format!("latency {value:?} is not a number of milliseconds"))
                    })?);
                }
                other => t.ignored.push(other.to_string()),
            }
        }
        Ok(t)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "srt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "srt://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_caller_urls() {
        let t = Target::parse(
            "srt://127.0.0.1:8890?streamid=publish:live/a&passphrase=0123456789&pbkeylen=16&latency=200",
        )
        .unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.latency_ms),
            ("127.0.0.1", 8890, Some(200))
        );
        assert_eq!(t.streamid.as_deref(), Some("publish:live/a"));
        assert_eq!(
            (t.passphrase.as_deref(), t.pbkeylen),
            (Some("0123456789"), Some(16))
        );
        assert_eq!(t.to_string(), "srt://127.0.0.1:8890");
        assert!(!format!("{t:?}").contains("0123456789"));
        assert!(Target::parse("srt://[::1]:9000").is_ok());
        assert!(Target::parse("SRT://host:9000?mode=caller").is_ok());
    }

    #[test]
    fn refuses_what_would_fail_later() {
        for url in [
            "srt://host",
            "srt://:9000",
            "rtmp://host:9000",
            "srt://host:9000?mode=listener",
            "srt://host:9000?passphrase=short",
            "srt://host:9000?pbkeylen=20",
            "srt://host:9000?latency=abc",
            "not a url",
        ] {
            let e = Target::parse(url).unwrap_err();
            assert!(e.is_config(), "{url}: {e}");
            assert_eq!(e.field(), Some("url"), "{url}");
        }
    }
}
