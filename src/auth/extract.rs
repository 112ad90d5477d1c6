//! Finding the token in a request: `Authorization` header, `authorization`
//! query parameter, `mercureAuthorization` cookie, in that order; then the Mercure 1.0 cookie
//! (`__Secure-mercure_access_token` unless configured otherwise).

use std::borrow::Cow;

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use percent_encoding::percent_decode_str;

/// Where the token came from (for the publish-origin check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Query,
    Cookie,
}

const QUERY_PARAM: &str = "authorization";
const COOKIE_NAME: &str = "mercureAuthorization";
/// The default name of the Mercure 1.0 access token cookie (`--cookie-name`).
pub(crate) const ACCESS_COOKIE: &str = "__Secure-mercure_access_token";

/// Extract a token, trying in order: `Authorization: Bearer <t>` (scheme
/// case-insensitive; any other scheme is ignored), the `authorization` query
/// parameter in the raw query string `query` (percent-decoded, bare token or
/// `Bearer <t>`), then the `mercureAuthorization` cookie from any `Cookie`
/// header (percent-decoded). Returns `None` if none of them holds a token.
pub fn extract_token(headers: &HeaderMap, query: Option<&str>) -> Option<(String, TokenSource)> {
    extract_token_with(headers, query, ACCESS_COOKIE)
}

/// As [`extract_token`], with the Mercure 1.0 cookie called `access_cookie`, tried last.
pub(crate) fn extract_token_with(
    headers: &HeaderMap,
    query: Option<&str>,
    access_cookie: &str,
) -> Option<(String, TokenSource)> {
    from_header(headers)
        .map(|t| (t, TokenSource::Header))
        .or_else(|| query.and_then(from_query).map(|t| (t, TokenSource::Query)))
        .or_else(|| from_cookies(headers, COOKIE_NAME).map(|t| (t, TokenSource::Cookie)))
        .or_else(|| from_cookies(headers, access_cookie).map(|t| (t, TokenSource::Cookie)))
}

fn from_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(strip_bearer)
        .map(str::to_owned)
}

/// `"Bearer <t>"` (any case, any amount of blank space) -> `<t>`.
fn strip_bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn from_query(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(name)? != QUERY_PARAM {
            return None;
        }
        let value = form_decode(value)?;
        let value = value.trim();
        let token = strip_bearer(value).unwrap_or(value);
        (!token.is_empty()).then(|| token.to_owned())
    })
}

/// Decode one `application/x-www-form-urlencoded` component: `+` is a space,
/// then percent-decoding. `None` if the result is not UTF-8.
fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if s.contains('+') {
        let spaced = s.replace('+', " ");
        let decoded = percent_decode_str(&spaced).decode_utf8().ok()?;
        Some(Cow::Owned(decoded.into_owned()))
    } else {
        percent_decode_str(s).decode_utf8().ok()
    }
}

