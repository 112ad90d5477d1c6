//! Tests of URI templates: the RFC 6570 and Mercure examples, parse errors, complexity, linear-time matching, and property tests against a regex oracle.

use super::*;
use proptest::prelude::*;
use regex::Regex;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn template(source: &str) -> Template {
    Template::parse(source).unwrap_or_else(|e| panic!("{source:?} should parse: {e}"))
}

/// Checks the matcher and the oracle against hand-written expectations.
#[track_caller]
fn check(source: &str, accepted: &[&str], rejected: &[&str]) {
    let compiled = template(source);
    let oracle = Oracle::new(source);
    for topic in accepted {
        assert!(compiled.matches(topic), "{source:?} should match {topic:?}");
        assert!(
            oracle.is_match(topic),
            "oracle: {source:?} should match {topic:?}"
        );
    }
    for topic in rejected {
        assert!(
            !compiled.matches(topic),
            "{source:?} should not match {topic:?}"
        );
        assert!(
            !oracle.is_match(topic),
            "oracle: {source:?} should not match {topic:?}"
        );
    }
}

// -----------------------------------------------------------------------------------------
// Concrete examples

#[test]
fn mercure_spec_examples() {
    check(
        "https://example.com/books/{id}",
        &[
            "https://example.com/books/1",
            "https://example.com/books/",
            "https://example.com/books/a%20b",
        ],
        &[
            "https://example.com/books/1/reviews",
            "https://example.com/books",
            "https://example.com/books/1?x",
            "http://example.com/books/1",
            "https://example.com/books/1,2",
        ],
    );
    check(
        "https://example.com/{+path}",
        &[
            "https://example.com/a/b?c",
            "https://example.com/",
            "https://example.com/a%2Fb#x",
        ],
        &[
            "https://example.com",
            "https://example.com/a b",
            "https://example.com/100%",
        ],
    );
    check(
        "https://example.com/users/{user}/books{?page}",
        &[
            "https://example.com/users/dunglas/books",
            "https://example.com/users/dunglas/books?page=2",
            "https://example.com/users/dunglas/books?page=",
        ],
        &[
            "https://example.com/users/dunglas/books?page",
            "https://example.com/users/dunglas/books?p=2",
            "https://example.com/users/dunglas/books?page=2&x=1",
            "https://example.com/users/a/b/books",
        ],
    );
    check(
        "/chat/{+path}",
        &["/chat/", "/chat/room/1"],
        &["/chat", "/chats/1"],
    );
}

#[test]
fn literal_only_templates() {
    check(
        "https://example.com/books/1",
        &["https://example.com/books/1"],
        &[
            "https://example.com/books/10",
            "https://example.com/books/",
            "",
        ],
    );
    check("", &[""], &["a"]);
    check("é/ü", &["é/ü"], &["e/u", "é/"]);
}

#[test]
fn simple_expansion() {
    check(
        "{x}",
        &["", "abc", "A-._~9", "a%20b", "%2f%2F"],
        &["a/b", "a,b", "%2", "%zz", "é", "a b", "%"],
    );
    check("a{x}b", &["ab", "a1b", "a.b"], &["a/b", "a"]);
}

#[test]
fn multiple_variables_and_undefined_ones() {
    check(
        "{x,y}",
        &["", "a", "a,b", ",b", "a,", ","],
        &["a,b,c", "a;b", ",,"],
    );
    check("{x,y,z}", &["a,b,c", "a,b", "a"], &["a,b,c,d"]);
    check(
        "X{.x,y}",
        &["X", "X.", "X.a", "X.a.b", "X.1024.768"],
        &["Xa", "X/a", "X.a,b"],
    );
    // `X.` is an expansion with x = "" (RFC 6570 3.2.5 `X{.empty}`).
    check("X{.x}", &["X", "X.", "X.a"], &["Xa", "X/"]);
}

