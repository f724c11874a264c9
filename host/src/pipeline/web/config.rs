//! One egress's pipeline settings, derived from the request and the service config the way the
//! Go egress's `PipelineConfig.Update` does (reference §1.2, §1.3, §2), with its errors.
//!
//! Built twice, as in Go: in the service to validate before anything is launched, and in the
//! handler to run (so `{time}` is the handler's start time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use egress_proto::livekit::{
    self, EncodedFileType, room_composite_egress_request as rc, start_egress_request as v2,
    web_egress_request as web,
};
use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

use crate::config::ServiceConfig;
use crate::core::errors;
use crate::core::request::RequestType;
use crate::outputs::context::OutputContext;
use crate::outputs::filename::{FilenameInfo, LocalTime, clean};
use crate::outputs::live::{LiveOutputs, incompatible_codecs};
use crate::outputs::stream::url::RequestApi;
use crate::outputs::{OutputKind, OutputPlan};
use crate::pipeline::encoding::{
    AudioCodec, Container, Encoding, EncodingRequest, VideoCodec, choose_file_format,
};
use crate::pipeline::token::egress_token;
use crate::rpc::RpcError;

/// What the web recorder produces (the rest is refused with Go's "not yet supported").
const PRODUCES: [OutputKind; 4] = [
    OutputKind::File,
    OutputKind::Stream,
    OutputKind::Segments,
    OutputKind::Images,
];

/// What Chrome opens, and whether recording waits for the page's `START_RECORDING`.
#[derive(Clone, PartialEq)]
pub struct PageSource {
    /// The URL Chrome navigates to (for templates it carries the join token: never log it).
    pub url: String,
    pub await_start_signal: bool,
    /// The user's URL for web egress (goes into the manifest); empty for templates.
    pub web_url: String,
}

impl std::fmt::Debug for PageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageSource")
            .field("url", &redact_token(&self.url))
            .field("await_start_signal", &self.await_start_signal)
            .finish()
    }
}

/// The URL with its `token` query value hidden, for logs.
pub fn redact_token(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.query_pairs().any(|(k, _)| k == "token") => {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "token" {
                        "<redacted>".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The file output, resolved: its container and its templated storage path.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOutputSpec {
    pub container: Container,
    /// Where the file goes, relative to the storage root (templated, extension fixed): also
    /// `FileInfo.filename`.
    pub storage_path: String,
    /// The file's name inside the work directory while recording.
    pub local_name: String,
    pub disable_manifest: bool,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub request_type: RequestType,
    pub egress_id: String,
    pub room_name: String,
    pub room_id: String,
    pub source: PageSource,
    pub audio: bool,
    pub video: bool,
    pub encoding: Encoding,
    /// Set when `audio` is.
    pub audio_codec: Option<AudioCodec>,
    /// Set when `video` is.
    pub video_codec: Option<VideoCodec>,
    /// The file output, resolved (with `has_file` false, the MP4 a file would be: the
    /// encode is the same).
    pub file: FileOutputSpec,
    /// Whether the request has a file output (a stream- or segments-only egress has none).
    pub has_file: bool,
    /// The stream output's URLs (checked as Go checks them) and how they are published.
    pub live: LiveOutputs,
    /// Every output of the request (the file above is the resolved form of its file output).
    pub outputs: OutputPlan,
    /// When the recording was asked for: `{time}` in every output's names.
    pub started: SystemTime,
    /// 0 = no limit.
    pub max_duration: Duration,
    /// Bytes of the work dir; 0 = no limit.
    pub max_size: u64,
    /// GStreamer queue depth (`latency.pipeline_latency`).
    pub pipeline_latency: Duration,
    /// Video encoder threads; 0 = the encoder decides (x264), or one per 1080p30 of pixels (vp8enc).
    pub encoder_threads: u32,
}

/// The request reduced to what a web pipeline needs, whatever shape (v1/v2) it came in.
struct Shape<'a> {
    request_type: RequestType,
    kind: Kind<'a>,
    audio_only: bool,
    video_only: bool,
    encoding: Option<EncodingRequest>,
    /// The request's outputs, well-formed ([`OutputPlan::check`] ran).
    outputs: OutputPlan,
    room_name: String,
}

enum Kind<'a> {
    Template {
        layout: &'a str,
        custom_base_url: &'a str,
    },
    Web {
        url: &'a str,
        await_start_signal: bool,
    },
}

#[allow(deprecated)]
fn shape(req: &StartEgressRequest) -> Result<Shape<'_>, RpcError> {
    match req.request.as_ref() {
        Some(Request::RoomComposite(r)) => {
            if r.audio_only && r.layout.is_empty() && r.custom_base_url.is_empty() {
                return Err(errors::not_supported(
                    "audio-only room_composite egress without a layout",
                ));
            }
            let outputs = OutputPlan::parse(req);
            outputs.check()?;
            Ok(Shape {
                request_type: RequestType::RoomComposite,
                kind: Kind::Template {
                    layout: &r.layout,
                    custom_base_url: &r.custom_base_url,
                },
                audio_only: r.audio_only,
                video_only: r.video_only,
                encoding: r.options.map(|o| match o {
                    rc::Options::Preset(p) => EncodingRequest::Preset(p),
                    rc::Options::Advanced(a) => EncodingRequest::Advanced(a),
                }),
                outputs,
                room_name: r.room_name.clone(),
            })
        }
        Some(Request::Web(r)) => {
            let outputs = OutputPlan::parse(req);
            outputs.check()?;
            Ok(Shape {
                request_type: RequestType::Web,
                kind: Kind::Web {
                    url: &r.url,
                    await_start_signal: r.await_start_signal,
                },
                audio_only: r.audio_only,
                video_only: r.video_only,
                encoding: r.options.map(|o| match o {
                    web::Options::Preset(p) => EncodingRequest::Preset(p),
                    web::Options::Advanced(a) => EncodingRequest::Advanced(a),
                }),
                outputs,
                room_name: String::new(),
            })
        }
        Some(Request::Egress(r)) => shape_v2(r, req),
        Some(other) => {
            let label = match other {
                Request::Participant(_) => "participant",
                Request::TrackComposite(_) => "track_composite",
                Request::Track(_) => "track",
                Request::Replay(_) => "replay",
                _ => "request",
            };
            Err(errors::not_supported(&format!("{label} egress")))
        }
        None => Err(errors::invalid_input("request")),
    }
}

