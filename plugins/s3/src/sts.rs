//! One STS `AssumeRole` call (API version 2011-06-15): a form-encoded `POST`, signed with SigV4
//! for service `sts` by object_store's [`AwsAuthorizer`] with the static keys, answered with XML
//! that holds temporary credentials and their expiry.
//!
//! Transport failures, 5xx, 429 and 408 are retried with the sink's backoff; everything else is
//! final. Failures become `object_store` errors that the shared classifier sorts: a refusal of
//! the caller (403, `AccessDenied`, `InvalidClientTokenId`, …) is a `PermissionDenied` (auth);
//! the others keep `status code: NNN` in their text (5xx retryable, other 4xx permanent) or an
//! [`HttpError`] in their source chain (retryable transport failures).

use std::time::Duration;

use chrono::{DateTime, Utc};
use egress_objstore_sink::object_store::aws::{AwsAuthorizer, AwsCredential};
use egress_objstore_sink::object_store::client::{
    HttpClient, HttpError, HttpRequest, HttpRequestBody,
};
use egress_objstore_sink::object_store::{self, RetryConfig};
use http::{Method, StatusCode, header};
use serde::Deserialize;

/// STS's API version, sent with every call.
const API_VERSION: &str = "2011-06-15";
/// The lifetime asked for. One hour is the default most roles allow (and Go's SDK asks for it).
pub const DURATION: Duration = Duration::from_secs(3600);
/// Error codes that mean "these keys may not assume this role", whatever the status.
const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "RegionDisabledException",
];
/// How much of an unparseable error body goes into the message.
const BODY_EXCERPT: usize = 300;

/// What to ask STS for, and where.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    /// The STS endpoint, without a trailing slash.
    pub endpoint: String,
    /// The SigV4 signing region.
    pub region: String,
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
    pub duration: Duration,
}

/// Credentials STS handed out, and when they stop working.
#[derive(Debug)]
pub struct TemporaryCredentials {
    pub credential: AwsCredential,
    pub expiration: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StsError {
    #[error("AssumeRole at {endpoint}: cannot build the request: {reason}")]
    Request { endpoint: String, reason: String },
    #[error("AssumeRole at {endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: HttpError,
    },
    /// STS answered with an error. The text keeps `status code: NNN`, which the shared
    /// classifier reads.
    #[error("AssumeRole at {endpoint} failed: status code: {status}: {code}: {message}")]
    Refused {
        endpoint: String,
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("AssumeRole at {endpoint}: unexpected answer: {reason}")]
    Response { endpoint: String, reason: String },
}

impl StsError {
    /// The caller's keys are wrong or may not assume the role.
    pub fn is_auth(&self) -> bool {
        match self {
            StsError::Refused { status, code, .. } => {
                matches!(status.as_u16(), 401 | 403) || AUTH_CODES.contains(&code.as_str())
            }
            _ => false,
        }
    }

    /// Worth another attempt: the connection failed, or STS is busy or broken for now.
    pub fn is_transient(&self) -> bool {
        match self {
            StsError::Transport { .. } => true,
            StsError::Refused { status, .. } => {
                status.is_server_error() || matches!(status.as_u16(), 408 | 429)
            }
            _ => false,
        }
    }

    fn endpoint(&self) -> &str {
        match self {
            StsError::Request { endpoint, .. }
            | StsError::Transport { endpoint, .. }
            | StsError::Refused { endpoint, .. }
            | StsError::Response { endpoint, .. } => endpoint,
        }
    }
}

impl From<StsError> for object_store::Error {
    fn from(e: StsError) -> Self {
        if e.is_auth() {
            object_store::Error::PermissionDenied {
                path: e.endpoint().to_string(),
                source: Box::new(e),
            }
        } else {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        }
    }
}