#[test]
fn reserved_and_fragment_expansion() {
    check(
        "{+x}",
        &["", "a/b?c#d", ":/?#[]@!$&'()*+,;=", "%2F"],
        &["a b", "%", "%g0", "\"", "é"],
    );
    check("{+x,y}", &["1024,Hello%20World!,768", "a"], &["a b"]);
    check(
        "X{#x}",
        &["X", "X#", "X#value", "X#/a,b"],
        &["Xvalue", "X#a b"],
    );
    check(
        "{#x,y}/here",
        &["#/foo/bar,1024/here", "/here", "#/here"],
        &["#/foo bar/here"],
    );
}

#[test]
fn label_and_path_expansion() {
    check(
        "www{.dom*}",
        &["www", "www.example.com", "www.", "www..a"],
        &["wwwexample", "www.a/b"],
    );
    check(
        "{/x}",
        &["", "/", "/fred", "/me%2Ftoo"],
        &["/a/b", "a", "//"],
    );
    check("{/x,y}", &["/a/b", "/a", "/", "//"], &["/a/b/c"]);
    check("{/x*}", &["/a", "/a/b/c", "/", "//"], &["a", "/a b"]);
    check(
        "{/list*,path:4}",
        &["/red/green/blue/%2Ffoo", "/red", "/%2Ffoo"],
        &["red", "/a b", "/a,b"],
    );
}

#[test]
fn path_parameter_expansion() {
    check(
        "{;x}",
        &["", ";x", ";x=1", ";x=a%20b"],
        &[";x=", ";y=1", ";", "x=1", ";x=1;x=2"],
    );
    check(
        "{;x,y}",
        &[";x=1;y=2", ";y", ";x;y", ";x", ";y=768"],
        &[";y;x", ";x=1;", ";x=1,y=2"],
    );
    check("{;x*}", &[";x=1;x=2;x", ";x"], &[";x=1;y=2", ";x=1,2"]);
    check(
        "{;v,empty,who}",
        &[";v=6;empty;who=fred"],
        &[";v=6;empty=;who=fred"],
    );
}

#[test]
fn query_expansion() {
    check(
        "{?x}",
        &["", "?x=", "?x=1", "?x=a-b"],
        &["?x", "?y=1", "?", "x=1", "?x=a&b"],
    );
    check(
        "{?x,y}",
        &["?x=1&y=2", "?y=2", "?x=", "?x=&y="],
        &["?y=2&x=1", "?x=1&", "?x=1,y=2"],
    );
    check(
        "{?x*}",
        &["?x=1&x=2", "?x=", "?x=1&x=&x=3"],
        &["?x=1&y=2", "?x"],
    );
    check(
        "?fixed=yes{&x}",
        &["?fixed=yes", "?fixed=yes&x=1024"],
        &["?fixed=yes&y=1"],
    );
    check(
        "{&x,y,empty}",
        &["&x=1024&y=768&empty=", "&empty="],
        &["&empty"],
    );
    check("{?x.y,v%41}", &["?x.y=1&v%41=2"], &["?xy=1", "?vA=2"]);
}

#[test]
fn prefix_modifier() {
    check(
        "{x:3}",
        &["", "a", "abc", "%20bc", "%20%20%20"],
        &["abcd", "%20%20%20%20", "a/"],
    );
    check("{+x:2}", &["/?", "%2F/"], &["/?#"]);
    check("{;x:2}", &[";x", ";x=ab"], &[";x=abc", ";x="]);
    check("{?x:1}", &["?x=", "?x=a"], &["?x=ab"]);
    check("{x:1}{y:1}", &["", "a", "ab", "%20%20"], &["abc"]);
    check("{x:9999}", &["abc"], &["a b"]);
    check(
        "{/var:1,var}",
        &["/v/value", "/v", "/value", "/v/"],
        &["/va/b", "/v/a/b"],
    );
    check("{/var:1}", &["/v"], &["/va"]);
}

