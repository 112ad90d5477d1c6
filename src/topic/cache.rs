//! Shared, cached template matchers.
//!
//! Subscribers that use the same URI template share one compiled matcher ([`intern`]), and each
//! matcher remembers its recent answers in a bounded map, so fanning one update out to a
//! thousand subscribers of `https://example.com/books/{id}` runs the matcher once, not a
//! thousand times.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::template::{Template, TemplateError};

/// Answers remembered per template; the map is cleared when it is full.
const CACHE_ENTRIES: usize = 1024;
/// Interned templates are swept of dead entries when the table grows past this.
const SWEEP_AT: usize = 4096;

/// A compiled template with a bounded cache of topic -> matches.
#[derive(Debug)]
pub struct CachedTemplate {
    template: Template,
    answers: Mutex<HashMap<Box<str>, bool>>,
}

impl CachedTemplate {
    /// The template's source text.
    pub fn source(&self) -> &str {
        self.template.source()
    }

    /// Does `topic` match? Uses the cache; never blocks on it (a busy cache is bypassed).
    pub fn matches(&self, topic: &str) -> bool {
        let cached = self
            .answers
            .try_lock()
            .and_then(|answers| answers.get(topic).copied());
        if let Some(known) = cached {
            return known;
        }
        let answer = self.template.matches(topic);
        if let Some(mut answers) = self.answers.try_lock() {
            if answers.len() >= CACHE_ENTRIES {
                answers.clear();
            }
            answers.insert(topic.into(), answer);
        }
        answer
    }
}

/// The compiled template for `source`, shared with every other live user of the same text.
pub fn intern(source: &str) -> Result<Arc<CachedTemplate>, TemplateError> {
    static TABLE: OnceLock<Mutex<HashMap<String, Weak<CachedTemplate>>>> = OnceLock::new();
    let table = TABLE.get_or_init(Mutex::default);
    if let Some(shared) = table.lock().get(source).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    let compiled = Arc::new(CachedTemplate {
        template: Template::parse(source)?,
        answers: Mutex::new(HashMap::new()),
    });
    let mut table = table.lock();
    if table.len() >= SWEEP_AT {
        table.retain(|_, weak| weak.strong_count() > 0);
    }
    table.insert(source.to_owned(), Arc::downgrade(&compiled));
    Ok(compiled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn identical_templates_share_one_matcher_and_answers_are_cached() {
        let a = intern("https://example.com/books/{id}").unwrap();
        let b = intern("https://example.com/books/{id}").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.matches("https://example.com/books/1"));
        assert!(b.matches("https://example.com/books/1"), "cached answer");
        assert!(!a.matches("https://example.com/books/1/reviews"));
        assert_eq!(a.answers.lock().len(), 2);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let template = intern("/bounded/{x}").unwrap();
        for n in 0..(CACHE_ENTRIES * 3) {
            assert!(template.matches(&format!("/bounded/{n}")));
        }
        assert!(template.answers.lock().len() <= CACHE_ENTRIES);
    }

    #[test]
    fn invalid_templates_are_errors() {
        assert!(intern("/bad/{").is_err());
    }
}
