//! Live-stream URLs: which protocol a URL speaks, the shorthands it may use, whether it is well
//! formed, and the redacted form shown to users — Go's rules (`pkg/config/urls.go`,
//! `output.go`, protocol's `utils/redact.go`), with the differences listed below.
//!
//! Pure and I/O-free: resolving `twitch://` uses a configured ingest template and never the
//! network.
//!
//! Where we differ from Go on purpose:
//! * `twitch://<key>` (and `rtmp(s)://*.contribute.live-video.net/app/<key>`) resolves with
//!   [`StreamUrlRules::twitch_ingest_template`], by default Twitch's global ingest
//!   [`TWITCH_GLOBAL_INGEST`]. Go asks `https://ingest.twitch.tv/ingests` during request
//!   validation (an internet call on the request path that fails offline).
//! * SRT and websocket URLs are redacted too (every query value becomes `{...}`, and a userinfo
//!   password), in `StreamInfo.url`, errors and logs. Go shows them in clear there.
//! * An RTMP stream key that carries a query (`app/<key>?auth=...`, Facebook style) has the key
//!   redacted as Go does and every query value replaced by `{...}` (Go redacts the whole
//!   `key?query` as one identifier, which keeps its last three characters — part of a secret).
//! * Errors name the redacted URL. Go's `invalid url %s: %s` carries the raw URL, stream key
//!   included, into the API response, webhooks and logs. Parse errors give the `net/url`
//!   reason without Go's `parse "<url>": ` prefix, which would repeat the raw URL.
//! * SRT URLs are checked at validation (caller mode only, port required, `pbkeylen`,
//!   passphrase length, `latency`), so a bad one fails at StartEgress with a clear reason
//!   instead of at connect time.
//! * Keys that are not ASCII are redacted by characters, not bytes (Go slices bytes and can
//!   cut a character in half).

use std::fmt;
use std::sync::LazyLock;

use egress_proto::livekit::StreamProtocol;
use regex::Regex;

/// Twitch's documented global ingest, used for `twitch://<key>` unless the operator configures
/// another template. Go resolves the closest ingest through Twitch's API at validation time.
pub const TWITCH_GLOBAL_INGEST: &str = crate::config::defaults::DEFAULT_TWITCH_INGEST;

/// Go's text for an RTMP URL that does not match its regex `^(rtmps?://)(.*/)(.*/)(\S*)( live=1)?$`.
pub const RTMP_FORMAT: &str =
    "rtmp urls must be of format rtmp(s)://{host}(/{path})/{app}/{stream_key}( live=1)";

/// Go's `rtmpRegexp`. Go's `\S` is ASCII-only (`[^\t\n\f\r ]`); Rust's is Unicode, so it is
/// spelled out.
static RTMP_REGEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(rtmps?://)(.*/)(.*/)([^\t\n\f\r ]*)( live=1)?$").expect("static regex")
});

/// Go's `twitchEndpoint`: an explicit Twitch ingest URL, rewritten with the template as Go does.
static TWITCH_ENDPOINT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^rtmps?://.*\.contribute\.live-video\.net/app/(.*)( live=1)?$")
        .expect("static regex")
});

/// protocol's `shorthandStreamRegexp` (redaction of `mux://` and `twitch://`).
static SHORTHAND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(mux|twitch)://([^\t\n\f\r ]+)$").expect("static regex"));

/// The kind of live destination a URL is for (Go's `OutputTypeRTMP`, `OutputTypeSRT`,
/// `OutputTypeRaw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `rtmp`, `rtmps`, `mux`, `twitch`.
    Rtmp,
    /// `srt`.
    Srt,
    /// `ws`, `wss`: raw PCM audio over a websocket.
    Websocket,
}

impl StreamKind {
    /// Go's `types.StreamOutputTypes`.
    pub fn for_scheme(scheme: &str) -> Option<StreamKind> {
        match scheme {
            "rtmp" | "rtmps" | "mux" | "twitch" => Some(StreamKind::Rtmp),
            "srt" => Some(StreamKind::Srt),
            "ws" | "wss" => Some(StreamKind::Websocket),
            _ => None,
        }
    }
}

/// Which request API a stream output came from: v1 requests know no websocket protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestApi {
    /// Room composite, web, participant, track composite requests (`stream_outputs`).
    V1,
    /// `StartEgressRequest.outputs[]`.
    V2,
}

