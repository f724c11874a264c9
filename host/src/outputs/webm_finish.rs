//! Finishing a WebM file that was written append-only, so that the stored recording carries its
//! duration and cues (is seekable) like the MP4s.
//!
//! Storage uploads a recording while it grows, and a killed handler's partial file is delivered
//! as it is, so while recording a WebM may only grow: the track recorder's libwebm writes it in
//! live mode (Segment and Clusters of unknown size, no Duration, no Cues, no SeekHead), and such
//! a file cut off anywhere plays up to its last whole block. What makes a file seekable sits at
//! its start (Info's Duration, the SeekHead that points at the Cues), so the writer leaves room
//! there ([`HeadRoom`]: a Void before Info and one at Info's end, which every reader skips), and
//! once the recording is over, [`finish`]:
//!
//! 1. walks the file's clusters (element and block headers only) for its end and its keyframes;
//! 2. gives each Cluster of unknown size its size (in the 8 bytes libwebm leaves for it);
//! 3. appends the Cues (a CuePoint per keyframe of the video track) and syncs;
//! 4. writes Info's Duration and a SeekHead (Info, Tracks, Cues) into the room, and the Segment's
//!    size, syncs, and reads the file again to check it.
//!
//! Every write leaves a valid file, so a crash between them leaves a playable one. The finished
//! head differs from what storage has sent, so storage uploads the finished file again (its head
//! check in `crate::storage::upload`), as it does for the web recorder's webmmux, which seeks
//! back by itself. A file that already has a Duration and Cues (webmmux's) is left alone, and so
//! is one without the room (it plays as before).
//!
//! Hand-written EBML rather than a Matroska crate: patching in place needs fixed-width sizes at
//! known byte offsets, which element libraries (they encode minimal widths and own the layout)
//! do not give, and what is read is only element headers, block headers and a few integers
//! (EBML: RFC 8794; Matroska: RFC 9559).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Room for the SeekHead, a Void right after the Segment header.
pub const SEEK_HEAD_ROOM: usize = 96;
/// Room for Info's Duration (ID, size, an 8-byte float), a Void at Info's end.
pub const DURATION_ROOM: usize = 11;
/// A head larger than this without a Cluster is not a live WebM head: passed on as it is.
const MAX_HEAD: usize = 64 << 10;

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const BLOCK_DURATION: u32 = 0x9B;
const REFERENCE_BLOCK: u32 = 0xFB;
const CUES: u32 = 0x1C53_BB6B;
const CUE_POINT: u32 = 0xBB;
const CUE_TIME: u32 = 0xB3;
const CUE_TRACK_POSITIONS: u32 = 0xB7;
const CUE_TRACK: u32 = 0xF7;
const CUE_CLUSTER_POSITION: u32 = 0xF1;
const CUE_RELATIVE_POSITION: u32 = 0xF0;
const VOID: u32 = 0xEC;
const TAGS: u32 = 0x1254_C367;
const CHAPTERS: u32 = 0x1043_A770;
const ATTACHMENTS: u32 = 0x1941_A469;

/// Matroska's TrackType for video.
const VIDEO_TRACK: u64 = 1;
/// Matroska's default TimestampScale: ticks of 1 ms.
const DEFAULT_TIMESTAMP_SCALE: u64 = 1_000_000;
/// The SeekHead written into the room: 3 Seeks of 21 bytes (IDs of 4 bytes, 8-byte positions)
/// under a 4-byte ID and a 1-byte size.
const SEEK_HEAD_LEN: usize = 4 + 1 + 3 * 21;
// The SeekHead fits its room with at least a Void's 2 bytes to spare.
const _: () = assert!(SEEK_HEAD_ROOM >= SEEK_HEAD_LEN + 2);

#[derive(Debug, thiserror::Error)]
pub enum WebmFinishError {
    #[error("reading or writing the WebM file: {0}")]
    Io(#[from] io::Error),
    #[error("not a WebM file this can finish: {0}")]
    Unexpected(String),
    #[error("the WebM file ends inside an element at byte {0}")]
    Truncated(u64),
    #[error("the finished WebM file does not read back as written: {0}")]
    Verify(String),
}

/// What [`finish`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// Duration, Cues and SeekHead written.
    Finished {
        duration: Duration,
        cue_points: usize,
    },
    /// It already had a Duration and Cues (a muxer that seeks back, such as webmmux).
    AlreadySeekable,
    /// No room reserved at its start (not written through [`HeadRoom`]): left as it is.
    NoRoom,
    /// No media blocks: nothing to index.
    Empty,
}

