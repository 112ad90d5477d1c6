//! `POST /.well-known/mercure` (form) and `POST /publish` (form or JSON): publish one update;
//! and the publish pipeline (`run`) that every publishing endpoint goes through, the chat's
//! `POST /chat/send` included.
//!
//! Token first (401/403 before any body is read), then the publish rate, then the size-limited
//! body, then validation, then the writer: the publisher is answered with the id only once the
//! update is committed and fanned out.

use bytes::Bytes;
use std::sync::Arc;

use http::{HeaderMap, Request, Response, Uri, header, request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use url::Url;

use super::AppState;
use super::body::{RequestBody, ResponseBody};
use super::limits;
use super::mercure1;
use super::problem::{ApiError, BearerError};
use super::router::ok;
use crate::auth::{AuthError, Claims, KeyRole, TokenSource, extract_token_with, is_access_token};
use crate::serde_util::OneOrMany;
use crate::topic::SelectorSet;
use crate::update::{Draft, Update};

/// Publishes one update.
pub(crate) async fn publish(
    state: &AppState,
    request: Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    let stored = run(
        state,
        request,
        state.config.max_body,
        publisher,
        decode_publish,
    )
    .await?;
    Ok(ok("text/plain; charset=utf-8", stored.id.clone()))
}

/// Who publishes, as the pipeline sees it once the token is verified.
pub(super) struct Publisher {
    /// The bucket of the publish rate limit this publisher draws from ([`rate_key`]).
    pub rate_key: String,
    /// What the publisher may publish: `mercure.publish` (or a 1.0 token's grants); shared with
    /// the cache of verified tokens when it came from there.
    pub claims: Arc<Claims>,
    /// With a Mercure 1.0 access token, the hub's URL its grants resolve against (refusals are
    /// then RFC 6750).
    pub v1: Option<Url>,
}

/// The bucket of the publish rate limit for a verified token: its subject, or the token itself.
pub(super) fn rate_key(claims: &Claims, token: &str) -> String {
    match &claims.subject {
        Some(subject) => format!("sub:{subject}"),
        None => format!("token:{token}"),
    }
}

/// The publish pipeline, shared by every endpoint that publishes (`POST /.well-known/mercure`,
/// `POST /publish`, `POST /chat/send`), so each limit and check is applied in one place and in
/// one order: 503 while the hub closes; the publisher (`authenticate`: 401/403 before any body
/// is read); the publish rate (a limited publisher costs no body read); the body, at most
/// `max_body` bytes; `decode` (by media type, without parameters); then the update's topics,
/// lengths and the publisher's grants; then the writer. Returns the update once it is committed
/// and fanned out.
pub(super) async fn run(
    state: &AppState,
    request: Request<RequestBody>,
    max_body: usize,
    authenticate: impl FnOnce(&AppState, &request::Parts) -> Result<Publisher, ApiError>,
    decode: impl FnOnce(Option<&str>, &[u8]) -> Result<Draft, ApiError>,
) -> Result<Arc<Update>, ApiError> {
    if state.hub.is_closing() {
        return Err(ApiError::Unavailable("the hub is shutting down".into()));
    }
    let (parts, body) = request.into_parts();
    let publisher = authenticate(state, &parts)?;
    state.limits.check_publish(&publisher.rate_key)?;
    let bytes = read_body(body, &parts.headers, max_body).await?;
    let draft = decode(media_type(&parts.headers).as_deref(), &bytes)?;
    check_draft(state, &publisher, &draft)?;
    let update = Update::from_draft(draft)?;
    Ok(state.writer.submit(update).await?)
}

/// A decoded update: at least one topic, within the length limits, and every topic covered by
/// the publisher's grants.
fn check_draft(state: &AppState, publisher: &Publisher, draft: &Draft) -> Result<(), ApiError> {
    let allowed = match &publisher.v1 {
        Some(hub) => mercure1::publish_access(&publisher.claims, hub)
            .map_err(|error| mercure1::token_error(hub, error))?,
        None => publisher
            .claims
            .publish
            .as_ref()
            .map(SelectorSet::parse)
            .unwrap_or_default(),
    };
    if draft.topics.is_empty() {
        return Err(ApiError::BadRequest(
            "at least one `topic` is required".into(),
        ));
    }
    state.limits.check_topic_lengths(&draft.topics)?;
    state.limits.check_event_fields(draft)?;
    if let Some(hub) = &publisher.v1 {
        mercure1::check_publish(draft, hub)?;
        if !allowed.matches_all(&draft.topics) {
            return Err(mercure1::bearer(
                hub,
                BearerError::InsufficientScope,
                "the access token does not grant `publish` on every topic of this update",
            ));
        }
    }
    if !allowed.matches_all(&draft.topics) {
        return Err(ApiError::Forbidden(
            "the token's mercure.publish claim does not cover every topic of this update".into(),
        ));
    }
    Ok(())
}

/// The publisher of `POST /.well-known/mercure` and `POST /publish`.
fn publisher(state: &AppState, parts: &request::Parts) -> Result<Publisher, ApiError> {
    let (claims, token, v1) = publisher_claims(state, &parts.headers, &parts.uri)?;
    Ok(Publisher {
        // Without a publish rate limit nothing reads the bucket's name.
        rate_key: if state.limits.publish_rate.is_some() {
            rate_key(&claims, &token)
        } else {
            String::new()
        },
        claims,
        v1,
    })
}

/// Verifies the publisher's token. A token from the cookie also needs an allowed `Origin` or
/// `Referer`, so a browser cannot be tricked into publishing (CSRF). With a Mercure 1.0 access
/// token, also returns the hub's URL (its grants resolve against it; refusals are RFC 6750).
fn publisher_claims(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(Arc<Claims>, String, Option<Url>), ApiError> {
    let Some((token, source)) = extract_token_with(headers, uri.query(), &state.config.cookie_name)
    else {
        let hub = mercure1::hub_url(state, headers, uri)?;
        return Err(mercure1::token_error(&hub, AuthError::Missing));
    };
    if source == TokenSource::Cookie {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(header::REFERER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(origin_of)
            });
        match origin {
            Some(origin) if state.config.publish_origins.allows(&origin) => {}
            Some(origin) => {
                return Err(ApiError::Forbidden(format!(
                    "publishing with the cookie is not allowed from origin {origin}"
                )));
            }
            None => {
                return Err(ApiError::Forbidden(
                    "publishing with the cookie needs an Origin or Referer header".into(),
                ));
            }
        }
    }
    // A token verified before as a 0.x publisher token: no header to decode again.
    if let Some(known) = state.auth.known_publisher(&token) {
        return Ok((known?, token, None));
    }
    if is_access_token(&token) {
        let hub = mercure1::hub_url(state, headers, uri)?;
        mercure1::check_presentation(&hub, &token, source)?;
        let claims = mercure1::verify(state, KeyRole::Publisher, &token, &hub)
            .map_err(|error| mercure1::token_error(&hub, error))?;
        return Ok((Arc::new(claims), token, Some(hub)));
    }
    let claims = state.auth.verify_publisher(&token)?;
    Ok((Arc::new(claims), token, None))
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{authority}"))
}

pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

pub(super) async fn read_body(
    body: RequestBody,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        limits::count_rejection("body");
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = match body {
        RequestBody::Hyper(body) => body,
        RequestBody::Read(bytes) if bytes.len() <= limit => return Ok(bytes),
        RequestBody::Read(_) | RequestBody::Oversized => {
            limits::count_rejection("body");
            return Err(ApiError::PayloadTooLarge { limit });
        }
    };
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            limits::count_rejection("body");
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(error) => Err(ApiError::BadRequest(format!(
            "could not read the body: {error}"
        ))),
    }
}