/// Errors, with Go's texts (`pkg/errors/errors.go`). The host maps them to psrpc
/// `InvalidArgument` (all of them; Go's `ErrStreamNotFound` is separate, see [`FindError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamUrlError {
    /// Go's `ErrInvalidUrl(url, reason)`; `url` is always the redacted form.
    #[error("invalid url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Go's `ErrInvalidInput(field)`.
    #[error("request has missing or invalid field: {field}")]
    InvalidInput { field: &'static str },
}

impl StreamUrlError {
    fn url(raw: &str, reason: impl Into<String>) -> StreamUrlError {
        StreamUrlError::InvalidUrl {
            url: redact_stream_url(raw),
            reason: reason.into(),
        }
    }
}

/// `UpdateStream` removal of a URL that is not there (Go: `stream %s not found`, NotFound), or
/// a redacted form that names more than one stream (ours: Go cannot match redacted forms).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    #[error("stream {0} not found")]
    NotFound(String),
    #[error("stream {0} matches more than one output; remove it by its full url")]
    Ambiguous(String),
}

/// Operator settings for URL resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamUrlRules {
    /// Template for `twitch://<key>`; `{stream_key}` is replaced by the key.
    pub twitch_ingest_template: String,
}

impl StreamUrlRules {
    /// The rules the config sets (`streams.twitch_ingest`).
    pub fn from_config(config: &crate::config::ServiceConfig) -> StreamUrlRules {
        StreamUrlRules {
            twitch_ingest_template: config.streams.twitch_ingest.clone(),
        }
    }
}

impl Default for StreamUrlRules {
    fn default() -> Self {
        StreamUrlRules {
            twitch_ingest_template: TWITCH_GLOBAL_INGEST.to_owned(),
        }
    }
}

/// SRT caller settings read from an `srt://` URL's query (the names `srtsink` reads).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SrtParams {
    pub host: String,
    pub port: u16,
    /// Secret.
    pub passphrase: Option<String>,
    /// 0 (default: 16 when a passphrase is set), 16, 24 or 32.
    pub pbkeylen: u32,
    /// Secret (often carries the publish key).
    pub streamid: Option<String>,
    /// Milliseconds.
    pub latency_ms: Option<u32>,
}

impl fmt::Debug for SrtParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "{...}"))
            .field("pbkeylen", &self.pbkeylen)
            .field("streamid", &self.streamid.as_ref().map(|_| "{...}"))
            .field("latency_ms", &self.latency_ms)
            .finish()
    }
}

/// A validated stream destination. `Debug` and `Display` show only the redacted form.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamUrl {
    /// As the client sent it (secret).
    pub raw: String,
    /// What the sink connects to: `mux://` and `twitch://` resolved (Go's `ParsedUrl`; secret).
    pub url: String,
    /// For `StreamInfo.url`, logs and errors.
    pub redacted: String,
    pub kind: StreamKind,
    /// The RTMP stream key (Go's `StreamID`; secret).
    pub stream_key: Option<String>,
    /// SRT settings from the URL.
    pub srt: Option<SrtParams>,
}

impl fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamUrl")
            .field("url", &self.redacted)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// How a candidate given to `UpdateStream` matched a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlMatch {
    /// The raw URL, its resolved form, or a shorthand resolving to it (Go's `GetStream`).
    Exact,
    /// The redacted form shown in `StreamInfo.url` (beyond Go).
    Redacted,
}

impl StreamUrl {
    /// Whether `candidate` names this stream: the raw URL, the resolved URL or the exact
    /// redacted form. Shorthands (`mux://<key>`) are resolved by [`find_stream`] first.
    pub fn matches(&self, candidate: &str) -> bool {
        self.match_kind(candidate).is_some()
    }

    pub fn match_kind(&self, candidate: &str) -> Option<UrlMatch> {
        if candidate == self.raw || candidate == self.url {
            Some(UrlMatch::Exact)
        } else if candidate == self.redacted {
            Some(UrlMatch::Redacted)
        } else {
            None
        }
    }
}

