//! A composite recording's settings from its request, with the Go egress's errors
//! (`PipelineConfig.Update` for `ParticipantEgressRequest`, `TrackCompositeEgressRequest` and
//! the v2 `MediaSource`; `validatePassthrough`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use egress_proto::livekit::{
    self, EncodedFileType, EncodingOptionsPreset, media_source, output,
    participant_egress_request as pe, start_egress_request as v2,
    track_composite_egress_request as tc,
};
use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

use crate::config::ServiceConfig;
use crate::core::errors;
use crate::core::request::RequestType;
use crate::outputs::context::OutputContext;
use crate::outputs::filename::{FilenameInfo, LocalTime, clean};
use crate::outputs::live::{LiveOutputs, incompatible_codecs};
use crate::outputs::stream::url::RequestApi;
use crate::outputs::{FileSpec, OutputKind, OutputPlan};
use crate::pipeline::encoding::{
    AudioCodec, Container, Encoding, EncodingRequest, VideoCodec, choose_file_format,
};
use crate::pipeline::token::egress_token;
use crate::rpc::{Code, RpcError};
use crate::webrtc::room::{AudioMatch, AudioRoute, Channel, MediaSelection, Selection};

/// What the composite recorder produces (the rest is refused with Go's "not yet supported").
const PRODUCES: [OutputKind; 4] = [
    OutputKind::File,
    OutputKind::Stream,
    OutputKind::Segments,
    OutputKind::Images,
];

#[derive(Debug, Clone)]
pub struct CompositeConfig {
    pub request_type: RequestType,
    pub egress_id: String,
    pub room_name: String,
    pub room_id: String,
    pub selection: Selection,
    /// The signalling URL and the recorder's join token (never log the token).
    pub ws_url: String,
    pub token: String,
    pub audio: bool,
    pub video: bool,
    pub encoding: Encoding,
    pub container: Container,
    pub audio_codec: Option<AudioCodec>,
    pub video_codec: Option<VideoCodec>,
    /// The cleaned, not yet templated `filepath`.
    pub filepath: String,
    pub disable_manifest: bool,
    /// Whether the request has a file output (a stream-only egress has none).
    pub has_file: bool,
    /// The stream output's URLs (checked as Go checks them) and how they are published.
    pub live: LiveOutputs,
    /// Every output of the request (the file settings above come from its file output).
    pub outputs: OutputPlan,
    pub retry_count: i32,
    pub started: SystemTime,
    /// 0 = no limit.
    pub max_duration: Duration,
    /// Video encoder threads (0: x264 decides).
    pub encoder_threads: u32,
}

/// What a request asks for.
pub enum Parsed {
    Composite(Box<CompositeConfig>),
    /// A v2 media request with the PASSTHROUGH preset and one track: the track egress records
    /// it (`track_id`, the request's one file output and its storage).
    Passthrough {
        track_id: String,
        file: Box<livekit::FileOutput>,
        storage: Option<Box<livekit::StorageConfig>>,
    },
}

