//! Every error our own API returns, and the ONE place that maps error kinds to status codes.
//!
//! Responses are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`.
//! Refusals an operator should see (401, 403, 429, 503) are logged at `info` with their reason,
//! at most [`REFUSAL_LOG_PER_SECOND`] lines a second (the rest are counted and summed up).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use parking_lot::Mutex;
use serde::Serialize;

use super::body::ResponseBody;
use super::limits::LimitError;
use crate::auth::AuthError;
use crate::store::StoreError;
use crate::update::InvalidUpdate;

/// A failed request, by kind.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("use {allowed} on this path")]
    MethodNotAllowed { allowed: &'static str },
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    /// Over one of the configured limits (`http::limits`).
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A Mercure 1.0 request refused with an RFC 6750 `WWW-Authenticate: Bearer` challenge;
    /// `metadata` is the URL of the protected resource metadata (RFC 9728).
    #[error("{detail}")]
    Bearer {
        error: BearerError,
        detail: String,
        metadata: String,
    },
}

/// The RFC 6750 error codes, and the bare challenge when no token was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No token where one is needed: 401 with a bare challenge.
    TokenRequired,
    /// `invalid_token`: 401.
    InvalidToken,
    /// `insufficient_scope`: 403.
    InsufficientScope,
    /// `invalid_request`: 400.
    InvalidRequest,
}

impl BearerError {
    fn code(self) -> Option<&'static str> {
        match self {
            BearerError::TokenRequired => None,
            BearerError::InvalidToken => Some("invalid_token"),
            BearerError::InsufficientScope => Some("insufficient_scope"),
            BearerError::InvalidRequest => Some("invalid_request"),
        }
    }
}

impl ApiError {
    /// The status code of each kind.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Limit(limit) => match limit {
                // The hub as a whole is full: a server condition, retry later.
                LimitError::Connections { .. } => StatusCode::SERVICE_UNAVAILABLE,
                // This client asks too much: retry later.
                LimitError::ConnectionsPerIp { .. } | LimitError::PublishRate { .. } => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                // The request itself is out of bounds: retrying it as is cannot help.
                LimitError::TopicsPerSubscription { .. }
                | LimitError::TopicLength { .. }
                | LimitError::FieldLength { .. } => StatusCode::BAD_REQUEST,
                LimitError::TemplateComplexity { .. } => StatusCode::BAD_REQUEST,
            },
            ApiError::Bearer { error, .. } => match error {
                BearerError::TokenRequired | BearerError::InvalidToken => StatusCode::UNAUTHORIZED,
                BearerError::InsufficientScope => StatusCode::FORBIDDEN,
                BearerError::InvalidRequest => StatusCode::BAD_REQUEST,
            },
        }
    }

    /// The problem+json response.
    pub fn into_response(self) -> Response<ResponseBody> {
        #[derive(Serialize)]
        struct Problem<'a> {
            r#type: &'a str,
            title: &'a str,
            status: u16,
            detail: String,
        }
        let status = self.status();
        log_refusal(status, &self);
        let problem = Problem {
            r#type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"herald\""),
                );
            }
            ApiError::MethodNotAllowed { allowed } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Limit(limit) => {
                if let Some(seconds) = limit.retry_after() {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            ApiError::Bearer {
                error, metadata, ..
            } => {
                let quoted = metadata.replace(['"', '\\'], "");
                let challenge = match error.code() {
                    None => format!("Bearer resource_metadata=\"{quoted}\""),
                    Some(code) => {
                        format!("Bearer error=\"{code}\", resource_metadata=\"{quoted}\"")
                    }
                };
                let value = HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
            _ => {}
        }
        response
    }
}

/// Most refusal log lines written in one second; the others are counted, and the count is
/// logged with the first refusal of a later second.
pub(crate) const REFUSAL_LOG_PER_SECOND: u32 = 10;

/// The current one-second window of refusal logging.
struct RefusalWindow {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

static REFUSALS: Mutex<RefusalWindow> = Mutex::new(RefusalWindow {
    start: None,
    logged: 0,
    suppressed: 0,
});

/// One `info` line per refused request (401, 403, 429, 503), rate-limited; other errors at
/// `debug`.
fn log_refusal(status: StatusCode, error: &ApiError) {
    let refusal = matches!(status.as_u16(), 401 | 403 | 429 | 503);
    if !refusal {
        tracing::debug!(status = status.as_u16(), reason = ?error.to_string(), "request failed");
        return;
    }
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let earlier = {
        let mut window = REFUSALS.lock();
        let now = Instant::now();
        let mut earlier = 0;
        if window
            .start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            earlier = std::mem::take(&mut window.suppressed);
            window.start = Some(now);
            window.logged = 0;
        }
        if window.logged >= REFUSAL_LOG_PER_SECOND {
            window.suppressed += 1;
            return;
        }
        window.logged += 1;
        earlier
    };
    if earlier > 0 {
        tracing::info!(
            not_logged = earlier,
            "{earlier} more refused requests were not logged (at most {REFUSAL_LOG_PER_SECOND} a second)"
        );
    }
    tracing::info!(status = status.as_u16(), reason = ?error.to_string(), "request refused");
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => ApiError::Unauthorized("a JWT is required".into()),
            AuthError::Expired => ApiError::Unauthorized("the JWT has expired".into()),
            AuthError::Invalid(reason) => ApiError::Unauthorized(format!("invalid JWT: {reason}")),
            AuthError::NoKey => {
                ApiError::Unauthorized("no key is configured to verify this JWT".into())
            }
        }
    }
}

impl From<InvalidUpdate> for ApiError {
    fn from(error: InvalidUpdate) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Unavailable(format!("history is unavailable: {error}"))
    }
}
