//! Mercure 1.0 at the HTTP edge, beside 0.x on the same endpoints, decided per request.
//!
//! A subscribe request is 1.0 when one of its parameter names begins with `match` (ASCII case
//! insensitive); a token is 1.0 when its header says `typ: at+jwt`. This module owns what only
//! 1.0 has: the hub's URL (the base of relative topics and patterns, and the resource
//! identifier tokens are issued for), the strict parsing of 1.0 subscribe parameters, the
//! translation of 1.0 grants into the selector sets [`crate::visibility`] works with, the
//! RFC 6750 answers, and the RFC 9728 protected resource metadata. It keeps no state.

use std::borrow::Cow;

use http::{HeaderMap, Response, Uri, header};
use percent_encoding::percent_decode;
use serde_json::json;
use url::Url;

use super::AppState;
use super::body::ResponseBody;
use super::problem::{ApiError, BearerError};
use super::router::{MERCURE_PATH, ok};
use crate::auth::{
    AuthError, Claims, KeyRole, MatchType, TokenSource, TopicGrant, is_access_token,
};
use crate::topic::{Selector, SelectorSet};

/// The path prefix of RFC 9728 protected resource metadata.
pub(crate) const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";
/// The path of the hub's own metadata document.
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// The hub's URL for this request: `--resource-identifier` when set, otherwise derived from the
/// URL the client contacted (scheme from the listener, host from `:authority` or `Host`).
pub(crate) fn hub_url(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Url, ApiError> {
    if let Some(url) = &state.config.resource_identifier {
        return Ok(url.clone());
    }
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = uri
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| state.config.listen.to_string());
    if host.contains(['/', '?', '#', '@', '\\']) {
        return Err(ApiError::BadRequest(format!("invalid Host {host:?}")));
    }
    Url::parse(&format!("{scheme}://{host}{MERCURE_PATH}"))
        .map_err(|error| ApiError::BadRequest(format!("invalid Host {host:?}: {error}")))
}

/// The URL of the protected resource metadata of the hub at `hub`.
pub(crate) fn metadata_url(hub: &Url) -> String {
    format!(
        "{}{METADATA_PREFIX}{}",
        hub.origin().ascii_serialization(),
        hub.path()
    )
}

/// An RFC 6750 refusal for the hub at `hub`.
pub(crate) fn bearer(hub: &Url, error: BearerError, detail: impl Into<String>) -> ApiError {
    ApiError::Bearer {
        error,
        detail: detail.into(),
        metadata: metadata_url(hub),
    }
}

/// The RFC 6750 answer for a refused token.
pub(crate) fn token_error(hub: &Url, error: AuthError) -> ApiError {
    match error {
        AuthError::Missing => bearer(
            hub,
            BearerError::TokenRequired,
            "an access token is required",
        ),
        other => bearer(
            hub,
            BearerError::InvalidToken,
            format!("the access token is invalid: {other}"),
        ),
    }
}

/// Verifies a token of either protocol for `role`: an access token against the hub's
/// resource identifier, a 0.x token as before.
pub(crate) fn verify(
    state: &AppState,
    role: KeyRole,
    token: &str,
    hub: &Url,
) -> Result<Claims, AuthError> {
    if is_access_token(token) {
        return state.auth.verify_access_token(role, token, hub.as_str());
    }
    match role {
        KeyRole::Publisher => state.auth.verify_publisher(token),
        KeyRole::Subscriber | KeyRole::Issuer => state.auth.verify_subscriber(token),
    }
}

/// Refuses an access token presented in the query string (1.0 has no query-parameter token).
pub(crate) fn check_presentation(
    hub: &Url,
    token: &str,
    source: TokenSource,
) -> Result<(), ApiError> {
    if source == TokenSource::Query && is_access_token(token) {
        return Err(bearer(
            hub,
            BearerError::InvalidRequest,
            "an access token is sent in the Authorization header or the cookie, never in the query",
        ));
    }
    Ok(())
}

/// Compiles granted topics into selectors; a pattern that does not compile invalidates the
/// token.
pub(crate) fn grant_selectors(grants: &[TopicGrant], hub: &Url) -> Result<SelectorSet, AuthError> {
    let mut selectors = Vec::with_capacity(grants.len());
    for grant in grants {
        selectors.push(match grant.match_type {
            MatchType::Exact => Selector::exact(&grant.pattern),
            MatchType::UrlPattern => Selector::url_pattern(&grant.pattern, hub)
                .map_err(|error| AuthError::Invalid(error.to_string()))?,
        });
    }
    Ok(SelectorSet::from_selectors(selectors))
}

