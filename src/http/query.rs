//! Decoding of query strings and urlencoded forms into repeated key/value pairs.

/// All `key=value` pairs, percent-decoded (`+` is a space), in order.
pub(crate) fn pairs(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// Every value of `key`.
pub(crate) fn all<'a>(
    pairs: &'a [(String, String)],
    key: &'a str,
) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// The first value of `key`.
pub(crate) fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}
