//! The pages embedded in the binary: `/` always, the demos with `--demo`, and a favicon.

use http::{HeaderValue, Response, header};

use super::AppState;
use super::body::ResponseBody;
use super::router::ok;

const INDEX: &str = include_str!("../../assets/index.html");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// The page at `path`, if there is one.
pub fn page(state: &AppState, path: &str) -> Option<Response<ResponseBody>> {
    let _ = state;
    let mut response = match path {
        "/" | "/index.html" => ok("text/html; charset=utf-8", INDEX),
        "/favicon.ico" | "/favicon.svg" => ok("image/svg+xml", FAVICON),
        _ => return None,
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}