#[test]
fn explode_modifier() {
    check("{list*}", &["red,green,blue", "red", ""], &["red;green"]);
    check("X{.list*}", &["X.red.green.blue"], &["X.red,green"]);
    check(
        "{?list*}",
        &["?list=red&list=green&list=blue"],
        &["?list=red&lis=green"],
    );
    check(
        "{&list*}",
        &["&list=red&list=green&list=blue"],
        &["&list=red,green"],
    );
    check("{?a*,b}", &["?a=1&a=2&b=3", "?b=3", "?a=1"], &["?b=3&a=1"]);
}

/// Expansions from RFC 6570 section 3.2 (those not using associative arrays or non-exploded
/// lists, which are out of scope).
#[test]
fn rfc_6570_examples() {
    let examples = [
        ("{var}", "value"),
        ("{hello}", "Hello%20World%21"),
        ("{half}", "50%25"),
        ("O{empty}X", "OX"),
        ("O{undef}X", "OX"),
        ("{x,y}", "1024,768"),
        ("{x,hello,y}", "1024,Hello%20World%21,768"),
        ("?{x,empty}", "?1024,"),
        ("?{x,undef}", "?1024"),
        ("?{undef,y}", "?768"),
        ("{var:3}", "val"),
        ("{var:30}", "value"),
        ("{list*}", "red,green,blue"),
        ("{+var}", "value"),
        ("{+hello}", "Hello%20World!"),
        ("{+half}", "50%25"),
        ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
        ("{+base}index", "http://example.com/home/index"),
        ("O{+empty}X", "OX"),
        ("{+path}/here", "/foo/bar/here"),
        ("here?ref={+path}", "here?ref=/foo/bar"),
        ("up{+path}{var}/here", "up/foo/barvalue/here"),
        ("{+x,hello,y}", "1024,Hello%20World!,768"),
        ("{+path,x}/here", "/foo/bar,1024/here"),
        ("{+path:6}/here", "/foo/b/here"),
        ("{+list*}", "red,green,blue"),
        ("{#var}", "#value"),
        ("{#hello}", "#Hello%20World!"),
        ("{#half}", "#50%25"),
        ("foo{#empty}", "foo#"),
        ("foo{#undef}", "foo"),
        ("{#x,hello,y}", "#1024,Hello%20World!,768"),
        ("{#path,x}/here", "#/foo/bar,1024/here"),
        ("{#path:6}/here", "#/foo/b/here"),
        ("{#list*}", "#red,green,blue"),
        ("{.who}", ".fred"),
        ("{.who,who}", ".fred.fred"),
        ("{.half,who}", ".50%25.fred"),
        ("www{.dom*}", "www.example.com"),
        ("X{.var}", "X.value"),
        ("X{.empty}", "X."),
        ("X{.undef}", "X"),
        ("X{.var:3}", "X.val"),
        ("X{.list*}", "X.red.green.blue"),
        ("{/who}", "/fred"),
        ("{/who,who}", "/fred/fred"),
        ("{/half,who}", "/50%25/fred"),
        ("{/who,dub}", "/fred/me%2Ftoo"),
        ("{/var}", "/value"),
        ("{/var,empty}", "/value/"),
        ("{/var,undef}", "/value"),
        ("{/var,x}/here", "/value/1024/here"),
        ("{/var:1,var}", "/v/value"),
        ("{/list*}", "/red/green/blue"),
        ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
        ("{;who}", ";who=fred"),
        ("{;half}", ";half=50%25"),
        ("{;empty}", ";empty"),
        ("{;v,empty,who}", ";v=6;empty;who=fred"),
        ("{;v,bar,who}", ";v=6;who=fred"),
        ("{;x,y}", ";x=1024;y=768"),
        ("{;x,y,empty}", ";x=1024;y=768;empty"),
        ("{;x,y,undef}", ";x=1024;y=768"),
        ("{;hello:5}", ";hello=Hello"),
        ("{;list*}", ";list=red;list=green;list=blue"),
        ("{?who}", "?who=fred"),
        ("{?half}", "?half=50%25"),
        ("{?x,y}", "?x=1024&y=768"),
        ("{?x,y,empty}", "?x=1024&y=768&empty="),
        ("{?x,y,undef}", "?x=1024&y=768"),
        ("{?var:3}", "?var=val"),
        ("{?list*}", "?list=red&list=green&list=blue"),
        ("{&who}", "&who=fred"),
        ("{&half}", "&half=50%25"),
        ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
        ("{&x,y,empty}", "&x=1024&y=768&empty="),
        ("{&var:3}", "&var=val"),
        ("{&list*}", "&list=red&list=green&list=blue"),
    ];
    for (source, expansion) in examples {
        check(source, &[expansion], &[]);
    }
}

