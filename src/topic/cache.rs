//! Shared, cached template matchers.
//!
//! Subscribers that use the same URI template share one compiled matcher ([`intern`]): the hub
//! files subscribers by distinct template, so fanning one update out to a thousand subscribers of
//! `https://example.com/books/{id}` runs the matcher once, not a thousand times. A matcher also
//! remembers its answers for topics that were expensive to match (long topics against big
//! templates), so listing the same topics again (`GET /topics`) does not redo that work. Cheap
//! answers are not kept: recomputing them costs less than remembering them.
//!
//! Memory is bounded twice: each matcher keeps at most [`CACHE_ENTRIES`] answers, and all the
//! matchers of the process together keep at most [`CACHE_BUDGET`] bytes of them; past that,
//! answers are simply not remembered until some are freed. A matcher is dropped, and its answers
//! with it, when its last subscriber goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::template::{Template, TemplateError};

/// Answers remembered per template; the map is cleared when it is full.
pub(crate) const CACHE_ENTRIES: usize = 1024;
/// Bytes of remembered answers (topic text plus overhead) in the whole process.
pub(crate) const CACHE_BUDGET: usize = 2 * 1024 * 1024;
/// Answers that cost fewer matcher steps than this (complexity × topic length) are not kept.
const WORTH_CACHING: usize = 4096;
/// Interned templates are swept of dead entries when the table grows past this.
const SWEEP_AT: usize = 4096;
/// Estimated bytes of one remembered answer besides its topic (map slot, box header).
const ENTRY_OVERHEAD: usize = 48;

/// Bytes of answers remembered by every matcher of the process.
static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A compiled template with a bounded cache of topic -> matches.
#[derive(Debug)]
pub struct CachedTemplate {
    template: Template,
    answers: Mutex<Answers>,
}

#[derive(Debug, Default)]
struct Answers {
    map: HashMap<Box<str>, bool>,
    /// What `map` counts for in [`CACHED_BYTES`].
    bytes: usize,
}

impl Answers {
    fn clear(&mut self) {
        CACHED_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        self.map = HashMap::new();
    }
}

impl Drop for CachedTemplate {
    fn drop(&mut self) {
        self.answers.get_mut().clear();
    }
}

impl CachedTemplate {
    /// The template's source text.
    pub(crate) fn source(&self) -> &str {
        self.template.source()
    }

    /// The compiled template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The literal text before the first expression.
    pub(crate) fn literal_prefix(&self) -> &str {
        self.template.literal_prefix()
    }

    /// The size of the compiled matcher (see [`Template::complexity`]).
    pub(crate) fn complexity(&self) -> usize {
        self.template.complexity()
    }

    /// Matcher steps one match of `topic` costs at most.
    pub(crate) fn cost(&self, topic: &str) -> usize {
        self.complexity()
            .saturating_mul(topic.len().saturating_sub(self.literal_prefix().len()) + 1)
    }

    /// As [`CachedTemplate::matches`] when the answer is cheap or remembered, or when computing
    /// it costs no more than `budget` steps (which are then taken from it); `None` otherwise.
    pub(crate) fn matches_within(&self, topic: &str, budget: &mut usize) -> Option<bool> {
        if !topic.starts_with(self.literal_prefix()) {
            return Some(false);
        }
        let cost = self.cost(topic);
        if cost >= WORTH_CACHING {
            let cached = self
                .answers
                .try_lock()
                .and_then(|answers| answers.map.get(topic).copied());
            if cached.is_some() {
                return cached;
            }
        }
        *budget = budget.checked_sub(cost)?;
        Some(self.matches(topic))
    }

    /// Does `topic` match? Uses the cache for expensive answers; never blocks on it (a busy
    /// cache is bypassed).
    pub(crate) fn matches(&self, topic: &str) -> bool {
        if !topic.starts_with(self.literal_prefix()) {
            return false;
        }
        if self.cost(topic) < WORTH_CACHING {
            return self.template.matches(topic);
        }
        let cached = self
            .answers
            .try_lock()
            .and_then(|answers| answers.map.get(topic).copied());
        if let Some(known) = cached {
            return known;
        }
        let answer = self.template.matches(topic);
        if let Some(mut answers) = self.answers.try_lock() {
            if answers.map.len() >= CACHE_ENTRIES {
                answers.clear();
            }
            let bytes = topic.len() + ENTRY_OVERHEAD;
            let reserved = CACHED_BYTES
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                    (total + bytes <= CACHE_BUDGET).then_some(total + bytes)
                })
                .is_ok();
            if reserved {
                answers.bytes += bytes;
                answers.map.insert(topic.into(), answer);
            }
        }
        answer
    }
}

/// Bytes of answers remembered by every matcher of the process.
#[cfg(test)]
pub(crate) fn cached_bytes() -> usize {
    CACHED_BYTES.load(Ordering::Relaxed)
}

/// The compiled template for `source`, shared with every other live user of the same text.
pub(crate) fn intern(source: &str) -> Result<Arc<CachedTemplate>, TemplateError> {
    static TABLE: OnceLock<Mutex<HashMap<String, Weak<CachedTemplate>>>> = OnceLock::new();
    let table = TABLE.get_or_init(Mutex::default);
    if let Some(shared) = table.lock().get(source).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    let compiled = Arc::new(CachedTemplate {
        template: Template::parse(source)?,
        answers: Mutex::new(Answers::default()),
    });
    let mut table = table.lock();
    // Another caller may have interned the same text meanwhile: share theirs.
    if let Some(shared) = table.get(source).and_then(Weak::upgrade) {
        return Ok(shared);
    }
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

    /// A template whose every match is worth caching: it starts with an expression and has a
    /// few hundred states.
    fn expensive(tag: &str) -> String {
        (0..40)
            .map(|i| format!("{{+{tag}{i}}}"))
            .collect::<String>()
            + "!"
    }

    #[test]
    fn identical_templates_share_one_matcher_and_answers_are_cached() {
        let source = expensive("shared");
        let a = intern(&source).unwrap();
        let b = intern(&source).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let topic = "x".repeat(200) + "!";
        assert!(a.matches(&topic));
        assert!(b.matches(&topic), "cached answer");
        assert!(!a.matches(&"x".repeat(200)));
        assert_eq!(a.answers.lock().map.len(), 2);
    }

    #[test]
    fn cheap_answers_are_not_kept() {
        let template = intern("https://example.com/books/{id}").unwrap();
        assert!(template.matches("https://example.com/books/1"));
        assert!(!template.matches("https://example.com/books/1/reviews"));
        assert!(!template.matches("https://other.example/"));
        assert!(template.answers.lock().map.is_empty());
    }

    #[test]
    fn the_cache_stays_bounded_and_is_released_with_its_template() {
        let template = intern(&expensive("bounded")).unwrap();
        for n in 0..(CACHE_ENTRIES * 3) {
            assert!(template.matches(&format!("{n}{}!", "y".repeat(100))));
        }
        let answers = template.answers.lock();
        assert!(answers.map.len() <= CACHE_ENTRIES);
        assert!(answers.bytes <= CACHE_ENTRIES * (110 + ENTRY_OVERHEAD));
        assert!(answers.bytes > 0);
        drop(answers);
        assert!(cached_bytes() <= CACHE_BUDGET);
        drop(template);
        assert!(cached_bytes() <= CACHE_BUDGET);
    }

    #[test]
    fn invalid_templates_are_errors() {
        assert!(intern("/bad/{").is_err());
    }
}
