//! Topic selectors: exact topics, `*`, RFC 6570 URI templates and (Mercure 1.0) WHATWG URL
//! Patterns, compiled once into matchers.
//!
//! Pure code: no I/O, no hub state. Templates are interned and their expensive answers cached
//! ([`cache`]), so many subscribers of one template cost one match per topic, and the hub files
//! templates by literal prefix ([`prefix`]) so a topic only runs the templates that could match. A [`Selector`] is parsed from what a subscriber puts in
//! `topic=` or what a token lists in `mercure.publish` / `mercure.subscribe`. A [`SelectorSet`] is
//! the compiled list of one subscription or one token claim; it answers "does any of these
//! selectors match any of the update's topics" without allocating.

pub(crate) mod cache;
pub(crate) mod prefix;
pub(crate) mod template;
pub(crate) mod urlpattern;

use std::sync::Arc;

use cache::CachedTemplate;
use template::looks_like_template;
use urlpattern::CachedPattern;

/// One compiled selector.
#[derive(Debug, Clone)]
pub enum Selector {
    /// `*`: every topic.
    Any,
    /// A topic compared byte for byte.
    Exact(Arc<str>),
    /// An RFC 6570 URI template, shared by every selector with the same text.
    Template(Arc<CachedTemplate>),
    /// A WHATWG URL Pattern (Mercure 1.0 `match_urlpattern`, `match_type: urlpattern`), shared
    /// by every selector with the same text and base.
    UrlPattern(Arc<CachedPattern>),
}

impl Selector {
    /// Compiles a selector. A string with a `{` that does not parse as a URI template is an exact
    /// topic, as in the reference hub.
    pub fn parse(source: &str) -> Selector {
        if source == "*" {
            return Selector::Any;
        }
        if let Some(Ok(template)) = looks_like_template(source).then(|| cache::intern(source)) {
            return Selector::Template(template);
        }
        Selector::Exact(Arc::from(source))
    }

    /// Does this selector match `topic`?
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(exact) => &**exact == topic,
            Selector::Template(template) => template.matches(topic),
            Selector::UrlPattern(pattern) => pattern.matches(topic),
        }
    }

    /// A Mercure 1.0 exact selector: byte for byte, never a template; `*` is the wildcard.
    pub(crate) fn exact(source: &str) -> Selector {
        if source == "*" {
            Selector::Any
        } else {
            Selector::Exact(Arc::from(source))
        }
    }

    /// A Mercure 1.0 URL Pattern selector resolved against `base` (the hub's URL); `*` is the
    /// wildcard.
    pub fn url_pattern(
        source: &str,
        base: &url::Url,
    ) -> Result<Selector, urlpattern::PatternError> {
        if source == "*" {
            return Ok(Selector::Any);
        }
        urlpattern::intern(source, base).map(Selector::UrlPattern)
    }

    /// The Mercure 1.0 `match_type` of this selector (`uritemplate` for a 0.x template).
    pub(crate) fn match_type(&self) -> &'static str {
        match self {
            Selector::Any | Selector::Exact(_) => "exact",
            Selector::Template(_) => "uritemplate",
            Selector::UrlPattern(_) => "urlpattern",
        }
    }

    /// The topic, when this selector is an exact one (those are found through a hash index).
    pub(crate) fn as_exact(&self) -> Option<&Arc<str>> {
        match self {
            Selector::Exact(exact) => Some(exact),
            _ => None,
        }
    }

    /// The text the selector was compiled from.
    pub(crate) fn source(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(exact) => exact,
            Selector::Template(template) => template.source(),
            Selector::UrlPattern(pattern) => pattern.source(),
        }
    }
}

/// The compiled selectors of one subscription or one token claim. Duplicates are removed.
#[derive(Debug, Clone, Default)]
pub struct SelectorSet {
    selectors: Vec<Selector>,
}

impl SelectorSet {
    /// Compiles every selector, dropping duplicates.
    pub fn parse<I, S>(sources: I) -> SelectorSet
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut selectors: Vec<Selector> = Vec::new();
        for source in sources {
            let source = source.as_ref();
            if !selectors.iter().any(|known| known.source() == source) {
                selectors.push(Selector::parse(source));
            }
        }
        SelectorSet { selectors }
    }

    /// A set of already compiled selectors (Mercure 1.0 matchers and grants), dropping
    /// duplicates (same kind and text).
    pub fn from_selectors(list: impl IntoIterator<Item = Selector>) -> SelectorSet {
        let mut selectors: Vec<Selector> = Vec::new();
        for selector in list {
            let known = selectors.iter().any(|other| {
                other.source() == selector.source() && other.match_type() == selector.match_type()
            });
            if !known {
                selectors.push(selector);
            }
        }
        SelectorSet { selectors }
    }

    /// Does any selector match `topic`?
    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.selectors
            .iter()
            .any(|selector| selector.matches(topic))
    }

    /// Does any selector match any of `topics`?
    pub(crate) fn matches_any<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        topics.iter().any(|topic| self.matches(topic.as_ref()))
    }

    /// Do the selectors match every one of `topics`?
    pub(crate) fn matches_all<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        topics.iter().all(|topic| self.matches(topic.as_ref()))
    }

    /// The selectors.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Selector> {
        self.selectors.iter()
    }

    /// The exact topics among the selectors.
    pub(crate) fn exact_topics(&self) -> impl Iterator<Item = &Arc<str>> {
        self.selectors.iter().filter_map(Selector::as_exact)
    }

    /// True when some selector is `*`, a template or a URL pattern (those are scanned, not indexed).
    pub(crate) fn has_patterns(&self) -> bool {
        self.selectors
            .iter()
            .any(|selector| selector.as_exact().is_none())
    }

    /// The total complexity of the URI templates among the selectors (see
    /// [`template::Template::complexity`]): what `--max-template-complexity` bounds.
    pub(crate) fn template_complexity(&self) -> usize {
        self.selectors
            .iter()
            .map(|selector| match selector {
                Selector::Template(template) => template.complexity(),
                _ => 0,
            })
            .sum()
    }

    /// Number of selectors.
    pub(crate) fn len(&self) -> usize {
        self.selectors.len()
    }

    /// True when there are no selectors.
    pub(crate) fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_everything_and_exact_matches_bytes() {
        let set = SelectorSet::parse(["*"]);
        assert!(set.matches("anything"));
        let set = SelectorSet::parse(["a", "b", "a"]);
        assert_eq!(set.len(), 2);
        assert!(set.matches("b"));
        assert!(!set.matches("c"));
        assert!(!set.has_patterns());
        assert!(set.matches_any(&["c", "a"]));
        assert!(!set.matches_all(&["c", "a"]));
    }

    #[test]
    fn a_brace_that_is_not_a_template_is_an_exact_topic() {
        let selector = Selector::parse("weird{");
        assert!(selector.matches("weird{"));
        assert_eq!(selector.as_exact().map(|s| &**s), Some("weird{"));
    }
}
