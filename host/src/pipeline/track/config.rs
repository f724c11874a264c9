//! A track egress's settings from its request (`TrackEgressRequest`, Go's `RequestTypeTrack`),
//! with the Go egress's errors. The file name is decided only when the track is found, because
//! its extension follows the codec (Go's `UpdateInfoFromSDK`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

use crate::config::ServiceConfig;
use crate::core::errors;
use crate::outputs::filename::{FilenameInfo, LocalTime, clean};
use crate::outputs::{Output as PlannedOutput, OutputPlan};
use crate::pipeline::token::egress_token;
use crate::rpc::{Code, RpcError};
use crate::webrtc::TrackCodec;

/// The container a passthrough track is written in (Go's `types.TrackOutputTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackContainer {
    Ogg,
    WebM,
    Mp4,
}

impl TrackContainer {
    pub fn for_codec(codec: TrackCodec) -> TrackContainer {
        match codec {
            TrackCodec::Opus => TrackContainer::Ogg,
            TrackCodec::Vp8 | TrackCodec::Vp9 | TrackCodec::Av1 => TrackContainer::WebM,
            TrackCodec::H264 | TrackCodec::H265 => TrackContainer::Mp4,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            TrackContainer::Ogg => ".ogg",
            TrackContainer::WebM => ".webm",
            TrackContainer::Mp4 => ".mp4",
        }
    }
}

/// The codecs this build writes without transcoding.
pub fn codec_supported(codec: TrackCodec) -> bool {
    matches!(
        codec,
        TrackCodec::Opus
            | TrackCodec::Vp8
            | TrackCodec::Vp9
            | TrackCodec::H264
            | TrackCodec::H265
            | TrackCodec::Av1
    )
}

/// Where a track egress sends the track (`TrackEgressRequest.output`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackOutput {
    /// Written as received into the codec's container (the file settings are in [`TrackConfig`]).
    File,
    /// Decoded to PCM and sent over a websocket (Go's `OutputTypeRaw`).
    Websocket { url: String },
}

#[derive(Debug, Clone)]
pub struct TrackConfig {
    pub egress_id: String,
    pub room_name: String,
    pub room_id: String,
    pub track_id: String,
    /// The signalling URL and the recorder's join token (never log the token).
    pub ws_url: String,
    pub token: String,
    /// Where the track goes: a file (passthrough) or a websocket (decoded PCM).
    pub output: TrackOutput,
    /// The cleaned, not yet templated `filepath` (empty for a websocket output).
    pub filepath: String,
    /// True for a websocket output, which has no manifest (Go's websocket sink uploads none).
    pub disable_manifest: bool,
    pub retry_count: i32,
    pub started: SystemTime,
    /// 0 = no limit.
    pub max_duration: Duration,
}

impl TrackConfig {
    /// Validates `req` the way the Go egress does for a track request.
    pub fn new(
        config: &ServiceConfig,
        req: &StartEgressRequest,
        room_name: &str,
        now: SystemTime,
    ) -> Result<TrackConfig, RpcError> {
        if req.egress_id.is_empty() {
            return Err(errors::invalid_input("egressID"));
        }
        let Some(Request::Track(r)) = req.request.as_ref() else {
            return Err(errors::invalid_input("request"));
        };
        let room_name = if room_name.is_empty() {
            r.room_name.clone()
        } else {
            room_name.to_owned()
        };
        if room_name.is_empty() {
            return Err(errors::invalid_input("room_name"));
        }
        if r.track_id.is_empty() {
            return Err(errors::invalid_input("track_id"));
        }
        let outputs = OutputPlan::parse(req);
        let file = match outputs.outputs.first() {
            Some(PlannedOutput::File(f)) => f,
            Some(PlannedOutput::Websocket(ws)) => {
                let url = websocket_url(&ws.url)?;
                let token = join_token(config, req, &room_name, now)?;
                let ws_url = signalling_url(config, req)?;
                return Ok(TrackConfig {
                    egress_id: req.egress_id.clone(),
                    room_name,
                    room_id: req.room_id.clone(),
                    track_id: r.track_id.clone(),
                    ws_url,
                    token,
                    output: TrackOutput::Websocket { url },
                    filepath: String::new(),
                    disable_manifest: true,
                    retry_count: req.retry_count,
                    started: now,
                    // Go applies the stream limit to websocket outputs.
                    max_duration: config.session_limits.stream_output_max_duration,
                });
            }
            _ => return Err(errors::invalid_input("output")),
        };
        let server_upload = config.storage.as_ref().is_some_and(|s| !s.is_local());
        if config.disallow_local_storage && !file.has_upload && !server_upload {
            return Err(errors::invalid_input("output"));
        }
        let filepath = clean(&file.filepath);
        if req.retry_count > 0
            && !filepath.is_empty()
            && !filepath.ends_with('/')
            && !filepath.contains("{retry}")
        {
            return Err(RpcError::new(
                Code::FailedPrecondition,
                "output configuration does not support retry",
            ));
        }
        let token = join_token(config, req, &room_name, now)?;
        let ws_url = signalling_url(config, req)?;
        Ok(TrackConfig {
            egress_id: req.egress_id.clone(),
            room_name,
            room_id: req.room_id.clone(),
            track_id: r.track_id.clone(),
            ws_url,
            token,
            output: TrackOutput::File,
            filepath,
            disable_manifest: file.disable_manifest,
            retry_count: req.retry_count,
            started: now,
            max_duration: config.session_limits.file_output_max_duration,
        })
    }