/// The stream kind of a stream output (Go's `updateEncodedOutputs` / `updateOutputs`): the
/// protocol field, or for `DEFAULT_PROTOCOL` the scheme of the first URL.
///
/// Differences from Go: an unknown protocol number is `stream protocol` (Go falls through with
/// no type and reports the first URL's scheme as invalid). v1 requests with `WEBSOCKET` are
/// refused with `stream protocol` as well (Go gives `invalid url ...: invalid scheme`).
pub fn stream_kind(
    protocol: i32,
    urls: &[String],
    api: RequestApi,
) -> Result<StreamKind, StreamUrlError> {
    match StreamProtocol::try_from(protocol) {
        Ok(StreamProtocol::DefaultProtocol) => {
            let Some(first) = urls.first() else {
                return Err(StreamUrlError::InvalidInput {
                    field: "stream protocol",
                });
            };
            let scheme =
                go_url_scheme(first).map_err(|reason| StreamUrlError::url(first, reason))?;
            StreamKind::for_scheme(&scheme)
                .ok_or_else(|| StreamUrlError::url(first, "invalid protocol"))
        }
        Ok(StreamProtocol::Rtmp) => Ok(StreamKind::Rtmp),
        Ok(StreamProtocol::Srt) => Ok(StreamKind::Srt),
        Ok(StreamProtocol::Websocket) if api == RequestApi::V2 => Ok(StreamKind::Websocket),
        Ok(StreamProtocol::Websocket) | Err(_) => Err(StreamUrlError::InvalidInput {
            field: "stream protocol",
        }),
    }
}

/// Validates one URL for a stream output of `kind` (Go's `ValidateUrl`).
pub fn parse_stream_url(
    raw: &str,
    kind: StreamKind,
    rules: &StreamUrlRules,
) -> Result<StreamUrl, StreamUrlError> {
    let parts = go_url_parse(raw).map_err(|reason| StreamUrlError::url(raw, reason))?;
    if StreamKind::for_scheme(&parts.scheme) != Some(kind) {
        return Err(StreamUrlError::url(raw, "invalid scheme"));
    }
    match kind {
        StreamKind::Rtmp => {
            let url = resolve_rtmp(raw, &parts, rules);
            let Some(caps) = RTMP_REGEX.captures(&url) else {
                return Err(StreamUrlError::url(raw, RTMP_FORMAT));
            };
            let key = caps.get(4).map_or("", |m| m.as_str()).to_owned();
            Ok(StreamUrl {
                raw: raw.to_owned(),
                redacted: redact_rtmp(&url).unwrap_or_else(|| redact_stream_url(&url)),
                url,
                kind,
                stream_key: Some(key),
                srt: None,
            })
        }
        StreamKind::Srt => {
            let srt = parse_srt(raw, &parts)?;
            Ok(StreamUrl {
                raw: raw.to_owned(),
                url: raw.to_owned(),
                redacted: redact_stream_url(raw),
                kind,
                stream_key: None,
                srt: Some(srt),
            })
        }
        StreamKind::Websocket => {
            if parts.host.is_empty() {
                return Err(StreamUrlError::url(raw, "missing host"));
            }
            Ok(StreamUrl {
                raw: raw.to_owned(),
                url: raw.to_owned(),
                redacted: redact_stream_url(raw),
                kind,
                stream_key: None,
                srt: None,
            })
        }
    }
}

/// Finds the stream `candidate` names for `UpdateStream` removal: Go's `GetStream` (raw URL,
/// shorthands resolved), then — beyond Go — the exact redacted form when it names exactly one
/// stream. Errors name the candidate redacted.
pub fn find_stream(
    streams: &[StreamUrl],
    candidate: &str,
    rules: &StreamUrlRules,
) -> Result<usize, FindError> {
    let resolved = resolve_for_lookup(candidate, rules);
    if let Some(i) = streams
        .iter()
        .position(|s| s.match_kind(candidate) == Some(UrlMatch::Exact) || s.url == resolved)
    {
        return Ok(i);
    }
    let mut redacted = streams
        .iter()
        .enumerate()
        .filter(|(_, s)| s.redacted == candidate)
        .map(|(i, _)| i);
    match (redacted.next(), redacted.next()) {
        (Some(i), None) => Ok(i),
        (Some(_), Some(_)) => Err(FindError::Ambiguous(redact_stream_url(candidate))),
        (None, _) => Err(FindError::NotFound(redact_stream_url(candidate))),
    }
}

/// Go's `GetStream` resolution: shorthands and Twitch endpoints map to the URL they publish to;
/// anything else (including unparsable text) is compared as is.
fn resolve_for_lookup(candidate: &str, rules: &StreamUrlRules) -> String {
    match go_url_parse(candidate) {
        Ok(parts) if StreamKind::for_scheme(&parts.scheme) == Some(StreamKind::Rtmp) => {
            resolve_rtmp(candidate, &parts, rules)
        }
        _ => candidate.to_owned(),
    }
}