/// Decodes a publish body by its media type (`content_type` without parameters, lower case;
/// `None` means a form): the Mercure form, or JSON. Pure, for the fuzzer and for tests.
pub fn decode_publish(content_type: Option<&str>, body: &[u8]) -> Result<Draft, ApiError> {
    match body_format(content_type)? {
        BodyFormat::Json => parse_json(body),
        BodyFormat::Form => parse_form(body),
    }
}

/// The formats a publishing endpoint reads.
pub(super) enum BodyFormat {
    /// `application/x-www-form-urlencoded`, also assumed without a `Content-Type`.
    Form,
    /// `application/json`.
    Json,
}

/// The format of a publish body by its media type (without parameters, lower case; `None`
/// means a form): 415 for any other.
pub(super) fn body_format(content_type: Option<&str>) -> Result<BodyFormat, ApiError> {
    match content_type {
        Some("application/json") => Ok(BodyFormat::Json),
        None | Some("application/x-www-form-urlencoded") => Ok(BodyFormat::Form),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "send application/x-www-form-urlencoded or application/json, not {other}"
        ))),
    }
}

/// The Mercure form: `topic` (repeatable), `data`, `id`, `type`, `retry`, `private` (present
/// means private, whatever its value).
///
/// One pass over the body, keeping only these fields (each the first of its name, `topic`
/// every one), and copying a value only when it is kept.
fn parse_form(body: &[u8]) -> Result<Draft, ApiError> {
    let mut draft = Draft::default();
    let mut data = None;
    let mut retry = None;
    for (name, value) in form_urlencoded::parse(body) {
        match &*name {
            "topic" => draft.topics.push(value.into_owned()),
            "data" if data.is_none() => data = Some(value.into_owned()),
            "id" if draft.id.is_none() => draft.id = Some(value.into_owned()),
            "type" if draft.event_type.is_none() => draft.event_type = Some(value.into_owned()),
            "retry" if retry.is_none() => retry = Some(value),
            "private" => draft.private = true,
            _ => {}
        }
    }
    draft.data = data.unwrap_or_default();
    draft.retry = retry.as_deref().map(parse_retry).transpose()?;
    Ok(draft)
}