#[test]
fn repeated_names_are_independent() {
    check("{x}/{x}", &["a/a", "a/b", "/"], &["a/b/c"]);
}

#[test]
fn parse_errors() {
    let cases = [
        ("{", 0, "unclosed expression"),
        ("}", 0, "unmatched '}'"),
        ("{}", 1, "empty expression"),
        ("{a", 0, "unclosed expression"),
        ("{?}", 2, "expected a variable name"),
        ("{a:0}", 3, "prefix length must be between 1 and 9999"),
        ("{a:10000}", 3, "prefix length must be between 1 and 9999"),
        ("{a:01}", 3, "prefix length must be between 1 and 9999"),
        ("{a b}", 2, "unexpected character in expression"),
        ("{a:}", 3, "expected a prefix length"),
        ("{a:3*}", 4, "unexpected character in expression"),
        ("{a*:3}", 3, "unexpected character in expression"),
        ("{=a}", 1, "reserved operator"),
        ("{,a}", 1, "reserved operator"),
        ("{|a}", 1, "reserved operator"),
        ("{a,}", 3, "expected a variable name"),
        ("{a.}", 2, "misplaced '.' in variable name"),
        ("{a..b}", 2, "misplaced '.' in variable name"),
        ("{.a.}", 3, "misplaced '.' in variable name"),
        ("{a%2}", 2, "invalid pct-encoded triplet in variable name"),
        ("{a-b}", 2, "unexpected character in expression"),
        ("{é}", 1, "expected a variable name"),
        ("/books/{id}}", 11, "unmatched '}'"),
        ("/books/{id}{", 11, "unclosed expression"),
        ("/books/{i{d}", 9, "unexpected character in expression"),
        ("{?a", 0, "unclosed expression"),
        ("{?a:12", 0, "unclosed expression"),
    ];
    for (source, position, reason) in cases {
        assert_eq!(
            Template::parse(source).map(|_| ()),
            Err(TemplateError { position, reason }),
            "{source:?}"
        );
    }
    let error = Template::parse("{a b}").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid URI template at byte 2: unexpected character in expression"
    );
    let _: &dyn std::error::Error = &error;
}

#[test]
fn valid_edge_cases_parse() {
    for source in [
        "{a:9999}",
        "{a:1}",
        "{x.y.z}",
        "{%41%42}",
        "{_}",
        "{a,b,c*,d:5}",
        "{+a}{#b}{.c}{/d}{;e}{?f}{&g}",
        "no braces at all",
        "{a}é{b}",
    ] {
        let parsed = template(source);
        assert_eq!(parsed.source(), source);
    }
    assert!(looks_like_template("/books/{id}"));
    assert!(looks_like_template("{"));
    assert!(!looks_like_template("/books/1"));
    assert!(!looks_like_template("}"));
}