fn resolve_rtmp(raw: &str, parts: &GoUrl, rules: &StreamUrlRules) -> String {
    match parts.scheme.as_str() {
        "mux" => format!("rtmps://global-live.mux.com:443/app/{}", parts.host),
        "twitch" => rules
            .twitch_ingest_template
            .replace("{stream_key}", &parts.host),
        _ => match TWITCH_ENDPOINT.captures(raw) {
            Some(c) => rules
                .twitch_ingest_template
                .replace("{stream_key}", c.get(1).map_or("", |m| m.as_str())),
            None => raw.to_owned(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// SRT

/// SRT's limits: passphrase 10..=79 characters, streamid at most 512.
const SRT_PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;
const SRT_STREAMID_MAX: usize = 512;

fn parse_srt(raw: &str, parts: &GoUrl) -> Result<SrtParams, StreamUrlError> {
    let (host, port) = split_host_port(&parts.host);
    if host.is_empty() {
        return Err(StreamUrlError::url(
            raw,
            "srt urls must name a host (caller mode)",
        ));
    }
    let Some(port) = port else {
        return Err(StreamUrlError::url(raw, "srt urls must include a port"));
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(StreamUrlError::url(raw, format!("invalid port {port}"))),
    };
    let mut srt = SrtParams {
        host: host.to_owned(),
        port,
        ..Default::default()
    };
    for (name, value) in query_pairs(&parts.query) {
        match name.as_str() {
            "mode" if value != "caller" => {
                return Err(StreamUrlError::url(
                    raw,
                    format!("srt mode {value} is not supported: the egress connects as caller"),
                ));
            }
            "passphrase" => {
                if !SRT_PASSPHRASE_LEN.contains(&value.chars().count()) {
                    return Err(StreamUrlError::url(
                        raw,
                        "srt passphrase must be 10 to 79 characters",
                    ));
                }
                srt.passphrase = Some(value);
            }
            "pbkeylen" => {
                srt.pbkeylen = match value.parse() {
                    Ok(n @ (0 | 16 | 24 | 32)) => n,
                    _ => {
                        return Err(StreamUrlError::url(
                            raw,
                            "srt pbkeylen must be 0, 16, 24 or 32",
                        ));
                    }
                };
            }
            "streamid" => {
                if value.chars().count() > SRT_STREAMID_MAX {
                    return Err(StreamUrlError::url(
                        raw,
                        "srt streamid must be at most 512 characters",
                    ));
                }
                srt.streamid = Some(value);
            }
            "latency" => {
                srt.latency_ms = match value.parse() {
                    Ok(ms) => Some(ms),
                    Err(_) => {
                        return Err(StreamUrlError::url(
                            raw,
                            "srt latency must be a number of milliseconds",
                        ));
                    }
                };
            }
            // Other srtsink options pass through untouched.
            _ => {}
        }
    }
    Ok(srt)
}

/// `host:port` / `[v6]:port` → (host, port). The host keeps IPv6 brackets off.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    }
}

/// Query pairs, percent-decoded (`+` is kept: srtsink reads the URI with `GstUri`, which does
/// not treat `+` as a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Redaction

/// protocol's `utils.RedactIdentifier`: `{abc...xyz}` keeping the first and last 3 characters
/// of keys of 9 or more, 2 of 6–8, 1 of 3–5, none of shorter ones (`{...}`).
pub fn redact_identifier(identifier: &str) -> String {
    let chars: Vec<char> = identifier.chars().collect();
    let keep = match chars.len() {
        n if n >= 9 => 3,
        n if n >= 6 => 2,
        n if n >= 3 => 1,
        _ => 0,
    };
    let prefix: String = chars[..keep].iter().collect();
    let suffix: String = chars[chars.len() - keep..].iter().collect();
    format!("{{{prefix}...{suffix}}}")
}

/// [`redact_identifier`], leaving an already redacted key (`{abc...xyz}`) as it is, so that
/// redacting twice — an error naming a redacted candidate — changes nothing.
fn redact_key(key: &str) -> String {
    static REDACTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\{[^{}]{0,3}\.\.\.[^{}]{0,3}\}$").expect("static regex"));
    if REDACTED.is_match(key) {
        key.to_owned()
    } else {
        redact_identifier(key)
    }
}

/// protocol's `utils.RedactUrlQueryValues`: every non-empty query value becomes `{...}`.
pub fn redact_query_values(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    if query.is_empty() {
        return url.to_owned();
    }
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !v.is_empty() => format!("{k}={{...}}"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// The form of any stream URL that may be shown: in `StreamInfo.url`, errors, logs, metrics and
/// the request copy in `EgressInfo`. protocol's `utils.RedactStreamKey` (shorthand keys, the
/// RTMP key, query values), plus userinfo passwords, and — for RTMP-scheme text that does not
/// match Go's format — the last path element (it is most likely the key).
pub fn redact_stream_url(url: &str) -> String {
    if let Some(c) = SHORTHAND.captures(url) {
        return format!("{}://{}", &c[1], redact_key(&c[2]));
    }
    if let Some(redacted) = redact_rtmp(url) {
        return redacted;
    }
    let mut out = redact_query_values(&redact_userinfo_password(url));
    let is_rtmp = ["rtmp://", "rtmps://", "mux://", "twitch://"]
        .iter()
        .any(|p| url.starts_with(p));
    if is_rtmp {
        let path_end = out.find('?').unwrap_or(out.len());
        let after_scheme = out.find("://").map_or(0, |i| i + 3);
        if let Some(slash) = out[after_scheme..path_end]
            .rfind('/')
            .map(|i| i + after_scheme)
            && slash + 1 < path_end
        {
            let last = redact_key(&out[slash + 1..path_end]);
            out.replace_range(slash + 1..path_end, &last);
        }
    }
    out
}

/// Go's `redactStreamKey`, with the key's own query values redacted (see the module doc).
fn redact_rtmp(url: &str) -> Option<String> {
    let c = RTMP_REGEX.captures(url)?;
    let key = c.get(4).map_or("", |m| m.as_str());
    let key = match key.split_once('?') {
        Some((k, q)) => redact_query_values(&format!("{}?{q}", redact_key(k))),
        None => redact_key(key),
    };
    let head = redact_userinfo_password(&format!("{}{}{}", &c[1], &c[2], &c[3]));
    Some(format!(
        "{head}{key}{}",
        c.get(5).map_or("", |m| m.as_str())
    ))
}

/// `scheme://user:secret@host` → `scheme://user:{...}@host`.
fn redact_userinfo_password(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| i + start);
    let Some(at) = url[start..end].rfind('@').map(|i| i + start) else {
        return url.to_owned();
    };
    match url[start..at].find(':').map(|i| i + start) {
        Some(colon) if colon + 1 < at => format!("{}{{...}}{}", &url[..colon + 1], &url[at..]),
        _ => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The part of Go's `net/url.Parse` that decides what Go accepts. Hand-written because the
// `url` crate (WHATWG) normalises and percent-encodes (`rtmp://h/app/key live=1` gets `%20`),
// while Go passes the raw string to the sink and accepts more.

#[derive(Debug, Default)]
struct GoUrl {
    /// Lower-cased, as Go does.
    scheme: String,
    /// Go's `Host`: the authority without userinfo (port included).
    host: String,
    query: String,
}

fn go_url_scheme(raw: &str) -> Result<String, String> {
    go_url_parse(raw).map(|u| u.scheme)
}

fn go_url_parse(raw: &str) -> Result<GoUrl, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let (without_fragment, _) = raw.split_once('#').unwrap_or((raw, ""));
    let mut url = GoUrl::default();
    // getScheme: letters, then letters/digits/+-. up to ':'; anything else means no scheme.
    let mut rest = without_fragment;
    for (i, c) in without_fragment.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme".into()),
            ':' => {
                url.scheme = without_fragment[..i].to_ascii_lowercase();
                rest = &without_fragment[i + 1..];
                break;
            }
            _ => break,
        }
    }
    if let Some((before, query)) = rest.split_once('?') {
        url.query = query.to_owned();
        rest = before;
    }
    if let Some(after) = rest.strip_prefix("//") {
        let authority = &after[..after.find('/').unwrap_or(after.len())];
        let host = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                if !userinfo
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c))
                {
                    return Err("net/url: invalid userinfo".into());
                }
                &authority[at + 1..]
            }
            None => authority,
        };
        check_go_host(host)?;
        url.host = host.to_owned();
    }
    Ok(url)
}

/// Go's `parseHost` checks: characters a host may not contain, and a numeric port.
fn check_go_host(host: &str) -> Result<(), String> {
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => (
                &host[..=i],
                host[i + 1..].strip_prefix(':').map(|p| (p, &host[i + 1..])),
            ),
            None => return Err("missing ']' in host".into()),
        }
    } else {
        match host.rfind(':') {
            Some(i) => (&host[..i], Some((&host[i + 1..], &host[i..]))),
            None => (host, None),
        }
    };
    if let Some((digits, with_colon)) = port
        && !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("invalid port \"{with_colon}\" after host"));
    }
    for c in name.chars() {
        let ok =
            !c.is_ascii() || c.is_ascii_alphanumeric() || "-_.~!$&'()*+,;=:[]<>\"%".contains(c);
        if !ok {
            return Err(format!("invalid character \"{c}\" in host name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