fn shape_v2<'a>(
    r: &'a livekit::StartEgressRequest,
    req: &StartEgressRequest,
) -> Result<Shape<'a>, RpcError> {
    let encoding = r.encoding.map(|e| match e {
        v2::Encoding::Preset(p) => EncodingRequest::Preset(p),
        v2::Encoding::Advanced(a) => EncodingRequest::Advanced(a),
    });
    let (request_type, kind, audio_only, video_only) = match &r.source {
        Some(v2::Source::Template(t)) => {
            if t.audio_only && t.layout.is_empty() && t.custom_base_url.is_empty() {
                return Err(errors::not_supported(
                    "audio-only template egress without a layout",
                ));
            }
            (
                RequestType::Template,
                Kind::Template {
                    layout: &t.layout,
                    custom_base_url: &t.custom_base_url,
                },
                t.audio_only,
                t.video_only,
            )
        }
        Some(v2::Source::Web(w)) => (
            RequestType::Web,
            Kind::Web {
                url: &w.url,
                await_start_signal: w.await_start_signal,
            },
            w.audio_only,
            w.video_only,
        ),
        Some(v2::Source::Media(_)) => return Err(errors::not_supported("media egress")),
        None => return Err(errors::invalid_input("source")),
    };
    let outputs = OutputPlan::parse(req);
    outputs.check()?;
    Ok(Shape {
        request_type,
        kind,
        audio_only,
        video_only,
        encoding,
        outputs,
        room_name: r.room_name.clone(),
    })
}

fn is_http(u: &url::Url) -> bool {
    matches!(u.scheme(), "http" | "https")
}

