//! Encoding settings: the Go egress's base defaults, presets, advanced options and their
//! validation (reference §2.5, `pkg/config/encoding.go`), and the codec/container choice for
//! file outputs (§2.1, `validateAndUpdateOutputParams`).
//!
//! One step beyond Go: the Go egress encodes only H.264 and ignores `video_codec: VP8` (it
//! records H.264 anyway). Here VP8 is encodable, and a `DEFAULT_FILETYPE` file with VP8 video
//! becomes WebM (VP8 + Opus), the container Go already uses for VP8 track passthrough.
//! `EncodedFileType` has no WebM, so WebM is only ever chosen, never requested; VP8 with an
//! explicit MP4, OGG or MP3 file is refused with Go's incompatibility error. The protocol has no
//! VP9 value in `VideoCodec`, so VP9 cannot be asked for.

use egress_proto::livekit::{
    AudioCodec as ReqAudioCodec, EncodingOptions, EncodingOptionsPreset,
    VideoCodec as ReqVideoCodec,
};

use crate::core::errors;
use crate::rpc::RpcError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Aac,
    Opus,
    Mp3,
}

impl AudioCodec {
    /// The Go egress's MIME type names (used in its error texts).
    pub fn mime(self) -> &'static str {
        match self {
            AudioCodec::Aac => "audio/aac",
            AudioCodec::Opus => "audio/opus",
            AudioCodec::Mp3 => "audio/mpeg",
        }
    }
}

/// Encodable video codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Vp8,
}

impl VideoCodec {
    /// The Go egress's MIME type names (used in its error texts).
    pub fn mime(self) -> &'static str {
        match self {
            VideoCodec::H264 => "video/h264",
            VideoCodec::Vp8 => "video/vp8",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Baseline,
    Main,
    High,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Baseline => "baseline",
            Profile::Main => "main",
            Profile::High => "high",
        }
    }
}

/// File containers: those a request can ask for (`EncodedFileType`), and WebM, which is chosen
/// for VP8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Ogg,
    Mp3,
    Webm,
}

impl Container {
    /// The Go egress's output type names (used in its error texts); also the content type.
    pub fn mime(self) -> &'static str {
        match self {
            Container::Mp4 => "video/mp4",
            Container::Ogg => "audio/ogg",
            Container::Mp3 => "audio/mpeg",
            Container::Webm => "video/webm",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => ".mp4",
            Container::Ogg => ".ogg",
            Container::Mp3 => ".mp3",
            Container::Webm => ".webm",
        }
    }

    /// `types.DefaultAudioCodecs`.
    fn default_audio(self) -> AudioCodec {
        match self {
            Container::Mp4 => AudioCodec::Aac,
            Container::Ogg | Container::Webm => AudioCodec::Opus,
            Container::Mp3 => AudioCodec::Mp3,
        }
    }

    /// `types.DefaultVideoCodecs`; `None` for the audio containers.
    fn default_video(self) -> Option<VideoCodec> {
        match self {
            Container::Mp4 => Some(VideoCodec::H264),
            Container::Webm => Some(VideoCodec::Vp8),
            Container::Ogg | Container::Mp3 => None,
        }
    }

    /// `types.CodecCompatibility` for audio; raw audio (websocket only) is left out.
    fn accepts_audio(self, codec: AudioCodec) -> bool {
        match self {
            Container::Mp4 => matches!(codec, AudioCodec::Aac | AudioCodec::Opus),
            Container::Ogg | Container::Webm => codec == AudioCodec::Opus,
            Container::Mp3 => true,
        }
    }

    /// `types.CodecCompatibility` for the encodable video codecs.
    fn accepts_video(self, codec: VideoCodec) -> bool {
        self.default_video() == Some(codec)
    }
}

/// Encoding parameters after defaults, preset and advanced options.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub width: i32,
    pub height: i32,
    pub depth: i32,
    pub framerate: i32,
    /// kbps.
    pub video_bitrate: i32,
    pub profile: Profile,
    /// Seconds; 0 lets the encoder decide.
    pub key_frame_interval: f64,
    /// kbps.
    pub audio_bitrate: i32,
    /// Hz, for AAC and MP3 (Opus always runs at 48 kHz).
    pub audio_frequency: i32,
    /// Asked for explicitly (advanced options); `None` follows the container.
    pub audio_codec: Option<AudioCodec>,
    /// Asked for explicitly (advanced options); `None` follows the container.
    pub video_codec: Option<VideoCodec>,
}

