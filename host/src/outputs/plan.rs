//! Every output a request asks for, parsed once into one typed [`OutputPlan`], whatever shape
//! the request came in (v1 `file_outputs`/`stream_outputs`/`segment_outputs`/`image_outputs`
//! and the deprecated single `output`, the track egress's `output`, v2 `outputs[]`).
//!
//! The plan is parsed without failing; what is wrong with it is answered by two checks that each
//! recorder's config calls where the Go egress checks it, so the same bad request gets the same
//! error as in Go: [`OutputPlan::check`] (malformed: a second file output, a v2 output without a
//! config, no v2 outputs at all) and [`OutputPlan::refuse_unsupported`] (kinds this build
//! cannot produce yet, the one place they are refused).

use egress_proto::livekit::{
    self, room_composite_egress_request as rc, track_composite_egress_request as tc,
    track_egress_request as te, web_egress_request as web,
};
use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

use crate::core::errors;
use crate::rpc::RpcError;

/// The outputs of one request, in the request's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputPlan {
    pub outputs: Vec<Output>,
    /// The first malformed part of the request's outputs (the field named in Go's
    /// `ErrInvalidInput`), reported by [`OutputPlan::check`].
    invalid: Option<&'static str>,
}

/// One output of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A recorded file (v1 `EncodedFileOutput`, v2 `FileOutput`, the track egress's
    /// `DirectFileOutput`).
    File(FileSpec),
    /// The track egress's `websocket_url`: the track's audio as PCM (Go's `OutputTypeRaw`).
    Websocket(WebsocketSpec),
    /// RTMP/SRT live streams (`StreamOutput`): not yet produced by this build.
    Stream(StreamSpec),
    /// HLS segments and playlists (`SegmentedFileOutput`): not yet produced by this build.
    Segments(SegmentsSpec),
    /// Thumbnails every N seconds (`ImageOutput`): not yet produced by this build.
    Images(ImagesSpec),
}

/// A file output as the request gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// `EncodedFileType` (`DEFAULT_FILETYPE` for a track egress, whose container follows the codec).
    pub file_type: i32,
    /// As given: not cleaned, not templated.
    pub filepath: String,
    pub disable_manifest: bool,
    /// The request names its own upload for it (S3, GCP, Azure, AliOSS); the storage itself is
    /// resolved by `crate::storage::target`.
    pub has_upload: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebsocketSpec {
    /// As given; checked by the track recorder's config (Go's `ValidateUrl`).
    pub url: String,
}

/// `StreamOutput`: one protocol, any number of URLs (UpdateStream adds and removes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// `StreamProtocol` (DEFAULT, RTMP, SRT).
    pub protocol: i32,
    pub urls: Vec<String>,
}

/// `SegmentedFileOutput`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentsSpec {
    /// `SegmentedFileProtocol` (HLS).
    pub protocol: i32,
    pub filename_prefix: String,
    pub playlist_name: String,
    pub live_playlist_name: String,
    /// Seconds; 0 means Go's default (4 s).
    pub segment_duration: u32,
    /// `SegmentedFileSuffix` (INDEX, TIMESTAMP).
    pub filename_suffix: i32,
    pub disable_manifest: bool,
    pub has_upload: bool,
}

/// `ImageOutput`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesSpec {
    /// Seconds between images.
    pub capture_interval: u32,
    pub width: i32,
    pub height: i32,
    pub filename_prefix: String,
    /// `ImageFileSuffix` (INDEX, TIMESTAMP, NONE_OVERWRITE).
    pub filename_suffix: i32,
    /// `ImageCodec` (IC_DEFAULT, IC_JPEG).
    pub image_codec: i32,
    pub disable_manifest: bool,
    pub has_upload: bool,
}

/// The output kinds not every recorder produces, in the order the Go egress validates them,
/// with the feature name of its `ErrNotSupported` (a recorder names what it produces in
/// [`OutputPlan::refuse_unsupported`]).
const NOT_YET_SUPPORTED: [(OutputKind, &str); 3] = [
    (OutputKind::Stream, "stream output"),
    (OutputKind::Segments, "segment output"),
    (OutputKind::Images, "image output"),
];

