//! The optional `--config` TOML file, layered under the command line: its keys are the flags'
//! long names (`jwt-key`, or `jwt_key`), read straight into [`ServeArgs`], and each fills an
//! option only where the command line and the environment left it unset.

use std::path::Path;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{ConfigError, ServeArgs};
use crate::serde_util::OneOrMany;

/// `args` with every option it leaves unset taken from the file at `path`.
pub(super) fn layer(args: ServeArgs, path: &Path) -> Result<ServeArgs, ConfigError> {
    let file = read(path)?;
    fill_unset(args, file).map_err(|reason| {
        ConfigError::Other(format!(
            "cannot apply config file {}: {reason}",
            path.display()
        ))
    })
}

/// Reads the file and checks its options (see [`parse`]).
pub(super) fn read(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string());
    text.and_then(|text| parse(&text))
        .map_err(|reason| ConfigError::File {
            path: path.to_owned(),
            reason,
        })
}

/// The file's options as a JSON object keyed like [`ServeArgs`], once checked: unknown keys and
/// wrong types are refused here, in the file's own words. Keys may use `-` or `_`.
fn parse(text: &str) -> Result<Map<String, Value>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    let normalized: toml::Table = table
        .into_iter()
        .map(|(key, value)| (key.replace('_', "-"), value))
        .collect();
    ServeArgs::deserialize(normalized.clone()).map_err(|e| one_line(&e.to_string()))?;
    match serde_json::to_value(normalized) {
        Ok(Value::Object(options)) => Ok(options),
        Ok(_) => Err("not a table".to_owned()),
        Err(error) => Err(one_line(&error.to_string())),
    }
}

/// `args`, with the file's value for every option `args` leaves unset. Unset is the value a
/// flag has when neither the command line nor the environment gave it: `None`, `false`, an
/// empty list; so a file's `anonymous = true` turns it on whatever the environment says.
///
/// Both sides meet as JSON objects keyed by the option's name, so no option is named here; the
/// one thing that cannot make the trip is a path given on the command line that is not UTF-8.
fn fill_unset(args: ServeArgs, file: Map<String, Value>) -> Result<ServeArgs, String> {
    let config = args.config.clone();
    let Value::Object(given) = serde_json::to_value(args).map_err(|e| e.to_string())? else {
        return Err("the options are not a table".to_owned());
    };
    let mut merged = file;
    merged.extend(given.into_iter().filter(|(_, value)| is_set(value)));
    let mut args = ServeArgs::deserialize(Value::Object(merged)).map_err(|e| e.to_string())?;
    args.config = config;
    Ok(args)
}

/// Did the command line or the environment give this option?
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(entries) => !entries.is_empty(),
        _ => true,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A list option: one string (`cors-origin = "https://a.example"`) or an array of them.
pub(super) fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    Ok(OneOrMany::deserialize(deserializer)?.into())
}

/// A size option: bytes (`max-body = 65536`) or text with a unit (`max-body = "64KiB"`), kept
/// as text for `--max-body`'s own parser.
pub(super) fn size_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum SizeValue {
        Bytes(u64),
        Text(String),
    }
    Ok(
        Option::<SizeValue>::deserialize(deserializer)?.map(|size| match size {
            SizeValue::Bytes(bytes) => bytes.to_string(),
            SizeValue::Text(text) => text,
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
