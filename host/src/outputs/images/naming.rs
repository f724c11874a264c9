//! Settings and names for an image snapshot output, as Go's `getImageConfig` / `updatePrefix`
//! (`pkg/config/output_image.go`), the multifilesink location (`builder/image.go`) and the
//! renames at upload (`sink/image.go`) make them.
//!
//! * Needs video: `request has missing or invalid field: audio_only images`.
//! * `image_codec` IC_DEFAULT or IC_JPEG, else `no supported codec is compatible with all
//!   outputs`; `filename_suffix` INDEX, TIMESTAMP or NONE_OVERWRITE, else `filename_suffix`.
//! * `capture_interval` 0 → 10 s.
//! * The prefix's directory is the storage directory; an empty name becomes
//!   `<identifier>-<time>` (`-<retry>` on a retry). `ImagesInfo.filename_prefix` is the
//!   templated prefix as given (empty when it was empty), as Go reports it.
//! * Names: `<prefix>_%05d.jpeg` (INDEX, from 0), `<prefix>_<YYYYMMDDhhmmss><mmm>.jpeg`
//!   (TIMESTAMP: local wall clock of the capture, Go's first-image time + PTS),
//!   `<prefix>.jpeg` (NONE_OVERWRITE).
//! * Go gives each image output its own GUID sub-directory of the *local* temp dir only (its
//!   multifilesink writes there before the upload); storage names are not made distinct, so
//!   two outputs with the same prefix overwrite each other's objects in Go too. Images here go
//!   straight to the sink, so there is no local directory to separate; the caller keeps a
//!   per-output id for its own bookkeeping.
//!
//! Where we differ from Go on purpose:
//! * Width and height apply only when both are > 0; otherwise images have the source's size
//!   ([`ImageSize::Source`]). Go does the same for SDK sources, but for room composite, web and
//!   template requests fills each missing one from the encoding size separately, so `width`
//!   alone distorts the picture (640 × 720 from a 1280 × 720 encode).
//! * A width or height above [`MAX_IMAGE_DIMENSION`], or a `capture_interval` above
//!   [`MAX_CAPTURE_INTERVAL`], is refused naming the field (Go builds caps that fail later).
//! * Names are cleaned again after templating (a room name cannot lead out of the storage
//!   root) and a `/` in the room name of a default prefix becomes `_`; a prefix whose keys
//!   would pass [`MAX_KEY_BYTES`] is refused (`filename_prefix`).

use egress_proto::livekit::{ImageCodec, ImageFileSuffix, ImageOutput};

use crate::outputs::filename::{FilenameInfo, LocalTime, clean};

pub const DEFAULT_CAPTURE_INTERVAL: u32 = 10;
/// One a day.
pub const MAX_CAPTURE_INTERVAL: u32 = 86_400;
/// Larger than any encode we produce (the composite's maximum is 4K).
pub const MAX_IMAGE_DIMENSION: i32 = 16_384;
/// S3, GCS and Azure limit object names to 1024 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

const IMAGE_EXT: &str = ".jpeg";

