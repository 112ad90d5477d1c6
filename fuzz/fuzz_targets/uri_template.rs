//! Fuzz target for URI templates: the input is split at the first NUL into a template and a
//! topic. Parsing and matching must never panic; a template without expressions matches exactly
//! its own text; selectors built from the same text agree with the template.
#![no_main]

use herald::fuzzing::Selector;
use herald::fuzzing::Template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let (source, topic) = text.split_once('\0').unwrap_or((text, ""));
    let parsed = Template::parse(source);
    if let Ok(template) = &parsed {
        let matched = template.matches(topic);
        if !source.contains('{') {
            assert_eq!(matched, source == topic, "a literal template matches only itself");
        }
        // Matching is a pure function of its inputs.
        assert_eq!(matched, template.matches(topic));
        // A template always matches its own text when it has no expressions; an expansion with
        // every variable undefined (all expressions removed) is always matched.
        let undefined: String = strip_expressions(source);
        assert!(template.matches(&undefined), "{source:?} must match {undefined:?}");
    }
    let selector = Selector::parse(source);
    let expected = match (&parsed, source) {
        (_, "*") => true,
        (Ok(template), _) if source.contains('{') => template.matches(topic),
        _ => source == topic,
    };
    assert_eq!(selector.matches(topic), expected, "selector and template disagree");
});

/// The template with every `{...}` expression removed.
fn strip_expressions(source: &str) -> String {
    let mut out = String::new();
    let mut depth = false;
    for c in source.chars() {
        match c {
            '{' => depth = true,
            '}' if depth => depth = false,
            _ if !depth => out.push(c),
            _ => {}
        }
    }
    out
}
