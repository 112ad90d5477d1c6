//! Shapes shared by the formats Herald reads with serde (the JSON publish body, the TOML
//! configuration file). Pure data: no I/O, no knowledge of where the value came from.

use serde::Deserialize;

/// A value that may be written as one string or as a list of strings: `"t"` or `["t", "u"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Vec<String> {
    fn from(value: OneOrMany) -> Vec<String> {
        match value {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn one_string_or_a_list_of_strings() {
        let one: OneOrMany = serde_json::from_str(r#""a""#).unwrap();
        assert_eq!(Vec::from(one), ["a"]);
        let many: OneOrMany = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert_eq!(Vec::from(many), ["a", "b"]);
        assert!(serde_json::from_str::<OneOrMany>("1").is_err());
        assert!(serde_json::from_str::<OneOrMany>("[1]").is_err());
    }
}