/// Finishes a recording's file if it is a WebM, off the async threads, and says how it went. A
/// failure is logged and leaves the file as it was (it plays, without a duration): it never
/// fails the recording.
pub async fn finish_recording(path: &Path) {
    let is_webm = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("webm"));
    if !is_webm || !path.exists() {
        return;
    }
    let file = path.to_path_buf();
    let started = std::time::Instant::now();
    match tokio::task::spawn_blocking(move || finish(&file)).await {
        Ok(Ok(Finished::Finished {
            duration,
            cue_points,
        })) => {
            tracing::info!(?duration, cue_points, took = ?started.elapsed(), "WebM finished: duration and cues written");
        }
        Ok(Ok(other)) => tracing::debug!(outcome = ?other, "WebM left as it is"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, file = %path.display(), "could not finish the WebM; it is stored without its duration and cues");
        }
        Err(e) => tracing::warn!(error = %e, "the WebM finishing task failed"),
    }
}

/// Finishes the append-only WebM at `path` in place (see the module's comment). Blocking I/O.
pub fn finish(path: &Path) -> Result<Finished, WebmFinishError> {
    let scan = Scan::of(path)?;
    if scan.has_duration && scan.has_cues {
        return Ok(Finished::AlreadySeekable);
    }
    let (Some(seek_room), Some(duration_room), Some(info), Some(tracks)) =
        (scan.seek_room, scan.duration_room, scan.info, scan.tracks)
    else {
        return Ok(Finished::NoRoom);
    };
    if scan.blocks == 0 {
        return Ok(Finished::Empty);
    }
    let cue_points = scan.cue_points();
    if cue_points.is_empty() {
        return Err(WebmFinishError::Unexpected(
            "no keyframe to index".to_owned(),
        ));
    }
    let file = OpenOptions::new().read(true).write(true).open(path)?;

    // Clusters of unknown size get their size: each is whole by now.
    for (size_at, size) in &scan.unknown_cluster_sizes {
        file.write_all_at(&size8(*size), *size_at)?;
    }
    // The Cues after the last element (over the Cues of a finish that was cut short).
    let cues_at = scan.trailing_cues.unwrap_or(scan.end);
    let cues = cues_element(&cue_points, scan.segment_data);
    file.write_all_at(&cues, cues_at)?;
    file.set_len(cues_at + cues.len() as u64)?;
    file.sync_all()?;

    // Then the head: Duration, SeekHead, the Segment's size.
    let ticks = scan.end_ticks as f64;
    file.write_all_at(
        &element(DURATION, &ticks.to_be_bytes(), true),
        duration_room,
    )?;
    let seek_head = seek_head(&[
        (INFO, info - scan.segment_data),
        (TRACKS, tracks - scan.segment_data),
        (CUES, cues_at - scan.segment_data),
    ]);
    let room = seek_room.1 as usize;
    let mut head = seek_head;
    head.extend_from_slice(&void(room - head.len()));
    file.write_all_at(&head, seek_room.0)?;
    if let Some(size_at) = scan.segment_size_at {
        let size = cues_at + cues.len() as u64 - scan.segment_data;
        file.write_all_at(&size8(size), size_at)?;
    }
    file.sync_all()?;
    drop(file);

    let again = Scan::of(path)?;
    let checks = [
        (again.has_duration, "no Duration"),
        (again.has_cues, "no Cues"),
        (again.has_seek_head, "no SeekHead"),
        (again.blocks == scan.blocks, "another number of blocks"),
        (
            again.cue_points().len() == cue_points.len(),
            "other keyframes",
        ),
        (
            again.unknown_cluster_sizes.is_empty(),
            "a cluster of unknown size",
        ),
        (
            again.id_at(path, cues_at)? == CUES,
            "the SeekHead misses the Cues",
        ),
    ];
    if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(WebmFinishError::Verify((*what).to_owned()));
    }
    let scale = scan.timestamp_scale as f64;
    Ok(Finished::Finished {
        duration: Duration::from_secs_f64(ticks * scale / 1e9),
        cue_points: cue_points.len(),
    })
}

/// The writer a live-mode muxer writes to, reserving the room [`finish`] needs: it holds the
/// bytes until the head (everything before the first Cluster) is complete, passes it on with a
/// Void of [`SEEK_HEAD_ROOM`] bytes before Info and one of [`DURATION_ROOM`] bytes at Info's end,
/// then passes everything through. Nothing in a live head points at a byte offset, so the
/// insertion moves nothing that is referred to.
pub struct HeadRoom<W: Write> {
    inner: W,
    /// The head so far; `None` once it has been passed on.
    head: Option<Vec<u8>>,
}