impl Default for Encoding {
    /// `PipelineConfig.Update`'s base values. (The proto comments claim 1080p / 4500 kbps; the
    /// Go code really starts from these.)
    fn default() -> Self {
        Encoding {
            width: 1280,
            height: 720,
            depth: 24,
            framerate: 30,
            video_bitrate: 3000,
            profile: Profile::Main,
            key_frame_interval: 0.0,
            audio_bitrate: 128,
            audio_frequency: 44100,
            audio_codec: None,
            video_codec: None,
        }
    }
}

/// The request's `options`/`encoding` oneof, whichever request shape it came from.
#[derive(Debug, Clone, Copy)]
pub enum EncodingRequest {
    Preset(i32),
    Advanced(EncodingOptions),
}

impl Encoding {
    /// The encoded picture's width and height (0 for a nonsensical negative value).
    pub fn video_size(&self) -> (u32, u32) {
        (
            u32::try_from(self.width).unwrap_or(0),
            u32::try_from(self.height).unwrap_or(0),
        )
    }

    pub fn from_request(req: Option<EncodingRequest>) -> Result<Encoding, RpcError> {
        let mut e = Encoding::default();
        match req {
            None => {}
            Some(EncodingRequest::Preset(p)) => e.apply_preset(p)?,
            Some(EncodingRequest::Advanced(a)) => e.apply_advanced(&a)?,
        }
        Ok(e)
    }

    fn apply_preset(&mut self, preset: i32) -> Result<(), RpcError> {
        use EncodingOptionsPreset as P;
        let (w, h, fps, kbps) = match P::try_from(preset) {
            Ok(P::H264720p30) => (1280, 720, 30, 3000),
            Ok(P::H264720p60) => (1280, 720, 60, 4500),
            Ok(P::H2641080p30) => (1920, 1080, 30, 4500),
            Ok(P::H2641080p60) => (1920, 1080, 60, 6000),
            Ok(P::PortraitH264720p30) => (720, 1280, 30, 3000),
            Ok(P::PortraitH264720p60) => (720, 1280, 60, 4500),
            Ok(P::PortraitH2641080p30) => (1080, 1920, 30, 4500),
            Ok(P::PortraitH2641080p60) => (1080, 1920, 60, 6000),
            // Passthrough exists only for media requests with one track.
            Ok(P::Passthrough) => return Err(errors::invalid_input("preset")),
            // Unknown values leave the defaults, as Go's switch does.
            Err(_) => return Ok(()),
        };
        self.width = w;
        self.height = h;
        self.framerate = fps;
        self.video_bitrate = kbps;
        Ok(())
    }

    fn apply_advanced(&mut self, a: &EncodingOptions) -> Result<(), RpcError> {
        match ReqAudioCodec::try_from(a.audio_codec) {
            Ok(ReqAudioCodec::Opus) => self.audio_codec = Some(AudioCodec::Opus),
            Ok(ReqAudioCodec::Aac) => self.audio_codec = Some(AudioCodec::Aac),
            Ok(ReqAudioCodec::AcMp3) => self.audio_codec = Some(AudioCodec::Mp3),
            _ => {}
        }
        if a.audio_bitrate != 0 {
            self.audio_bitrate = a.audio_bitrate;
        }
        if a.audio_frequency != 0 {
            self.audio_frequency = a.audio_frequency;
        }
        match ReqVideoCodec::try_from(a.video_codec) {
            Ok(ReqVideoCodec::H264Baseline) => {
                self.video_codec = Some(VideoCodec::H264);
                self.profile = Profile::Baseline;
            }
            Ok(ReqVideoCodec::H264Main) => self.video_codec = Some(VideoCodec::H264),
            Ok(ReqVideoCodec::H264High) => {
                self.video_codec = Some(VideoCodec::H264);
                self.profile = Profile::High;
            }
            Ok(ReqVideoCodec::Vp8) => self.video_codec = Some(VideoCodec::Vp8),
            Ok(ReqVideoCodec::DefaultVc) | Err(_) => {}
        }
        if a.width > 0 {
            if a.width < 16 || a.width % 2 == 1 {
                return Err(errors::invalid_input("width"));
            }
            self.width = a.width;
        }
        if a.height > 0 {
            if a.height < 16 || a.height % 2 == 1 {
                return Err(errors::invalid_input("height"));
            }
            self.height = a.height;
        }
        match a.depth {
            0 => {}
            8 | 16 | 24 => self.depth = a.depth,
            _ => return Err(errors::invalid_input("depth")),
        }
        if a.framerate != 0 {
            self.framerate = a.framerate;
        }
        if a.video_bitrate != 0 {
            self.video_bitrate = a.video_bitrate;
        }
        if a.key_frame_interval != 0.0 {
            self.key_frame_interval = a.key_frame_interval;
        }
        Ok(())
    }
}