#[test]
fn complexity_counts_what_follows_the_literal_prefix() {
    let books = template("https://example.com/books/{id}");
    assert_eq!(books.literal_prefix(), "https://example.com/books/");
    assert_eq!(books.complexity(), 7);
    let users = template("https://example.com/users/{user}/books{?page}");
    assert_eq!(users.literal_prefix(), "https://example.com/users/");
    assert_eq!(users.complexity(), 25);
    assert_eq!(template("/literal/only").complexity(), 1);
    assert_eq!(template("/literal/only").literal_prefix(), "/literal/only");
    let hostile: String = (0..250).map(|i| format!("{{+xv{i}}}")).collect();
    assert!(hostile.len() > 1800);
    assert_eq!(template(&hostile).literal_prefix(), "");
    assert_eq!(template(&hostile).complexity(), 1501);
}

#[test]
fn adversarial_inputs_run_in_linear_time() {
    let repeat = |piece: &str, n: usize| piece.repeat(n);
    let numbered = |pattern: &dyn Fn(usize) -> String| (0..40).map(pattern).collect::<String>();
    let mut cases: Vec<(String, String, bool)> = vec![
        (
            numbered(&|i| format!("{{a{i}}}")),
            repeat("a", 10_000) + "!",
            false,
        ),
        (
            numbered(&|i| format!("{{a{i}}}")),
            repeat("a", 10_240),
            true,
        ),
        (
            numbered(&|i| format!("{{+a{i}}}")),
            repeat("/", 10_000) + " ",
            false,
        ),
        (
            numbered(&|i| format!("{{a{i}:9999}}")),
            repeat("a", 10_000) + "!",
            false,
        ),
        (
            numbered(&|i| format!("{{a{i}:9999}}")),
            repeat("%20", 3_400),
            true,
        ),
        (
            numbered(&|i| format!("{{/a{i}*}}")),
            repeat("/a", 5_000) + "!",
            false,
        ),
        (
            numbered(&|i| format!("{{;a{i}*,b}}")),
            repeat(";a0=1", 2_000) + "!",
            false,
        ),
        (
            numbered(&|i| format!("{{?a,b{i}*}}{{&c*}}")),
            repeat("&c=1", 2_500) + "!",
            false,
        ),
        (
            numbered(&|i| format!("{{x{i},y,z,w}}")),
            repeat("a,", 5_000) + "!",
            false,
        ),
        (
            numbered(&|_| "{+x}a".to_owned()),
            repeat("a", 10_000) + "b",
            false,
        ),
        (
            numbered(&|_| "{#x:50,y*}".to_owned()),
            repeat("#a,", 3_400) + " ",
            false,
        ),
    ];
    cases.push((
        numbered(&|i| format!("{{a{i}}}%")),
        repeat("%", 10_000),
        false,
    ));
    for (source, topic, expected) in cases {
        let compiled = template(&source);
        let start = Instant::now();
        assert_eq!(compiled.matches(&topic), expected, "{source}");
        let elapsed = start.elapsed();
        // Linear matching takes milliseconds here; a backtracking matcher would take longer
        // than the universe has. The bound is loose so a busy CI machine cannot trip it.
        assert!(
            elapsed < Duration::from_secs(10),
            "{source} took {elapsed:?}"
        );
    }
}

#[test]
fn matching_is_reentrant_across_threads() {
    let compiled = template("https://example.com/{a}/{+b}{?c*}");
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..200 {
                    assert!(compiled.matches(&format!("https://example.com/{i}/x/y?c={i}&c=2")));
                    assert!(!compiled.matches(&format!("https://example.com/{i}/x y")));
                }
            });
        }
    });
}

// -----------------------------------------------------------------------------------------
// Regex oracle and expander

fn operator_symbol(operator: Operator) -> &'static str {
    match operator {
        Operator::Simple => "",
        Operator::Reserved => "+",
        Operator::Fragment => "#",
        Operator::Label => ".",
        Operator::Path => "/",
        Operator::PathParam => ";",
        Operator::Query => "?",
        Operator::QueryContinuation => "&",
    }
}

