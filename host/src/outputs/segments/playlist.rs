//! HLS media playlists for segment outputs: the main (EVENT) playlist and the sliding-window
//! live playlist, rendered as whole files after every segment so the caller can store each
//! version as one object (Go appends to a local file and rewrites the live one).
//!
//! Byte-for-byte Go's format (`pkg/pipeline/sink/m3u8/writer.go`): header `#EXTM3U`,
//! `#EXT-X-VERSION:4`, `#EXT-X-PLAYLIST-TYPE:EVENT` (main only), `#EXT-X-ALLOW-CACHE:NO`,
//! `#EXT-X-TARGETDURATION:n`, `#EXT-X-MEDIA-SEQUENCE:n`; per segment
//! `#EXT-X-PROGRAM-DATE-TIME:` (UTC, Go's `2006-01-02T15:04:05.999Z07:00`: milliseconds with
//! trailing zeros trimmed, truncated not rounded), `#EXTINF:<3 decimals>,` (Go formats the
//! duration as a float32), the URI; `#EXT-X-ENDLIST` at the end. The text is written by hand
//! because `m3u8-rs` cannot express this header (it omits `MEDIA-SEQUENCE:0`, orders tags its
//! own way and formats EXTINF and dates differently); the tests parse every output with it.
//!
//! Where we differ from Go on purpose:
//! * `EXT-X-TARGETDURATION` is max(configured, the largest EXTINF so far rounded to the nearest
//!   integer, half up), so every playlist satisfies RFC 8216 §4.3.3.1 (Go writes the configured
//!   value even when a late keyframe makes a segment longer, #534). Rounded rather than ceiled:
//!   a 4.033 s segment (30 fps frame timing) must not lift a 4 s target to 5. Because the
//!   whole file is rewritten after every segment, the header value can grow during a
//!   recording; it never shrinks (not even when the longest segment leaves the live window).
//!   RFC 8216 §6.2.1 asks servers not to change the value at all, so the segmenter should cut
//!   on time (keyframes requested at every boundary) and a growth is logged by the caller;
//!   [`Playlist::with_initial_target`] lets it declare headroom from the start instead.
//! * The live window is configurable ([`DEFAULT_LIVE_WINDOW`] = Go's fixed 5).
//! * Segments can be flagged as following a discontinuity (`EXT-X-DISCONTINUITY`, e.g. after a
//!   crash resume). When such a segment leaves the live window,
//!   `EXT-X-DISCONTINUITY-SEQUENCE` is incremented (RFC 8216 §6.2.2); the tag is written only
//!   when non-zero, so playlists without discontinuities are exactly Go's.
//! * A segment URI that is already in the playlist is refused (Go would list it twice).

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::time::SystemTime;

/// Go's `defaultLivePlaylistWindow`.
pub const DEFAULT_LIVE_WINDOW: usize = 5;

/// One finished segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// As listed in the playlist: the name relative to the playlist's directory.
    pub uri: String,
    /// Seconds.
    pub duration: f64,
    /// Wall-clock time of the segment's first sample.
    pub program_date_time: SystemTime,
    /// The segment does not continue the previous one (timestamps or encoding jump).
    pub discontinuity: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// Main playlist: every segment, `PLAYLIST-TYPE:EVENT`.
    Event,
    /// Live playlist: the last `window` segments, no PLAYLIST-TYPE.
    Live { window: usize },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaylistError {
    #[error("segment {uri} has an invalid duration {duration}")]
    InvalidDuration { uri: String, duration: f64 },
    #[error("segment {0} is already in the playlist")]
    DuplicateUri(String),
    #[error("segment {0} added after the playlist ended")]
    Ended(String),
    #[error("live playlist window must be at least 1 segment")]
    EmptyWindow,
}

#[derive(Debug, Clone)]
struct Entry {
    discontinuity: bool,
    /// The entry's lines, rendered once.
    text: String,
}

/// One media playlist, rendered whole after each change.
#[derive(Debug, Clone)]
pub struct Playlist {
    kind: PlaylistKind,
    target_duration: u64,
    media_sequence: u64,
    discontinuity_sequence: u64,
    entries: VecDeque<Entry>,
    uris: HashSet<String>,
    ended: bool,
}

impl Playlist {
    /// The main playlist (Go's `NewEventPlaylistWriter`).
    pub fn event(target_duration: u32) -> Playlist {
        Playlist::new(PlaylistKind::Event, u64::from(target_duration))
    }

    /// The live playlist (Go's `NewLivePlaylistWriter`).
    pub fn live(target_duration: u32, window: usize) -> Result<Playlist, PlaylistError> {
        if window == 0 {
            return Err(PlaylistError::EmptyWindow);
        }
        Ok(Playlist::new(
            PlaylistKind::Live { window },
            u64::from(target_duration),
        ))
    }