/// Ask STS for temporary credentials, retrying transient failures as `retry` says.
pub async fn assume_role(
    client: &HttpClient,
    retry: &RetryConfig,
    caller: &AwsCredential,
    request: &AssumeRole,
) -> Result<TemporaryCredentials, StsError> {
    let mut attempt = 0usize;
    loop {
        match assume_role_once(client, caller, request).await {
            Err(e) if e.is_transient() && attempt < retry.max_retries => {
                let delay = backoff(retry, attempt);
                egress_plugin_api::log::debug(format!(
                    "s3 sink: {e}; retrying in {} ms",
                    delay.as_millis()
                ));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Exponential backoff from the sink's retry settings (no jitter: one caller, one request).
fn backoff(retry: &RetryConfig, attempt: usize) -> Duration {
    let factor = retry.backoff.base.powi(attempt.min(30) as i32);
    retry
        .backoff
        .init_backoff
        .mul_f64(factor)
        .min(retry.backoff.max_backoff)
}

async fn assume_role_once(
    client: &HttpClient,
    caller: &AwsCredential,
    request: &AssumeRole,
) -> Result<TemporaryCredentials, StsError> {
    let endpoint = &request.endpoint;
    let mut http_request = build_request(request)?;
    AwsAuthorizer::new(caller, "sts", &request.region)
        .try_authorize(&mut http_request, None)
        .map_err(|e| StsError::Request {
            endpoint: endpoint.clone(),
            reason: format!("cannot sign: {e}"),
        })?;
    let response = client
        .execute(http_request)
        .await
        .map_err(|source| StsError::Transport {
            endpoint: endpoint.clone(),
            source,
        })?;
    let status = response.status();
    let body = response
        .into_body()
        .bytes()
        .await
        .map_err(|source| StsError::Transport {
            endpoint: endpoint.clone(),
            source,
        })?;
    let body = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let (code, message) = parse_error(&body);
        return Err(StsError::Refused {
            endpoint: endpoint.clone(),
            status,
            code,
            message,
        });
    }
    parse_credentials(&body).map_err(|reason| StsError::Response {
        endpoint: endpoint.clone(),
        reason,
    })
}

/// The form-encoded `POST /` of the Query API.
fn build_request(request: &AssumeRole) -> Result<HttpRequest, StsError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "AssumeRole")
        .append_pair("Version", API_VERSION)
        .append_pair("RoleArn", &request.role_arn)
        .append_pair("RoleSessionName", &request.session_name)
        .append_pair("DurationSeconds", &request.duration.as_secs().to_string());
    if let Some(external_id) = &request.external_id {
        form.append_pair("ExternalId", external_id);
    }
    let body = form.finish();
    http::Request::builder()
        .method(Method::POST)
        .uri(format!("{}/", request.endpoint))
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(HttpRequestBody::from(body))
        .map_err(|e| StsError::Request {
            endpoint: request.endpoint.clone(),
            reason: e.to_string(),
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    credentials: Credentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: DateTime<Utc>,
}

/// The credentials in an `AssumeRoleResponse`.
pub fn parse_credentials(body: &str) -> Result<TemporaryCredentials, String> {
    let response: AssumeRoleResponse =
        quick_xml::de::from_str(body).map_err(|e| format!("not an AssumeRoleResponse ({e})"))?;
    let c = response.assume_role_result.credentials;
    // Pretty-printed answers (AWS's documentation has one) wrap values in whitespace, which is
    // never part of a key or a token.
    let (key_id, secret_key, token) = (
        c.access_key_id.trim(),
        c.secret_access_key.trim(),
        c.session_token.trim(),
    );
    if key_id.is_empty() || secret_key.is_empty() {
        return Err("the credentials are empty".into());
    }
    // They go into request headers: anything else would make signing fail later.
    if ![key_id, token]
        .iter()
        .all(|v| v.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err("the access key or session token is not printable ASCII".into());
    }
    Ok(TemporaryCredentials {
        credential: AwsCredential {
            key_id: key_id.to_string(),
            secret_key: secret_key.to_string(),
            token: Some(token.to_string()).filter(|t| !t.is_empty()),
        },
        expiration: c.expiration,
    })
}

/// `<ErrorResponse><Error>…` as AWS sends it, or `<ErrorResponse><Errors><Error>…` as moto does.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    error: Option<ErrorBody>,
    errors: Option<Errors>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Errors {
    error: ErrorBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// `(code, message)` of an error answer; a body that is not STS's XML (a proxy's page) becomes
/// the message, shortened.
pub fn parse_error(body: &str) -> (String, String) {
    let parsed = quick_xml::de::from_str::<ErrorResponse>(body)
        .ok()
        .and_then(|r| r.error.or(r.errors.map(|e| e.error)));
    match parsed {
        Some(e) if !e.code.is_empty() => (e.code, e.message),
        _ => {
            let text = body.trim();
            let end = text
                .char_indices()
                .nth(BODY_EXCERPT)
                .map_or(text.len(), |(i, _)| i);
            (String::new(), text[..end].to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer of the real STS (from the AssumeRole API reference), with its namespace.
    const AWS_RESPONSE: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
  <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>
       AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQW
      </SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;

    /// moto's answer (fractional seconds in the expiry).
    const MOTO_RESPONSE: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIARZPUZDIKEHDN2QKT</AccessKeyId><SecretAccessKey>NvmD4vxT5LPgqQ9czILeFLGQMnjuc5ErZPU+yMgj</SecretAccessKey><SessionToken>FQoGZXIvYXdzEBYaDBUa8P4j</SessionToken><Expiration>2026-11-25T02:33:12.621516Z</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA3X42LBCD4OXVJ6UOP:egress</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/rec/egress</Arn></AssumedRoleUser><PackedPolicySize>6</PackedPolicySize></AssumeRoleResult><ResponseMetadata><RequestId>O9TB9F8V</RequestId></ResponseMetadata></AssumeRoleResponse>"#;

    #[test]
    fn parses_the_aws_response() {
        let t = parse_credentials(AWS_RESPONSE).unwrap();
        assert_eq!(t.credential.key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            t.credential.secret_key,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            t.credential.token.as_deref(),
            Some("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQW")
        );
        assert_eq!(t.expiration.to_rfc3339(), "2019-11-09T13:34:41+00:00");
    }

    #[test]
    fn parses_the_moto_response() {
        let t = parse_credentials(MOTO_RESPONSE).unwrap();
        assert_eq!(t.credential.key_id, "ASIARZPUZDIKEHDN2QKT");
        assert_eq!(
            t.credential.token.as_deref(),
            Some("FQoGZXIvYXdzEBYaDBUa8P4j")
        );
        assert_eq!(t.expiration.timestamp(), 1795573992);
    }

    #[test]
    fn rejects_other_answers() {
        for body in [
            "",
            "<html>proxy</html>",
            "<AssumeRoleResponse><AssumeRoleResult/></AssumeRoleResponse>",
            &AWS_RESPONSE.replace("2019-11-09T13:34:41Z", "tomorrow"),
            &AWS_RESPONSE.replace("ASIAIOSFODNN7EXAMPLE", ""),
            &AWS_RESPONSE.replace("ASIAIOSFODNN7EXAMPLE", "ASIA\u{e9}"),
        ] {
            assert!(parse_credentials(body).is_err(), "{body}");
        }
    }

    #[test]
    fn parses_error_answers() {
        let aws = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code>
    <Message>User: arn:aws:iam::1:user/u is not authorized to perform: sts:AssumeRole</Message>
  </Error><RequestId>4b3c</RequestId></ErrorResponse>"#;
        let (code, message) = parse_error(aws);
        assert_eq!(code, "AccessDenied");
        assert!(
            message.starts_with("User: arn:aws:iam::1:user/u"),
            "{message}"
        );
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        assert_eq!(parse_error(moto).0, "InvalidClientTokenId");
        let (code, message) = parse_error(&format!("  <html>{}</html>", "x".repeat(1000)));
        assert_eq!(code, "");
        assert_eq!(message.chars().count(), BODY_EXCERPT);
    }

    fn refused(status: u16, code: &str) -> StsError {
        StsError::Refused {
            endpoint: "https://sts.amazonaws.com".into(),
            status: StatusCode::from_u16(status).unwrap(),
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn errors_are_classified_for_the_host() {
        use egress_objstore_sink::error::{Class, classify};
        let class = |e: StsError| classify(&e.into());
        assert_eq!(class(refused(403, "AccessDenied")), Class::Auth);
        assert_eq!(class(refused(403, "InvalidClientTokenId")), Class::Auth);
        assert_eq!(class(refused(400, "ExpiredToken")), Class::Auth);
        assert_eq!(class(refused(503, "ServiceUnavailable")), Class::Retryable);
        assert_eq!(class(refused(500, "")), Class::Retryable);
        assert_eq!(class(refused(400, "ValidationError")), Class::Permanent);
        assert_eq!(
            class(StsError::Response {
                endpoint: "e".into(),
                reason: "r".into()
            }),
            Class::Permanent
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let transport = StsError::Transport {
            endpoint: "e".into(),
            source: HttpError::new(
                egress_objstore_sink::object_store::client::HttpErrorKind::Connect,
                io,
            ),
        };
        assert!(transport.is_transient());
        assert_eq!(class(transport), Class::Retryable);
        assert!(refused(429, "Throttling").is_transient());
        assert!(!refused(403, "AccessDenied").is_transient());
    }

    #[test]
    fn the_request_is_the_query_api_form() {
        let request = AssumeRole {
            endpoint: "http://127.0.0.1:5000".into(),
            region: "us-east-1".into(),
            role_arn: "arn:aws:iam::123456789012:role/rec".into(),
            external_id: Some("ext id".into()),
            session_name: "egress".into(),
            duration: DURATION,
        };
        let r = build_request(&request).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri().to_string(), "http://127.0.0.1:5000/");
        let body = String::from_utf8(r.body().as_bytes().unwrap().to_vec()).unwrap();
        assert_eq!(
            body,
            "Action=AssumeRole&Version=2011-06-15\
             &RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Frec\
             &RoleSessionName=egress&DurationSeconds=3600&ExternalId=ext+id"
        );
    }

    #[test]
    fn backoff_grows_to_the_max() {
        let retry = RetryConfig {
            backoff: egress_objstore_sink::object_store::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
            },
            max_retries: 5,
            retry_timeout: Duration::from_secs(10),
        };
        let delays: Vec<u128> = (0..5).map(|n| backoff(&retry, n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }
}
