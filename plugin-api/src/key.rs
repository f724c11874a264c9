//! Object keys to paths and URLs, without escaping the sink's root.
//!
//! A key is `/`-separated and relative (`room/2024/out.mp4`). The host never sends `..` or an
//! absolute key, but a sink must not trust that: `root.join("/etc/passwd")` *is*
//! `/etc/passwd`, and `base + "/../admin"` is another resource. These helpers refuse such keys
//! with the class the conformance kit expects (permanent), so that a sink needs no key code of
//! its own.
//!
//! ```
//! use std::path::Path;
//! use egress_plugin_api::key;
//!
//! let path = key::path_under(Path::new("/srv/rec"), "room/a.mp4").unwrap();
//! assert_eq!(path, Path::new("/srv/rec/room/a.mp4"));
//! assert!(key::path_under(Path::new("/srv/rec"), "../etc/passwd").unwrap_err().is_permanent());
//! let url = key::url_under("https://up.example/rec/", "room/a b.mp4").unwrap();
//! assert_eq!(url, "https://up.example/rec/room/a%20b.mp4");
//! ```

use std::path::{Path, PathBuf};

use crate::error::SinkError;

/// The key's segments, after checking that it names an object below a root: not empty, not
/// absolute, no empty, `.` or `..` segment, no NUL. A refusal is a permanent error (the same
/// key will be refused again) naming the key.
pub fn segments(key: &str) -> Result<Vec<&str>, SinkError> {
    let invalid = |why: &str| SinkError::permanent(format!("invalid object key {key:?}: {why}"));
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.starts_with('/') {
        return Err(invalid("absolute"));
    }
    if key.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    let segments: Vec<&str> = key.split('/').collect();
    for segment in &segments {
        match *segment {
            "" => return Err(invalid("empty path segment")),
            "." | ".." => return Err(invalid("`.` and `..` segments are not allowed")),
            _ => {}
        }
    }
    Ok(segments)
}

/// The key as a relative path (`room/a.mp4`), checked by [`segments`].
pub fn relative_path(key: &str) -> Result<PathBuf, SinkError> {
    Ok(segments(key)?.into_iter().collect())
}

/// `root/key`, guaranteed to be below `root` (see [`segments`] for what is refused).
pub fn path_under(root: &Path, key: &str) -> Result<PathBuf, SinkError> {
    Ok(root.join(relative_path(key)?))
}

/// `base/key` with each segment percent-encoded (all but RFC 3986 unreserved characters), so
/// that a key can add path segments to the base URL but never leave it, add a query or a
/// fragment. A trailing `/` of `base` is ignored.
pub fn url_under(base: &str, key: &str) -> Result<String, SinkError> {
    let mut url = base.trim_end_matches('/').to_string();
    for segment in segments(key)? {
        url.push('/');
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                url.push(b as char);
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: [&str; 10] = [
        "",
        "/etc/passwd",
        "a/../b",
        "../x",
        "..",
        "a//b",
        "a/",
        "./a",
        "a/.",
        "a\0b",
    ];

    #[test]
    fn paths_stay_below_the_root() {
        let root = Path::new("/srv/rec");
        assert_eq!(
            path_under(root, "a/b.mp4").unwrap(),
            Path::new("/srv/rec/a/b.mp4")
        );
        assert_eq!(relative_path("x.ts").unwrap(), Path::new("x.ts"));
        // Dots inside a name are names.
        assert_eq!(
            path_under(root, "a/..b/c..").unwrap(),
            Path::new("/srv/rec/a/..b/c..")
        );
        for bad in BAD {
            let e = path_under(root, bad).unwrap_err();
            assert!(e.is_permanent(), "{bad:?}: {e}");
            assert!(e.message().contains("invalid object key"), "{e}");
        }
    }

    #[test]
    fn urls_stay_below_the_base() {
        assert_eq!(
            url_under("http://h/base", "a b/c.mp4").unwrap(),
            "http://h/base/a%20b/c.mp4"
        );
        assert_eq!(
            url_under("http://h/base/", "q?x=1#f/%2e%2e").unwrap(),
            "http://h/base/q%3Fx%3D1%23f/%252e%252e"
        );
        assert_eq!(url_under("http://h", "é").unwrap(), "http://h/%C3%A9");
        for bad in BAD {
            assert!(
                url_under("http://h/b", bad).unwrap_err().is_permanent(),
                "{bad:?}"
            );
        }
    }
}