/// The Go egress's `validatePassthrough`: one track, one DEFAULT file output.
fn passthrough(
    r: &livekit::StartEgressRequest,
    media: &livekit::MediaSource,
) -> Result<Parsed, RpcError> {
    let video = match &media.video {
        Some(media_source::Video::VideoTrackId(id)) if id.is_empty() => {
            return Err(errors::invalid_input("passthrough video_track_id"));
        }
        Some(media_source::Video::VideoTrackId(id)) => Some(id.clone()),
        Some(media_source::Video::ParticipantVideo(_)) => {
            return Err(errors::invalid_input("passthrough participant_video"));
        }
        None => None,
    };
    let mut audio = None;
    if let Some(a) = &media.audio {
        if a.capture_all {
            return Err(errors::invalid_input("passthrough capture_all"));
        }
        match a.routes.as_slice() {
            [] => {}
            [route] => match &route.r#match {
                Some(livekit::audio_route::Match::TrackId(id)) if id.is_empty() => {
                    return Err(errors::invalid_input("passthrough audio route track_id"));
                }
                Some(livekit::audio_route::Match::TrackId(id)) => audio = Some(id.clone()),
                _ => return Err(errors::invalid_input("passthrough audio route match")),
            },
            _ => return Err(errors::invalid_input("passthrough audio routes")),
        }
    }
    let track_id = match (video, audio) {
        (Some(v), None) => v,
        (None, Some(a)) => a,
        _ => return Err(errors::invalid_input("passthrough track_id")),
    };
    let [only] = r.outputs.as_slice() else {
        return Err(errors::invalid_input("passthrough outputs"));
    };
    match &only.config {
        Some(output::Config::File(f)) if f.file_type == EncodedFileType::DefaultFiletype as i32 => {
            Ok(Parsed::Passthrough {
                track_id,
                file: Box::new(f.clone()),
                storage: only
                    .storage
                    .clone()
                    .or_else(|| r.storage.clone())
                    .map(Box::new),
            })
        }
        Some(output::Config::File(_)) => Err(errors::invalid_input("passthrough file_type")),
        _ => Err(errors::invalid_input("passthrough output")),
    }
}

fn media_selection(media: &livekit::MediaSource) -> (MediaSelection, bool, bool) {
    let mut sel = MediaSelection::default();
    match &media.video {
        Some(media_source::Video::VideoTrackId(id)) => sel.video_track_id = Some(id.clone()),
        Some(media_source::Video::ParticipantVideo(p)) => {
            sel.participant_video = Some((p.identity.clone(), p.prefer_screen_share))
        }
        None => {}
    }
    let mut audio = false;
    if let Some(a) = &media.audio {
        sel.capture_all = a.capture_all;
        audio = a.capture_all || !a.routes.is_empty();
        sel.audio_routes = a
            .routes
            .iter()
            .filter_map(|r| {
                let matcher = match r.r#match.as_ref()? {
                    livekit::audio_route::Match::TrackId(id) => AudioMatch::TrackId(id.clone()),
                    livekit::audio_route::Match::ParticipantIdentity(i) => {
                        AudioMatch::Identity(i.clone())
                    }
                    livekit::audio_route::Match::ParticipantKind(k) => {
                        AudioMatch::ParticipantKind(*k)
                    }
                };
                Some(AudioRoute {
                    matcher,
                    channel: Channel::from_proto(r.channel),
                })
            })
            .collect();
    }
    let video = media.video.is_some();
    (sel, audio, video)
}

/// Go: a websocket output is raw PCM of the audio (`AudioOutCodec = audio/x-raw`), so the
/// recording is audio-only (video is dropped when audio is there too), nothing else can share
/// that encode, and a recording without audio has nothing to send. Returns whether video is
/// recorded.
fn websocket_audio_only(
    live: &LiveOutputs,
    outputs: &OutputPlan,
    audio: bool,
    video: bool,
) -> Result<bool, RpcError> {
    if live.websocket.is_none() {
        return Ok(video);
    }
    if !audio {
        return Err(RpcError::new(
            Code::InvalidArgument,
            "format websocket incompatible with codec video/h264",
        ));
    }
    if outputs.outputs.len() > 1 {
        return Err(incompatible_codecs());
    }
    Ok(false)
}

/// The track egress request a PASSTHROUGH media request stands for (the info keeps the
/// original request).
pub fn passthrough_request(
    req: &egress_proto::rpc::StartEgressRequest,
    track_id: String,
    file: livekit::FileOutput,
    storage: Option<livekit::StorageConfig>,
) -> egress_proto::rpc::StartEgressRequest {
    use livekit::direct_file_output::Output as D;
    use livekit::storage_config::Provider as P;
    let room_name = match &req.request {
        Some(Request::Egress(r)) => r.room_name.clone(),
        _ => String::new(),
    };
    let output = storage.and_then(|s| s.provider).map(|p| match p {
        P::S3(s) => D::S3(s),
        P::Gcp(g) => D::Gcp(g),
        P::Azure(a) => D::Azure(a),
        P::AliOss(a) => D::AliOss(a),
    });
    let track = livekit::TrackEgressRequest {
        room_name,
        track_id,
        output: Some(livekit::track_egress_request::Output::File(
            livekit::DirectFileOutput {
                filepath: file.filepath,
                disable_manifest: file.disable_manifest,
                output,
            },
        )),
        ..Default::default()
    };
    egress_proto::rpc::StartEgressRequest {
        request: Some(Request::Track(track)),
        ..req.clone()
    }
}

