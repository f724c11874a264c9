//! JSON-over-HTTP requests to the admin APIs of the stream test servers (mediamtx's `/v3/…`,
//! toxiproxy's `/proxies/…`, nginx-rtmp's `/stat` and `/control`), with `ureq` (already a
//! workspace dependency) on a blocking thread so that a slow server cannot stall the test's
//! runtime.

use std::time::Duration;

use serde_json::Value;

/// Every admin request gives up after this long: these servers answer in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP method the admin APIs use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

/// Sends `method url` with `body` as JSON (none for `None`) and returns the status and the
/// response body. Errors only when the server cannot be reached or the exchange fails; any
/// status, 4xx and 5xx included, is returned.
pub(crate) async fn request(
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let url = url.to_string();
    let body = body.map(Value::to_string);
    let what = format!("{method:?} {url}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        let response = match (method, body) {
            (Method::Get, _) => agent.get(&url).call(),
            (Method::Delete, _) => agent.delete(&url).call(),
            (Method::Post, None) => agent.post(&url).send_empty(),
            (Method::Post, Some(b)) => agent
                .post(&url)
                .content_type("application/json")
                .send(b.as_str()),
            (Method::Patch, None) => agent.patch(&url).send_empty(),
            (Method::Patch, Some(b)) => agent
                .patch(&url)
                .content_type("application/json")
                .send(b.as_str()),
        };
        let mut response = response.map_err(|e| format!("{method:?} {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method:?} {url}: reading the body: {e}"))?;
        Ok((status, text))
    })
    .await
    .unwrap_or_else(|e| Err(format!("{what}: the request thread failed: {e}")))
}

/// [`request`], panicking unless the status is 2xx. Returns the body parsed as JSON
/// (`Value::Null` for an empty body).
pub(crate) async fn request_ok(method: Method, url: &str, body: Option<&Value>) -> Value {
    let (status, text) = request(method, url, body)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if !(200..300).contains(&status) {
        panic!("{method:?} {url}: HTTP {status}: {text}");
    }
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method:?} {url}: the answer is not JSON ({e}): {text}"))
}