/// The topics whose private updates `claims` may read (`None`: public updates only), for a
/// token of either protocol.
pub(crate) fn private_access(claims: &Claims, hub: &Url) -> Result<Option<SelectorSet>, AuthError> {
    match &claims.grants {
        Some(grants) => {
            let set = grant_selectors(&grants.subscribe, hub)?;
            Ok((!set.is_empty()).then_some(set))
        }
        None => Ok(claims.subscribe.as_ref().map(SelectorSet::parse)),
    }
}

/// A 1.0 token's `subscribe` entries, compiled: each entry's topics and its `payload`.
#[derive(Debug, Default)]
pub(crate) struct PayloadGrants(Vec<(SelectorSet, Option<serde_json::Value>)>);

impl PayloadGrants {
    /// Compiles the `subscribe` entries of `grants` (a pattern that does not compile
    /// invalidates the token, as for [`private_access`]).
    pub(crate) fn compile(
        grants: &crate::auth::Grants,
        hub: &Url,
    ) -> Result<PayloadGrants, AuthError> {
        grants
            .subscribe_entries
            .iter()
            .map(|entry| Ok((grant_selectors(&entry.topics, hub)?, entry.payload.clone())))
            .collect::<Result<_, AuthError>>()
            .map(PayloadGrants)
    }

    /// The payload of a subscription whose matcher string is `matcher`: that of the first
    /// entry whose topics match it, treated as a topic (none when that entry has none).
    pub(crate) fn for_matcher(&self, matcher: &str) -> Option<&serde_json::Value> {
        self.0
            .iter()
            .find(|(topics, _)| topics.matches(matcher))
            .and_then(|(_, payload)| payload.as_ref())
    }
}

/// The topics `claims` may publish to, for a token of either protocol.
pub(crate) fn publish_access(claims: &Claims, hub: &Url) -> Result<SelectorSet, AuthError> {
    match &claims.grants {
        Some(grants) => grant_selectors(&grants.publish, hub),
        None => Ok(claims
            .publish
            .as_ref()
            .map(SelectorSet::parse)
            .unwrap_or_default()),
    }
}

/// A parsed Mercure 1.0 subscribe request.
#[derive(Debug)]
pub(crate) struct SubscribeParams {
    pub selectors: SelectorSet,
    /// The matcher values as written (for the limits).
    pub sources: Vec<String>,
    /// `last_event_id` (the query's wins over the body's).
    pub last_event_id: Option<String>,
}

/// True when a parameter name is in the `match` namespace.
fn in_match_namespace(name: &[u8]) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"match")
}

/// Whether the request speaks Mercure 1.0: a parameter name in the query (or the `QUERY`
/// body) begins with `match`.
pub(crate) fn is_v1(query: Option<&str>, body: Option<&[u8]>) -> bool {
    let names = |raw: &[u8]| -> bool {
        raw.split(|b| *b == b'&').any(|pair| {
            let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            in_match_namespace(&decode_lossy(name))
        })
    };
    query.is_some_and(|q| names(q.as_bytes())) || body.is_some_and(names)
}

fn decode_lossy(raw: &[u8]) -> Vec<u8> {
    let spaced: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    percent_decode(&spaced).collect()
}

/// Strict `application/x-www-form-urlencoded` pairs: every name and value must be UTF-8 and
/// free of control and format characters.
fn strict_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for pair in raw.split(|b| *b == b'&').filter(|pair| !pair.is_empty()) {
        let mut parts = pair.splitn(2, |b| *b == b'=');
        let name = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        let text = |raw: &[u8]| -> Result<String, ApiError> {
            let decoded = String::from_utf8(decode_lossy(raw))
                .map_err(|_| ApiError::BadRequest("a query parameter is not valid UTF-8".into()))?;
            if let Some(bad) = decoded.chars().find(|c| is_control_or_format(*c)) {
                return Err(ApiError::BadRequest(format!(
                    "a query parameter contains the control or format character U+{:04X}",
                    bad as u32
                )));
            }
            Ok(decoded)
        };
        pairs.push((text(name)?, text(value)?));
    }
    Ok(pairs)
}