/// An output's kind, without its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    File,
    Websocket,
    Stream,
    Segments,
    Images,
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::File(_) => OutputKind::File,
            Output::Websocket(_) => OutputKind::Websocket,
            Output::Stream(_) => OutputKind::Stream,
            Output::Segments(_) => OutputKind::Segments,
            Output::Images(_) => OutputKind::Images,
        }
    }
}

impl OutputPlan {
    /// The request's outputs. A request type without outputs of its own (replay, none) gives an
    /// empty plan.
    #[allow(deprecated)]
    pub fn parse(req: &StartEgressRequest) -> OutputPlan {
        let mut plan = OutputPlan::default();
        match req.request.as_ref() {
            Some(Request::RoomComposite(r)) => {
                let (file, stream, segments) = match &r.output {
                    Some(rc::Output::File(f)) => (Some(f), None, None),
                    Some(rc::Output::Stream(s)) => (None, Some(s), None),
                    Some(rc::Output::Segments(s)) => (None, None, Some(s)),
                    None => (None, None, None),
                };
                plan.v1(
                    &r.file_outputs,
                    file,
                    &r.stream_outputs,
                    stream,
                    &r.segment_outputs,
                    segments,
                    &r.image_outputs,
                );
            }
            Some(Request::Web(r)) => {
                let (file, stream, segments) = match &r.output {
                    Some(web::Output::File(f)) => (Some(f), None, None),
                    Some(web::Output::Stream(s)) => (None, Some(s), None),
                    Some(web::Output::Segments(s)) => (None, None, Some(s)),
                    None => (None, None, None),
                };
                plan.v1(
                    &r.file_outputs,
                    file,
                    &r.stream_outputs,
                    stream,
                    &r.segment_outputs,
                    segments,
                    &r.image_outputs,
                );
            }
            Some(Request::TrackComposite(r)) => {
                let (file, stream, segments) = match &r.output {
                    Some(tc::Output::File(f)) => (Some(f), None, None),
                    Some(tc::Output::Stream(s)) => (None, Some(s), None),
                    Some(tc::Output::Segments(s)) => (None, None, Some(s)),
                    None => (None, None, None),
                };
                plan.v1(
                    &r.file_outputs,
                    file,
                    &r.stream_outputs,
                    stream,
                    &r.segment_outputs,
                    segments,
                    &r.image_outputs,
                );
            }
            Some(Request::Participant(r)) => {
                plan.v1(
                    &r.file_outputs,
                    None,
                    &r.stream_outputs,
                    None,
                    &r.segment_outputs,
                    None,
                    &r.image_outputs,
                );
            }
            Some(Request::Track(r)) => match &r.output {
                Some(te::Output::File(f)) => plan.outputs.push(Output::File(FileSpec {
                    file_type: livekit::EncodedFileType::DefaultFiletype as i32,
                    filepath: f.filepath.clone(),
                    disable_manifest: f.disable_manifest,
                    has_upload: f.output.is_some(),
                })),
                Some(te::Output::WebsocketUrl(url)) => plan
                    .outputs
                    .push(Output::Websocket(WebsocketSpec { url: url.clone() })),
                None => {}
            },
            Some(Request::Egress(r)) => plan.v2(r),
            Some(Request::Replay(_)) | None => {}
        }
        plan
    }

