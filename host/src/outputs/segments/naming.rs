//! Names for an HLS segment output: playlist, live playlist, segment files and the storage
//! directory, exactly as Go's `getSegmentConfig` / `updatePrefixAndPlaylist`
//! (`pkg/config/output_segment.go`) and the `format-location-full` callback
//! (`pkg/pipeline/builder/segment.go`) build them.
//!
//! * `segment_duration` 0 → 4 s.
//! * The playlist name gets `.m3u8`, after Go's `removeKnownExtension` strips whatever follows
//!   its last dot (Go's quirk: any extension, so `show.v2` → `show.m3u8`).
//! * No playlist name → the prefix's name, else `<identifier>-<time>` (`-<retry>` on a retry).
//!   No prefix → the playlist's name.
//! * The playlist's directory is the storage directory; with none, the prefix's directory is.
//!   A segment directory is kept (relative to the storage directory) only when it differs.
//! * The live playlist must be in the playlist's directory and be named differently.
//! * Segments: `<prefix>_%05d.ts` (INDEX) or `<prefix>_<YYYYMMDDhhmmss><mmm>.ts` (TIMESTAMP,
//!   the wall clock of the segment's first sample, local time like Go).
//! * On a retry, an explicit prefix, or an explicit playlist when there is no prefix, must
//!   contain `{retry}` (`output configuration does not support retry`).
//!
//! Where we differ from Go on purpose:
//! * Names are cleaned again after `{room_name}`-style templating, so a room name such as
//!   `../../x` cannot lead out of the storage root (Go cleans only before templating). In a
//!   default `<identifier>-<time>` name a `/` of the room name becomes `_`, keeping the name
//!   one path element (Go would nest it in a directory it never creates locally).
//! * `segment_duration` above [`MAX_SEGMENT_DURATION`] is refused naming the field (Go
//!   accepts it and then fails on the first segment: its upload queue holds
//!   `max_upload_queue·60 / segment_duration` entries, none above 3600 s at the default).
//! * An unknown `filename_suffix` or `protocol` number is refused naming the field (Go
//!   silently uses INDEX, or writes names without an extension).
//! * A live playlist name that is empty once its extension is stripped (`dir/`, `.m3u8`) is
//!   refused (Go keeps the raw value and fails creating the file).
//! * A playlist or segment key longer than [`MAX_KEY_BYTES`] is refused at validation (every
//!   object store refuses it at upload).

use egress_proto::livekit::{SegmentedFileOutput, SegmentedFileProtocol, SegmentedFileSuffix};

use crate::outputs::filename::{FilenameInfo, LocalTime, clean};

pub const DEFAULT_SEGMENT_DURATION: u32 = 4;
/// Go's effective limit with the default `max_upload_queue` of 60 minutes.
pub const MAX_SEGMENT_DURATION: u32 = 3600;
/// S3, GCS and Azure limit object names to 1024 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

const PLAYLIST_EXT: &str = ".m3u8";
const SEGMENT_EXT: &str = ".ts";

/// Errors with Go's texts; the host maps `InvalidInput` to psrpc InvalidArgument and
/// `NotRetrySafe` to FailedPrecondition (Go's `ErrNonRetryableOutput`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentNamingError {
    #[error("request has missing or invalid field: {0}")]
    InvalidInput(&'static str),
    #[error("output configuration does not support retry")]
    NotRetrySafe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSuffix {
    /// `<prefix>_%05d.ts`
    Index,
    /// `<prefix>_<YYYYMMDDhhmmss><mmm>.ts`
    Timestamp,
}

/// The resolved names of one segment output. Paths use `/`; none contains a `..` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNaming {
    /// Go's `StorageDir`: `""` or a directory ending in `/`.
    pub storage_dir: String,
    /// Go's `PlaylistFilename`, relative to `storage_dir` (`playlist.m3u8`).
    pub playlist_filename: String,
    /// Go's `LivePlaylistFilename`.
    pub live_playlist_filename: Option<String>,
    /// Go's `SegmentPrefix`, relative to `storage_dir` (`[segment_dir/]name`).
    pub segment_prefix: String,
    pub suffix: SegmentSuffix,
    /// Seconds.
    pub segment_duration: u32,
}