fn allows_reserved(operator: Operator) -> bool {
    matches!(operator, Operator::Reserved | Operator::Fragment)
}

fn is_named(operator: Operator) -> bool {
    matches!(
        operator,
        Operator::PathParam | Operator::Query | Operator::QueryContinuation
    )
}

fn byte_str(byte: u8) -> String {
    char::from(byte).to_string()
}

/// The template as an anchored regex, built independently of the NFA compiler.
struct Oracle {
    regex: Regex,
}

impl Oracle {
    fn new(source: &str) -> Oracle {
        Oracle::from_parts(&parse_parts(source).unwrap())
    }

    fn from_parts(parts: &[Part]) -> Oracle {
        let mut pattern = String::from("^(?:");
        for part in parts {
            match part {
                Part::Literal(literal) => pattern.push_str(&regex::escape(literal)),
                Part::Expression { operator, vars } => {
                    pattern.push_str(&expression_regex(*operator, vars))
                }
            }
        }
        pattern.push_str(")$");
        Oracle {
            regex: Regex::new(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")),
        }
    }

    fn is_match(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }
}

/// `(?:FIRST(?:V1(?:SEP V2)?(?:SEP V3)?|V2(?:SEP V3)?|V3))?`: alternatives over which variable
/// is the first defined one.
fn expression_regex(operator: Operator, vars: &[VarSpec]) -> String {
    let first = operator
        .first()
        .map(|b| regex::escape(&byte_str(b)))
        .unwrap_or_default();
    let sep = regex::escape(&byte_str(operator.separator()));
    let items: Vec<String> = vars
        .iter()
        .map(|var| variable_regex(operator, var))
        .collect();
    let alternatives: Vec<String> = (0..items.len())
        .map(|i| {
            let mut alternative = items[i].clone();
            for item in &items[i + 1..] {
                write!(alternative, "(?:{sep}{item})?").unwrap();
            }
            alternative
        })
        .collect();
    format!("(?:{first}(?:{}))?", alternatives.join("|"))
}

fn variable_regex(operator: Operator, var: &VarSpec) -> String {
    let chars = if allows_reserved(operator) {
        r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]"
    } else {
        r"[A-Za-z0-9\-._~]"
    };
    let value_char = format!("(?:{chars}|%[0-9A-Fa-f]{{2}})");
    let value = |min: u16| match var.modifier {
        Modifier::Prefix(max) => format!("{value_char}{{{min},{max}}}"),
        _ => format!("{value_char}{}", if min == 0 { "*" } else { "+" }),
    };
    let name = regex::escape(&var.name);
    let item = match operator {
        Operator::PathParam => format!("{name}(?:={})?", value(1)),
        Operator::Query | Operator::QueryContinuation => format!("{name}={}", value(0)),
        _ => value(0),
    };
    match var.modifier {
        Modifier::Explode => {
            let sep = regex::escape(&byte_str(operator.separator()));
            format!("(?:{item}(?:{sep}{item})*)")
        }
        _ => item,
    }
}

const UNRESERVED: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
const RESERVED: &str = ":/?#[]@!$&'()*+,;=";

/// RFC 6570 section 3.2.1 encoding of one value.
fn encode(value: &str, allow_reserved: bool) -> String {
    let bytes = value.as_bytes();
    let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = char::from(bytes[i]);
        if bytes[i].is_ascii()
            && (UNRESERVED.contains(c) || (allow_reserved && RESERVED.contains(c)))
        {
            out.push(c);
            i += 1;
        } else if allow_reserved && c == '%' && hex(i + 1) && hex(i + 2) {
            out.push_str(&value[i..i + 3]);
            i += 3;
        } else {
            write!(out, "%{:02X}", bytes[i]).unwrap();
            i += 1;
        }
    }
    out
}