    /// Starts the target duration at `initial` when that is larger than the configured value
    /// (headroom so that a late keyframe does not change the header mid-recording).
    pub fn with_initial_target(mut self, initial: u64) -> Playlist {
        self.target_duration = self.target_duration.max(initial);
        self
    }

    fn new(kind: PlaylistKind, target_duration: u64) -> Playlist {
        Playlist {
            kind,
            target_duration,
            media_sequence: 0,
            discontinuity_sequence: 0,
            entries: VecDeque::new(),
            uris: HashSet::new(),
            ended: false,
        }
    }

    pub fn kind(&self) -> PlaylistKind {
        self.kind
    }

    /// The current `EXT-X-TARGETDURATION`.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// The current `EXT-X-MEDIA-SEQUENCE`: how many segments left the live window.
    pub fn media_sequence(&self) -> u64 {
        self.media_sequence
    }

    /// Segments currently listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Adds a finished segment. Returns whether `EXT-X-TARGETDURATION` grew (the caller logs it).
    pub fn append(&mut self, segment: &Segment) -> Result<bool, PlaylistError> {
        if self.ended {
            return Err(PlaylistError::Ended(segment.uri.clone()));
        }
        let extinf =
            format_extinf(segment.duration).ok_or_else(|| PlaylistError::InvalidDuration {
                uri: segment.uri.clone(),
                duration: segment.duration,
            })?;
        if self.uris.contains(&segment.uri) {
            return Err(PlaylistError::DuplicateUri(segment.uri.clone()));
        }
        let rounded = rounded_extinf(&extinf);
        let grew = rounded > self.target_duration;
        self.target_duration = self.target_duration.max(rounded);

        let mut text = String::new();
        if segment.discontinuity {
            text.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = write!(
            text,
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{extinf},\n{}\n",
            format_program_date_time(segment.program_date_time),
            segment.uri
        );
        self.uris.insert(segment.uri.clone());
        self.entries.push_back(Entry {
            discontinuity: segment.discontinuity,
            text,
        });
        if let PlaylistKind::Live { window } = self.kind {
            while self.entries.len() > window {
                if let Some(gone) = self.entries.pop_front() {
                    self.media_sequence += 1;
                    if gone.discontinuity {
                        self.discontinuity_sequence += 1;
                    }
                }
            }
        }
        Ok(grew)
    }

    /// Marks the playlist complete (`#EXT-X-ENDLIST`). Idempotent.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The whole playlist file.
    pub fn render(&self) -> String {
        let mut out =
            String::with_capacity(160 + self.entries.iter().map(|e| e.text.len()).sum::<usize>());
        out.push_str("#EXTM3U\n#EXT-X-VERSION:4\n");
        if self.kind == PlaylistKind::Event {
            out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n");
        }
        let _ = write!(
            out,
            "#EXT-X-ALLOW-CACHE:NO\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            self.target_duration, self.media_sequence
        );
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        for e in &self.entries {
            out.push_str(&e.text);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// The main playlist and the optional live one, fed the same segments.
#[derive(Debug, Clone)]
pub struct HlsPlaylists {
    pub main: Playlist,
    pub live: Option<Playlist>,
}

impl HlsPlaylists {
    /// `live_window` is `None` when the request has no `live_playlist_name`.
    pub fn new(
        segment_duration: u32,
        live_window: Option<usize>,
    ) -> Result<HlsPlaylists, PlaylistError> {
        Ok(HlsPlaylists {
            main: Playlist::event(segment_duration),
            live: live_window
                .map(|w| Playlist::live(segment_duration, w))
                .transpose()?,
        })
    }

    /// Adds a segment to both. Returns whether a target duration grew.
    pub fn append(&mut self, segment: &Segment) -> Result<bool, PlaylistError> {
        // Validate against the main playlist first so that a refused segment changes neither.
        let grew = self.main.append(segment)?;
        if let Some(live) = &mut self.live {
            live.append(segment)?;
        }
        Ok(grew)
    }

    pub fn end(&mut self) {
        self.main.end();
        if let Some(live) = &mut self.live {
            live.end();
        }
    }
}

/// Go's `strconv.FormatFloat(d, 'f', 3, 32)`: the duration as a float32, three decimals
/// (both round the exact binary value, ties to even). `None` for negative or non-finite values.
pub fn format_extinf(duration: f64) -> Option<String> {
    let d = duration as f32;
    (d.is_finite() && d >= 0.0).then(|| format!("{d:.3}"))
}

/// An EXTINF value rounded to the nearest integer, halves up (RFC 8216 §4.3.3.1).
fn rounded_extinf(extinf: &str) -> u64 {
    let value: f64 = extinf.parse().unwrap_or(0.0);
    (value + 0.5).floor() as u64
}

/// Go's `t.UTC().Format("2006-01-02T15:04:05.999Z07:00")`: milliseconds truncated, trailing
/// zeros (and a bare dot) dropped, `Z` for UTC.
pub fn format_program_date_time(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let millis = t.timestamp_subsec_millis();
    if millis > 0 {
        let frac = format!("{millis:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests;