impl CompositeConfig {
    /// Validates `req` (participant, track composite or v2 media) the way the Go egress does.
    #[allow(deprecated)]
    pub fn parse(
        config: &ServiceConfig,
        req: &StartEgressRequest,
        room_name: &str,
        now: SystemTime,
    ) -> Result<Parsed, RpcError> {
        if req.egress_id.is_empty() {
            return Err(errors::invalid_input("egressID"));
        }
        let (request_type, selection, audio, video, encoding, outputs, request_room) = match req
            .request
            .as_ref()
        {
            Some(Request::Participant(r)) => {
                if r.identity.is_empty() {
                    return Err(errors::invalid_input("identity"));
                }
                let encoding = r.options.map(|o| match o {
                    pe::Options::Preset(p) => EncodingRequest::Preset(p),
                    pe::Options::Advanced(a) => EncodingRequest::Advanced(a),
                });
                let encoding = Encoding::from_request(encoding)?;
                let outputs = OutputPlan::parse(req);
                outputs.refuse_unsupported(&PRODUCES)?;
                outputs.check()?;
                let selection = Selection::Participant {
                    identity: r.identity.clone(),
                    screen_share: r.screen_share,
                };
                (
                    RequestType::Participant,
                    selection,
                    true,
                    true,
                    encoding,
                    outputs,
                    r.room_name.clone(),
                )
            }
            Some(Request::TrackComposite(r)) => {
                let audio = (!r.audio_track_id.is_empty()).then(|| r.audio_track_id.clone());
                let video = (!r.video_track_id.is_empty()).then(|| r.video_track_id.clone());
                if audio.is_none() && video.is_none() {
                    return Err(errors::invalid_input("audio_track_id or video_track_id"));
                }
                let encoding = r.options.map(|o| match o {
                    tc::Options::Preset(p) => EncodingRequest::Preset(p),
                    tc::Options::Advanced(a) => EncodingRequest::Advanced(a),
                });
                let encoding = Encoding::from_request(encoding)?;
                let outputs = OutputPlan::parse(req);
                outputs.refuse_unsupported(&PRODUCES)?;
                outputs.check()?;
                let (a, v) = (audio.is_some(), video.is_some());
                let selection = Selection::Tracks { audio, video };
                (
                    RequestType::TrackComposite,
                    selection,
                    a,
                    v,
                    encoding,
                    outputs,
                    r.room_name.clone(),
                )
            }
            Some(Request::Egress(r)) => {
                let Some(v2::Source::Media(media)) = &r.source else {
                    return Err(errors::invalid_input("source"));
                };
                if matches!(r.encoding, Some(v2::Encoding::Preset(p)) if p == EncodingOptionsPreset::Passthrough as i32)
                {
                    return passthrough(r, media);
                }
                let (sel, audio, video) = media_selection(media);
                if !audio && !video {
                    return Err(errors::invalid_input("audio or video"));
                }
                let encoding = Encoding::from_request(r.encoding.map(|e| match e {
                    v2::Encoding::Preset(p) => EncodingRequest::Preset(p),
                    v2::Encoding::Advanced(a) => EncodingRequest::Advanced(a),
                }))?;
                let outputs = OutputPlan::parse(req);
                outputs.check()?;
                outputs.refuse_unsupported(&PRODUCES)?;
                (
                    RequestType::Media,
                    Selection::Media(sel),
                    audio,
                    video,
                    encoding,
                    outputs,
                    r.room_name.clone(),
                )
            }
            _ => return Err(errors::invalid_input("request")),
        };
        let room_name = if room_name.is_empty() {
            request_room
        } else {
            room_name.to_owned()
        };
        if room_name.is_empty() {
            return Err(errors::invalid_input("room_name"));
        }
        let live = LiveOutputs::parse(
            config,
            &outputs,
            if request_type == RequestType::Media {
                RequestApi::V2
            } else {
                RequestApi::V1
            },
        )?;
        let has_file = outputs.file().is_some();
        if !has_file && outputs.outputs.is_empty() {
            return Err(errors::invalid_input("output"));
        }
        let video = websocket_audio_only(&live, &outputs, audio, video)?;
        let file = outputs.file().cloned().unwrap_or(FileSpec {
            file_type: EncodedFileType::Mp4 as i32,
            filepath: String::new(),
            disable_manifest: false,
            has_upload: false,
        });
        let server_upload = config.storage.as_ref().is_some_and(|s| !s.is_local());
        if has_file && config.disallow_local_storage && !file.has_upload && !server_upload {
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
        // Streams and segments carry H.264 + AAC (Go): a file beside them is an MP4 of the
        // same encode.
        let file_type = live
            .file_type(file.file_type)?
            .map_or(file.file_type, |t| t as i32);
        let requested = match EncodedFileType::try_from(file_type) {
            Ok(EncodedFileType::Mp4) => Some(Container::Mp4),
            Ok(EncodedFileType::Ogg) => Some(Container::Ogg),
            Ok(EncodedFileType::Mp3) => Some(Container::Mp3),
            _ => None,
        };
        let mut encoding = encoding;
        encoding.key_frame_interval = live.keyframe_interval(&outputs, encoding.key_frame_interval);
        let format = choose_file_format(
            requested,
            audio,
            video,
            encoding.audio_codec,
            encoding.video_codec,
        )?;
        if live.needs_h264_aac()
            && (format.video.is_some_and(|v| v != VideoCodec::H264)
                || format.audio.is_some_and(|a| a != AudioCodec::Aac))
        {
            return Err(incompatible_codecs());
        }
        let token = if !req.token.is_empty() {
            req.token.clone()
        } else if !config.api_key.is_empty() && !config.api_secret.is_empty() {
            let secs = now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            egress_token(
                &req.egress_id,
                &config.api_key,
                config.api_secret.expose(),
                &room_name,
                secs,
            )
        } else {
            return Err(errors::invalid_input("token or api key/secret"));
        };
        let ws_url = if !req.ws_url.is_empty() {
            req.ws_url.clone()
        } else {
            config.ws_url.clone()
        };
        if ws_url.is_empty() {
            return Err(errors::invalid_input("ws_url"));
        }
        Ok(Parsed::Composite(Box::new(CompositeConfig {
            request_type,
            egress_id: req.egress_id.clone(),
            room_name,
            room_id: req.room_id.clone(),
            selection,
            ws_url,
            token,
            audio,
            video,
            encoding,
            container: format.container,
            audio_codec: format.audio,
            video_codec: format.video,
            filepath,
            disable_manifest: file.disable_manifest,
            has_file,
            live,
            outputs,
            retry_count: req.retry_count,
            started: now,
            max_duration: config.session_limits.file_output_max_duration,
            encoder_threads: config.video_encoder_threads,
        })))
    }

    /// What the segments and images outputs need to name and store what they write.
    pub fn output_context(
        &self,
        service: std::sync::Arc<ServiceConfig>,
        request: StartEgressRequest,
        plugins: std::sync::Arc<crate::plugins::PluginRegistry>,
        work_dir: std::path::PathBuf,
    ) -> OutputContext {
        let mut filenames = FilenameInfo::new(
            &self.room_name,
            &self.room_id,
            self.retry_count,
            LocalTime::from_system(self.started),
        );
        if let Selection::Participant { identity, .. } = &self.selection {
            filenames.identifier = identity.clone();
        }
        let video_size = self.video.then(|| self.encoding.video_size());
        OutputContext::new(service, request, plugins, work_dir, filenames, video_size)
    }

    /// The storage path once the publisher is known: named after the participant (participant
    /// egress) or the room, with `{publisher_identity}` replaced (Go's `UpdateInfoFromSDK`).
    pub fn storage_path(&self, publisher: &str) -> String {
        let mut names = FilenameInfo::new(
            &self.room_name,
            &self.room_id,
            self.retry_count,
            LocalTime::from_system(self.started),
        );
        if let Selection::Participant { identity, .. } = &self.selection {
            names.identifier = identity.clone();
        }
        let templated = self.filepath.replace("{publisher_identity}", publisher);
        names.file_path(&templated, self.container.extension())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> ServiceConfig {
        let yaml = "api_key: devkey\napi_secret: secret\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\n";
        crate::config::parse(yaml, &crate::config::EmptyEnv)
            .unwrap()
            .config
    }

    fn parse(request: Request) -> Result<Parsed, RpcError> {
        let req = StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(request),
            ..Default::default()
        };
        CompositeConfig::parse(&service(), &req, "", SystemTime::now())
    }

    fn composite(request: Request) -> CompositeConfig {
        match parse(request) {
            Ok(Parsed::Composite(c)) => *c,
            Ok(Parsed::Passthrough { .. }) => panic!("passthrough"),
            Err(e) => panic!("{}", e.message),
        }
    }

    fn file(path: &str) -> livekit::EncodedFileOutput {
        livekit::EncodedFileOutput {
            filepath: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn track_composite_defaults_to_mp4_and_audio_only_to_ogg() {
        let c = composite(Request::TrackComposite(
            livekit::TrackCompositeEgressRequest {
                room_name: "r".into(),
                audio_track_id: "TR_a".into(),
                video_track_id: "TR_v".into(),
                file_outputs: vec![file("rec/{publisher_identity}")],
                ..Default::default()
            },
        ));
        assert_eq!(
            (c.container, c.audio_codec, c.video_codec),
            (
                Container::Mp4,
                Some(AudioCodec::Aac),
                Some(VideoCodec::H264)
            )
        );
        assert!(
            c.storage_path("alice").starts_with("rec/alice"),
            "{}",
            c.storage_path("alice")
        );
        assert!(c.storage_path("alice").ends_with(".mp4"));
        let c = composite(Request::TrackComposite(
            livekit::TrackCompositeEgressRequest {
                room_name: "r".into(),
                audio_track_id: "TR_a".into(),
                file_outputs: vec![file("a")],
                ..Default::default()
            },
        ));
        assert_eq!(
            (c.container, c.audio_codec, c.video),
            (Container::Ogg, Some(AudioCodec::Opus), false)
        );
    }

    #[test]
    fn a_websocket_stream_makes_the_recording_audio_only() {
        let ws = |urls: Vec<&str>| livekit::StreamOutput {
            urls: urls.into_iter().map(String::from).collect(),
            ..Default::default()
        };
        let c = composite(Request::Participant(livekit::ParticipantEgressRequest {
            room_name: "r".into(),
            identity: "alice".into(),
            stream_outputs: vec![ws(vec!["ws://127.0.0.1:9000/pcm"])],
            ..Default::default()
        }));
        assert!(c.audio && !c.video, "video dropped, audio kept");
        assert_eq!(
            c.live.websocket.as_ref().map(|u| u.url.as_str()),
            Some("ws://127.0.0.1:9000/pcm")
        );
        assert!(c.live.streams.is_none());
        let err = |r| match parse(r) {
            Err(e) => e.message,
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            err(Request::TrackComposite(
                livekit::TrackCompositeEgressRequest {
                    room_name: "r".into(),
                    video_track_id: "TR_v".into(),
                    stream_outputs: vec![ws(vec!["wss://host/pcm"])],
                    ..Default::default()
                }
            )),
            "format websocket incompatible with codec video/h264"
        );
        assert_eq!(
            err(Request::Participant(livekit::ParticipantEgressRequest {
                room_name: "r".into(),
                identity: "alice".into(),
                stream_outputs: vec![ws(vec!["ws://host/pcm"])],
                file_outputs: vec![file("a.mp4")],
                ..Default::default()
            })),
            "no supported codec is compatible with all outputs"
        );
    }

    #[test]
    fn errors_match_the_go_egress() {
        let err = |r| match parse(r) {
            Err(e) => e.message,
            Ok(_) => "ok".into(),
        };
        assert_eq!(
            err(Request::TrackComposite(
                livekit::TrackCompositeEgressRequest {
                    room_name: "r".into(),
                    ..Default::default()
                }
            )),
            "request has missing or invalid field: audio_track_id or video_track_id"
        );
        assert_eq!(
            err(Request::Participant(livekit::ParticipantEgressRequest {
                room_name: "r".into(),
                ..Default::default()
            })),
            "request has missing or invalid field: identity"
        );
        let p = livekit::ParticipantEgressRequest {
            room_name: "r".into(),
            identity: "alice".into(),
            file_outputs: vec![file("x.mp4")],
            options: Some(pe::Options::Preset(
                EncodingOptionsPreset::Passthrough as i32,
            )),
            ..Default::default()
        };
        assert_eq!(
            err(Request::Participant(p)),
            "request has missing or invalid field: preset"
        );
        let media = |video, audio, outputs| {
            Request::Egress(livekit::StartEgressRequest {
                room_name: "r".into(),
                source: Some(v2::Source::Media(livekit::MediaSource { video, audio })),
                encoding: Some(v2::Encoding::Preset(
                    EncodingOptionsPreset::Passthrough as i32,
                )),
                outputs,
                ..Default::default()
            })
        };
        let file_out = |t: EncodedFileType| livekit::Output {
            config: Some(output::Config::File(livekit::FileOutput {
                file_type: t as i32,
                filepath: "x".into(),
                ..Default::default()
            })),
            storage: None,
        };
        let pv = Some(media_source::Video::ParticipantVideo(
            livekit::ParticipantVideo {
                identity: "a".into(),
                prefer_screen_share: false,
            },
        ));
        assert_eq!(
            err(media(
                pv,
                None,
                vec![file_out(EncodedFileType::DefaultFiletype)]
            )),
            "request has missing or invalid field: passthrough participant_video"
        );
        let v = || Some(media_source::Video::VideoTrackId("TR_v".into()));
        assert_eq!(
            err(media(v(), None, vec![file_out(EncodedFileType::Mp4)])),
            "request has missing or invalid field: passthrough file_type"
        );
        let route = livekit::AudioRoute {
            channel: 0,
            r#match: Some(livekit::audio_route::Match::TrackId("TR_a".into())),
        };
        let both = Some(livekit::AudioConfig {
            capture_all: false,
            routes: vec![route],
        });
        assert_eq!(
            err(media(
                v(),
                both,
                vec![file_out(EncodedFileType::DefaultFiletype)]
            )),
            "request has missing or invalid field: passthrough track_id"
        );
        match parse(media(
            v(),
            None,
            vec![file_out(EncodedFileType::DefaultFiletype)],
        )) {
            Ok(Parsed::Passthrough { track_id, .. }) => assert_eq!(track_id, "TR_v"),
            _ => panic!("a single video track with PASSTHROUGH is a track egress"),
        }
        let no_source = Request::Egress(livekit::StartEgressRequest {
            room_name: "r".into(),
            source: Some(v2::Source::Media(livekit::MediaSource::default())),
            outputs: vec![file_out(EncodedFileType::DefaultFiletype)],
            ..Default::default()
        });
        assert_eq!(
            err(no_source),
            "request has missing or invalid field: audio or video"
        );
    }
}