impl<W: Write> HeadRoom<W> {
    pub fn new(inner: W) -> HeadRoom<W> {
        HeadRoom {
            inner,
            head: Some(Vec::new()),
        }
    }

    /// The inner writer, after passing on a head still held (a file without clusters).
    pub fn into_inner(mut self) -> io::Result<W> {
        if let Some(head) = self.head.take() {
            self.inner.write_all(&head)?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for HeadRoom<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(head) = self.head.as_mut() else {
            return self.inner.write(buf);
        };
        head.extend_from_slice(buf);
        let out = match with_room(head) {
            HeadParse::NeedMore if head.len() <= MAX_HEAD => return Ok(buf.len()),
            HeadParse::Ready(out) => out,
            HeadParse::NeedMore | HeadParse::Unexpected => std::mem::take(head),
        };
        self.head = None;
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum HeadParse {
    NeedMore,
    /// The head with its room, and whatever followed it.
    Ready(Vec<u8>),
    /// Not a head this knows how to extend: passed on unchanged.
    Unexpected,
}

/// (ID, where its data starts, its size) of an element in a head being collected.
type HeadHeader = (u32, usize, Option<u64>);

/// An element header at `at` in `buf`: `Ok(None)` when `buf` ends first, `Err` when the bytes
/// are no header. (ID, where its data starts, its size.)
fn peek_header(buf: &[u8], at: usize) -> Result<Option<HeadHeader>, ()> {
    let vint_len = |b: u8, max: usize| {
        let len = b.leading_zeros() as usize + 1;
        if len <= max { Ok(len) } else { Err(()) }
    };
    let Some(&first) = buf.get(at) else {
        return Ok(None);
    };
    let id_len = vint_len(first, 4)?;
    let Some(&size_first) = buf.get(at + id_len) else {
        return Ok(None);
    };
    let size_len = vint_len(size_first, 8)?;
    if buf.len() < at + id_len + size_len {
        return Ok(None);
    }
    let (id, _) = read_id(&buf[at..]).ok_or(())?;
    let (size, _) = read_size(&buf[at + id_len..]).ok_or(())?;
    Ok(Some((id, at + id_len + size_len, size)))
}

/// `buf` with the room inserted, once it holds the whole head.
fn with_room(buf: &[u8]) -> HeadParse {
    let mut at = 0;
    let mut info = None;
    let mut segment_data = None;
    loop {
        let (id, data, size) = match peek_header(buf, at) {
            Err(()) => return HeadParse::Unexpected,
            Ok(None) => return HeadParse::NeedMore,
            Ok(Some(h)) => h,
        };
        match (id, segment_data, size) {
            (EBML, None, Some(size)) if at == 0 => at = data + size as usize,
            (SEGMENT, None, _) if at > 0 => {
                segment_data = Some(data);
                at = data;
            }
            (CLUSTER, Some(segment), _) => {
                let Some((info_at, info_data, info_end)) = info else {
                    return HeadParse::Unexpected;
                };
                let mut out = Vec::with_capacity(buf.len() + SEEK_HEAD_ROOM + DURATION_ROOM + 8);
                out.extend_from_slice(&buf[..segment]);
                out.extend_from_slice(&void(SEEK_HEAD_ROOM));
                out.extend_from_slice(&buf[segment..info_at]);
                let body = &buf[info_data..info_end];
                out.extend(id_bytes(INFO));
                out.extend_from_slice(&size8((body.len() + DURATION_ROOM) as u64));
                out.extend_from_slice(body);
                out.extend_from_slice(&void(DURATION_ROOM));
                out.extend_from_slice(&buf[info_end..]);
                return HeadParse::Ready(out);
            }
            (_, Some(_), Some(size)) => {
                let end = data + size as usize;
                if id == INFO {
                    info = Some((at, data, end));
                }
                if end > buf.len() {
                    return HeadParse::NeedMore;
                }
                at = end;
            }
            _ => return HeadParse::Unexpected,
        }
        if at > buf.len() {
            return HeadParse::NeedMore;
        }
    }
}

/// One keyframe to index.
#[derive(Debug, Clone, Copy)]
struct Keyframe {
    track: u64,
    ticks: u64,
    /// The Cluster's start, from the file's start.
    cluster: u64,
    /// The block's start, from the Cluster's data.
    relative: u64,
}

/// A block met in a Cluster.
struct Block {
    track: u64,
    ticks: u64,
    keyframe: bool,
    /// Its BlockDuration, when it has one.
    duration: Option<u64>,
    cluster: u64,
    relative: u64,
}

/// Per track: the last block's time (the next block's length is the step from it) and the
/// latest end.
#[derive(Debug, Default, Clone, Copy)]
struct TrackTimes {
    last: Option<u64>,
    end: u64,
}

/// What a walk through the file found.
#[derive(Debug, Default)]
struct Scan {
    segment_data: u64,
    /// Where the Segment's 8-byte unknown size is, if it is one.
    segment_size_at: Option<u64>,
    /// The Void before the first Cluster that can take the SeekHead: (start, length).
    seek_room: Option<(u64, u64)>,
    /// Info's Void of exactly [`DURATION_ROOM`] bytes.
    duration_room: Option<u64>,
    info: Option<u64>,
    tracks: Option<u64>,
    has_duration: bool,
    has_cues: bool,
    has_seek_head: bool,
    timestamp_scale: u64,
    video_track: Option<u64>,
    first_track: Option<u64>,
    /// (where an 8-byte unknown Cluster size is, the Cluster's size).
    unknown_cluster_sizes: Vec<(u64, u64)>,
    keyframes: Vec<Keyframe>,
    blocks: u64,
    /// The media's end, in ticks: the last block's time plus its length.
    end_ticks: u64,
    /// The end of the last element.
    end: u64,
    /// Where the Cues are when they are the last element.
    trailing_cues: Option<u64>,
}

/// An element header in the file.
#[derive(Debug, Clone, Copy)]
struct Header {
    id: u32,
    at: u64,
    size_at: u64,
    data: u64,
    size: Option<u64>,
}

impl Header {
    fn end(&self, file_len: u64) -> u64 {
        self.size.map_or(file_len, |s| self.data + s)
    }

    /// An 8-byte "unknown" size (libwebm's), which can be overwritten with the real one.
    fn unknown_8(&self) -> bool {
        self.size.is_none() && self.data - self.size_at == 8
    }
}

/// Reads element headers and small values from the file, skipping bodies.
struct Reader {
    r: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Reader {
    fn open(path: &Path) -> io::Result<Reader> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        Ok(Reader {
            r: BufReader::with_capacity(64 << 10, f),
            pos: 0,
            len,
        })
    }

    fn seek(&mut self, to: u64) -> io::Result<()> {
        if to != self.pos {
            self.r.seek_relative(to as i64 - self.pos as i64)?;
            self.pos = to;
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, WebmFinishError> {
        if self.pos + n as u64 > self.len {
            return Err(WebmFinishError::Truncated(self.pos));
        }
        let mut v = vec![0; n];
        self.r.read_exact(&mut v)?;
        self.pos += n as u64;
        Ok(v)
    }

    /// The header at the current position; `None` at the end of the file.
    fn header(&mut self) -> Result<Option<Header>, WebmFinishError> {
        let at = self.pos;
        if at >= self.len {
            return Ok(None);
        }
        let first = self.bytes(1)?[0];
        let id_len = first.leading_zeros() as usize + 1;
        if id_len > 4 {
            return Err(WebmFinishError::Unexpected(format!(
                "no element ID at byte {at}"
            )));
        }
        let mut raw = vec![first];
        raw.extend(self.bytes(id_len - 1)?);
        let (id, _) = read_id(&raw)
            .ok_or_else(|| WebmFinishError::Unexpected(format!("no element ID at byte {at}")))?;
        let size_at = self.pos;
        let first = self.bytes(1)?[0];
        let size_len = first.leading_zeros() as usize + 1;
        if size_len > 8 {
            return Err(WebmFinishError::Unexpected(format!(
                "no element size at byte {size_at}"
            )));
        }
        let mut raw = vec![first];
        raw.extend(self.bytes(size_len - 1)?);
        let (size, _) = read_size(&raw).ok_or_else(|| {
            WebmFinishError::Unexpected(format!("no element size at byte {size_at}"))
        })?;
        let h = Header {
            id,
            at,
            size_at,
            data: self.pos,
            size,
        };
        if let Some(size) = size
            && h.data + size > self.len
        {
            return Err(WebmFinishError::Truncated(at));
        }
        Ok(Some(h))
    }

    fn uint(&mut self, h: &Header) -> Result<u64, WebmFinishError> {
        let size = h.size.unwrap_or(0);
        if size > 8 {
            return Err(WebmFinishError::Unexpected(format!(
                "an integer of {size} bytes at byte {}",
                h.at
            )));
        }
        let v = self.bytes(size as usize)?;
        Ok(v.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// The children of `parent` (which must have a known size), one at a time.
    fn children(
        &mut self,
        parent: &Header,
        mut each: impl FnMut(&mut Reader, &Header) -> Result<(), WebmFinishError>,
    ) -> Result<(), WebmFinishError> {
        let end = parent.size.map(|s| parent.data + s).ok_or_else(|| {
            WebmFinishError::Unexpected(format!("an element of unknown size at byte {}", parent.at))
        })?;
        self.seek(parent.data)?;
        while self.pos < end {
            let Some(h) = self.header()? else { break };
            each(self, &h)?;
            self.seek(h.end(self.len))?;
        }
        Ok(self.seek(end)?)
    }
}

/// IDs that end a Cluster of unknown size (the Segment's other children, or a new Segment).
fn ends_cluster(id: u32) -> bool {
    matches!(
        id,
        CLUSTER | CUES | SEEK_HEAD | INFO | TRACKS | TAGS | CHAPTERS | ATTACHMENTS | EBML | SEGMENT
    )
}

impl Scan {
    fn of(path: &Path) -> Result<Scan, WebmFinishError> {
        let mut r = Reader::open(path)?;
        let mut scan = Scan {
            timestamp_scale: DEFAULT_TIMESTAMP_SCALE,
            ..Scan::default()
        };
        let ebml = r.header()?.filter(|h| h.id == EBML && h.size.is_some());
        let Some(ebml) = ebml else {
            return Err(WebmFinishError::Unexpected("no EBML header".to_owned()));
        };
        r.seek(ebml.end(r.len))?;
        let Some(segment) = r.header()?.filter(|h| h.id == SEGMENT) else {
            return Err(WebmFinishError::Unexpected("no Segment".to_owned()));
        };
        scan.segment_data = segment.data;
        scan.segment_size_at = segment.unknown_8().then_some(segment.size_at);
        let segment_end = segment.end(r.len);
        let mut times: HashMap<u64, TrackTimes> = HashMap::new();
        let mut seen_cluster = false;
        while r.pos < segment_end {
            let Some(h) = r.header()? else { break };
            scan.trailing_cues = (h.id == CUES).then_some(h.at);
            match h.id {
                VOID if !seen_cluster && h.end(r.len) - h.at >= SEEK_HEAD_LEN as u64 => {
                    let len = h.end(r.len) - h.at;
                    if len == SEEK_HEAD_LEN as u64 || len >= SEEK_HEAD_LEN as u64 + 2 {
                        scan.seek_room.get_or_insert((h.at, len));
                    }
                }
                SEEK_HEAD => scan.has_seek_head = true,
                CUES => scan.has_cues = true,
                INFO => {
                    scan.info = Some(h.at);
                    scan.read_info(&mut r, &h)?;
                }
                TRACKS => {
                    scan.tracks = Some(h.at);
                    scan.read_tracks(&mut r, &h)?;
                }
                CLUSTER => {
                    seen_cluster = true;
                    let end = scan.read_cluster(&mut r, &h, &mut times)?;
                    if h.unknown_8() {
                        scan.unknown_cluster_sizes.push((h.size_at, end - h.data));
                    }
                    r.seek(end)?;
                    scan.end = end;
                    continue;
                }
                _ => {}
            }
            if h.size.is_none() {
                return Err(WebmFinishError::Unexpected(format!(
                    "an element {:#x} of unknown size at byte {}",
                    h.id, h.at
                )));
            }
            r.seek(h.end(r.len))?;
            scan.end = r.pos;
        }
        if scan.end < r.len {
            return Err(WebmFinishError::Unexpected(format!(
                "{} bytes after the Segment",
                r.len - scan.end
            )));
        }
        scan.end_ticks = times.values().map(|t| t.end).max().unwrap_or(0);
        Ok(scan)
    }

    fn read_info(&mut self, r: &mut Reader, info: &Header) -> Result<(), WebmFinishError> {
        r.children(info, |r, h| {
            match h.id {
                TIMESTAMP_SCALE => self.timestamp_scale = r.uint(h)?.max(1),
                DURATION => self.has_duration = true,
                VOID if h.end(r.len) - h.at == DURATION_ROOM as u64 => {
                    self.duration_room.get_or_insert(h.at);
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn read_tracks(&mut self, r: &mut Reader, tracks: &Header) -> Result<(), WebmFinishError> {
        let mut entries = Vec::new();
        r.children(tracks, |r, entry| {
            if entry.id == TRACK_ENTRY {
                let (mut number, mut kind) = (None, None);
                r.children(entry, |r, h| {
                    match h.id {
                        TRACK_NUMBER => number = Some(r.uint(h)?),
                        TRACK_TYPE => kind = Some(r.uint(h)?),
                        _ => {}
                    }
                    Ok(())
                })?;
                if let Some(n) = number {
                    entries.push((n, kind));
                }
            }
            Ok(())
        })?;
        self.first_track = entries.first().map(|e| e.0);
        self.video_track = entries
            .iter()
            .find(|e| e.1 == Some(VIDEO_TRACK))
            .map(|e| e.0);
        Ok(())
    }

    /// Reads a Cluster's blocks; returns where it ends.
    fn read_cluster(
        &mut self,
        r: &mut Reader,
        cluster: &Header,
        times: &mut HashMap<u64, TrackTimes>,
    ) -> Result<u64, WebmFinishError> {
        let limit = cluster.end(r.len);
        let mut base = 0u64;
        r.seek(cluster.data)?;
        while r.pos < limit {
            let Some(h) = r.header()? else { break };
            if cluster.size.is_none() && ends_cluster(h.id) {
                return Ok(h.at);
            }
            let Some(size) = h.size else {
                return Err(WebmFinishError::Unexpected(format!(
                    "an element {:#x} of unknown size in the Cluster at byte {}",
                    h.id, cluster.at
                )));
            };
            match h.id {
                TIMESTAMP => base = r.uint(&h)?,
                SIMPLE_BLOCK => {
                    let (track, relative, flags) = block_header(r, size)?;
                    let block = Block {
                        track,
                        ticks: base.saturating_add_signed(i64::from(relative)),
                        keyframe: flags & 0x80 != 0,
                        duration: None,
                        cluster: cluster.at,
                        relative: h.at - cluster.data,
                    };
                    self.block(block, times);
                }
                BLOCK_GROUP => {
                    let mut block = None;
                    let (mut referenced, mut duration) = (false, None);
                    r.children(&h, |r, child| {
                        match child.id {
                            BLOCK => {
                                let (track, relative, _) =
                                    block_header(r, child.size.unwrap_or(0))?;
                                block = Some((track, relative));
                            }
                            REFERENCE_BLOCK => referenced = true,
                            BLOCK_DURATION => duration = Some(r.uint(child)?),
                            _ => {}
                        }
                        Ok(())
                    })?;
                    if let Some((track, relative)) = block {
                        let block = Block {
                            track,
                            ticks: base.saturating_add_signed(i64::from(relative)),
                            keyframe: !referenced,
                            duration,
                            cluster: cluster.at,
                            relative: h.at - cluster.data,
                        };
                        self.block(block, times);
                    }
                }
                _ => {}
            }
            r.seek(h.data + size)?;
        }
        Ok(limit)
    }

    fn block(&mut self, b: Block, times: &mut HashMap<u64, TrackTimes>) {
        self.blocks += 1;
        let t = times.entry(b.track).or_default();
        // A block's length: its own, else the last step between this track's blocks.
        let length = b.duration.unwrap_or_else(|| {
            t.last
                .filter(|last| b.ticks > *last)
                .map_or(0, |last| b.ticks - last)
        });
        t.last = Some(b.ticks);
        t.end = t.end.max(b.ticks + length);
        if b.keyframe {
            self.keyframes.push(Keyframe {
                track: b.track,
                ticks: b.ticks,
                cluster: b.cluster,
                relative: b.relative,
            });
        }
    }

    /// The keyframes of the video track (else the first track), one per time, in order.
    fn cue_points(&self) -> Vec<Keyframe> {
        let Some(track) = self.video_track.or(self.first_track) else {
            return Vec::new();
        };
        let mut points: Vec<Keyframe> = self
            .keyframes
            .iter()
            .filter(|k| k.track == track)
            .copied()
            .collect();
        points.sort_by_key(|k| k.ticks);
        points.dedup_by_key(|k| k.ticks);
        points
    }

    /// The ID of the element at `at` (a second read, after writing).
    fn id_at(&self, path: &Path, at: u64) -> Result<u32, WebmFinishError> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(at))?;
        let mut raw = [0u8; 4];
        f.read_exact(&mut raw)?;
        Ok(read_id(&raw).map_or(0, |(id, _)| id))
    }
}

/// A block's track number, relative time and flags (RFC 9559 §10.1).
fn block_header(r: &mut Reader, size: u64) -> Result<(u64, i16, u8), WebmFinishError> {
    let at = r.pos;
    let first = r.bytes(1)?[0];
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || size < len as u64 + 3 {
        return Err(WebmFinishError::Unexpected(format!(
            "a block without a header at byte {at}"
        )));
    }
    let mut raw = vec![first];
    raw.extend(r.bytes(len - 1)?);
    let (track, _) = read_size(&raw)
        .and_then(|(n, l)| n.map(|n| (n, l)))
        .ok_or_else(|| {
            WebmFinishError::Unexpected(format!("a block without a track at byte {at}"))
        })?;
    let rest = r.bytes(3)?;
    Ok((track, i16::from_be_bytes([rest[0], rest[1]]), rest[2]))
}

/// An element ID (with its marker bits, as IDs are written) and its length.
fn read_id(b: &[u8]) -> Option<(u32, usize)> {
    let first = *b.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 || b.len() < len {
        return None;
    }
    Some((
        b[..len]
            .iter()
            .fold(0u32, |acc, x| (acc << 8) | u32::from(*x)),
        len,
    ))
}

/// A size (`None` when all its value bits are set: unknown) and its length.
fn read_size(b: &[u8]) -> Option<(Option<u64>, usize)> {
    let first = *b.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || b.len() < len {
        return None;
    }
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let value = b[1..len]
        .iter()
        .fold(u64::from(first & mask), |acc, x| (acc << 8) | u64::from(*x));
    let all_ones = (1u64 << (7 * len)) - 1;
    Some(((value != all_ones).then_some(value), len))
}

fn id_bytes(id: u32) -> Vec<u8> {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

/// A size in 8 bytes (the width that can be overwritten with any other).
fn size8(size: u64) -> [u8; 8] {
    let mut b = size.to_be_bytes();
    b[0] = 0x01;
    b
}

/// A size in as few bytes as it takes.
fn size_min(size: u64) -> Vec<u8> {
    let len = (1..=8).find(|l| size < (1u64 << (7 * l)) - 1).unwrap_or(8);
    let b = size.to_be_bytes();
    let mut out = b[8 - len..].to_vec();
    out[0] |= 0x80 >> (len - 1);
    out
}

/// An element; `one_byte_size` (for bodies under 127 bytes) keeps its length fixed, as the
/// room expects, whatever the body's value.
fn element(id: u32, body: &[u8], one_byte_size: bool) -> Vec<u8> {
    let mut out = id_bytes(id);
    if one_byte_size {
        out.push(0x80 | body.len() as u8);
    } else {
        out.extend(size_min(body.len() as u64));
    }
    out.extend_from_slice(body);
    out
}

fn uint_element(id: u32, value: u64) -> Vec<u8> {
    let b = value.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count().min(7);
    element(id, &b[skip..], false)
}

/// A Void of exactly `len` bytes (at least 2).
fn void(len: usize) -> Vec<u8> {
    debug_assert!(len >= 2 || len == 0);
    if len == 0 {
        return Vec::new();
    }
    // A 1-byte size up to 126 bytes of body, else 8 bytes.
    if len - 2 <= 126 {
        let mut v = vec![0xEC, 0x80 | (len - 2) as u8];
        v.resize(len, 0);
        v
    } else {
        let mut v = vec![0xEC];
        v.extend_from_slice(&size8((len - 9) as u64));
        v.resize(len, 0);
        v
    }
}

/// The SeekHead for (ID, position from the Segment's data) entries, [`SEEK_HEAD_LEN`] bytes
/// for three: every field at a fixed width.
fn seek_head(entries: &[(u32, u64)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, position) in entries {
        let mut seek = Vec::new();
        seek.extend(id_bytes(SEEK_ID));
        seek.push(0x84);
        seek.extend_from_slice(&id.to_be_bytes());
        seek.extend(id_bytes(SEEK_POSITION));
        seek.push(0x88);
        seek.extend_from_slice(&position.to_be_bytes());
        body.extend(element(SEEK, &seek, true));
    }
    element(SEEK_HEAD, &body, true)
}

/// The Cues for `points`, positions from the Segment's data at `segment_data`.
fn cues_element(points: &[Keyframe], segment_data: u64) -> Vec<u8> {
    let mut body = Vec::new();
    for k in points {
        let mut positions = uint_element(CUE_TRACK, k.track);
        positions.extend(uint_element(CUE_CLUSTER_POSITION, k.cluster - segment_data));
        positions.extend(uint_element(CUE_RELATIVE_POSITION, k.relative));
        let mut point = uint_element(CUE_TIME, k.ticks);
        point.extend(element(CUE_TRACK_POSITIONS, &positions, false));
        body.extend(element(CUE_POINT, &point, false));
    }
    element(CUES, &body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_voids_have_the_widths_the_room_needs() {
        assert_eq!(size_min(0), vec![0x80]);
        assert_eq!(size_min(126), vec![0xFE]);
        assert_eq!(size_min(127), vec![0x40, 0x7F], "127 alone is 'unknown'");
        assert_eq!(read_size(&size_min(5000)), Some((Some(5000), 2)));
        assert_eq!(read_size(&size8(5000)), Some((Some(5000), 8)));
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Some((None, 8))
        );
        assert_eq!(read_size(&[0xFF]), Some((None, 1)));
        for len in [2, 11, 96, 128, 129, 300] {
            let v = void(len);
            assert_eq!(v.len(), len);
            let (size, l) = read_size(&v[1..]).unwrap();
            assert_eq!(1 + l as u64 + size.unwrap(), len as u64);
        }
        let d = element(DURATION, &1.5f64.to_be_bytes(), true);
        assert_eq!(d.len(), DURATION_ROOM);
        let s = seek_head(&[(INFO, 1), (TRACKS, 2), (CUES, 3)]);
        assert_eq!(s.len(), SEEK_HEAD_LEN);
    }

    /// A head as libwebm writes it in live mode: EBML header, Segment of unknown size, Info,
    /// Tracks, then a Cluster.
    fn live_head() -> Vec<u8> {
        let mut out = element(EBML, &element(0x4282, b"webm", false), false);
        out.extend(id_bytes(SEGMENT));
        out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        let mut info = uint_element(TIMESTAMP_SCALE, 1_000_000);
        info.extend(element(0x4D80, b"egress-rs", false));
        out.extend(element(INFO, &info, false));
        let entry = [uint_element(TRACK_NUMBER, 1), uint_element(TRACK_TYPE, 1)].concat();
        out.extend(element(TRACKS, &element(TRACK_ENTRY, &entry, false), false));
        out
    }

    #[test]
    fn the_head_gets_its_room_whatever_the_write_sizes() {
        let head = live_head();
        let mut cluster = id_bytes(CLUSTER);
        cluster.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        cluster.extend(uint_element(TIMESTAMP, 0));
        let all = [head.clone(), cluster.clone()].concat();
        for chunk in [1, 3, 7, all.len()] {
            let mut w = HeadRoom::new(Vec::new());
            for piece in all.chunks(chunk) {
                w.write_all(piece).unwrap();
            }
            let out = w.into_inner().unwrap();
            // The rooms, and Info's size now in 8 bytes instead of 1.
            assert_eq!(out.len(), all.len() + SEEK_HEAD_ROOM + DURATION_ROOM + 7);
            assert!(
                out.ends_with(&cluster),
                "everything after the head as it was"
            );
        }
    }

    /// webmmux (the web and composite recorders) seeks back at the end and writes its own
    /// Duration and Cues: such a file is left alone.
    #[test]
    fn a_webmmux_file_is_already_seekable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.webm");
        let status = std::process::Command::new("gst-launch-1.0")
            .args([
                "-q",
                "videotestsrc",
                "num-buffers=45",
                "!",
                "video/x-raw,width=160,height=120,framerate=30/1",
            ])
            .args(["!", "vp8enc", "deadline=1", "!", "webmmux", "!", "filesink"])
            .arg(format!("location={}", path.display()))
            .status()
            .expect("run gst-launch-1.0");
        assert!(status.success());
        let before = std::fs::read(&path).unwrap();
        assert_eq!(finish(&path).unwrap(), Finished::AlreadySeekable);
        assert_eq!(std::fs::read(&path).unwrap(), before, "not touched");
    }

    #[test]
    fn a_stream_that_is_not_a_live_head_passes_unchanged() {
        for bytes in [b"OggS not webm at all".to_vec(), vec![0u8; 10]] {
            let mut w = HeadRoom::new(Vec::new());
            w.write_all(&bytes).unwrap();
            assert_eq!(w.into_inner().unwrap(), bytes);
        }
        // A head with no cluster yet is passed on at the end as it is.
        let mut w = HeadRoom::new(Vec::new());
        w.write_all(&live_head()).unwrap();
        assert_eq!(w.into_inner().unwrap(), live_head());
    }
}
