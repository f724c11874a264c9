//! The `srt` live destination (work in progress).
