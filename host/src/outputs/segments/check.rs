//! An RFC 8216 checker for the media playlists the segment output writes, for unit and e2e
//! tests: [`check_playlist`] for one version of a playlist, [`check_playlist_update`] for two
//! consecutive versions of the same playlist.
//!
//! Hand-written over the text rather than on `m3u8-rs`: the parser hides what is checked here
//! (where `#EXT-X-ENDLIST` stands, repeated tags, lines that are neither tag nor URI, the
//! exact EXTINF text; it parses durations as f32). Only `chrono` (dates) is used. Unknown tags
//! are ignored.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, FixedOffset};

/// Allowed difference between one segment's PDT plus its EXTINF and the next segment's PDT.
pub const PDT_TOLERANCE_MS: i64 = 50;

#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// The first line is not `#EXTM3U`.
    MissingHeader,
    MissingTargetDuration,
    /// A tag that must appear once appears again (line numbers from 1).
    RepeatedTag {
        line: usize,
        tag: &'static str,
    },
    /// A tag whose value does not parse.
    BadValue {
        line: usize,
        text: String,
    },
    /// §4.3.3.1: round(EXTINF) > TARGETDURATION.
    ExtinfOverTarget {
        uri: String,
        extinf: f64,
        target: u64,
    },
    /// A URI line with no `#EXTINF` before it, or an `#EXTINF` with no URI after it.
    MissingExtinf {
        line: usize,
    },
    MissingUri {
        line: usize,
    },
    DuplicateUri {
        uri: String,
    },
    /// PDTs must increase from segment to segment.
    PdtNotIncreasing {
        uri: String,
    },
    /// The gap from the previous segment's PDT is not its EXTINF (± [`PDT_TOLERANCE_MS`]),
    /// and no discontinuity explains it.
    PdtGap {
        uri: String,
        expected_ms: i64,
        found_ms: i64,
    },
    /// `#EXT-X-ENDLIST` followed by more lines.
    EndlistNotLast {
        line: usize,
    },
    // Between two versions (check_playlist_update):
    /// MEDIA-SEQUENCE went down.
    MediaSequenceDecreased {
        from: u64,
        to: u64,
    },
    /// A segment in both versions has a different sequence number (MEDIA-SEQUENCE + index).
    SequenceNumberChanged {
        uri: String,
        from: u64,
        to: u64,
    },
    /// A segment that is in both versions changed (duration, PDT or discontinuity).
    SegmentChanged {
        uri: String,
    },
    /// An EVENT playlist lost segments or reordered them.
    EventSegmentRemoved {
        uri: String,
    },
    /// A segment left the live playlist but a later one stayed (the window is not a suffix).
    WindowNotSliding {
        uri: String,
    },
    /// The target duration changed (§6.2.1). Our writer raises it when a segment runs long.
    TargetDurationChanged {
        from: u64,
        to: u64,
    },
    /// The playlist changed after `#EXT-X-ENDLIST`.
    ChangedAfterEndlist,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::MissingHeader => write!(f, "first line is not #EXTM3U"),
            Violation::MissingTargetDuration => write!(f, "no #EXT-X-TARGETDURATION"),
            Violation::RepeatedTag { line, tag } => write!(f, "line {line}: {tag} repeated"),
            Violation::BadValue { line, text } => write!(f, "line {line}: cannot parse {text:?}"),
            Violation::ExtinfOverTarget {
                uri,
                extinf,
                target,
            } => {
                write!(
                    f,
                    "{uri}: EXTINF {extinf} rounds above TARGETDURATION {target}"
                )
            }
            Violation::MissingExtinf { line } => write!(f, "line {line}: URI without #EXTINF"),
            Violation::MissingUri { line } => write!(f, "line {line}: #EXTINF without a URI"),
            Violation::DuplicateUri { uri } => write!(f, "{uri} listed twice"),
            Violation::PdtNotIncreasing { uri } => {
                write!(f, "{uri}: PROGRAM-DATE-TIME not after the previous one")
            }
            Violation::PdtGap {
                uri,
                expected_ms,
                found_ms,
            } => {
                write!(
                    f,
                    "{uri}: PROGRAM-DATE-TIME {found_ms} ms after the previous one, EXTINF says {expected_ms} ms"
                )
            }
            Violation::EndlistNotLast { line } => {
                write!(f, "line {line}: content after #EXT-X-ENDLIST")
            }
            Violation::MediaSequenceDecreased { from, to } => {
                write!(f, "MEDIA-SEQUENCE went from {from} to {to}")
            }
            Violation::SequenceNumberChanged { uri, from, to } => {
                write!(f, "{uri}: sequence number changed from {from} to {to}")
            }
            Violation::SegmentChanged { uri } => write!(f, "{uri}: changed between versions"),
            Violation::EventSegmentRemoved { uri } => {
                write!(f, "{uri}: removed from an EVENT playlist")
            }
            Violation::WindowNotSliding { uri } => {
                write!(f, "{uri}: removed while a later segment stayed")
            }
            Violation::TargetDurationChanged { from, to } => {
                write!(f, "TARGETDURATION changed from {from} to {to}")
            }
            Violation::ChangedAfterEndlist => write!(f, "changed after #EXT-X-ENDLIST"),
        }
    }
}

