//! Receipt locations: the URL a user would open, written the way the Go egress writes them
//! (`livekit/storage`), so that `EgressInfo` file locations do not change with the worker.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What Go's `url.URL{Path: p}.String()` leaves alone in a path: unreserved characters, the
/// sub-delimiters it allows in paths, and `/`. Everything else (space, `%`, `?`, `#`, non-ASCII)
/// is percent-encoded byte by byte.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b';')
    .remove(b'=')
    .remove(b'@');

/// `base` (scheme and host, maybe a path) followed by `segments` joined with `/`, each one
/// trimmed of surrounding slashes and escaped like a Go URL path. Empty segments are skipped so
/// that no `//` appears (Go's "empty container" case).
pub fn join(base: &str, segments: &[&str]) -> String {
    let mut out = base.trim_end_matches('/').to_string();
    for segment in segments {
        let segment = segment.trim_matches('/');
        if segment.is_empty() {
            continue;
        }
        out.push('/');
        out.extend(utf8_percent_encode(segment, PATH));
    }
    out
}

/// The host part of an endpoint given with or without a scheme (`https://s3.example.com/` and
/// `s3.example.com` both give `s3.example.com`).
pub fn host_of(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(endpoint);
    rest.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(
            join("https://b.s3.amazonaws.com", &["folder/my file.mp4"]),
            "https://b.s3.amazonaws.com/folder/my%20file.mp4"
        );
        assert_eq!(
            join("https://b.s3.amazonaws.com", &["café/résumé.mp4"]),
            "https://b.s3.amazonaws.com/caf%C3%A9/r%C3%A9sum%C3%A9.mp4"
        );
        assert_eq!(
            join("https://h", &["a%b?c#d=e&f+g@h:i;j,k$l~m"]),
            "https://h/a%25b%3Fc%23d=e&f+g@h:i;j,k$l~m"
        );
    }

    #[test]
    fn no_double_slashes() {
        assert_eq!(
            join(
                "https://acct.blob.core.windows.net/",
                &["/c/", "", "/x.mp4"]
            ),
            "https://acct.blob.core.windows.net/c/x.mp4"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://s3.example.com/"), "s3.example.com");
        assert_eq!(host_of("http://127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(host_of("s3.example.com"), "s3.example.com");
    }
}