/// C0 and C1 controls, DEL, and the Unicode `Cf` (format) characters.
pub(crate) fn is_control_or_format(c: char) -> bool {
    let n = c as u32;
    if n < 0x20 || (0x7f..=0x9f).contains(&n) {
        return true;
    }
    const FORMAT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    FORMAT.iter().any(|(low, high)| (*low..=*high).contains(&n))
}

/// Parses a Mercure 1.0 subscribe request: `match` / `match_exact` (byte for byte),
/// `match_urlpattern` (resolved against `hub`), `last_event_id`. Query and `QUERY` body are
/// unioned.
pub(crate) fn parse_subscribe(
    query: Option<&str>,
    body: Option<&[u8]>,
    hub: &Url,
) -> Result<SubscribeParams, ApiError> {
    let from_query = strict_pairs(query.unwrap_or_default().as_bytes())?;
    let from_body = strict_pairs(body.unwrap_or_default())?;
    let mut selectors = Vec::new();
    let mut sources = Vec::new();
    let mut last_event_id = None;
    let mut body_last_event_id = None;
    for (index, (name, value)) in from_query.iter().chain(from_body.iter()).enumerate() {
        let in_body = index >= from_query.len();
        match name.as_str() {
            "match" | "match_exact" => {
                selectors.push(Selector::exact(value));
                sources.push(value.clone());
            }
            "match_urlpattern" => {
                let selector = Selector::url_pattern(value, hub)
                    .map_err(|error| ApiError::BadRequest(error.to_string()))?;
                selectors.push(selector);
                sources.push(value.clone());
            }
            "topic" => {
                return Err(ApiError::BadRequest(
                    "`topic` (Mercure 0.x) and `match` (Mercure 1.0) cannot be mixed in one \
                     request: use one protocol"
                        .into(),
                ));
            }
            "last_event_id" => {
                let slot = if in_body {
                    &mut body_last_event_id
                } else {
                    &mut last_event_id
                };
                if slot.is_none() {
                    *slot = Some(value.clone());
                }
            }
            other if in_match_namespace(other.as_bytes()) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?}: use match, match_exact or match_urlpattern \
                     (names are case-sensitive)"
                )));
            }
            _ => {}
        }
    }
    if selectors.is_empty() {
        return Err(ApiError::BadRequest(
            "at least one `match` parameter is required".into(),
        ));
    }
    Ok(SubscribeParams {
        selectors: SelectorSet::from_selectors(selectors),
        sources,
        last_event_id: last_event_id
            .or(body_last_event_id)
            .filter(|id| !id.is_empty()),
    })
}

/// The refusals Mercure 1.0 adds to publishing (applied to publishers with an access token, so
/// 0.x publishers keep what they had): topic `*`, a topic in the hub's namespace, an id that
/// starts with `#`, is `earliest` or holds control or format characters, and a type that is
/// `mercure` or holds them.
pub(crate) fn check_publish(draft: &crate::update::Draft, hub: &Url) -> Result<(), ApiError> {
    for topic in &draft.topics {
        if topic == "*" {
            return Err(ApiError::BadRequest("`*` cannot be published to".into()));
        }
        if in_hub_namespace(topic, hub) {
            return Err(ApiError::BadRequest(format!(
                "topic {topic:?} is in the hub's reserved namespace {}",
                hub.path()
            )));
        }
    }
    if let Some(id) = &draft.id {
        if id.starts_with('#') || id == super::subscribe::EARLIEST {
            return Err(ApiError::BadRequest(format!(
                "the id {id:?} is reserved (`earliest`, or starting with `#`)"
            )));
        }
        if id.chars().any(is_control_or_format) {
            return Err(ApiError::BadRequest(
                "the id contains control or format characters".into(),
            ));
        }
    }
    if let Some(kind) = &draft.event_type {
        if kind == "mercure" {
            return Err(ApiError::BadRequest(
                "the type `mercure` is reserved for the hub's own events".into(),
            ));
        }
        if kind.chars().any(is_control_or_format) {
            return Err(ApiError::BadRequest(
                "the type contains control or format characters".into(),
            ));
        }
    }
    Ok(())
}