/// One listed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSegment {
    pub uri: String,
    /// EXTINF as written.
    pub extinf: String,
    pub duration: f64,
    pub program_date_time: Option<DateTime<FixedOffset>>,
    pub discontinuity: bool,
}

/// What the checker read from a media playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedPlaylist {
    pub version: Option<u64>,
    pub playlist_type: Option<String>,
    pub target_duration: Option<u64>,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub segments: Vec<ParsedSegment>,
    pub end_list: bool,
}

impl ParsedPlaylist {
    /// The sum of the EXTINFs, seconds.
    pub fn total_duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

/// Parses a media playlist and lists every rule it breaks (empty: valid).
pub fn check_playlist(text: &str) -> (ParsedPlaylist, Vec<Violation>) {
    let mut p = ParsedPlaylist::default();
    let mut v = Vec::new();
    let mut seen = SeenTags::default();
    // An `#EXTINF` (with the tags before it) waiting for its URI line.
    let mut pending: Option<(usize, ParsedSegment)> = None;
    let mut pdt: Option<DateTime<FixedOffset>> = None;
    let mut discontinuity = false;
    let mut endlist_line = None;

    let lines: Vec<&str> = text.lines().collect();
    if lines.first().map(|l| l.trim_end()) != Some("#EXTM3U") {
        v.push(Violation::MissingHeader);
    }
    for (i, raw) in lines.iter().enumerate().skip(1) {
        let line_no = i + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(end) = endlist_line {
            v.push(Violation::EndlistNotLast { line: end });
            endlist_line = None;
        }
        let bad = |v: &mut Vec<Violation>| {
            v.push(Violation::BadValue {
                line: line_no,
                text: line.to_owned(),
            })
        };
        if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            seen.once(&mut v, line_no, "#EXT-X-TARGETDURATION");
            match value.parse() {
                Ok(n) => p.target_duration = Some(n),
                Err(_) => bad(&mut v),
            }
        } else if let Some(value) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seen.once(&mut v, line_no, "#EXT-X-MEDIA-SEQUENCE");
            match value.parse() {
                Ok(n) => p.media_sequence = n,
                Err(_) => bad(&mut v),
            }
        } else if let Some(value) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            seen.once(&mut v, line_no, "#EXT-X-DISCONTINUITY-SEQUENCE");
            match value.parse() {
                Ok(n) => p.discontinuity_sequence = n,
                Err(_) => bad(&mut v),
            }
        } else if let Some(value) = line.strip_prefix("#EXT-X-VERSION:") {
            seen.once(&mut v, line_no, "#EXT-X-VERSION");
            match value.parse() {
                Ok(n) => p.version = Some(n),
                Err(_) => bad(&mut v),
            }
        } else if let Some(value) = line.strip_prefix("#EXT-X-PLAYLIST-TYPE:") {
            seen.once(&mut v, line_no, "#EXT-X-PLAYLIST-TYPE");
            p.playlist_type = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            match DateTime::parse_from_rfc3339(value) {
                Ok(t) => pdt = Some(t),
                Err(_) => bad(&mut v),
            }
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if let Some(value) = line.strip_prefix("#EXTINF:") {
            if let Some((l, ..)) = pending.take() {
                v.push(Violation::MissingUri { line: l });
            }
            let extinf = value.split(',').next().unwrap_or("").to_owned();
            match extinf.parse::<f64>() {
                Ok(duration) if duration.is_finite() && duration >= 0.0 => {
                    let segment = ParsedSegment {
                        uri: String::new(),
                        extinf,
                        duration,
                        program_date_time: pdt.take(),
                        discontinuity: std::mem::take(&mut discontinuity),
                    };
                    pending = Some((line_no, segment));
                }
                _ => bad(&mut v),
            }
        } else if line == "#EXT-X-ENDLIST" {
            p.end_list = true;
            endlist_line = Some(line_no);
        } else if line.starts_with('#') {
            // Other tags and comments.
        } else {
            match pending.take() {
                Some((_, segment)) => p.segments.push(ParsedSegment {
                    uri: line.to_owned(),
                    ..segment
                }),
                None => v.push(Violation::MissingExtinf { line: line_no }),
            }
        }
    }
    if let Some((l, ..)) = pending {
        v.push(Violation::MissingUri { line: l });
    }

    match p.target_duration {
        None => v.push(Violation::MissingTargetDuration),
        Some(target) => {
            for s in &p.segments {
                if (s.duration + 0.5).floor() as u64 > target {
                    v.push(Violation::ExtinfOverTarget {
                        uri: s.uri.clone(),
                        extinf: s.duration,
                        target,
                    });
                }
            }
        }
    }
    let mut uris = HashSet::new();
    for s in &p.segments {
        if !uris.insert(s.uri.as_str()) {
            v.push(Violation::DuplicateUri { uri: s.uri.clone() });
        }
    }
    for pair in p.segments.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let (Some(a), Some(b)) = (prev.program_date_time, next.program_date_time) else {
            continue;
        };
        let found_ms = (b - a).num_milliseconds();
        if b <= a {
            v.push(Violation::PdtNotIncreasing {
                uri: next.uri.clone(),
            });
        } else if !next.discontinuity {
            let expected_ms = (prev.duration * 1000.0).round() as i64;
            if (found_ms - expected_ms).abs() > PDT_TOLERANCE_MS {
                v.push(Violation::PdtGap {
                    uri: next.uri.clone(),
                    expected_ms,
                    found_ms,
                });
            }
        }
    }
    (p, v)
}