    /// The websocket URL, for a websocket output.
    pub fn websocket_url(&self) -> Option<&str> {
        match &self.output {
            TrackOutput::Websocket { url } => Some(url),
            TrackOutput::File => None,
        }
    }

    /// The storage path once the track is known: Go names the file after the track ID and
    /// offers `{track_id}`, `{track_type}`, `{track_source}` and `{publisher_identity}`.
    pub fn storage_path(
        &self,
        container: TrackContainer,
        track_type: &str,
        track_source: &str,
        publisher: &str,
    ) -> String {
        let mut names = FilenameInfo::new(
            &self.room_name,
            &self.room_id,
            self.retry_count,
            LocalTime::from_system(self.started),
        );
        names.identifier = self.track_id.clone();
        let templated = self
            .filepath
            .replace("{track_id}", &self.track_id)
            .replace("{track_type}", track_type)
            .replace("{track_source}", track_source)
            .replace("{publisher_identity}", publisher);
        names.file_path(&templated, container.extension())
    }
}

/// The recorder's join token: the request's, or one signed with the service's key.
fn join_token(
    config: &ServiceConfig,
    req: &StartEgressRequest,
    room_name: &str,
    now: SystemTime,
) -> Result<String, RpcError> {
    if !req.token.is_empty() {
        Ok(req.token.clone())
    } else if !config.api_key.is_empty() && !config.api_secret.is_empty() {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(egress_token(
            &req.egress_id,
            &config.api_key,
            config.api_secret.expose(),
            room_name,
            secs,
        ))
    } else {
        Err(errors::invalid_input("token or api key/secret"))
    }
}

/// livekit-server's signalling URL: the request's, else the service's.
fn signalling_url(config: &ServiceConfig, req: &StartEgressRequest) -> Result<String, RpcError> {
    let ws_url = if !req.ws_url.is_empty() {
        req.ws_url.clone()
    } else {
        config.ws_url.clone()
    };
    if ws_url.is_empty() {
        return Err(errors::invalid_input("ws_url"));
    }
    Ok(ws_url)
}

/// Checks a websocket output URL as Go's `ValidateUrl` does for `OutputTypeRaw`: it must parse
/// and its scheme must be `ws` or `wss`; it is used as given (nothing to redact).
fn websocket_url(raw: &str) -> Result<String, RpcError> {
    let parsed = match url::Url::parse(raw) {
        Ok(u) => u,
        // Go's parser accepts a URL without a scheme and then refuses the (empty) scheme.
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err(invalid_url(raw, "invalid scheme"));
        }
        Err(e) => return Err(invalid_url(raw, &e.to_string())),
    };
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(invalid_url(raw, "invalid scheme"));
    }
    Ok(raw.to_owned())
}

/// Go's `ErrInvalidUrl`.
fn invalid_url(url: &str, reason: &str) -> RpcError {
    RpcError::new(
        Code::InvalidArgument,
        format!("invalid url {url}: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_proto::livekit::track_egress_request::Output;
    use egress_proto::livekit::{DirectFileOutput, TrackEgressRequest};

    fn service() -> ServiceConfig {
        let yaml = "api_key: devkey\napi_secret: secret\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\n";
        crate::config::parse(yaml, &crate::config::EmptyEnv)
            .unwrap()
            .config
    }

    fn request(track_id: &str, filepath: &str) -> StartEgressRequest {
        StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::Track(TrackEgressRequest {
                room_name: "room".into(),
                track_id: track_id.into(),
                output: Some(Output::File(DirectFileOutput {
                    filepath: filepath.into(),
                    ..Default::default()
                })),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn names_the_file_after_the_track_with_the_codec_extension() {
        let cfg = TrackConfig::new(
            &service(),
            &request("TR_a", "rec/{track_id}-{publisher_identity}.mp4"),
            "",
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            cfg.storage_path(TrackContainer::Ogg, "audio", "MICROPHONE", "alice"),
            "rec/TR_a-alice.ogg"
        );
        let cfg =
            TrackConfig::new(&service(), &request("TR_a", "rec/"), "", SystemTime::now()).unwrap();
        let path = cfg.storage_path(TrackContainer::Ogg, "audio", "MICROPHONE", "alice");
        assert!(
            path.starts_with("rec/TR_a-") && path.ends_with(".ogg"),
            "{path}"
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e =
            TrackConfig::new(&service(), &request("", "a.ogg"), "", SystemTime::now()).unwrap_err();
        assert!(e.message.contains("track_id"), "{}", e.message);
        let mut r = request("TR_a", "a.ogg");
        if let Some(Request::Track(t)) = r.request.as_mut() {
            t.output = Some(Output::WebsocketUrl("ws://x".into()));
        }
        let cfg = TrackConfig::new(&service(), &r, "", SystemTime::now()).unwrap();
        assert_eq!(cfg.websocket_url(), Some("ws://x"));
        assert!(cfg.disable_manifest);
        if let Some(Request::Track(t)) = r.request.as_mut() {
            t.output = Some(Output::WebsocketUrl("http://x/pcm".into()));
        }
        let e = TrackConfig::new(&service(), &r, "", SystemTime::now()).unwrap_err();
        assert_eq!(e.message, "invalid url http://x/pcm: invalid scheme");
        assert_eq!(e.code, Code::InvalidArgument);
        if let Some(Request::Track(t)) = r.request.as_mut() {
            t.output = None;
        }
        let e = TrackConfig::new(&service(), &r, "", SystemTime::now()).unwrap_err();
        assert!(e.message.ends_with("output"), "{}", e.message);
    }
}
