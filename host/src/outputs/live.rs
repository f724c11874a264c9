//! The outputs that take the media as it is encoded — streams, segments, images — the way
//! every recorder that produces them parses and attaches them: the stream URLs checked once
//! ([`LiveOutputs::parse`]), the keyframe interval they need ([`LiveOutputs::keyframe_interval`]),
//! the StartEgress check that a live-destination plugin serves each URL ([`check_plugins`]), and
//! one call that attaches them all to a recorder's [`EncodedStreams`] ([`attach`]).
//!
//! A recorder calls these and nothing else of `stream`, `segments` and `images`, so the web
//! (Chrome) and composite (WebRTC) recorders cannot drift apart in what they accept.

use egress_proto::livekit::EncodedFileType;

use super::OutputSet;
use super::context::OutputContext;
use super::images::ImagesOutput;
use super::plan::{OutputPlan, StreamSpec};
use super::segments::SegmentsOutput;
use super::stream::url::{RequestApi, StreamUrlError, parse_stream_url, stream_kind};
use super::stream::{ReconnectPolicy, StreamKind, StreamOutput, StreamUrl, StreamUrlRules, mux};
use super::tap::EncodedStreams;
use crate::config::ServiceConfig;
use crate::core::{PipelineError, errors};
use crate::plugins::PluginRegistry;
use crate::rpc::{Code, RpcError};

/// Segment length when the request sets none (Go's default).
const DEFAULT_SEGMENT_SECS: f64 = 4.0;

/// A request's stream output, checked, and how its URLs are published.
#[derive(Debug, Clone)]
pub struct LiveOutputs {
    /// The stream output's URLs, checked as Go checks them (`None`: no stream output or a
    /// websocket).
    pub streams: Option<(StreamKind, Vec<StreamUrl>)>,
    /// A stream output with protocol WEBSOCKET or a `ws://` / `wss://` URL: raw PCM of the
    /// recording's audio to that URL ([`super::websocket`]); the recording is then audio-only
    /// (Go).
    pub websocket: Option<StreamUrl>,
    /// How shorthand stream URLs resolve (`twitch://`), for UpdateStream too.
    pub stream_rules: StreamUrlRules,
    /// When a dropped destination is tried again, and given up (the config's
    /// `stream_reconnect:`).
    pub reconnect: ReconnectPolicy,
    /// Whether the request has segments (they, like streams, carry H.264 + AAC).
    segments: bool,
    /// A stream's keyframe interval (s) when the request sets none (`streams.keyframe_interval`,
    /// default 2; Go's 4 s is at YouTube's limit, and restreams then showed its "keyframe
    /// frequency" warning).
    stream_keyframe_secs: f64,
}

impl LiveOutputs {
    /// The stream output's URLs, each checked as Go's `ValidateUrl` does (errors name the URL
    /// redacted). A websocket URL goes to [`websocket`](Self::websocket), not to `streams`.
    pub fn parse(
        config: &ServiceConfig,
        plan: &OutputPlan,
        api: RequestApi,
    ) -> Result<LiveOutputs, RpcError> {
        let rules = StreamUrlRules::from_config(config);
        let parsed = plan
            .stream()
            .map(|spec| parse_streams(spec, api, &rules))
            .transpose()?;
        let (streams, websocket) = match parsed {
            Some((StreamKind::Websocket, mut urls)) => (None, urls.pop()),
            other => (other, None),
        };
        Ok(LiveOutputs {
            streams,
            websocket,
            stream_rules: rules,
            reconnect: ReconnectPolicy::from_config(config),
            segments: plan.segments().is_some(),
            stream_keyframe_secs: config.streams.keyframe_interval.as_secs_f64(),
        })
    }

    /// Whether the encode must be H.264 + AAC (Go: streams and segments are; a file beside
    /// them is an MP4 of the same encode).
    pub fn needs_h264_aac(&self) -> bool {
        self.streams.is_some() || self.segments
    }

    /// The keyframe interval (s) the outputs need, from the request's (`requested`, 0 = none):
    /// a stream gets one every `streams.keyframe_interval` (2 s) when the request sets none,
    /// and never more than twice that apart (YouTube and Twitch ask for ≤ 4 s); segments are cut on keyframes the encoder
    /// places on their boundaries (one GOP per segment at most).
    pub fn keyframe_interval(&self, plan: &OutputPlan, requested: f64) -> f64 {
        if let Some(seg) = plan.segments() {
            let d = if seg.segment_duration == 0 {
                DEFAULT_SEGMENT_SECS
            } else {
                f64::from(seg.segment_duration)
            };
            let kfi = if requested > 0.0 { requested.min(d) } else { d };
            return if self.streams.is_some() {
                kfi.min(self.stream_keyframe_secs)
            } else {
                kfi
            };
        }
        if self.streams.is_none() {
            return requested;
        }
        if requested <= 0.0 {
            self.stream_keyframe_secs
        } else {
            requested.min(self.stream_keyframe_secs * 2.0)
        }
    }