/// A file output's container and codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFormat {
    pub container: Container,
    /// Set when audio is enabled.
    pub audio: Option<AudioCodec>,
    /// Set when video is enabled.
    pub video: Option<VideoCodec>,
}

/// Picks the container (for `DEFAULT_FILETYPE`) and the codecs of a file output, with the Go
/// egress's errors (`validateAndUpdateOutputCodecs`, `updateOutputType`).
///
/// `requested` is `None` for `DEFAULT_FILETYPE`; `explicit_*` are the advanced options' codecs.
pub fn choose_file_format(
    requested: Option<Container>,
    audio: bool,
    video: bool,
    explicit_audio: Option<AudioCodec>,
    explicit_video: Option<VideoCodec>,
) -> Result<FileFormat, RpcError> {
    const ALL_AUDIO: [AudioCodec; 3] = [AudioCodec::Aac, AudioCodec::Opus, AudioCodec::Mp3];
    const ALL_VIDEO: [VideoCodec; 2] = [VideoCodec::H264, VideoCodec::Vp8];
    let audio_candidates: Vec<AudioCodec> = explicit_audio.map_or(ALL_AUDIO.to_vec(), |c| vec![c]);
    let video_candidates: Vec<VideoCodec> = explicit_video.map_or(ALL_VIDEO.to_vec(), |c| vec![c]);
    let takes_audio = |c: Container| !audio || audio_candidates.iter().any(|a| c.accepts_audio(*a));
    let takes_video = |c: Container| !video || video_candidates.iter().any(|v| c.accepts_video(*v));
    let incompatible = |container: Container, codec: &str| {
        RpcError::new(
            crate::rpc::Code::InvalidArgument,
            format!(
                "format {} incompatible with codec {codec}",
                container.mime()
            ),
        )
    };
    let no_codec = || {
        RpcError::new(
            crate::rpc::Code::InvalidArgument,
            "no supported codec is compatible with all outputs",
        )
    };

    let container = match requested {
        Some(c) => {
            if !takes_audio(c) {
                return Err(match explicit_audio {
                    None => no_codec(),
                    Some(a) => incompatible(c, a.mime()),
                });
            }
            if !takes_video(c) {
                return Err(match (explicit_video, explicit_audio) {
                    // Not a Go answer (Go cannot encode VP8): say which codec does not fit.
                    (Some(VideoCodec::Vp8), _) => incompatible(c, VideoCodec::Vp8.mime()),
                    // Go decides between the two errors by the *audio* codec here, and names
                    // the video codec (empty when unset); kept for identical answers.
                    (_, None) => no_codec(),
                    (v, Some(_)) => incompatible(c, v.map_or("", VideoCodec::mime)),
                });
            }
            c
        }
        // `types.*FileOutputTypes`, WebM added after MP4 for VP8: the first type that takes
        // one of the candidate codecs of every enabled kind.
        None => {
            let order: &[Container] = if video {
                &[Container::Mp4, Container::Webm]
            } else {
                &[Container::Ogg, Container::Mp4, Container::Mp3]
            };
            order
                .iter()
                .copied()
                .find(|c| takes_audio(*c) && takes_video(*c))
                .ok_or_else(|| {
                    RpcError::new(
                        crate::rpc::Code::InvalidArgument,
                        "no supported file output type is compatible with the selected codecs",
                    )
                })?
        }
    };

    let audio_codec = if audio {
        let compatible: Vec<AudioCodec> = audio_candidates
            .into_iter()
            .filter(|a| container.accepts_audio(*a))
            .collect();
        let codec = if compatible.contains(&container.default_audio()) {
            container.default_audio()
        } else {
            *compatible.first().ok_or_else(no_codec)?
        };
        // An MP3 file is a bare MPEG audio stream: nothing but MP3 fits in it.
        if container == Container::Mp3 && codec != AudioCodec::Mp3 {
            return Err(incompatible(container, codec.mime()));
        }
        Some(codec)
    } else {
        None
    };
    let video_codec = if video {
        // Each video container takes exactly one encodable codec, its default.
        Some(
            container
                .default_video()
                .filter(|v| video_candidates.contains(v))
                .ok_or_else(no_codec)?,
        )
    } else {
        None
    };
    Ok(FileFormat {
        container,
        audio: audio_codec,
        video: video_codec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_defaults() {
        let d = Encoding::from_request(None).unwrap();
        assert_eq!(
            (d.width, d.height, d.framerate, d.video_bitrate, d.depth),
            (1280, 720, 30, 3000, 24)
        );
        assert_eq!(
            (d.audio_bitrate, d.audio_frequency, d.profile),
            (128, 44100, Profile::Main)
        );
        let p = Encoding::from_request(Some(EncodingRequest::Preset(
            EncodingOptionsPreset::H2641080p60 as i32,
        )))
        .unwrap();
        assert_eq!(
            (p.width, p.height, p.framerate, p.video_bitrate),
            (1920, 1080, 60, 6000)
        );
        let p = Encoding::from_request(Some(EncodingRequest::Preset(
            EncodingOptionsPreset::PortraitH264720p30 as i32,
        )))
        .unwrap();
        assert_eq!((p.width, p.height), (720, 1280));
        let err = Encoding::from_request(Some(EncodingRequest::Preset(
            EncodingOptionsPreset::Passthrough as i32,
        )));
        assert_eq!(
            err.unwrap_err().message,
            "request has missing or invalid field: preset"
        );
    }

    #[test]
    fn advanced_options_are_validated() {
        let adv = |f: fn(&mut EncodingOptions)| {
            let mut o = EncodingOptions::default();
            f(&mut o);
            Encoding::from_request(Some(EncodingRequest::Advanced(o)))
        };
        assert_eq!(
            adv(|o| o.width = 15).unwrap_err().message,
            "request has missing or invalid field: width"
        );
        assert_eq!(
            adv(|o| o.width = 641).unwrap_err().message,
            "request has missing or invalid field: width"
        );
        assert_eq!(
            adv(|o| o.height = 3).unwrap_err().message,
            "request has missing or invalid field: height"
        );
        assert_eq!(
            adv(|o| o.depth = 12).unwrap_err().message,
            "request has missing or invalid field: depth"
        );
        let e = adv(|o| {
            o.width = 640;
            o.height = 360;
            o.framerate = 15;
            o.video_bitrate = 800;
            o.audio_codec = ReqAudioCodec::Opus as i32;
            o.video_codec = ReqVideoCodec::H264High as i32;
            o.key_frame_interval = 2.0;
        })
        .unwrap();
        assert_eq!(
            (e.width, e.height, e.framerate, e.video_bitrate),
            (640, 360, 15, 800)
        );
        assert_eq!(
            (e.audio_codec, e.profile, e.key_frame_interval),
            (Some(AudioCodec::Opus), Profile::High, 2.0)
        );
    }

    #[test]
    fn file_format_follows_the_go_rules() {
        use AudioCodec::{Aac, Opus};
        use Container::{Mp4, Ogg};
        let mp3c = Container::Mp3;
        let mp3a = AudioCodec::Mp3;
        let h264 = Some(VideoCodec::H264);
        let f = |container, audio, video| FileFormat {
            container,
            audio,
            video,
        };
        assert_eq!(
            choose_file_format(None, true, true, None, None).unwrap(),
            f(Mp4, Some(Aac), h264)
        );
        assert_eq!(
            choose_file_format(None, false, true, None, None).unwrap(),
            f(Mp4, None, h264)
        );
        assert_eq!(
            choose_file_format(None, true, false, None, None).unwrap(),
            f(Ogg, Some(Opus), None)
        );
        assert_eq!(
            choose_file_format(None, true, false, Some(Aac), None).unwrap(),
            f(Mp4, Some(Aac), None)
        );
        assert_eq!(
            choose_file_format(None, true, false, Some(mp3a), None).unwrap(),
            f(mp3c, Some(mp3a), None)
        );
        assert_eq!(
            choose_file_format(Some(Mp4), true, true, Some(Opus), h264).unwrap(),
            f(Mp4, Some(Opus), h264)
        );
        assert_eq!(
            choose_file_format(Some(mp3c), true, false, None, None).unwrap(),
            f(mp3c, Some(mp3a), None)
        );
        let err = choose_file_format(Some(Ogg), true, false, Some(Aac), None).unwrap_err();
        assert_eq!(
            err.message,
            "format audio/ogg incompatible with codec audio/aac"
        );
        let err = choose_file_format(Some(mp3c), true, true, None, None).unwrap_err();
        assert_eq!(
            err.message,
            "no supported codec is compatible with all outputs"
        );
        let err = choose_file_format(Some(Ogg), true, true, None, None).unwrap_err();
        assert_eq!(
            err.message,
            "no supported codec is compatible with all outputs"
        );
        let err = choose_file_format(Some(Ogg), true, true, Some(Opus), h264).unwrap_err();
        assert_eq!(
            err.message,
            "format audio/ogg incompatible with codec video/h264"
        );
        let err = choose_file_format(None, true, true, Some(mp3a), None).unwrap_err();
        assert_eq!(
            err.message,
            "no supported file output type is compatible with the selected codecs"
        );
    }

    #[test]
    fn vp8_makes_webm_and_nothing_else() {
        let vp8 = Some(VideoCodec::Vp8);
        let webm = FileFormat {
            container: Container::Webm,
            audio: Some(AudioCodec::Opus),
            video: vp8,
        };
        assert_eq!(
            choose_file_format(None, true, true, None, vp8).unwrap(),
            webm
        );
        assert_eq!(
            choose_file_format(None, true, true, Some(AudioCodec::Opus), vp8).unwrap(),
            webm
        );
        assert_eq!(
            choose_file_format(None, false, true, None, vp8).unwrap(),
            FileFormat {
                audio: None,
                ..webm
            }
        );
        // Audio only: the video codec does not matter.
        let ogg = choose_file_format(None, true, false, None, vp8).unwrap();
        assert_eq!((ogg.container, ogg.video), (Container::Ogg, None));
        for (container, name) in [
            (Container::Mp4, "video/mp4"),
            (Container::Ogg, "audio/ogg"),
            (Container::Mp3, "audio/mpeg"),
        ] {
            let err = choose_file_format(Some(container), true, true, None, vp8).unwrap_err();
            assert_eq!(
                err.message,
                format!("format {name} incompatible with codec video/vp8")
            );
            assert_eq!(err.code, crate::rpc::Code::InvalidArgument);
        }
        // WebM carries only Opus.
        let err = choose_file_format(None, true, true, Some(AudioCodec::Aac), vp8).unwrap_err();
        assert_eq!(
            err.message,
            "no supported file output type is compatible with the selected codecs"
        );
        assert_eq!(
            (Container::Webm.extension(), Container::Webm.mime()),
            (".webm", "video/webm")
        );
    }

    #[test]
    fn advanced_video_codec_is_read() {
        let codec = |c: ReqVideoCodec| {
            let o = EncodingOptions {
                video_codec: c as i32,
                ..Default::default()
            };
            Encoding::from_request(Some(EncodingRequest::Advanced(o)))
                .unwrap()
                .video_codec
        };
        assert_eq!(codec(ReqVideoCodec::Vp8), Some(VideoCodec::Vp8));
        assert_eq!(codec(ReqVideoCodec::H264Main), Some(VideoCodec::H264));
        assert_eq!(codec(ReqVideoCodec::DefaultVc), None);
    }
}
