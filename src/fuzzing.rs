//! What the fuzz targets (`fuzz/fuzz_targets/`) drive, re-exported in one place so the rest of
//! the crate can stay `pub(crate)`. Not an API: hidden from the docs, and free to change with
//! the targets.

pub use crate::auth::{Algorithm, Authorizer, KeyConfig, extract_token};
pub use crate::http::body::{RequestBody, ResponseBody};
pub use crate::http::h1::body::ChunkedDecoder;
pub use crate::http::h1::parse::parse_head;
pub use crate::http::h1::{Handler, Settings, serve};
pub use crate::http::publish::decode_publish;
pub use crate::topic::Selector;
pub use crate::topic::template::Template;
pub use crate::update::Update;
