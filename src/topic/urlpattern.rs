//! Mercure 1.0 `urlpattern` selectors: WHATWG URL Patterns, compiled once, shared, cached.
//!
//! Patterns are compiled by the `urlpattern` crate into the `regex` crate's linear-time engine,
//! so a hostile pattern cannot make matching slow. Relative patterns and relative topics are
//! resolved against the hub's URL (the base given to [`intern`]); a topic that does not parse as
//! a URL, even against that base, never matches. Like URI templates ([`super::cache`]),
//! subscribers of the same pattern (and base) share one compiled matcher with a bounded map of
//! recent answers, so one update is matched against each distinct pattern once, however many
//! subscribers share it. Pure code: no I/O.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

/// Answers remembered per pattern; the map is cleared when it is full.
const CACHE_ENTRIES: usize = 1024;
/// Interned patterns are swept of dead entries when the table grows past this.
const SWEEP_AT: usize = 4096;

/// A pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// A compiled URL Pattern with its base and a bounded cache of topic -> matches.
pub struct CachedPattern {
    source: Box<str>,
    base: Url,
    pattern: UrlPattern,
    answers: Mutex<HashMap<Box<str>, bool>>,
}

impl std::fmt::Debug for CachedPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedPattern")
            .field("source", &self.source)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl CachedPattern {
    /// The pattern as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Does `topic` (resolved against the base) match? Uses the cache; never blocks on it.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        let cached = self
            .answers
            .try_lock()
            .and_then(|answers| answers.get(topic).copied());
        if let Some(known) = cached {
            return known;
        }
        let answer = self.evaluate(topic);
        if let Some(mut answers) = self.answers.try_lock() {
            if answers.len() >= CACHE_ENTRIES {
                answers.clear();
            }
            answers.insert(topic.into(), answer);
        }
        answer
    }

    /// The uncached answer.
    fn evaluate(&self, topic: &str) -> bool {
        match self.base.join(topic) {
            Ok(url) => self
                .pattern
                .test(UrlPatternMatchInput::Url(url))
                .unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// Compiles `source` against `base` without interning (tests and validation).
pub(crate) fn compile(source: &str, base: &Url) -> Result<UrlPattern, PatternError> {
    let error = |reason: String| PatternError {
        pattern: source.to_owned(),
        reason,
    };
    let init = UrlPatternInit::parse_constructor_string::<regex::Regex>(source, Some(base.clone()))
        .map_err(|e| error(e.to_string()))?;
    UrlPattern::parse(init, UrlPatternOptions::default()).map_err(|e| error(e.to_string()))
}

/// The compiled pattern for `source` resolved against `base`, shared with every other live
/// user of the same pair.
pub(crate) fn intern(source: &str, base: &Url) -> Result<Arc<CachedPattern>, PatternError> {
    type Table = Mutex<HashMap<(String, String), Weak<CachedPattern>>>;
    static TABLE: OnceLock<Table> = OnceLock::new();
    let table = TABLE.get_or_init(Mutex::default);
    let key = (source.to_owned(), base.as_str().to_owned());
    if let Some(shared) = table.lock().get(&key).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    let compiled = Arc::new(CachedPattern {
        source: source.into(),
        base: base.clone(),
        pattern: compile(source, base)?,
        answers: Mutex::new(HashMap::new()),
    });
    let mut table = table.lock();
    if table.len() >= SWEEP_AT {
        table.retain(|_, weak| weak.strong_count() > 0);
    }
    table.insert(key, Arc::downgrade(&compiled));
    Ok(compiled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn hub() -> Url {
        Url::parse("https://hub.example/.well-known/mercure").unwrap()
    }

    #[test]
    fn absolute_and_relative_patterns_and_topics() {
        let books = intern("https://example.com/books/:id", &hub()).unwrap();
        assert!(books.matches("https://example.com/books/1"));
        assert!(!books.matches("https://example.com/books/1/reviews"));
        assert!(!books.matches("https://example.org/books/1"));
        // Hosts are case-insensitive through URL canonicalization; paths are not.
        assert!(books.matches("https://EXAMPLE.com/books/1"));
        assert!(!books.matches("https://example.com/Books/1"));

        let relative = intern("/books/:id", &hub()).unwrap();
        assert!(relative.matches("/books/7"), "a relative topic resolves");
        assert!(relative.matches("https://hub.example/books/7"));
        assert!(!relative.matches("https://other.example/books/7"));
    }

    #[test]
    fn a_topic_that_is_not_a_url_never_matches() {
        let any = intern("*://*", &hub()).unwrap();
        assert!(any.matches("https://x.example/a"));
        assert!(!any.matches("https://exa mple.com/"));
        assert!(!any.matches("http://[::1"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        for bad in [
            "https://example.com/(",
            "/books/:id(\\d+",
            "https://example.com/(?<x>a)",
        ] {
            assert!(intern(bad, &hub()).is_err(), "{bad}");
        }
    }

    #[test]
    fn identical_patterns_share_one_matcher_and_the_cache_stays_bounded() {
        let a = intern("/shared/:x", &hub()).unwrap();
        let b = intern("/shared/:x", &hub()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other_base = Url::parse("https://other.example/hub").unwrap();
        assert!(!Arc::ptr_eq(
            &a,
            &intern("/shared/:x", &other_base).unwrap()
        ));
        for n in 0..(CACHE_ENTRIES * 2) {
            assert!(a.matches(&format!("/shared/{n}")));
        }
        assert!(a.answers.lock().len() <= CACHE_ENTRIES);
    }

    /// The web-platform-tests data the `urlpattern` crate ships, read from its package.
    fn wpt_cases() -> Vec<Value> {
        let home = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")))
            .expect("CARGO_HOME or HOME");
        let registry = home.join("registry").join("src");
        let mut found = None;
        for index in std::fs::read_dir(&registry).expect("the cargo registry") {
            let index = index.unwrap().path();
            for package in std::fs::read_dir(&index).into_iter().flatten() {
                let package = package.unwrap().path();
                let name = package.file_name().unwrap().to_string_lossy().into_owned();
                let data = package.join("src/testdata/urlpatterntestdata.json");
                if name.starts_with("urlpattern-0.6") && data.is_file() {
                    found = Some(data);
                }
            }
        }
        let path = found.expect("urlpatterntestdata.json in the urlpattern-0.6 package");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Every WPT case that a Mercure selector can express (a string pattern, optionally with a
    /// base URL, no options; absolute string inputs) gives the answer the WPT data expects.
    #[test]
    fn matches_the_web_platform_tests() {
        let mut checked = 0;
        for case in wpt_cases() {
            if case.get("skip").is_some() {
                continue;
            }
            let Some(pattern) = case["pattern"].as_array() else {
                continue;
            };
            let (Some(source), base) = (
                pattern.first().and_then(Value::as_str),
                pattern.get(1).map(Value::as_str),
            ) else {
                continue;
            };
            if pattern.len() > 2 || base == Some(None) {
                continue;
            }
            let wpt_base = base.flatten();
            let base = match wpt_base {
                Some(base) => match Url::parse(base) {
                    Ok(url) => url,
                    Err(_) => continue,
                },
                None if source.contains("://") || source.starts_with("*:") => hub(),
                None => continue,
            };
            if case["expected_obj"] == "error" {
                // Without a base in the data, ours (the hub's URL) can make a pattern valid.
                if wpt_base.is_some() {
                    assert!(compile(source, &base).is_err(), "{source} must not compile");
                }
                continue;
            }
            let Ok(compiled) = intern(source, &base) else {
                panic!("{source} (base {base}) compiles in WPT");
            };
            let inputs = case["inputs"].as_array().cloned().unwrap_or_default();
            let [Value::String(input)] = inputs.as_slice() else {
                continue;
            };
            if Url::parse(input).is_err() {
                continue;
            }
            let expected = !case["expected_match"].is_null() && case["expected_match"] != "error";
            assert_eq!(
                compiled.matches(input),
                expected,
                "pattern {source:?} base {base} input {input:?}"
            );
            checked += 1;
        }
        assert!(checked >= 36, "only {checked} WPT match cases applied");
    }

    proptest! {
        /// A named group matches exactly one non-empty path segment; the cache never changes
        /// an answer.
        #[test]
        fn a_named_group_is_one_segment(segment in "[a-zA-Z0-9_~-]{1,12}", extra in "[a-z]{0,4}") {
            let pattern = intern("https://example.com/items/:id", &hub()).unwrap();
            let topic = format!("https://example.com/items/{segment}");
            prop_assert!(pattern.matches(&topic));
            prop_assert!(pattern.matches(&topic), "cached");
            let deeper = format!("{topic}/{extra}");
            prop_assert!(!pattern.matches(&deeper));
            prop_assert_eq!(pattern.matches(&deeper), pattern.evaluate(&deeper));
        }

        /// Whatever the topic, the cached answer is the uncached one, and matching never panics.
        #[test]
        fn cached_answers_equal_fresh_ones(topic in "\\PC{0,40}") {
            let pattern = intern("/things/*", &hub()).unwrap();
            let fresh = pattern.evaluate(&topic);
            prop_assert_eq!(pattern.matches(&topic), fresh);
            prop_assert_eq!(pattern.matches(&topic), fresh);
        }
    }
}