/// Rules between two consecutive versions of one playlist (each version should also pass
/// [`check_playlist`]): sequence numbers are stable, MEDIA-SEQUENCE never decreases, EVENT
/// playlists only append, live windows only slide, nothing changes after ENDLIST, and the
/// target duration stays (reported as [`Violation::TargetDurationChanged`]).
pub fn check_playlist_update(prev: &ParsedPlaylist, next: &ParsedPlaylist) -> Vec<Violation> {
    let mut v = Vec::new();
    if prev.end_list && prev != next {
        v.push(Violation::ChangedAfterEndlist);
    }
    if next.media_sequence < prev.media_sequence {
        v.push(Violation::MediaSequenceDecreased {
            from: prev.media_sequence,
            to: next.media_sequence,
        });
    }
    if let (Some(a), Some(b)) = (prev.target_duration, next.target_duration)
        && a != b
    {
        v.push(Violation::TargetDurationChanged { from: a, to: b });
    }
    let is_event = prev.playlist_type.as_deref() == Some("EVENT");
    let mut first_kept: Option<usize> = None;
    for (i, old) in prev.segments.iter().enumerate() {
        let old_seq = prev.media_sequence + i as u64;
        match next.segments.iter().position(|s| s.uri == old.uri) {
            Some(j) => {
                let new_seq = next.media_sequence + j as u64;
                if new_seq != old_seq {
                    v.push(Violation::SequenceNumberChanged {
                        uri: old.uri.clone(),
                        from: old_seq,
                        to: new_seq,
                    });
                }
                if next.segments[j] != *old {
                    v.push(Violation::SegmentChanged {
                        uri: old.uri.clone(),
                    });
                }
                first_kept.get_or_insert(i);
            }
            None if is_event => v.push(Violation::EventSegmentRemoved {
                uri: old.uri.clone(),
            }),
            // A sliding window removes a prefix: once one segment is kept, all later ones are.
            None if first_kept.is_some() => v.push(Violation::WindowNotSliding {
                uri: old.uri.clone(),
            }),
            None => {}
        }
    }
    v
}

#[derive(Default)]
struct SeenTags(HashSet<&'static str>);

impl SeenTags {
    fn once(&mut self, v: &mut Vec<Violation>, line: usize, tag: &'static str) {
        if !self.0.insert(tag) {
            v.push(Violation::RepeatedTag { line, tag });
        }
    }
}
