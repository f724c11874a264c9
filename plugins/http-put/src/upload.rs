//! One object being uploaded: a bounded part buffer, ranged PUTs, retries per request.
//!
//! The protocol (also in the crate docs):
//!
//! * An object that fits in one part is one plain `PUT <url>/<key>` with the whole body, which
//!   any PUT-capable server (WebDAV, presigned URLs, nginx `dav_methods`) accepts.
//! * A larger object is a sequence of `PUT`s of at most `part_size` bytes with
//!   `Content-Range: bytes <first>-<last>/*`; the last one carries the total,
//!   `bytes <first>-<last>/<total>`, which tells the server the object is complete. The server
//!   must not show the object before that. Re-sending a range is idempotent, which is what
//!   makes per-part retries safe.
//! * `abort` after parts were sent is one best-effort `DELETE` of the unfinished upload.
//!
//! Memory per object: one part buffer (grows up to `part_size`), whatever the object size.

use std::time::Duration;

use egress_plugin_api::{Receipt, log};
use sha2::{Digest, Sha256};

use crate::error::HttpPutError;
use crate::retry::{RetryPolicy, Rng, status_is_retryable};
use crate::transport::{Request, Transport};

pub struct Uploader<T: Transport> {
    transport: T,
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    retry: RetryPolicy,
    rng: Rng,
    part_size: usize,
    buffer: Vec<u8>,
    /// Bytes the server acknowledged in earlier parts.
    sent: u64,
    hasher: Sha256,
}

/// Everything an uploader needs besides its transport.
pub struct Target {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub part_size: usize,
    pub expected_size: Option<u64>,
}

impl<T: Transport> Uploader<T> {
    pub fn new(transport: T, target: Target) -> Self {
        // A small object never needs a full part; a large one gets it at once.
        let capacity = target
            .expected_size
            .map_or(target.part_size, |s| (s as usize).min(target.part_size));
        Uploader {
            transport,
            url: target.url,
            headers: target.headers,
            timeout: target.timeout,
            retry: target.retry,
            rng: Rng::new(),
            part_size: target.part_size,
            buffer: Vec::with_capacity(capacity),
            sent: 0,
            hasher: Sha256::new(),
        }
    }

    pub fn write(&mut self, mut chunk: &[u8]) -> Result<(), HttpPutError> {
        while !chunk.is_empty() {
            // Flush a full part only when more bytes arrive, so that `finish` always has a
            // non-empty last part to carry the total.
            if self.buffer.len() == self.part_size {
                self.send_part()?;
            }
            let n = (self.part_size - self.buffer.len()).min(chunk.len());
            self.buffer.extend_from_slice(&chunk[..n]);
            self.hasher.update(&chunk[..n]);
            chunk = &chunk[n..];
        }
        Ok(())
    }

    fn send_part(&mut self) -> Result<(), HttpPutError> {
        let len = self.buffer.len() as u64;
        let range = format!("bytes {}-{}/*", self.sent, self.sent + len - 1);
        self.request("PUT", Some(range))?;
        self.sent += len;
        self.buffer.clear();
        Ok(())
    }

    pub fn finish(&mut self) -> Result<Receipt, HttpPutError> {
        let len = self.buffer.len() as u64;
        let total = self.sent + len;
        let range = (self.sent > 0).then(|| format!("bytes {}-{}/{total}", self.sent, total - 1));
        self.request("PUT", range)?;
        self.buffer = Vec::new();
        let sha256 = std::mem::take(&mut self.hasher).finalize().into();
        Ok(Receipt::new(self.url.clone(), total, sha256))
    }

    /// Drop the buffer and, if the server holds a partial upload, ask it to discard it.
    pub fn abort(&mut self) {
        self.buffer = Vec::new();
        if self.sent == 0 {
            return;
        }
        self.sent = 0;
        let headers = header_refs(&self.headers, None);
        let result = self.transport.send(Request {
            method: "DELETE",
            url: &self.url,
            headers: &headers,
            body: &[],
            timeout: self.timeout,
        });
        match result {
            Ok(r) if (200..300).contains(&r.status) || r.status == 404 => {}
            Ok(r) => log::warn(format!(
                "http-put: DELETE {} after abort returned HTTP {}",
                self.url, r.status
            )),
            Err(e) => log::warn(format!("http-put: DELETE {} after abort: {e}", self.url)),
        }
    }

