//! Output file names, as the Go egress builds them (reference §2.6, `output_file.go`):
//! `{room_name}`, `{room_id}`, `{time}`, `{utc}`, `{retry}` replacements, a default
//! `<identifier>-<time><ext>` name for an empty path or a directory, and the extension forced to
//! the container's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Extensions the Go egress recognises (and replaces when they do not match the container).
const KNOWN_EXTENSIONS: [&str; 9] = [
    ".raw", ".ogg", ".mp3", ".ivf", ".mp4", ".ts", ".webm", ".m3u8", ".jpeg",
];

/// A wall-clock instant broken down in the machine's local time zone, as Go's `time.Now()`
/// formats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl LocalTime {
    pub fn from_system(t: SystemTime) -> LocalTime {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since.as_secs() as libc::time_t;
        // SAFETY: localtime_r writes only into the `tm` we pass; a zeroed `tm` is a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
        if !ok {
            return LocalTime {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                millis: 0,
            };
        }
        LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            millis: since.subsec_millis(),
        }
    }

    /// Go's `2006-01-02T150405`.
    pub fn time_stamp(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Go's `20060102150405` plus three digits of milliseconds (`{utc}`; local time, like Go).
    pub fn utc_stamp(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}{:03}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// The identifier and replacements for one egress (`getFilenameInfo`).
#[derive(Debug, Clone)]
pub struct FilenameInfo {
    /// Room name, or `web` when there is no room.
    pub identifier: String,
    replacements: Vec<(&'static str, String)>,
    time: String,
    retry: i32,
}

impl FilenameInfo {
    pub fn new(room_name: &str, room_id: &str, retry_count: i32, now: LocalTime) -> FilenameInfo {
        let mut replacements = Vec::new();
        if retry_count > 0 {
            replacements.push(("{retry}", retry_count.to_string()));
        }
        let identifier = if room_name.is_empty() {
            "web".to_owned()
        } else {
            replacements.push(("{room_name}", room_name.to_owned()));
            replacements.push(("{room_id}", room_id.to_owned()));
            room_name.to_owned()
        };
        replacements.push(("{time}", now.time_stamp()));
        replacements.push(("{utc}", now.utc_stamp()));
        FilenameInfo {
            identifier,
            replacements,
            time: now.time_stamp(),
            retry: retry_count,
        }
    }

    pub fn replace(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (template, value) in &self.replacements {
            out = out.replace(template, value);
        }
        out
    }

    /// The storage path for a file with extension `ext` (`updateFilepath`): templated, a default
    /// name for an empty path or a directory, and the extension fixed.
    pub fn file_path(&self, cleaned: &str, ext: &str) -> String {
        let path = self.replace(cleaned);
        if path.is_empty() || path.ends_with('/') {
            let mut base = format!("{}-{}", self.identifier, self.time);
            if self.retry > 0 {
                base = format!("{base}-{}", self.retry);
            }
            return format!("{path}{base}{ext}");
        }
        if path.ends_with(ext) {
            return path;
        }
        let stem = match path.rfind('.') {
            Some(i) if KNOWN_EXTENSIONS.contains(&&path[i..]) => &path[..i],
            _ => path.as_str(),
        };
        format!("{stem}{ext}")
    }
}

/// `path.Clean` plus stripping of leading `../` (`clean` in `output_file.go`), keeping a
/// trailing slash. Returns "" for an empty, `.` or `..` path.
pub fn clean(path: &str) -> String {
    let has_trailing_slash = path.ends_with('/');
    let mut cleaned = go_path_clean(path);
    while let Some(rest) = cleaned.strip_prefix("../") {
        cleaned = rest.to_owned();
    }
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return String::new();
    }
    if has_trailing_slash && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

/// Go's `path.Clean` (lexical: `.`, `..` and duplicate slashes).
fn go_path_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
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

    #[test]
    fn stamps_use_go_layouts() {
        assert_eq!(now().time_stamp(), "2024-03-05T070809");
        assert_eq!(now().utc_stamp(), "20240305070809042");
    }

    #[test]
    fn templating_defaults_and_extensions() {
        let info = FilenameInfo::new("room", "RM_1", 0, now());
        assert_eq!(info.file_path("", ".mp4"), "room-2024-03-05T070809.mp4");
        assert_eq!(
            info.file_path("out/", ".mp4"),
            "out/room-2024-03-05T070809.mp4"
        );
        assert_eq!(
            info.file_path("{room_name}/{room_id}-{time}", ".mp4"),
            "room/RM_1-2024-03-05T070809.mp4"
        );
        assert_eq!(
            info.file_path("x-{utc}.mp4", ".mp4"),
            "x-20240305070809042.mp4"
        );
        assert_eq!(
            info.file_path("a.ogg", ".mp4"),
            "a.mp4",
            "a known wrong extension is replaced"
        );
        assert_eq!(
            info.file_path("a.b", ".mp4"),
            "a.b.mp4",
            "an unknown one is kept"
        );
        assert_eq!(
            info.file_path("a.mp4", ".webm"),
            "a.webm",
            "VP8 files become WebM whatever the path says"
        );
        assert_eq!(info.file_path("a.webm", ".webm"), "a.webm");
        let web = FilenameInfo::new("", "", 2, now());
        assert_eq!(web.file_path("", ".ogg"), "web-2024-03-05T070809-2.ogg");
        assert_eq!(web.file_path("r{retry}", ".ogg"), "r2.ogg");
        assert_eq!(
            web.file_path("{room_name}", ".ogg"),
            "{room_name}.ogg",
            "no room: left as is, as in Go"
        );
    }

    #[test]
    fn clean_strips_parent_segments() {
        assert_eq!(clean(""), "");
        assert_eq!(clean("."), "");
        assert_eq!(clean("../../etc/x.mp4"), "etc/x.mp4");
        assert_eq!(clean("a/./b//c.mp4"), "a/b/c.mp4");
        assert_eq!(clean("a/../../b/"), "b/");
        assert_eq!(clean("/abs/x.mp4"), "/abs/x.mp4");
        assert_eq!(clean("dir/"), "dir/");
    }
}