    /// v1 requests: at most one file (the list's, else the deprecated single one), then
    /// streams, segments and images.
    #[allow(clippy::too_many_arguments)]
    fn v1(
        &mut self,
        files: &[livekit::EncodedFileOutput],
        single_file: Option<&livekit::EncodedFileOutput>,
        streams: &[livekit::StreamOutput],
        single_stream: Option<&livekit::StreamOutput>,
        segments: &[livekit::SegmentedFileOutput],
        single_segments: Option<&livekit::SegmentedFileOutput>,
        images: &[livekit::ImageOutput],
    ) {
        if files.len() > 1 {
            self.invalid = Some("multiple file outputs");
        }
        let files: Vec<&livekit::EncodedFileOutput> = if files.is_empty() {
            single_file.into_iter().collect()
        } else {
            files.iter().collect()
        };
        for f in files {
            self.outputs.push(Output::File(FileSpec {
                file_type: f.file_type,
                filepath: f.filepath.clone(),
                disable_manifest: f.disable_manifest,
                has_upload: f.output.is_some(),
            }));
        }
        for s in streams.iter().chain(single_stream) {
            self.outputs.push(Output::Stream(stream(s)));
        }
        for s in segments.iter().chain(single_segments) {
            self.outputs
                .push(Output::Segments(segments_spec(s, s.output.is_some())));
        }
        for i in images {
            self.outputs
                .push(Output::Images(images_spec(i, i.output.is_some())));
        }
    }

    /// v2 requests: `outputs[]`, each with its own storage or the request's.
    fn v2(&mut self, r: &livekit::StartEgressRequest) {
        use livekit::output::Config;
        if r.outputs.is_empty() {
            self.invalid = Some("output");
        }
        let mut files = 0;
        for o in &r.outputs {
            let has_upload = o
                .storage
                .as_ref()
                .or(r.storage.as_ref())
                .and_then(|s| s.provider.as_ref())
                .is_some();
            let output = match &o.config {
                Some(Config::File(f)) => {
                    files += 1;
                    if files > 1 {
                        self.invalid.get_or_insert("multiple file outputs");
                    }
                    Output::File(FileSpec {
                        file_type: f.file_type,
                        filepath: f.filepath.clone(),
                        disable_manifest: f.disable_manifest,
                        has_upload,
                    })
                }
                Some(Config::Stream(s)) => Output::Stream(stream(s)),
                Some(Config::Segments(s)) => Output::Segments(segments_spec(s, has_upload)),
                Some(Config::Images(i)) => Output::Images(images_spec(i, has_upload)),
                None => {
                    self.invalid.get_or_insert("output config");
                    continue;
                }
            };
            self.outputs.push(output);
        }
    }

    /// The request's outputs are well-formed (Go's `ErrInvalidInput` with the field otherwise).
    pub fn check(&self) -> Result<(), RpcError> {
        match self.invalid {
            Some(field) => Err(errors::invalid_input(field)),
            None => Ok(()),
        }
    }

    /// Refuses the first output kind the recorder cannot produce (`produces`), in the Go
    /// egress's order, with its "… is not yet supported" text: a recorder that produces
    /// streams, segments and images refuses none of them.
    pub fn refuse_unsupported(&self, produces: &[OutputKind]) -> Result<(), RpcError> {
        for (kind, feature) in NOT_YET_SUPPORTED {
            if self.has(kind) && !produces.contains(&kind) {
                return Err(errors::not_supported(feature));
            }
        }
        Ok(())
    }

    /// The stream output (one per request; its URLs change with UpdateStream).
    pub fn stream(&self) -> Option<&StreamSpec> {
        self.outputs.iter().find_map(|o| match o {
            Output::Stream(s) => Some(s),
            _ => None,
        })
    }

    /// The segments output, if any.
    pub fn segments(&self) -> Option<&SegmentsSpec> {
        self.outputs.iter().find_map(|o| match o {
            Output::Segments(s) => Some(s),
            _ => None,
        })
    }

    /// The image outputs (several are allowed).
    pub fn images(&self) -> impl Iterator<Item = &ImagesSpec> {
        self.outputs.iter().filter_map(|o| match o {
            Output::Images(i) => Some(i),
            _ => None,
        })
    }

    pub fn has(&self, kind: OutputKind) -> bool {
        self.outputs.iter().any(|o| o.kind() == kind)
    }

    /// The file output, if the request has one (the first: [`check`](Self::check) refuses more).
    pub fn file(&self) -> Option<&FileSpec> {
        self.outputs.iter().find_map(|o| match o {
            Output::File(f) => Some(f),
            _ => None,
        })
    }