    /// Send the buffer, retrying transient failures with backoff and full jitter.
    fn request(&mut self, method: &'static str, range: Option<String>) -> Result<(), HttpPutError> {
        let range_note = range
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let headers = header_refs(&self.headers, range.as_deref());
            let result = self.transport.send(Request {
                method,
                url: &self.url,
                headers: &headers,
                body: &self.buffer,
                timeout: self.timeout,
            });
            let (retryable, error) = match result {
                Ok(r) if (200..300).contains(&r.status) => return Ok(()),
                Ok(r) => (
                    status_is_retryable(r.status),
                    HttpPutError::Status {
                        method,
                        url: self.url.clone(),
                        range: range_note.clone(),
                        status: r.status,
                        attempts: attempt,
                        detail: if r.snippet.trim().is_empty() {
                            String::new()
                        } else {
                            format!(": {}", r.snippet.trim())
                        },
                    },
                ),
                Err(source) => (
                    source.is_retryable(),
                    HttpPutError::Transport {
                        method,
                        url: self.url.clone(),
                        range: range_note.clone(),
                        attempts: attempt,
                        source,
                    },
                ),
            };
            if !retryable || attempt >= self.retry.max_attempts {
                return Err(error);
            }
            let delay = self.retry.delay(attempt, &mut self.rng);
            log::debug(format!("http-put: {error}; retrying in {delay:?}"));
            std::thread::sleep(delay);
        }
    }
}

fn header_refs<'a>(
    headers: &'a [(String, String)],
    range: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Some(range) = range {
        h.push(("Content-Range", range));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Response, TransportError};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// What was sent: method, Content-Range, body length.
    type Sent = (String, Option<String>, usize);

    /// Scripted replies, and a record of what was sent.
    #[derive(Clone, Default)]
    struct Script {
        replies: Arc<Mutex<VecDeque<Result<u16, TransportError>>>>,
        sent: Arc<Mutex<Vec<Sent>>>,
    }

    impl Transport for Script {
        fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
            let range = req
                .headers
                .iter()
                .find(|(k, _)| *k == "Content-Range")
                .map(|(_, v)| v.to_string());
            self.sent
                .lock()
                .unwrap()
                .push((req.method.into(), range, req.body.len()));
            let reply = self.replies.lock().unwrap().pop_front().unwrap_or(Ok(200));
            reply.map(|status| Response {
                status,
                snippet: String::new(),
            })
        }
    }

    fn uploader(script: &Script, part: usize) -> Uploader<Script> {
        Uploader::new(
            script.clone(),
            Target {
                url: "http://x/k".into(),
                headers: vec![],
                timeout: Duration::from_secs(1),
                retry: RetryPolicy {
                    max_attempts: 3,
                    initial: Duration::from_millis(1),
                    max: Duration::from_millis(2),
                },
                part_size: part,
                expected_size: None,
            },
        )
    }

    #[test]
    fn small_object_is_one_plain_put() {
        let s = Script::default();
        let mut u = uploader(&s, 10);
        u.write(b"hello").unwrap();
        let r = u.finish().unwrap();
        assert_eq!(r.size, 5);
        assert_eq!(*s.sent.lock().unwrap(), vec![("PUT".into(), None, 5)]);
    }

    #[test]
    fn large_object_goes_in_ranged_parts() {
        let s = Script::default();
        let mut u = uploader(&s, 4);
        u.write(b"abcdef").unwrap();
        u.write(b"gh").unwrap();
        u.finish().unwrap();
        let sent = s.sent.lock().unwrap().clone();
        assert_eq!(
            sent,
            vec![
                ("PUT".into(), Some("bytes 0-3/*".into()), 4),
                ("PUT".into(), Some("bytes 4-7/8".into()), 4),
            ]
        );
    }

    #[test]
    fn retries_transient_failures_then_gives_up() {
        let s = Script::default();
        s.replies.lock().unwrap().extend([
            Ok(503),
            Err(TransportError::Connection("reset".into())),
            Ok(201),
        ]);
        let mut u = uploader(&s, 4);
        u.write(b"ab").unwrap();
        u.finish().unwrap();
        assert_eq!(s.sent.lock().unwrap().len(), 3);

        let s = Script::default();
        s.replies
            .lock()
            .unwrap()
            .extend([Ok(503), Ok(503), Ok(503)]);
        let mut u = uploader(&s, 4);
        u.write(b"ab").unwrap();
        let e: egress_plugin_api::SinkError = u.finish().unwrap_err().into();
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("after 3 attempt(s)"), "{e}");
    }

    #[test]
    fn client_errors_are_not_retried() {
        for (status, auth) in [(400u16, false), (403, true)] {
            let s = Script::default();
            s.replies.lock().unwrap().push_back(Ok(status));
            let mut u = uploader(&s, 4);
            u.write(b"ab").unwrap();
            let e: egress_plugin_api::SinkError = u.finish().unwrap_err().into();
            assert_eq!(e.is_auth(), auth, "{e}");
            assert_eq!(e.is_permanent(), !auth, "{e}");
            assert_eq!(s.sent.lock().unwrap().len(), 1);
        }
    }

    #[test]
    fn abort_deletes_only_a_started_upload() {
        let s = Script::default();
        let mut u = uploader(&s, 4);
        u.write(b"ab").unwrap();
        u.abort();
        assert!(s.sent.lock().unwrap().is_empty());
        let mut u = uploader(&s, 4);
        u.write(b"abcdef").unwrap();
        u.abort();
        let methods: Vec<String> = s.sent.lock().unwrap().iter().map(|x| x.0.clone()).collect();
        assert_eq!(methods, vec!["PUT", "DELETE"]);
    }
}
