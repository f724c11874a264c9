//! Object keys to relative paths: a key must stay below the sink's directory.

use std::path::PathBuf;

use egress_plugin_api::SinkError;

/// `room/2024/out.mp4` → that relative path. Refuses what could escape the root or name a
/// directory: empty keys, absolute keys, empty, `.` or `..` components, NUL bytes.
pub fn to_relative_path(key: &str) -> Result<PathBuf, SinkError> {
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
    let mut path = PathBuf::new();
    for part in key.split('/') {
        match part {
            "" => return Err(invalid("empty path component")),
            "." | ".." => return Err(invalid("`.` and `..` are not allowed")),
            p => path.push(p),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            to_relative_path("a/b.mp4").unwrap(),
            PathBuf::from("a/b.mp4")
        );
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "../x",
            "a//b",
            "a/",
            "./a",
            "a\0b",
        ] {
            let e = to_relative_path(bad).unwrap_err();
            assert!(e.is_permanent(), "{bad:?}: {e}");
        }
    }
}