/// The template URL: the base with `layout`, `url` and `token` set (other query parameters
/// kept; keys sorted, as Go's `url.Values.Encode` writes them).
fn template_url(base: &url::Url, layout: &str, ws_url: &str, token: &str) -> String {
    let mut pairs: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(k, _)| !matches!(k.as_ref(), "layout" | "url" | "token"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.push(("layout".into(), layout.into()));
    pairs.push(("url".into(), ws_url.into()));
    pairs.push(("token".into(), token.into()));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut u = base.clone();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// The page a template (room composite) request records, from the layout renderer that serves
/// its layout (`crate::plugins`): `None` for web requests and for requests with a
/// `custom_base_url`, which keeps Go's meaning and precedence (that page, whatever the layout).
/// The renderer's page gets the recorder's `url` and `token` added by [`WebConfig`], as
/// the bundled template's does. Errors: an unknown layout, a renderer error, a renderer that
/// answers with tiles (room composite records a page in Chrome; there is no native compositor
/// for it yet) or a page that is not an http(s) URL.
pub async fn render_page(
    config: &ServiceConfig,
    req: &StartEgressRequest,
    plugins: &crate::plugins::PluginRegistry,
) -> Result<Option<String>, RpcError> {
    use egress_plugin_api::{RenderRequest, Rendering, RoomState};
    let Ok(shape) = shape(req) else {
        // The request's own errors are `WebConfig::new`'s to report.
        return Ok(None);
    };
    let Kind::Template {
        layout,
        custom_base_url,
    } = shape.kind
    else {
        return Ok(None);
    };
    if !custom_base_url.is_empty() {
        return Ok(None);
    }
    let active = plugins
        .renderer_for(layout)
        .map_err(|e| RpcError::new(crate::rpc::Code::InvalidArgument, e.to_string()))?;
    let encoding = Encoding::from_request(shape.encoding)?;
    let request = RenderRequest::new(
        layout,
        encoding.width.max(0) as u32,
        encoding.height.max(0) as u32,
    )
    .with_template_base(config.template_base.as_str())
    .with_media(shape.audio_only, shape.video_only);
    // The page follows the room itself; a page renderer is asked once, before anyone joined.
    let room = RoomState::new(shape.room_name.as_str(), Vec::new());
    let rendered = active
        .renderer()
        .render(&request, &room)
        .await
        .map_err(|e| {
            let code = if e.is_config() {
                crate::rpc::Code::InvalidArgument
            } else {
                crate::rpc::Code::Internal
            };
            RpcError::new(
                code,
                format!(
                    "layout renderer {} failed for layout {layout:?}: {e}",
                    active.name
                ),
            )
        })?;
    match rendered {
        Rendering::PageUrl(page) => {
            url::Url::parse(&page).ok().filter(is_http).ok_or_else(|| {
                RpcError::new(crate::rpc::Code::Internal, format!("layout renderer {} answered layout {layout:?} with {page:?}, not an http(s) URL", active.name))
            })?;
            tracing::debug!(egress_id = %req.egress_id, layout, renderer = %active.name, "layout rendered");
            Ok(Some(page))
        }
        Rendering::Tiles(_) => Err(RpcError::new(
            crate::rpc::Code::Unimplemented,
            format!(
                "layout renderer {} answered layout {layout:?} with tiles, but room composite records a page in Chrome: there is no native compositor for room composite yet",
                active.name
            ),
        )),
    }
}

impl WebConfig {
    /// What the stream, segments and images outputs need to name and store what they write.
    pub fn output_context(
        &self,
        service: std::sync::Arc<ServiceConfig>,
        request: StartEgressRequest,
        plugins: std::sync::Arc<crate::plugins::PluginRegistry>,
        work_dir: std::path::PathBuf,
    ) -> OutputContext {
        let filenames = FilenameInfo::new(
            &self.room_name,
            &self.room_id,
            request.retry_count,
            LocalTime::from_system(self.started),
        );
        let video_size = self.video.then(|| self.encoding.video_size());
        OutputContext::new(service, request, plugins, work_dir, filenames, video_size)
    }

    /// Validates `req` and derives the pipeline settings. `now` stamps `{time}`/`{utc}` and the
    /// token; `room_name` is the info's (livekit-server's, else the request's). A template
    /// request gets the bundled template's page; see [`with_page`](Self::with_page).
    pub fn new(
        config: &ServiceConfig,
        req: &StartEgressRequest,
        room_name: &str,
        now: SystemTime,
    ) -> Result<WebConfig, RpcError> {
        Self::with_page(config, req, room_name, now, None)
    }

    /// As [`new`](Self::new), with the page a layout renderer chose ([`render_page`]) in place
    /// of the template base when `page` is given.
    pub fn with_page(
        config: &ServiceConfig,
        req: &StartEgressRequest,
        room_name: &str,
        now: SystemTime,
        page: Option<&str>,
    ) -> Result<WebConfig, RpcError> {
        if req.egress_id.is_empty() {
            return Err(errors::invalid_input("egressID"));
        }
        let shape = shape(req)?;
        let room_name = if room_name.is_empty() {
            shape.room_name.clone()
        } else {
            room_name.to_owned()
        };

        // The checks run in the Go egress's order, so the same bad request gets the same error.
        let template_base = match shape.kind {
            Kind::Template {
                custom_base_url, ..
            } => {
                let base = match page {
                    Some(page) if custom_base_url.is_empty() => page,
                    _ if custom_base_url.is_empty() => config.template_base.as_str(),
                    _ => custom_base_url,
                };
                let base = url::Url::parse(base).ok().filter(is_http);
                Some(base.ok_or_else(|| errors::invalid_input("template base url"))?)
            }
            Kind::Web { url, .. } => {
                url::Url::parse(url)
                    .ok()
                    .filter(is_http)
                    .ok_or_else(|| errors::invalid_input("web url"))?;
                None
            }
        };
        let audio = !shape.video_only;
        let video = !shape.audio_only;
        if !audio && !video {
            return Err(errors::invalid_input("audio_only and video_only"));
        }
        let encoding = Encoding::from_request(shape.encoding)?;

        shape.outputs.refuse_unsupported(&PRODUCES)?;
        let api = if matches!(req.request, Some(Request::Egress(_))) {
            RequestApi::V2
        } else {
            RequestApi::V1
        };
        let live = LiveOutputs::parse(config, &shape.outputs, api)?;
        // The PCM branch is the composite recorder's for now (Go's web egress has it too).
        if live.websocket.is_some() {
            return Err(errors::not_supported("websocket stream output"));
        }
        let has_file = shape.outputs.file().is_some();
        if shape.outputs.outputs.is_empty() {
            return Err(errors::invalid_input("output"));
        }
        let file = shape
            .outputs
            .file()
            .cloned()
            .unwrap_or(crate::outputs::FileSpec {
                file_type: EncodedFileType::Mp4 as i32,
                filepath: String::new(),
                disable_manifest: false,
                has_upload: false,
            });
        // Uploads go through the storage sink plugins (`crate::storage`, checked there); only
        // the Go rule about local files is a request error here.
        let server_upload = config.storage.as_ref().is_some_and(|s| !s.is_local());
        if has_file && config.disallow_local_storage && !file.has_upload && !server_upload {
            return Err(errors::invalid_input("output"));
        }
        let cleaned = clean(&file.filepath);
        if req.retry_count > 0
            && !cleaned.is_empty()
            && !cleaned.ends_with('/')
            && !cleaned.contains("{retry}")
        {
            return Err(RpcError::new(
                crate::rpc::Code::FailedPrecondition,
                "output configuration does not support retry",
            ));
        }

        let source = match (shape.kind, template_base) {
            (Kind::Template { layout, .. }, Some(base)) => {
                let token = if !req.token.is_empty() {
                    req.token.clone()
                } else if !config.api_key.is_empty()
                    && !config.api_secret.is_empty()
                    && !room_name.is_empty()
                {
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
                    req.ws_url.as_str()
                } else if !config.ws_url.is_empty() {
                    config.ws_url.as_str()
                } else {
                    return Err(errors::invalid_input("ws_url"));
                };
                PageSource {
                    url: template_url(&base, layout, ws_url, &token),
                    await_start_signal: true,
                    web_url: String::new(),
                }
            }
            (
                Kind::Web {
                    url,
                    await_start_signal,
                },
                _,
            ) => PageSource {
                url: url.to_owned(),
                await_start_signal,
                web_url: url.to_owned(),
            },
            (Kind::Template { .. }, None) => {
                return Err(errors::invalid_input("template base url"));
            }
        };

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
        encoding.key_frame_interval =
            live.keyframe_interval(&shape.outputs, encoding.key_frame_interval);
        // DEFAULT_FILETYPE with VP8 video becomes WebM (see `encoding`).
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
        let container = format.container;
        let names = FilenameInfo::new(
            &room_name,
            &req.room_id,
            req.retry_count,
            LocalTime::from_system(now),
        );
        let storage_path = names.file_path(&cleaned, container.extension());
        let local_name = storage_path
            .rsplit('/')
            .next()
            .unwrap_or(&storage_path)
            .to_owned();

        let latency = config
            .latency_for(shape.request_type.label())
            .pipeline_latency;
        Ok(WebConfig {
            request_type: shape.request_type,
            egress_id: req.egress_id.clone(),
            room_name,
            room_id: req.room_id.clone(),
            source,
            audio,
            video,
            encoding,
            audio_codec: format.audio,
            video_codec: format.video,
            file: FileOutputSpec {
                container,
                storage_path,
                local_name,
                disable_manifest: file.disable_manifest,
            },
            has_file,
            live,
            outputs: shape.outputs,
            started: now,
            max_duration: config.session_limits.file_output_max_duration,
            max_size: config.session_limits.file_output_max_size,
            pipeline_latency: if latency.is_zero() {
                crate::config::defaults::DEFAULT_PIPELINE_LATENCY
            } else {
                latency
            },
            encoder_threads: config.video_encoder_threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmptyEnv, parse};
    use egress_proto::livekit::{encoded_file_output, output};

    fn service() -> ServiceConfig {
        let yaml = "api_key: devkey\napi_secret: secret\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\n";
        parse(yaml, &EmptyEnv).unwrap().config
    }

    fn rc(r: livekit::RoomCompositeEgressRequest) -> StartEgressRequest {
        StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::RoomComposite(r)),
            ..Default::default()
        }
    }

    fn file(path: &str) -> livekit::EncodedFileOutput {
        livekit::EncodedFileOutput {
            filepath: path.into(),
            ..Default::default()
        }
    }

    fn err(req: &StartEgressRequest) -> String {
        WebConfig::new(&service(), req, "", SystemTime::now())
            .unwrap_err()
            .message
    }

    #[test]
    fn room_composite_builds_a_template_url_with_a_token() {
        let req = rc(livekit::RoomCompositeEgressRequest {
            room_name: "my room".into(),
            layout: "speaker".into(),
            file_outputs: vec![file("rec/{room_name}.mp4")],
            ..Default::default()
        });
        let p = WebConfig::new(&service(), &req, "", SystemTime::now()).unwrap();
        assert!(p.source.await_start_signal);
        let u = url::Url::parse(&p.source.url).unwrap();
        assert_eq!(u.host_str(), Some("localhost"));
        assert_eq!(u.port(), Some(7980));
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["layout"], "speaker");
        assert_eq!(q["url"], "ws://lk:7880");
        assert_eq!(q["token"].split('.').count(), 3);
        assert_eq!(p.file.storage_path, "rec/my room.mp4");
        assert_eq!(p.file.local_name, "my room.mp4");
        assert_eq!(
            (p.file.container, p.audio_codec),
            (Container::Mp4, Some(AudioCodec::Aac))
        );
        assert!(
            !format!("{:?}", p.source).contains(&q["token"]),
            "the token never shows in Debug"
        );
    }

    #[test]
    fn request_errors_match_the_go_egress() {
        let base = || livekit::RoomCompositeEgressRequest {
            room_name: "r".into(),
            layout: "grid".into(),
            file_outputs: vec![file("x.mp4")],
            ..Default::default()
        };
        let mut r = base();
        r.audio_only = true;
        r.video_only = true;
        assert_eq!(
            err(&rc(r)),
            "request has missing or invalid field: audio_only and video_only"
        );
        let mut r = base();
        r.custom_base_url = "ftp://x/".into();
        assert_eq!(
            err(&rc(r)),
            "request has missing or invalid field: template base url"
        );
        let mut r = base();
        r.file_outputs.clear();
        assert_eq!(err(&rc(r)), "request has missing or invalid field: output");
        let mut r = base();
        r.file_outputs.push(file("y.mp4"));
        assert_eq!(
            err(&rc(r)),
            "request has missing or invalid field: multiple file outputs"
        );
        let mut r = base();
        r.stream_outputs.push(livekit::StreamOutput {
            urls: vec!["rtmp://a/b/c".into()],
            ..Default::default()
        });
        let cfg = WebConfig::new(&service(), &rc(r), "my room", SystemTime::now())
            .expect("a stream beside the file");
        assert_eq!(cfg.live.streams.as_ref().map(|(_, u)| u.len()), Some(1));
        assert_eq!(cfg.file.container, Container::Mp4);
        assert_eq!(
            cfg.encoding.key_frame_interval, 2.0,
            "streams: a keyframe every 2 s"
        );
        let mut r = base();
        r.stream_outputs.push(livekit::StreamOutput {
            urls: vec!["rtmp://a/key".into()],
            ..Default::default()
        });
        let e = err(&rc(r));
        assert!(
            e.contains("rtmp urls must be of format"),
            "Go's RTMP URL rule: {e}"
        );
        // Stream-only and segments-only egresses have no file.
        let mut r = base();
        r.file_outputs.clear();
        r.segment_outputs.push(livekit::SegmentedFileOutput {
            segment_duration: 6,
            ..Default::default()
        });
        let cfg = WebConfig::new(&service(), &rc(r), "my room", SystemTime::now())
            .expect("segments only");
        assert!(!cfg.has_file);
        assert_eq!(cfg.encoding.key_frame_interval, 6.0, "one GOP per segment");
        assert_eq!(
            (cfg.video_codec, cfg.audio_codec),
            (Some(VideoCodec::H264), Some(AudioCodec::Aac))
        );
        // An upload is not a request error here (crate::storage checks it), even when local
        // files are disallowed.
        let mut r = base();
        r.file_outputs[0].output = Some(encoded_file_output::Output::S3(Default::default()));
        let mut no_local = service();
        no_local.disallow_local_storage = true;
        assert!(WebConfig::new(&no_local, &rc(r), "my room", SystemTime::now()).is_ok());
        assert_eq!(
            WebConfig::new(&no_local, &rc(base()), "", SystemTime::now())
                .unwrap_err()
                .message,
            "request has missing or invalid field: output"
        );
        let mut r = base();
        r.file_outputs[0].file_type = EncodedFileType::Ogg as i32;
        assert_eq!(
            err(&rc(r)),
            "no supported codec is compatible with all outputs"
        );
        let web = StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::Web(livekit::WebEgressRequest {
                url: "file:///etc/passwd".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(err(&web), "request has missing or invalid field: web url");
        let retry = StartEgressRequest {
            retry_count: 1,
            ..rc(base())
        };
        assert_eq!(err(&retry), "output configuration does not support retry");
        let no_id = StartEgressRequest {
            egress_id: String::new(),
            ..rc(base())
        };
        assert_eq!(
            err(&no_id),
            "request has missing or invalid field: egressID"
        );
        let participant = StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::Participant(Default::default())),
            ..Default::default()
        };
        assert_eq!(err(&participant), "participant egress is not yet supported");
    }

    #[test]
    fn web_v2_audio_only_defaults_to_ogg_opus() {
        let req = StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::Egress(livekit::StartEgressRequest {
                source: Some(v2::Source::Web(livekit::WebSource {
                    url: "http://127.0.0.1:9/page".into(),
                    audio_only: true,
                    ..Default::default()
                })),
                outputs: vec![livekit::Output {
                    config: Some(output::Config::File(livekit::FileOutput {
                        filepath: "out/".into(),
                        ..Default::default()
                    })),
                    storage: None,
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        let p = WebConfig::new(&service(), &req, "", SystemTime::now()).unwrap();
        assert_eq!(p.request_type, RequestType::Web);
        assert!(!p.source.await_start_signal);
        assert!(!p.video);
        assert_eq!(
            (p.file.container, p.audio_codec),
            (Container::Ogg, Some(AudioCodec::Opus))
        );
        assert!(
            p.file.storage_path.starts_with("out/web-"),
            "{}",
            p.file.storage_path
        );
        assert!(p.file.storage_path.ends_with(".ogg"));
    }

    #[test]
    fn vp8_records_webm_and_refuses_other_file_types() {
        let web = |file_type: EncodedFileType| StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::Web(livekit::WebEgressRequest {
                url: "http://127.0.0.1:9/page".into(),
                options: Some(web::Options::Advanced(livekit::EncodingOptions {
                    video_codec: livekit::VideoCodec::Vp8 as i32,
                    ..Default::default()
                })),
                file_outputs: vec![livekit::EncodedFileOutput {
                    filepath: "rec/page.mp4".into(),
                    file_type: file_type as i32,
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        let p = WebConfig::new(
            &service(),
            &web(EncodedFileType::DefaultFiletype),
            "",
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            (p.file.container, p.audio_codec, p.video_codec),
            (
                Container::Webm,
                Some(AudioCodec::Opus),
                Some(VideoCodec::Vp8)
            )
        );
        assert_eq!(
            p.file.storage_path, "rec/page.webm",
            "a known wrong extension is replaced"
        );
        assert_eq!(
            err(&web(EncodedFileType::Mp4)),
            "format video/mp4 incompatible with codec video/vp8"
        );
        assert_eq!(
            err(&web(EncodedFileType::Ogg)),
            "format audio/ogg incompatible with codec video/vp8"
        );
    }

    #[test]
    fn template_url_keeps_other_params_and_replaces_ours() {
        let base = url::Url::parse("http://h:1/t/?b=2&layout=old&a=1").unwrap();
        assert_eq!(
            template_url(&base, "grid", "ws://x", "tok"),
            "http://h:1/t/?a=1&b=2&layout=grid&token=tok&url=ws%3A%2F%2Fx"
        );
    }
}