impl SegmentNaming {
    /// Resolves a `SegmentedFileOutput` (v1 `segment_outputs` and v2 `Output.segments` alike).
    /// `retry_count` is the request's (`StartEgressRequest.retry_count`), the one `filename`
    /// was built with.
    pub fn from_request(
        req: &SegmentedFileOutput,
        filename: &FilenameInfo,
        retry_count: i32,
    ) -> Result<SegmentNaming, SegmentNamingError> {
        let suffix = match SegmentedFileSuffix::try_from(req.filename_suffix) {
            Ok(SegmentedFileSuffix::Index) => SegmentSuffix::Index,
            Ok(SegmentedFileSuffix::Timestamp) => SegmentSuffix::Timestamp,
            Err(_) => return Err(SegmentNamingError::InvalidInput("filename_suffix")),
        };
        if SegmentedFileProtocol::try_from(req.protocol).is_err() {
            return Err(SegmentNamingError::InvalidInput("protocol"));
        }
        let segment_duration = match req.segment_duration {
            0 => DEFAULT_SEGMENT_DURATION,
            d if d > MAX_SEGMENT_DURATION => {
                return Err(SegmentNamingError::InvalidInput("segment_duration"));
            }
            d => d,
        };

        let prefix = clean(&req.filename_prefix);
        let playlist = clean(&req.playlist_name);
        let live = clean(&req.live_playlist_name);
        if retry_count > 0 {
            if !prefix.is_empty() && !prefix.contains("{retry}") {
                return Err(SegmentNamingError::NotRetrySafe);
            }
            if prefix.is_empty() && !playlist.is_empty() && !playlist.contains("{retry}") {
                return Err(SegmentNamingError::NotRetrySafe);
            }
        }
        let templated = |s: &str| clean(&filename.replace(s));
        let (prefix, playlist, live) = (templated(&prefix), templated(&playlist), templated(&live));

        let (mut playlist_dir, playlist_name) = split(&playlist);
        let (live_dir, live_name) = split(&live);
        let (mut segment_dir, segment_name) = split(&prefix);

        if !live_dir.is_empty() && live_dir != playlist_dir {
            return Err(SegmentNamingError::InvalidInput(
                "live_playlist_name must be in same directory as playlist_name",
            ));
        }
        let mut playlist_name = remove_extension(playlist_name).to_owned();
        let live_name = remove_extension(live_name);
        if !live.is_empty() && live_name.is_empty() {
            return Err(SegmentNamingError::InvalidInput("live_playlist_name"));
        }

        if !segment_dir.is_empty() {
            if playlist_dir == segment_dir {
                segment_dir = "";
            } else if playlist_dir.is_empty() {
                playlist_dir = segment_dir;
                segment_dir = "";
            }
        }

        if playlist_name.is_empty() {
            playlist_name = if segment_name.is_empty() {
                default_base_name(filename)
            } else {
                segment_name.to_owned()
            };
        }
        let segment_name = if segment_name.is_empty() {
            playlist_name.as_str()
        } else {
            segment_name
        };

        let naming = SegmentNaming {
            storage_dir: playlist_dir.to_owned(),
            playlist_filename: format!("{playlist_name}{PLAYLIST_EXT}"),
            live_playlist_filename: (!live_name.is_empty())
                .then(|| format!("{live_name}{PLAYLIST_EXT}")),
            segment_prefix: format!("{segment_dir}{segment_name}"),
            suffix,
            segment_duration,
        };
        if naming.live_playlist_filename.as_ref() == Some(&naming.playlist_filename) {
            return Err(SegmentNamingError::InvalidInput(
                "live_playlist_name cannot be identical to playlist_name",
            ));
        }
        if naming.playlist_path().len() > MAX_KEY_BYTES {
            return Err(SegmentNamingError::InvalidInput("playlist_name"));
        }
        if naming
            .live_playlist_path()
            .is_some_and(|p| p.len() > MAX_KEY_BYTES)
        {
            return Err(SegmentNamingError::InvalidInput("live_playlist_name"));
        }
        // The longest segment name: a TIMESTAMP suffix (17 digits) or an index of 20 digits.
        if naming.storage_dir.len() + naming.segment_prefix.len() + 1 + 20 + SEGMENT_EXT.len()
            > MAX_KEY_BYTES
        {
            return Err(SegmentNamingError::InvalidInput("filename_prefix"));
        }
        Ok(naming)
    }

    /// `SegmentsInfo.playlist_name`: the playlist's storage path.
    pub fn playlist_path(&self) -> String {
        join(&self.storage_dir, &self.playlist_filename)
    }

    /// `SegmentsInfo.live_playlist_name`.
    pub fn live_playlist_path(&self) -> Option<String> {
        self.live_playlist_filename
            .as_ref()
            .map(|f| join(&self.storage_dir, f))
    }

    /// The directory segments go to below `storage_dir` (`""` when none): the caller creates
    /// it locally if it writes segments to disk.
    pub fn segment_dir(&self) -> &str {
        split(&self.segment_prefix).0
    }

    /// A segment's name as listed in the playlists (relative to `storage_dir`). `index` counts
    /// from 0 (splitmuxsink's fragment id); `first_sample` is the wall clock of the segment's
    /// first sample (Go: wall clock at the first sample + the segment's PTS).
    pub fn segment_name(&self, index: u64, first_sample: LocalTime) -> String {
        match self.suffix {
            SegmentSuffix::Index => format!("{}_{index:05}{SEGMENT_EXT}", self.segment_prefix),
            SegmentSuffix::Timestamp => format!(
                "{}_{}{SEGMENT_EXT}",
                self.segment_prefix,
                first_sample.utc_stamp()
            ),
        }
    }

    /// A segment's storage path.
    pub fn segment_path(&self, segment_name: &str) -> String {
        join(&self.storage_dir, segment_name)
    }
}

/// `<identifier>-<time>[-<retry>]`, one path element.
fn default_base_name(filename: &FilenameInfo) -> String {
    filename.file_path("", "").replace('/', "_")
}

/// Go's `path.Split`: everything up to and including the last `/`, and the rest.
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Go's `removeKnownExtension`: drops everything from the last dot, known extension or not.
fn remove_extension(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) => &name[..i],
        None => name,
    }
}

/// Go's `path.Join` for a cleaned directory and name.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests;