fn parse_retry(text: &str) -> Result<u64, ApiError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "retry must be a whole number of milliseconds, not {text:?}"
        )));
    }
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("retry {text} is too large")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonUpdate {
    #[serde(alias = "topics")]
    topic: OneOrMany,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    retry: Option<serde_json::Value>,
    #[serde(default)]
    private: Option<bool>,
}

/// `{"topic": "t" | [..], "data": string | any JSON, "id", "type", "retry", "private"}`.
fn parse_json(body: &[u8]) -> Result<Draft, ApiError> {
    let update: JsonUpdate = serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("invalid JSON update: {error}")))?;
    let data = match update.data {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(text)) => text,
        Some(other) => other.to_string(),
    };
    let retry = match update.retry {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(number)) => Some(number.as_u64().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "retry must be a whole number of milliseconds, not {number}"
            ))
        })?),
        Some(serde_json::Value::String(text)) => Some(parse_retry(&text)?),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "retry must be a whole number of milliseconds, not {other}"
            )));
        }
    };
    Ok(Draft {
        topics: update.topic.into(),
        data,
        id: update.id,
        event_type: update.event_type,
        retry,
        private: update.private.unwrap_or(false),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode() {
        let draft = parse_form(b"topic=a&topic=b&data=x%0Ay&id=1&type=t&retry=5&private=").unwrap();
        assert_eq!(draft.topics, ["a", "b"]);
        assert_eq!(draft.data, "x\ny");
        assert_eq!(draft.retry, Some(5));
        assert!(draft.private);
        // The first of each field wins, `topic` is every one, `private` needs no value.
        let draft =
            parse_form(b"data=1&topic=a&id=x&data=2&id=y&type=&retry=7&retry=z&private").unwrap();
        assert_eq!(draft.topics, ["a"]);
        assert_eq!(draft.data, "1");
        assert_eq!(draft.id.as_deref(), Some("x"));
        assert_eq!(draft.event_type.as_deref(), Some(""));
        assert_eq!(draft.retry, Some(7));
        assert!(draft.private);
        let draft = parse_form(b"topic=a+b%2Fc").unwrap();
        assert_eq!(draft.topics, ["a b/c"]);
        assert_eq!(draft.data, "");
        assert_eq!((draft.id, draft.retry, draft.private), (None, None, false));
        assert!(parse_form(b"topic=a&retry=soon").is_err());
        assert!(parse_form(b"topic=a&retry=-1").is_err());
    }

    #[test]
    fn json_data_may_be_any_value() {
        let draft = parse_json(br#"{"topic":"a","data":{"n":1},"private":true}"#).unwrap();
        assert_eq!(draft.data, r#"{"n":1}"#);
        assert!(draft.private);
        let draft = parse_json(br#"{"topic":["a","b"],"data":"text","retry":"10"}"#).unwrap();
        assert_eq!(draft.topics, ["a", "b"]);
        assert_eq!(draft.retry, Some(10));
        assert!(parse_json(br#"{"topic":"a","retry":1.5}"#).is_err());
        assert!(parse_json(br#"{"topik":"a"}"#).is_err());
        assert!(parse_json(b"not json").is_err());
    }

    #[test]
    fn origin_of_referer() {
        assert_eq!(
            origin_of("https://a.example:8443/page?x=1").as_deref(),
            Some("https://a.example:8443")
        );
        assert_eq!(origin_of("nonsense"), None);
    }
}