/// Errors with Go's texts, all psrpc InvalidArgument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageNamingError {
    #[error("request has missing or invalid field: {0}")]
    InvalidInput(&'static str),
    /// Go's `ErrNoCompatibleCodec`.
    #[error("no supported codec is compatible with all outputs")]
    NoCompatibleCodec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSuffix {
    Index,
    Timestamp,
    NoneOverwrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSize {
    /// The size of the video the images are taken from.
    Source,
    Exact {
        width: u32,
        height: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNaming {
    /// Go's `StorageDir`: `""` or a directory ending in `/`.
    pub storage_dir: String,
    /// Go's `ImagePrefix`: the name part, never empty.
    pub prefix: String,
    /// `ImagesInfo.filename_prefix`, as Go fills it.
    pub info_filename_prefix: String,
    pub suffix: ImageSuffix,
    /// Seconds between images.
    pub capture_interval: u32,
    pub size: ImageSize,
}

impl ImageNaming {
    /// Resolves an `ImageOutput` (v1 `image_outputs` and v2 `Output.images` alike).
    /// `video_enabled` is false for audio-only requests.
    pub fn from_request(
        req: &ImageOutput,
        video_enabled: bool,
        filename: &FilenameInfo,
    ) -> Result<ImageNaming, ImageNamingError> {
        if !video_enabled {
            return Err(ImageNamingError::InvalidInput("audio_only images"));
        }
        match ImageCodec::try_from(req.image_codec) {
            Ok(ImageCodec::IcDefault | ImageCodec::IcJpeg) => {}
            Err(_) => return Err(ImageNamingError::NoCompatibleCodec),
        }
        let suffix = match ImageFileSuffix::try_from(req.filename_suffix) {
            Ok(ImageFileSuffix::ImageSuffixIndex) => ImageSuffix::Index,
            Ok(ImageFileSuffix::ImageSuffixTimestamp) => ImageSuffix::Timestamp,
            Ok(ImageFileSuffix::ImageSuffixNoneOverwrite) => ImageSuffix::NoneOverwrite,
            Err(_) => return Err(ImageNamingError::InvalidInput("filename_suffix")),
        };
        let capture_interval = match req.capture_interval {
            0 => DEFAULT_CAPTURE_INTERVAL,
            n if n > MAX_CAPTURE_INTERVAL => {
                return Err(ImageNamingError::InvalidInput("capture_interval"));
            }
            n => n,
        };
        if req.width > MAX_IMAGE_DIMENSION {
            return Err(ImageNamingError::InvalidInput("width"));
        }
        if req.height > MAX_IMAGE_DIMENSION {
            return Err(ImageNamingError::InvalidInput("height"));
        }
        let size = match (u32::try_from(req.width), u32::try_from(req.height)) {
            (Ok(width), Ok(height)) if width > 0 && height > 0 => {
                ImageSize::Exact { width, height }
            }
            _ => ImageSize::Source,
        };

        let prefix = clean(&filename.replace(&clean(&req.filename_prefix)));
        let (dir, name) = match prefix.rfind('/') {
            Some(i) => (&prefix[..=i], &prefix[i + 1..]),
            None => ("", prefix.as_str()),
        };
        let name = if name.is_empty() {
            filename.file_path("", "").replace('/', "_")
        } else {
            name.to_owned()
        };
        let naming = ImageNaming {
            storage_dir: dir.to_owned(),
            prefix: name,
            info_filename_prefix: prefix.clone(),
            suffix,
            capture_interval,
            size,
        };
        // The longest name: `_` + 17 timestamp digits or a 20-digit index, + `.jpeg`.
        if naming.storage_dir.len() + naming.prefix.len() + 1 + 20 + IMAGE_EXT.len() > MAX_KEY_BYTES
        {
            return Err(ImageNamingError::InvalidInput("filename_prefix"));
        }
        Ok(naming)
    }

    /// The object name of an image, relative to `storage_dir`. `index` counts from 0;
    /// `captured` is the wall clock of the frame.
    pub fn image_name(&self, index: u64, captured: LocalTime) -> String {
        match self.suffix {
            ImageSuffix::Index => format!("{}_{index:05}{IMAGE_EXT}", self.prefix),
            ImageSuffix::Timestamp => {
                format!("{}_{}{IMAGE_EXT}", self.prefix, captured.utc_stamp())
            }
            ImageSuffix::NoneOverwrite => format!("{}{IMAGE_EXT}", self.prefix),
        }
    }

    /// The storage path of an image (Go's `path.Join(StorageDir, filename)`).
    pub fn image_path(&self, index: u64, captured: LocalTime) -> String {
        format!("{}{}", self.storage_dir, self.image_name(index, captured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> LocalTime {
        LocalTime {
            year: 2024,
            month: 3,
            day: 5,
            hour: 7,
            minute: 8,
            second: 9,
            millis: 42,
        }
    }

    fn info() -> FilenameInfo {
        FilenameInfo::new("room", "RM_1", 0, now())
    }

    fn image(prefix: &str) -> ImageOutput {
        ImageOutput {
            filename_prefix: prefix.into(),
            ..Default::default()
        }
    }

    fn resolve(req: &ImageOutput) -> Result<ImageNaming, ImageNamingError> {
        ImageNaming::from_request(req, true, &info())
    }

    #[test]
    fn defaults_as_go() {
        let n = resolve(&image("")).unwrap();
        assert_eq!(n.capture_interval, 10);
        assert_eq!(n.size, ImageSize::Source);
        assert_eq!(n.suffix, ImageSuffix::Index);
        assert_eq!(n.storage_dir, "");
        assert_eq!(n.prefix, "room-2024-03-05T070809");
        assert_eq!(n.info_filename_prefix, "", "Go reports the prefix as given");
        assert_eq!(n.image_name(0, now()), "room-2024-03-05T070809_00000.jpeg");
        let retry =
            ImageNaming::from_request(&image("shots/"), true, &FilenameInfo::new("", "", 2, now()))
                .unwrap();
        assert_eq!(
            retry.image_path(3, now()),
            "shots/web-2024-03-05T070809-2_00003.jpeg"
        );
        assert_eq!(retry.info_filename_prefix, "shots/");
    }

    #[test]
    fn suffixes() {
        let mut req = image("{room_name}/thumb");
        let n = resolve(&req).unwrap();
        assert_eq!(
            (n.storage_dir.as_str(), n.prefix.as_str()),
            ("room/", "thumb")
        );
        assert_eq!(n.info_filename_prefix, "room/thumb");
        assert_eq!(n.image_path(12, now()), "room/thumb_00012.jpeg");
        assert_eq!(n.image_name(123_456, now()), "thumb_123456.jpeg");
        req.filename_suffix = ImageFileSuffix::ImageSuffixTimestamp as i32;
        assert_eq!(
            resolve(&req).unwrap().image_path(12, now()),
            "room/thumb_20240305070809042.jpeg"
        );
        req.filename_suffix = ImageFileSuffix::ImageSuffixNoneOverwrite as i32;
        let n = resolve(&req).unwrap();
        assert_eq!(n.image_path(12, now()), "room/thumb.jpeg");
        assert_eq!(
            n.image_path(13, now()),
            n.image_path(12, now()),
            "overwritten each time"
        );
    }

    #[test]
    fn size_only_when_both_are_set() {
        let with = |w: i32, h: i32| {
            resolve(&ImageOutput {
                width: w,
                height: h,
                ..Default::default()
            })
        };
        assert_eq!(
            with(640, 360).unwrap().size,
            ImageSize::Exact {
                width: 640,
                height: 360
            }
        );
        assert_eq!(with(640, 0).unwrap().size, ImageSize::Source);
        assert_eq!(with(0, 360).unwrap().size, ImageSize::Source);
        assert_eq!(
            with(-640, 360).unwrap().size,
            ImageSize::Source,
            "Go ignores negative values"
        );
        assert_eq!(
            with(16_384, 16_384).unwrap().size,
            ImageSize::Exact {
                width: 16_384,
                height: 16_384
            }
        );
        assert_eq!(
            with(16_385, 10).unwrap_err().to_string(),
            "request has missing or invalid field: width"
        );
        assert_eq!(
            with(10, i32::MAX).unwrap_err(),
            ImageNamingError::InvalidInput("height")
        );
    }

    #[test]
    fn field_errors_have_gos_texts() {
        assert_eq!(
            ImageNaming::from_request(&image("x"), false, &info())
                .unwrap_err()
                .to_string(),
            "request has missing or invalid field: audio_only images"
        );
        let codec = ImageOutput {
            image_codec: 2,
            ..Default::default()
        };
        assert_eq!(
            resolve(&codec).unwrap_err().to_string(),
            "no supported codec is compatible with all outputs"
        );
        assert!(
            resolve(&ImageOutput {
                image_codec: ImageCodec::IcJpeg as i32,
                ..Default::default()
            })
            .is_ok()
        );
        let suffix = ImageOutput {
            filename_suffix: 3,
            ..Default::default()
        };
        assert_eq!(
            resolve(&suffix).unwrap_err().to_string(),
            "request has missing or invalid field: filename_suffix"
        );
        let interval = |n: u32| {
            resolve(&ImageOutput {
                capture_interval: n,
                ..Default::default()
            })
        };
        assert_eq!(interval(1).unwrap().capture_interval, 1);
        assert_eq!(interval(3600).unwrap().capture_interval, 3600);
        assert_eq!(
            interval(86_401).unwrap_err(),
            ImageNamingError::InvalidInput("capture_interval")
        );
        assert_eq!(
            interval(u32::MAX).unwrap_err(),
            ImageNamingError::InvalidInput("capture_interval")
        );
        assert_eq!(
            resolve(&image(&"p".repeat(1000))).unwrap_err(),
            ImageNamingError::InvalidInput("filename_prefix")
        );
    }

    #[test]
    fn traversal_never_escapes_the_storage_root() {
        for prefix in [
            "../../etc/x",
            "a/../../../b",
            "..",
            "../",
            "{room_name}/img",
            "x/{room_name}",
        ] {
            for room in ["../../../etc", "..", "a/b", "🎥"] {
                let n = ImageNaming::from_request(
                    &image(prefix),
                    true,
                    &FilenameInfo::new(room, "RM", 0, now()),
                )
                .unwrap();
                let path = n.image_path(0, now());
                assert!(
                    !path.split('/').any(|c| c == ".."),
                    "{prefix} / {room}: {path}"
                );
                assert!(!n.info_filename_prefix.split('/').any(|c| c == ".."));
            }
        }
        let n =
            ImageNaming::from_request(&image(""), true, &FilenameInfo::new("a/b", "", 0, now()))
                .unwrap();
        assert_eq!(n.image_path(0, now()), "a_b-2024-03-05T070809_00000.jpeg");
    }
}