    /// The file type a file output beside live outputs may have: MP4 (also for DEFAULT),
    /// else Go's "no supported codec is compatible with all outputs". Without live outputs,
    /// `None` (the recorder's own choice).
    pub fn file_type(&self, requested: i32) -> Result<Option<EncodedFileType>, RpcError> {
        if !self.needs_h264_aac() {
            return Ok(None);
        }
        match EncodedFileType::try_from(requested) {
            Ok(EncodedFileType::DefaultFiletype | EncodedFileType::Mp4) | Err(_) => {
                Ok(Some(EncodedFileType::Mp4))
            }
            Ok(_) => Err(incompatible_codecs()),
        }
    }
}

/// Go's error when the outputs of one request need codecs no single encode gives.
pub fn incompatible_codecs() -> RpcError {
    RpcError::new(
        Code::InvalidArgument,
        "no supported codec is compatible with all outputs",
    )
}

fn parse_streams(
    spec: &StreamSpec,
    api: RequestApi,
    rules: &StreamUrlRules,
) -> Result<(StreamKind, Vec<StreamUrl>), RpcError> {
    let invalid = |e: StreamUrlError| RpcError::new(Code::InvalidArgument, e.to_string());
    let kind = stream_kind(spec.protocol, &spec.urls, api).map_err(invalid)?;
    if spec.urls.is_empty() {
        return Err(errors::invalid_input("stream url"));
    }
    // One websocket sink per egress (Go's websocket output takes one URL).
    if kind == StreamKind::Websocket && spec.urls.len() > 1 {
        return Err(errors::invalid_input("stream url"));
    }
    let urls = spec
        .urls
        .iter()
        .map(|u| parse_stream_url(u, kind, rules).map_err(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((kind, urls))
}

/// The plugin scheme a stream kind is published through.
fn scheme(kind: StreamKind) -> &'static str {
    if kind == StreamKind::Srt {
        "srt"
    } else {
        "rtmp"
    }
}

/// StartEgress-time: a live-destination plugin serves the stream output's URLs (a slim build
/// without `rtmp` refuses an RTMP request here, naming the plugin, instead of failing later).
pub fn check_plugins(live: &LiveOutputs, plugins: &PluginRegistry) -> Result<(), RpcError> {
    if let Some((kind, _)) = &live.streams {
        plugins
            .live_for_scheme(scheme(*kind))
            .map_err(|e| RpcError::new(Code::FailedPrecondition, e.to_string()))?;
    }
    Ok(())
}

/// StartEgress-time check of every live output, answered as attaching it would answer: a
/// live-destination plugin for the stream URLs, the segments' and images' names and storage,
/// and video for images.
pub fn validate(
    live: &LiveOutputs,
    plan: &OutputPlan,
    ctx: &OutputContext,
) -> Result<(), RpcError> {
    check_plugins(live, &ctx.plugins)?;
    if let Some(spec) = plan.segments() {
        SegmentsOutput::validate(spec, ctx)?;
    }
    for spec in plan.images() {
        if ctx.video_size.is_none() {
            return Err(errors::invalid_input("audio_only images"));
        }
        ImagesOutput::validate(spec, ctx)?;
    }
    Ok(())
}

/// Attaches the stream output (every URL starts connecting now and publishes from the first
/// keyframe), the segments output and the image outputs to a recorder's encoded streams,
/// before its pipeline plays.
pub fn attach(
    set: &mut OutputSet,
    live: &LiveOutputs,
    plan: &OutputPlan,
    streams: &EncodedStreams,
    ctx: &OutputContext,
) -> Result<(), PipelineError> {
    if let Some((kind, urls)) = &live.streams {
        let plugin = ctx.plugins.live_for_scheme(scheme(*kind)).map_err(|e| {
            PipelineError::Request(RpcError::new(Code::InvalidArgument, e.to_string()))
        })?;
        let tap = mux::attach(streams, plugin.descriptor.format)
            .map_err(|e| PipelineError::Gst(e.to_string()))?;
        let mut output = StreamOutput::new(
            *kind,
            tap,
            plugin.factory(),
            live.stream_rules.clone(),
            live.reconnect,
        );
        for url in urls {
            output.add(url.clone());
        }
        set.live = Some(output);
    }
    if let Some(spec) = plan.segments() {
        SegmentsOutput::validate(spec, ctx).map_err(PipelineError::Request)?;
        set.segments = Some(SegmentsOutput::attach(streams, spec, ctx)?);
    }
    for spec in plan.images() {
        ImagesOutput::validate(spec, ctx).map_err(PipelineError::Request)?;
        set.images.push(ImagesOutput::attach(streams, spec, ctx)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_proto::livekit::{self, SegmentedFileOutput, StreamOutput as Proto, output};
    use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

    fn service() -> ServiceConfig {
        let yaml =
            "api_key: k\napi_secret: s\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\n";
        crate::config::parse(yaml, &crate::config::EmptyEnv)
            .expect("config")
            .config
    }

    fn plan(outputs: Vec<output::Config>) -> OutputPlan {
        let req = StartEgressRequest {
            request: Some(Request::Egress(livekit::StartEgressRequest {
                outputs: outputs
                    .into_iter()
                    .map(|c| livekit::Output {
                        config: Some(c),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        };
        OutputPlan::parse(&req)
    }

    fn rtmp() -> output::Config {
        output::Config::Stream(Proto {
            urls: vec!["rtmp://host/live/key".into()],
            ..Default::default()
        })
    }

    fn segments(secs: u32) -> output::Config {
        output::Config::Segments(SegmentedFileOutput {
            segment_duration: secs,
            ..Default::default()
        })
    }

    #[test]
    fn streams_get_a_keyframe_every_two_seconds_at_most_four() {
        let p = plan(vec![rtmp()]);
        let live = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap();
        assert!(live.needs_h264_aac());
        assert_eq!(live.keyframe_interval(&p, 0.0), 2.0);
        assert_eq!(live.keyframe_interval(&p, 3.0), 3.0);
        assert_eq!(live.keyframe_interval(&p, 10.0), 4.0);
    }

    #[test]
    fn the_config_sets_the_stream_keyframe_interval_and_the_twitch_ingest() {
        let yaml = "api_key: k\napi_secret: s\nws_url: ws://lk:7880\nredis:\n  address: 127.0.0.1:6379\nstreams:\n  keyframe_interval: 4s\n  twitch_ingest: rtmp://ingest.example/app/{stream_key}\n";
        let config = crate::config::parse(yaml, &crate::config::EmptyEnv)
            .expect("config")
            .config;
        let p = plan(vec![output::Config::Stream(Proto {
            urls: vec!["twitch://abcdefkey".into()],
            ..Default::default()
        })]);
        let live = LiveOutputs::parse(&config, &p, RequestApi::V2).unwrap();
        assert_eq!(
            live.keyframe_interval(&p, 0.0),
            4.0,
            "Go's 4 s, from the config"
        );
        assert_eq!(live.keyframe_interval(&p, 10.0), 8.0);
        let (_, urls) = live.streams.as_ref().expect("streams");
        assert_eq!(urls[0].url, "rtmp://ingest.example/app/abcdefkey");
    }

    #[test]
    fn segments_get_one_gop_per_segment_or_less() {
        let p = plan(vec![segments(6)]);
        let live = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap();
        assert_eq!(live.keyframe_interval(&p, 0.0), 6.0);
        assert_eq!(live.keyframe_interval(&p, 8.0), 6.0);
        assert_eq!(live.keyframe_interval(&p, 1.0), 1.0);
        let p = plan(vec![segments(0), rtmp()]);
        let live = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap();
        assert_eq!(live.keyframe_interval(&p, 0.0), 2.0, "streams need 2 s");
    }

    #[test]
    fn without_live_outputs_the_request_decides() {
        let p = plan(vec![output::Config::File(livekit::FileOutput::default())]);
        let live = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap();
        assert!(!live.needs_h264_aac());
        assert_eq!(live.keyframe_interval(&p, 0.0), 0.0);
        assert_eq!(live.file_type(EncodedFileType::Ogg as i32).unwrap(), None);
    }

    #[test]
    fn a_file_beside_live_outputs_is_mp4() {
        let p = plan(vec![rtmp()]);
        let live = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap();
        assert_eq!(
            live.file_type(EncodedFileType::DefaultFiletype as i32)
                .unwrap(),
            Some(EncodedFileType::Mp4)
        );
        let e = live.file_type(EncodedFileType::Ogg as i32).unwrap_err();
        assert_eq!(
            e.message,
            "no supported codec is compatible with all outputs"
        );
    }

    #[test]
    fn a_websocket_url_is_the_websocket_output_not_a_stream() {
        let p = plan(vec![output::Config::Stream(Proto {
            urls: vec!["ws://host/audio".into()],
            ..Default::default()
        })]);
        let live = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap();
        assert!(live.streams.is_none());
        assert_eq!(
            live.websocket.as_ref().map(|u| u.url.as_str()),
            Some("ws://host/audio")
        );
        assert!(!live.needs_h264_aac(), "PCM needs no H.264 + AAC encode");
        let p = plan(vec![output::Config::Stream(Proto {
            urls: vec!["ws://a/pcm".into(), "wss://b/pcm".into()],
            ..Default::default()
        })]);
        let e = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap_err();
        assert!(e.message.contains("stream url"), "{}", e.message);
    }

    #[test]
    fn bad_urls_are_refused() {
        let p = plan(vec![output::Config::Stream(Proto {
            urls: vec!["rtmp://host/key".into()],
            ..Default::default()
        })]);
        let e = LiveOutputs::parse(&service(), &p, RequestApi::V2).unwrap_err();
        assert!(
            e.message.contains("rtmp urls must be of format"),
            "{}",
            e.message
        );
    }
}