fn from_cookies(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|cookie| {
            let (name, value) = cookie.split_once('=')?;
            if name.trim() != cookie_name {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            let token = percent_decode_str(value).decode_utf8().ok()?;
            let token = token.trim();
            (!token.is_empty()).then(|| token.to_owned())
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn tok(s: &str, src: TokenSource) -> Option<(String, TokenSource)> {
        Some((s.to_owned(), src))
    }

    #[test]
    fn nothing_gives_none() {
        assert_eq!(extract_token(&HeaderMap::new(), None), None);
        assert_eq!(extract_token(&HeaderMap::new(), Some("")), None);
        assert_eq!(extract_token(&HeaderMap::new(), Some("topic=a&x")), None);
    }

    #[test]
    fn header_beats_query_beats_cookie() {
        let all = headers(&[
            (AUTHORIZATION, "Bearer h.h.h"),
            (COOKIE, "mercureAuthorization=c.c.c"),
        ]);
        assert_eq!(
            extract_token(&all, Some("authorization=q.q.q")),
            tok("h.h.h", TokenSource::Header)
        );
        let no_header = headers(&[(COOKIE, "mercureAuthorization=c.c.c")]);
        assert_eq!(
            extract_token(&no_header, Some("topic=x&authorization=q.q.q")),
            tok("q.q.q", TokenSource::Query)
        );
        assert_eq!(
            extract_token(&no_header, Some("topic=x")),
            tok("c.c.c", TokenSource::Cookie)
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["bearer a.b.c", "BEARER   a.b.c  ", "Bearer\ta.b.c"] {
            let h = headers(&[(AUTHORIZATION, value)]);
            assert_eq!(extract_token(&h, None), tok("a.b.c", TokenSource::Header));
        }
    }

    #[test]
    fn non_bearer_header_falls_through() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "a.b.c"] {
            let h = headers(&[
                (AUTHORIZATION, value),
                (COOKIE, "mercureAuthorization=c.c.c"),
            ]);
            assert_eq!(
                extract_token(&h, None),
                tok("c.c.c", TokenSource::Cookie),
                "{value}"
            );
            assert_eq!(
                extract_token(&h, Some("authorization=q.q.q")),
                tok("q.q.q", TokenSource::Query),
                "{value}"
            );
        }
        // a later well-formed Authorization header still counts
        let h = headers(&[(AUTHORIZATION, "Basic x"), (AUTHORIZATION, "Bearer h.h.h")]);
        assert_eq!(extract_token(&h, None), tok("h.h.h", TokenSource::Header));
    }

    #[test]
    fn query_is_percent_decoded_and_may_carry_bearer() {
        let h = HeaderMap::new();
        assert_eq!(
            extract_token(&h, Some("authorization=a%2Eb%2Ec")),
            tok("a.b.c", TokenSource::Query)
        );
        assert_eq!(
            extract_token(&h, Some("topic=t&authorization=Bearer%20a.b.c")),
            tok("a.b.c", TokenSource::Query)
        );
        assert_eq!(
            extract_token(&h, Some("authorization=bearer+a.b.c&topic=t")),
            tok("a.b.c", TokenSource::Query)
        );
        assert_eq!(
            extract_token(&h, Some("%61uthorization=a.b.c")),
            tok("a.b.c", TokenSource::Query)
        );
        // empty values are skipped, a later one is used
        assert_eq!(
            extract_token(&h, Some("authorization=&authorization=x.y.z")),
            tok("x.y.z", TokenSource::Query)
        );
        assert_eq!(extract_token(&h, Some("authorization")), None);
        assert_eq!(extract_token(&h, Some("Authorization=a.b.c")), None);
        assert_eq!(extract_token(&h, Some("authorization=%FF")), None);
    }

    #[test]
    fn cookies_multiple_headers_and_percent_encoding() {
        let h = headers(&[(COOKIE, "a=1; mercureAuthorization=a%2Eb%2Ec; b=2")]);
        assert_eq!(extract_token(&h, None), tok("a.b.c", TokenSource::Cookie));

        let h = headers(&[
            (COOKIE, "a=1; b=2"),
            (COOKIE, "session=xyz;mercureAuthorization=\"q.r.s\""),
        ]);
        assert_eq!(extract_token(&h, None), tok("q.r.s", TokenSource::Cookie));

        // name is case-sensitive; an empty value is no token
        let h = headers(&[(COOKIE, "mercureauthorization=a.b.c; mercureAuthorization=")]);
        assert_eq!(extract_token(&h, None), None);
    }

    #[test]
    fn the_access_token_cookie_comes_last_and_its_name_is_configurable() {
        let h = headers(&[(COOKIE, "__Secure-mercure_access_token=a.b.c")]);
        assert_eq!(extract_token(&h, None), tok("a.b.c", TokenSource::Cookie));
        let h = headers(&[(COOKIE, "__Secure-mercure_access_token=a.b.c; mine=m.m.m")]);
        assert_eq!(
            extract_token_with(&h, None, "mine"),
            tok("m.m.m", TokenSource::Cookie)
        );
        let h = headers(&[
            (AUTHORIZATION, "Bearer h.h.h"),
            (COOKIE, "__Secure-mercure_access_token=a.b.c"),
        ]);
        assert_eq!(extract_token(&h, None), tok("h.h.h", TokenSource::Header));
    }
}