/// Expands `parts` (RFC 6570 section 3.2), taking the value of the n-th variable occurrence
/// from `values[n]` (missing or `None`: undefined). A non-exploded variable uses the first
/// item as a string; a prefixed one drops non-ASCII characters (see the module docs).
fn expand(parts: &[Part], values: &[Option<Vec<String>>]) -> String {
    let mut out = String::new();
    let mut occurrence = 0;
    for part in parts {
        let (operator, vars) = match part {
            Part::Literal(literal) => {
                out.push_str(literal);
                continue;
            }
            Part::Expression { operator, vars } => (*operator, vars),
        };
        let allow_reserved = allows_reserved(operator);
        let named_item = |out: &mut String, name: &str, item: &str| {
            if is_named(operator) {
                out.push_str(name);
                if item.is_empty() {
                    if operator != Operator::PathParam {
                        out.push('=');
                    }
                    return;
                }
                out.push('=');
            }
            out.push_str(&encode(item, allow_reserved));
        };
        let mut first = true;
        for var in vars {
            let value = values.get(occurrence).cloned().flatten();
            occurrence += 1;
            let Some(items) = value else { continue };
            if first {
                out.push_str(&operator.first().map(byte_str).unwrap_or_default());
                first = false;
            } else {
                out.push(char::from(operator.separator()));
            }
            match var.modifier {
                Modifier::Explode => {
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(char::from(operator.separator()));
                        }
                        named_item(&mut out, &var.name, item);
                    }
                }
                Modifier::Prefix(max) => {
                    let truncated: String = items[0]
                        .chars()
                        .filter(char::is_ascii)
                        .take(usize::from(max))
                        .collect();
                    named_item(&mut out, &var.name, &truncated);
                }
                Modifier::None => named_item(&mut out, &var.name, &items[0]),
            }
        }
    }
    out
}

/// Writes `parts` back as template source.
fn render(parts: &[Part]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Literal(literal) => out.push_str(literal),
            Part::Expression { operator, vars } => {
                out.push('{');
                out.push_str(operator_symbol(*operator));
                for (i, var) in vars.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&var.name);
                    match var.modifier {
                        Modifier::None => {}
                        Modifier::Prefix(max) => write!(out, ":{max}").unwrap(),
                        Modifier::Explode => out.push('*'),
                    }
                }
                out.push('}');
            }
        }
    }
    out
}

// -----------------------------------------------------------------------------------------
// Generators

const LITERAL_PIECES: &[&str] = &[
    "a", "b", "x", "/", ".", ",", ";", "?", "&", "=", "#", "%", "%2F", "-", "é", " ",
];
const NAMES: &[&str] = &["a", "b", "x.y", "v%41", "_1"];
const VALUE_PIECES: &[&str] = &[
    "a", "Z", "0", "-", ".", "_", "~", "/", "?", "#", "&", "=", ",", ";", "%", "%2F", "%zz", "é",
    " ", "!", "'", "[",
];
const TOPIC_PIECES: &[&str] = &[
    "a", "b", "x", "y", "v", "A", "_1", "1", "/", ".", ",", ";", "?", "&", "=", "#", "%", "%41",
    "%2F", "-", "é", " ", "!",
];

fn pieces(
    from: &'static [&'static str],
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(from), len).prop_map(|pieces| pieces.concat())
}

fn operator_strategy() -> impl Strategy<Value = Operator> {
    prop::sample::select(vec![
        Operator::Simple,
        Operator::Reserved,
        Operator::Fragment,
        Operator::Label,
        Operator::Path,
        Operator::PathParam,
        Operator::Query,
        Operator::QueryContinuation,
    ])
}

fn varspec_strategy() -> impl Strategy<Value = VarSpec> {
    let modifier = prop_oneof![
        3 => Just(Modifier::None),
        2 => (1u16..5).prop_map(Modifier::Prefix),
        2 => Just(Modifier::Explode),
    ];
    (prop::sample::select(NAMES), modifier).prop_map(|(name, modifier)| VarSpec {
        name: name.to_owned(),
        modifier,
    })
}

