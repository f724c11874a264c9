//! psrpc channel names on Redis (the "Legacy" format, spec §1.2).
//!
//! Parts are joined with `|`. Each part is sanitized so that no caller-controlled topic can
//! inject a delimiter: `[0-9A-Za-z_]` pass through, everything else becomes `u+xxxx` (BMP) or
//! `U+xxxxxxxx` (astral). An empty part adds nothing and does not add a delimiter either.

use std::fmt::Write;

/// One piece of a channel name: a plain string, or a topic (a list joined the same way).
pub enum Part<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Topic(&'a [&'a str]),
}

/// Formats a channel from parts with the `|` delimiter.
pub fn format(parts: &[Part<'_>]) -> String {
    let mut buf = String::new();
    append_parts(&mut buf, parts, '|');
    buf
}

fn append_parts(buf: &mut String, parts: &[Part<'_>], delim: char) {
    let mut need_delim = false;
    for part in parts {
        if need_delim {
            buf.push(delim);
        }
        let mark = buf.len();
        match part {
            Part::Str(s) => sanitize_into(buf, s.as_bytes()),
            Part::Bytes(b) => sanitize_into(buf, b),
            Part::Topic(topic) => {
                let sub: Vec<Part<'_>> = topic.iter().map(|t| Part::Str(t)).collect();
                append_parts(buf, &sub, delim);
            }
        }
        // An empty part leaves the delimiter written before it for the next part to reuse.
        need_delim = buf.len() > mark;
    }
}

/// Sanitizes bytes with Go `range` semantics: invalid UTF-8 yields U+FFFD one byte at a time.
fn sanitize_into(buf: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_sanitized(buf, c);
        }
        for _ in chunk.invalid() {
            push_sanitized(buf, char::REPLACEMENT_CHARACTER);
        }
    }
}

fn push_sanitized(buf: &mut String, c: char) {
    if c.is_ascii_alphanumeric() || c == '_' {
        buf.push(c);
    } else if (c as u32) < 0x10000 {
        let _ = write!(buf, "u+{:04x}", c as u32);
    } else {
        let _ = write!(buf, "U+{:08x}", c as u32);
    }
}

/// `<Service>|<Method>|<topic…>|REQ`: where requests are published.
pub fn request(service: &str, method: &str, topic: &[&str]) -> String {
    format(&[
        Part::Str(service),
        Part::Str(method),
        Part::Topic(topic),
        Part::Str("REQ"),
    ])
}

/// `<Service>|<Method>|<topic…>|RCLAIM`: where the caller announces the claim winner.
pub fn claim_response(service: &str, method: &str, topic: &[&str]) -> String {
    format(&[
        Part::Str(service),
        Part::Str(method),
        Part::Topic(topic),
        Part::Str("RCLAIM"),
    ])
}

/// `<Service>|<clientID>|CLAIM`: where servers send their bids to one client.
pub fn claim_request(service: &str, client_id: &str) -> String {
    format(&[Part::Str(service), Part::Str(client_id), Part::Str("CLAIM")])
}

/// `<Service>|<clientID>|RES`: where servers send responses to one client.
pub fn response(service: &str, client_id: &str) -> String {
    format(&[Part::Str(service), Part::Str(client_id), Part::Str("RES")])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every row of the table in spec §1.2.
    #[test]
    fn golden_channel_names() {
        assert_eq!(
            request("EgressInternal", "StartEgress", &[""]),
            "EgressInternal|StartEgress|REQ"
        );
        assert_eq!(
            claim_response("EgressInternal", "StartEgress", &[""]),
            "EgressInternal|StartEgress|RCLAIM"
        );
        assert_eq!(
            request("EgressInternal", "StartEgress", &["us-east-1"]),
            "EgressInternal|StartEgress|usu+002deastu+002d1|REQ"
        );
        assert_eq!(
            request("EgressHandler", "StopEgress", &["EG_xS4aB9cD2eF6"]),
            "EgressHandler|StopEgress|EG_xS4aB9cD2eF6|REQ"
        );
        assert_eq!(
            request("IOInfo", "CreateEgress", &[]),
            "IOInfo|CreateEgress|REQ"
        );
        assert_eq!(
            claim_request("EgressInternal", "CLI_k3Zp9QwR2mTx"),
            "EgressInternal|CLI_k3Zp9QwR2mTx|CLAIM"
        );
        assert_eq!(request("S", "M", &["a", "", "c"]), "S|M|a|c|REQ");
        assert_eq!(request("S", "M", &["a.b|c"]), "S|M|au+002ebu+007cc|REQ");
        assert_eq!(
            format(&[
                Part::Str("S"),
                Part::Str("M"),
                Part::Bytes(&[0x78, 0xff, 0x79]),
                Part::Str("REQ")
            ]),
            "S|M|xu+fffdy|REQ"
        );
        let mut dotted = String::new();
        append_parts(
            &mut dotted,
            &[
                Part::Str("🚀_É"),
                Part::Str("🛰_bar"),
                Part::Topic(&["软件"]),
                Part::Str("END"),
            ],
            '.',
        );
        assert_eq!(dotted, "U+0001f680_u+00c9.U+0001f6f0_bar.u+8f6fu+4ef6.END");
    }

    #[test]
    fn leading_empty_parts_add_nothing() {
        assert_eq!(format(&[Part::Str(""), Part::Str("a")]), "a");
        assert_eq!(format(&[Part::Topic(&[]), Part::Str("x")]), "x");
    }
}