    /// The websocket output (track egress), if any.
    pub fn websocket(&self) -> Option<&WebsocketSpec> {
        self.outputs.iter().find_map(|o| match o {
            Output::Websocket(w) => Some(w),
            _ => None,
        })
    }
}

fn stream(s: &livekit::StreamOutput) -> StreamSpec {
    StreamSpec {
        protocol: s.protocol,
        urls: s.urls.clone(),
    }
}

fn segments_spec(s: &livekit::SegmentedFileOutput, has_upload: bool) -> SegmentsSpec {
    SegmentsSpec {
        protocol: s.protocol,
        filename_prefix: s.filename_prefix.clone(),
        playlist_name: s.playlist_name.clone(),
        live_playlist_name: s.live_playlist_name.clone(),
        segment_duration: s.segment_duration,
        filename_suffix: s.filename_suffix,
        disable_manifest: s.disable_manifest,
        has_upload,
    }
}

fn images_spec(i: &livekit::ImageOutput, has_upload: bool) -> ImagesSpec {
    ImagesSpec {
        capture_interval: i.capture_interval,
        width: i.width,
        height: i.height,
        filename_prefix: i.filename_prefix.clone(),
        filename_suffix: i.filename_suffix,
        image_codec: i.image_codec,
        disable_manifest: i.disable_manifest,
        has_upload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(r: livekit::WebEgressRequest) -> StartEgressRequest {
        StartEgressRequest {
            request: Some(Request::Web(r)),
            ..Default::default()
        }
    }

    #[test]
    #[allow(deprecated)]
    fn unsupported_kinds_are_refused_in_the_go_order() {
        let plan = OutputPlan::parse(&web(livekit::WebEgressRequest {
            image_outputs: vec![Default::default()],
            segment_outputs: vec![Default::default()],
            stream_outputs: vec![livekit::StreamOutput {
                urls: vec!["rtmp://a/b".into()],
                ..Default::default()
            }],
            ..Default::default()
        }));
        assert_eq!(
            plan.refuse_unsupported(&[OutputKind::File])
                .unwrap_err()
                .message,
            "stream output is not yet supported"
        );
        assert!(matches!(&plan.outputs[0], Output::Stream(s) if s.urls == ["rtmp://a/b"]));
        let plan = OutputPlan::parse(&web(livekit::WebEgressRequest {
            image_outputs: vec![Default::default()],
            output: Some(web::Output::Segments(Default::default())),
            ..Default::default()
        }));
        assert_eq!(
            plan.refuse_unsupported(&[OutputKind::File])
                .unwrap_err()
                .message,
            "segment output is not yet supported"
        );
        assert!(plan.check().is_ok());
    }

    #[test]
    fn a_v2_request_names_what_is_malformed() {
        use livekit::output::Config;
        let v2 = |outputs: Vec<livekit::Output>| StartEgressRequest {
            request: Some(Request::Egress(livekit::StartEgressRequest {
                outputs,
                ..Default::default()
            })),
            ..Default::default()
        };
        let file = || livekit::Output {
            config: Some(Config::File(Default::default())),
            storage: None,
        };
        assert_eq!(
            OutputPlan::parse(&v2(vec![])).check().unwrap_err().message,
            "request has missing or invalid field: output"
        );
        let two = OutputPlan::parse(&v2(vec![file(), file()]));
        assert_eq!(
            two.check().unwrap_err().message,
            "request has missing or invalid field: multiple file outputs"
        );
        let empty = OutputPlan::parse(&v2(vec![livekit::Output::default(), file(), file()]));
        assert_eq!(
            empty.check().unwrap_err().message,
            "request has missing or invalid field: output config"
        );
        let one = OutputPlan::parse(&v2(vec![file()]));
        assert!(
            one.check().is_ok()
                && one.refuse_unsupported(&[OutputKind::File]).is_ok()
                && one.file().is_some()
        );
    }
}