/// Is `topic`, resolved against the hub's URL with dot-segments removed and percent-encoded
/// unreserved characters decoded, in the hub's path namespace (whatever its scheme or host)?
pub(crate) fn in_hub_namespace(topic: &str, hub: &Url) -> bool {
    let Ok(url) = hub.join(topic) else {
        return false;
    };
    let path = decode_unreserved(url.path());
    let base = hub.path().trim_end_matches('/');
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Decodes `%XX` sequences that stand for unreserved characters (RFC 3986 §2.3).
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && path.is_char_boundary(i + 3)
            && let Ok(code) = u8::from_str_radix(&path[i + 1..i + 3], 16)
            && (code.is_ascii_alphanumeric() || b"-._~".contains(&code))
        {
            out.push(char::from(code));
            i += 3;
            continue;
        }
        let len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + len]);
        i += len;
    }
    out
}

/// `GET /.well-known/oauth-protected-resource/.well-known/mercure`: RFC 9728 metadata.
pub(crate) fn metadata(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response<ResponseBody>, ApiError> {
    let hub = hub_url(state, headers, uri)?;
    let mut document = json!({
        "resource": hub.as_str(),
        "authorization_details_types_supported": [crate::auth::access_token::DETAIL_TYPE],
        "bearer_methods_supported": ["header"],
        "mercure_cookie": state.config.cookie_name,
        "mercure_matcher_types_supported": ["exact", "urlpattern"],
    });
    let mut issuers = state.config.jwt_issuers.clone();
    for bound in &state.config.issuer_keys {
        if !issuers.contains(&bound.issuer) {
            issuers.push(bound.issuer.clone());
        }
    }
    if !issuers.is_empty()
        && let Some(map) = document.as_object_mut()
    {
        map.insert("authorization_servers".into(), json!(issuers));
    }
    if state.config.subscriptions
        && let Some(map) = document.as_object_mut()
    {
        map.insert("mercure_subscriptions".into(), json!(true));
    }
    Ok(ok("application/json", document.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Url {
        Url::parse("https://hub.example/.well-known/mercure").unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn version_detection_and_namespace() {
        assert!(is_v1(Some("match=a"), None));
        assert!(is_v1(Some("x=1&MATCH_foo=a"), None));
        assert!(is_v1(Some("%6datch=a"), None));
        assert!(is_v1(None, Some(b"match_urlpattern=/a")));
        assert!(!is_v1(Some("topic=a&lastEventID=x"), None));
    }

    #[test]
    fn parameters_are_strict() {
        let ok = parse_subscribe(
            Some("match=a&match_exact=b&match_urlpattern=%2Fbooks%2F%3Aid&last_event_id=q"),
            Some(b"match=c&last_event_id=b"),
            &hub(),
        );
        let Ok(ok) = ok else { panic!("valid") };
        assert_eq!(ok.selectors.len(), 4);
        assert_eq!(ok.last_event_id.as_deref(), Some("q"));
        assert!(ok.selectors.matches("/books/1"));
        assert!(ok.selectors.matches("a") && !ok.selectors.matches("A"));
        for bad in [
            "Match=a",
            "match_regex=a",
            "matchExact=a",
            "match=a&topic=b",
            "match=%FF",
            "match=a%00b",
            "match=a%E2%80%8Bb",
            "match=a%C2%85",
            "match_urlpattern=%2F(",
            "last_event_id=x",
        ] {
            assert!(parse_subscribe(Some(bad), None, &hub()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hub_namespace_is_found_after_normalization() {
        for inside in [
            "/.well-known/mercure",
            "/.well-known/mercure/subscriptions/x",
            "https://other.example/.well-known/mercure/x",
            "/a/../.well-known/mercure/x",
            "/.well-known/%6Dercure",
            "http://hub.example/.well-known/./mercure",
        ] {
            assert!(in_hub_namespace(inside, &hub()), "{inside}");
        }
        for outside in [
            "/.well-known/mercurex",
            "/books/1",
            "urn:x:.well-known/mercure",
        ] {
            assert!(!in_hub_namespace(outside, &hub()), "{outside}");
        }
    }

    #[test]
    fn metadata_url_is_derived_from_the_hub_url() {
        assert_eq!(
            metadata_url(&hub()),
            "https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure"
        );
    }
}