fn part_strategy() -> impl Strategy<Value = Part> {
    prop_oneof![
        1 => pieces(LITERAL_PIECES, 1..4).prop_map(Part::Literal),
        2 => (operator_strategy(), prop::collection::vec(varspec_strategy(), 1..4))
            .prop_map(|(operator, vars)| Part::Expression { operator, vars }),
    ]
}

/// A template source generated from the grammar, with its parsed parts (adjacent literals
/// merged by the parser).
fn template_strategy() -> impl Strategy<Value = (String, Vec<Part>)> {
    prop::collection::vec(part_strategy(), 0..5).prop_map(|parts| {
        let source = render(&parts);
        let parsed = parse_parts(&source).unwrap();
        (source, parsed)
    })
}

fn values_strategy() -> impl Strategy<Value = Vec<Option<Vec<String>>>> {
    prop::collection::vec(
        prop::option::weighted(
            0.75,
            prop::collection::vec(pieces(VALUE_PIECES, 0..4), 1..4),
        ),
        0..12,
    )
}

/// Deletes, inserts or replaces one character of `s`.
fn mutate(s: &str, at: prop::sample::Index, kind: u8, piece: &str) -> String {
    let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let i = boundaries[at.index(boundaries.len())];
    let next = s[i..].chars().next().map_or(i, |c| i + c.len_utf8());
    match kind {
        0 => format!("{}{}", &s[..i], &s[next..]),
        1 => format!("{}{piece}{}", &s[..i], &s[i..]),
        _ => format!("{}{piece}{}", &s[..i], &s[next..]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn agrees_with_oracle_on_random_strings(
        (source, parts) in template_strategy(),
        topics in prop::collection::vec(pieces(TOPIC_PIECES, 0..12), 1..8),
    ) {
        let compiled = template(&source);
        let oracle = Oracle::from_parts(&parts);
        for topic in &topics {
            prop_assert_eq!(compiled.matches(topic), oracle.is_match(topic), "{:?} vs {:?}", source, topic);
        }
    }

    #[test]
    fn agrees_with_oracle_on_expansions_and_near_misses(
        (source, parts) in template_strategy(),
        values in values_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(TOPIC_PIECES)), 1..6),
    ) {
        let compiled = template(&source);
        let oracle = Oracle::from_parts(&parts);
        let expansion = expand(&parts, &values);
        prop_assert_eq!(compiled.matches(&expansion), oracle.is_match(&expansion), "{:?} vs {:?}", source, expansion);
        let mut topic = expansion;
        for (at, kind, piece) in edits {
            topic = mutate(&topic, at, kind, piece);
            prop_assert_eq!(compiled.matches(&topic), oracle.is_match(&topic), "{:?} vs {:?}", source, topic);
        }
    }

    #[test]
    fn every_expansion_matches((source, parts) in template_strategy(), values in values_strategy()) {
        let compiled = template(&source);
        let expansion = expand(&parts, &values);
        prop_assert!(compiled.matches(&expansion), "{:?} should match {:?}", source, expansion);
    }

    #[test]
    fn parsing_round_trips_and_never_panics(
        source in prop_oneof![
            any::<String>(),
            pieces(&["{", "}", "a", "+", "#", ".", "/", ";", "?", "&", ":", "*", ",", "%", "4", "0", "1", "=", "é", "_"], 0..16),
        ],
        topic in pieces(TOPIC_PIECES, 0..8),
    ) {
        match Template::parse(&source) {
            Ok(compiled) => {
                prop_assert_eq!(render(&parse_parts(&source).unwrap()), source.clone());
                prop_assert_eq!(compiled.matches(&topic), Oracle::new(&source).is_match(&topic));
            }
            Err(error) => prop_assert!(error.position <= source.len()),
        }
    }
}
