//! Encoding settings: the Go egress's base defaults, presets, advanced options and their
//! validation (reference §2.5, `pkg/config/encoding.go`), and the codec/container choice for
//! file outputs (§2.1, `validateAndUpdateOutputParams`).

use egress_proto::livekit::{AudioCodec as ReqAudioCodec, EncodingOptions, EncodingOptionsPreset, VideoCodec};

use crate::egress::errors;
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

/// File containers a request can ask for (`EncodedFileType`) once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Ogg,
    Mp3,
}

impl Container {
    /// The Go egress's output type names (used in its error texts).
    pub fn mime(self) -> &'static str {
        match self {
            Container::Mp4 => "video/mp4",
            Container::Ogg => "audio/ogg",
            Container::Mp3 => "audio/mpeg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => ".mp4",
            Container::Ogg => ".ogg",
            Container::Mp3 => ".mp3",
        }
    }

    /// `types.DefaultAudioCodecs`.
    fn default_audio(self) -> AudioCodec {
        match self {
            Container::Mp4 => AudioCodec::Aac,
            Container::Ogg => AudioCodec::Opus,
            Container::Mp3 => AudioCodec::Mp3,
        }
    }

    /// `types.CodecCompatibility` for audio; raw audio (websocket only) is left out.
    fn accepts_audio(self, codec: AudioCodec) -> bool {
        match self {
            Container::Mp4 => matches!(codec, AudioCodec::Aac | AudioCodec::Opus),
            Container::Ogg => codec == AudioCodec::Opus,
            Container::Mp3 => true,
        }
    }

    /// H.264 is the only encodable video codec; only MP4 carries it.
    fn accepts_h264(self) -> bool {
        self == Container::Mp4
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
        match VideoCodec::try_from(a.video_codec) {
            Ok(VideoCodec::H264Baseline) => self.profile = Profile::Baseline,
            Ok(VideoCodec::H264High) => self.profile = Profile::High,
            _ => {}
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

/// Picks the container (for `DEFAULT_FILETYPE`) and the audio codec of a file output, with the
/// Go egress's errors (`validateAndUpdateOutputCodecs`, `updateOutputType`).
///
/// `requested` is `None` for `DEFAULT_FILETYPE`. Returns the container and, when audio is
/// enabled, its codec.
pub fn choose_file_format(
    requested: Option<Container>,
    audio: bool,
    video: bool,
    explicit_audio: Option<AudioCodec>,
) -> Result<(Container, Option<AudioCodec>), RpcError> {
    const ALL_AUDIO: [AudioCodec; 3] = [AudioCodec::Aac, AudioCodec::Opus, AudioCodec::Mp3];
    let candidates: Vec<AudioCodec> = match explicit_audio {
        Some(c) => vec![c],
        None => ALL_AUDIO.to_vec(),
    };
    let incompatible = |container: Container, codec: &str| {
        RpcError::new(
            crate::rpc::Code::InvalidArgument,
            format!("format {} incompatible with codec {codec}", container.mime()),
        )
    };
    let no_codec = || RpcError::new(crate::rpc::Code::InvalidArgument, "no supported codec is compatible with all outputs");

    let container = match requested {
        Some(c) => {
            if audio && !candidates.iter().any(|a| c.accepts_audio(*a)) {
                return Err(match explicit_audio {
                    None => no_codec(),
                    Some(a) => incompatible(c, a.mime()),
                });
            }
            if video && !c.accepts_h264() {
                // Go decides between the two errors by the *audio* codec here, and names the
                // (unset) video codec; kept for identical answers.
                return Err(match explicit_audio {
                    None => no_codec(),
                    Some(_) => incompatible(c, ""),
                });
            }
            c
        }
        None if video => Container::Mp4,
        // Audio only: the first of OGG, MP4, MP3 that takes one of the candidate codecs.
        None => [Container::Ogg, Container::Mp4, Container::Mp3]
            .into_iter()
            .find(|c| candidates.iter().any(|a| c.accepts_audio(*a)))
            .ok_or_else(|| {
                RpcError::new(
                    crate::rpc::Code::InvalidArgument,
                    "no supported file output type is compatible with the selected codecs",
                )
            })?,
    };
    if !audio {
        return Ok((container, None));
    }
    let compatible: Vec<AudioCodec> = candidates.into_iter().filter(|a| container.accepts_audio(*a)).collect();
    let codec = if compatible.contains(&container.default_audio()) {
        container.default_audio()
    } else {
        *compatible.first().ok_or_else(no_codec)?
    };
    // An MP3 file is a bare MPEG audio stream: nothing but MP3 fits in it.
    if container == Container::Mp3 && codec != AudioCodec::Mp3 {
        return Err(incompatible(container, codec.mime()));
    }
    Ok((container, Some(codec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_defaults() {
        let d = Encoding::from_request(None).unwrap();
        assert_eq!((d.width, d.height, d.framerate, d.video_bitrate, d.depth), (1280, 720, 30, 3000, 24));
        assert_eq!((d.audio_bitrate, d.audio_frequency, d.profile), (128, 44100, Profile::Main));
        let p = Encoding::from_request(Some(EncodingRequest::Preset(EncodingOptionsPreset::H2641080p60 as i32))).unwrap();
        assert_eq!((p.width, p.height, p.framerate, p.video_bitrate), (1920, 1080, 60, 6000));
        let p = Encoding::from_request(Some(EncodingRequest::Preset(EncodingOptionsPreset::PortraitH264720p30 as i32))).unwrap();
        assert_eq!((p.width, p.height), (720, 1280));
        let err = Encoding::from_request(Some(EncodingRequest::Preset(EncodingOptionsPreset::Passthrough as i32)));
        assert_eq!(err.unwrap_err().message, "request has missing or invalid field: preset");
    }

    #[test]
    fn advanced_options_are_validated() {
        let adv = |f: fn(&mut EncodingOptions)| {
            let mut o = EncodingOptions::default();
            f(&mut o);
            Encoding::from_request(Some(EncodingRequest::Advanced(o)))
        };
        assert_eq!(adv(|o| o.width = 15).unwrap_err().message, "request has missing or invalid field: width");
        assert_eq!(adv(|o| o.width = 641).unwrap_err().message, "request has missing or invalid field: width");
        assert_eq!(adv(|o| o.height = 3).unwrap_err().message, "request has missing or invalid field: height");
        assert_eq!(adv(|o| o.depth = 12).unwrap_err().message, "request has missing or invalid field: depth");
        let e = adv(|o| {
            o.width = 640;
            o.height = 360;
            o.framerate = 15;
            o.video_bitrate = 800;
            o.audio_codec = ReqAudioCodec::Opus as i32;
            o.video_codec = VideoCodec::H264High as i32;
            o.key_frame_interval = 2.0;
        })
        .unwrap();
        assert_eq!((e.width, e.height, e.framerate, e.video_bitrate), (640, 360, 15, 800));
        assert_eq!((e.audio_codec, e.profile, e.key_frame_interval), (Some(AudioCodec::Opus), Profile::High, 2.0));
    }

    #[test]
    fn file_format_follows_the_go_rules() {
        use AudioCodec::{Aac, Opus};
        use Container::{Mp4, Ogg};
        let mp3c = Container::Mp3;
        let mp3a = AudioCodec::Mp3;
        assert_eq!(choose_file_format(None, true, true, None).unwrap(), (Mp4, Some(Aac)));
        assert_eq!(choose_file_format(None, false, true, None).unwrap(), (Mp4, None));
        assert_eq!(choose_file_format(None, true, false, None).unwrap(), (Ogg, Some(Opus)));
        assert_eq!(choose_file_format(None, true, false, Some(Aac)).unwrap(), (Mp4, Some(Aac)));
        assert_eq!(choose_file_format(None, true, false, Some(mp3a)).unwrap(), (mp3c, Some(mp3a)));
        assert_eq!(choose_file_format(Some(Mp4), true, true, Some(Opus)).unwrap(), (Mp4, Some(Opus)));
        assert_eq!(choose_file_format(Some(mp3c), true, false, None).unwrap(), (mp3c, Some(mp3a)));
        let err = choose_file_format(Some(Ogg), true, false, Some(Aac)).unwrap_err();
        assert_eq!(err.message, "format audio/ogg incompatible with codec audio/aac");
        let err = choose_file_format(Some(mp3c), true, true, None).unwrap_err();
        assert_eq!(err.message, "no supported codec is compatible with all outputs");
        let err = choose_file_format(Some(Ogg), true, true, None).unwrap_err();
        assert_eq!(err.message, "no supported codec is compatible with all outputs");
    }
}
