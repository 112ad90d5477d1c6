//! RFC 6570 URI templates used as topic selectors.
//!
//! This module owns one thing: parsing a URI template (all four levels of RFC 6570: the operators
//! none, `+`, `#`, `.`, `/`, `;`, `?`, `&`, the explode modifier `*`, the prefix modifier `:N` and
//! several variables per expression) and compiling it into a matcher that tells whether a concrete
//! topic could have been produced by expanding the template with *some* values of its variables.
//! That is what the Mercure reference hub does with `yosida95/uritemplate`'s `Regexp()`; here the
//! matcher is our own code and needs no regex engine.
//!
//! It must not touch anything else: no I/O, no hub state, no knowledge of `*` or of exact topics.
//! Deciding what a selector string *is* belongs to the caller (`topic::Selector`): a string is a
//! template when [`looks_like_template`] says so **and** [`Template::parse`] succeeds; a string
//! with a `{` that does not parse (say `https://example.com/{oops`) is an exact topic, compared
//! byte for byte, as in the reference hub. A string without any expression (`/books/1`) does parse
//! as a literal-only template that matches only itself.
//!
//! # Parsing
//!
//! Literals are any characters except `{` and `}` (the RFC's stricter literal rules are not
//! enforced: characters such as spaces are simply matched as themselves). An expression is `{`,
//! an optional operator (one of `+ # . / ; ? &`; `= , ! @ |` are reserved by the RFC and
//! rejected), one or more comma-separated varspecs, and `}`. A varspec is a varname (ALPHA /
//! DIGIT / `_` / pct-encoded triplets, with single dots between them) followed by nothing, `*`,
//! or `:N` with `1 <= N <= 9999` written without leading zeros. A `}` outside an expression, an
//! unclosed `{`, an empty expression and anything else out of that grammar is a
//! [`TemplateError`].
//!
//! # Matching semantics
//!
//! `matches(topic)` is true exactly when `topic`, as bytes, belongs to the regular language below
//! (the test oracle builds the equivalent anchored regex and compares on random inputs):
//!
//! * a literal matches its own bytes; no percent-encoding equivalence is applied anywhere;
//! * a *value* is a run of value characters, where a value character is one unreserved byte
//!   (`ALPHA / DIGIT / - . _ ~`), or for the `+` and `#` operators also one reserved byte
//!   (`: / ? # [ ] @ ! $ & ' ( ) * + , ; =`), or a pct-encoded triplet `%` HEXDIG HEXDIG (hex
//!   digits in either case). With the prefix modifier `:N` a value has at most `N` value
//!   characters, a triplet counting as one;
//! * a variable's *item* is the value itself for the operators none, `+`, `#`, `.` and `/`; for
//!   `;` it is `name` or `name=` followed by a non-empty value; for `?` and `&` it is `name=`
//!   followed by a (possibly empty) value, `name` being the varname exactly as written;
//! * a non-exploded variable expands to one item; an exploded one (`*`) to one or more items
//!   joined by the operator's separator;
//! * an expression matches either the empty string (every variable undefined) or its operator's
//!   leading character (none for the operators none and `+`; the operator itself for `#`, `.`,
//!   `/`, `;`, `?`, `&`) followed by the expansions of a non-empty, in-order subset of its
//!   variables (the defined ones) joined by the separator (`,` for none, `+` and `#`; `.`, `/`,
//!   `;` for those operators; `&` for `?` and `&`).
//!
//! Every occurrence of a variable is independent, even when a name repeats (`{x}/{x}` matches
//! `a/b`), which keeps the language regular. Known differences from an exact RFC 6570 inverse:
//! non-exploded list values (`a,b` for `{x}`) and associative-array values (`k=v`) are not
//! modelled, and a prefix counts triplets rather than decoded characters (a truncated value whose
//! characters are not ASCII, encoded as several triplets each, may exceed `N`). Compared with the
//! reference hub's regex this is stricter: that regex also accepts `,` inside simple values and
//! `=`/`,` inside named values, ignores `:N`, and does not check the names of `;`, `?`, `&`
//! parameters. It is also more lenient on parsing: the reference hub rejects literals with
//! characters RFC 6570 forbids (spaces, `"`, `<`, a `%` not starting a triplet...) and so
//! treats such strings as exact topics.
//!
//! # Cost
//!
//! The template is compiled into a small Thompson NFA (one instruction per literal byte, a handful
//! per variable, independent of `N` for `:N` thanks to a counter carried by each thread) and
//! matched by simulating all states at once, so `matches` runs in `O(topic length × template
//! size)` time with no backtracking, and without allocating once the calling thread's scratch
//! buffers have grown (buffers for very large templates are not retained). A leading literal is
//! compared with `starts_with` before the NFA runs.

use std::cell::RefCell;
use std::fmt;

/// Why a string is not a valid URI template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset in the source where the problem was found.
    pub position: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid URI template at byte {}: {}",
            self.position, self.reason
        )
    }
}

impl std::error::Error for TemplateError {}

fn error(position: usize, reason: &'static str) -> TemplateError {
    TemplateError { position, reason }
}

/// Does `s` contain a `{`? A cheap test run before [`Template::parse`]: strings without one are
/// exact topics.
pub(crate) fn looks_like_template(s: &str) -> bool {
    s.contains('{')
}

/// An RFC 6570 expression operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// No operator: `{x}`.
    Simple,
    /// `{+x}`.
    Reserved,
    /// `{#x}`.
    Fragment,
    /// `{.x}`.
    Label,
    /// `{/x}`.
    Path,
    /// `{;x}`.
    PathParam,
    /// `{?x}`.
    Query,
    /// `{&x}`.
    QueryContinuation,
}

impl Operator {
    fn from_byte(byte: u8) -> Option<Operator> {
        Some(match byte {
            b'+' => Operator::Reserved,
            b'#' => Operator::Fragment,
            b'.' => Operator::Label,
            b'/' => Operator::Path,
            b';' => Operator::PathParam,
            b'?' => Operator::Query,
            b'&' => Operator::QueryContinuation,
            _ => return None,
        })
    }

    /// Written before the first defined variable.
    fn first(self) -> Option<u8> {
        match self {
            Operator::Simple | Operator::Reserved => None,
            Operator::Fragment => Some(b'#'),
            Operator::Label => Some(b'.'),
            Operator::Path => Some(b'/'),
            Operator::PathParam => Some(b';'),
            Operator::Query => Some(b'?'),
            Operator::QueryContinuation => Some(b'&'),
        }
    }

    /// Written between defined variables and between the items of an exploded one.
    fn separator(self) -> u8 {
        match self {
            Operator::Simple | Operator::Reserved | Operator::Fragment => b',',
            Operator::Label => b'.',
            Operator::Path => b'/',
            Operator::PathParam => b';',
            Operator::Query | Operator::QueryContinuation => b'&',
        }
    }

    fn class(self) -> Class {
        match self {
            Operator::Reserved | Operator::Fragment => Class::UnreservedOrReserved,
            _ => Class::Unreserved,
        }
    }
}

/// The modifier of one varspec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    None,
    /// `:N`, `1 <= N <= 9999`.
    Prefix(u16),
    /// `*`.
    Explode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct VarSpec {
    name: String,
    modifier: Modifier,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Expression {
        operator: Operator,
        vars: Vec<VarSpec>,
    },
}

/// A compiled URI template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    /// Length of the leading literal, checked with `starts_with` before running the NFA on the rest.
    prefix_len: usize,
    /// The NFA for everything after the leading literal.
    program: Program,
}

impl Template {
    /// Parses and compiles `source`. Fails on a `}` outside an expression, an unclosed `{`, an
    /// empty expression, a reserved or unknown operator, a malformed variable name, or a bad
    /// modifier (`:0`, `:10000`, `:` without digits, both `:N` and `*`).
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let parts = parse_parts(source)?;
        let (prefix_len, rest) = match parts.split_first() {
            Some((Part::Literal(literal), rest)) => (literal.len(), rest),
            _ => (0, parts.as_slice()),
        };
        let program = Program::compile(rest);
        Ok(Template {
            source: source.to_owned(),
            prefix_len,
            program,
        })
    }

    /// The text this template was parsed from.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The literal text before the first expression (all of it for a literal-only template).
    /// Every topic the template matches starts with it.
    pub(crate) fn literal_prefix(&self) -> &str {
        self.source.get(..self.prefix_len).unwrap_or_default()
    }

    /// The size of the compiled matcher for everything after [`Template::literal_prefix`]: one
    /// unit per literal byte after the first expression, and a few per variable (three to eight,
    /// plus the name's length for the `;`, `?` and `&` operators). Matching one topic costs at
    /// most `complexity × topic length` steps, so this is what limits on templates bound.
    pub(crate) fn complexity(&self) -> usize {
        self.program.insts.len()
    }

    /// Could `topic` be an expansion of this template for some values of its variables (each
    /// variable defined or not)? See the module documentation for the exact language.
    pub fn matches(&self, topic: &str) -> bool {
        let prefix = self
            .source
            .as_bytes()
            .get(..self.prefix_len)
            .unwrap_or_default();
        match topic.as_bytes().strip_prefix(prefix) {
            Some(rest) => self.program.matches(rest),
            None => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

fn parse_parts(source: &str) -> Result<Vec<Part>, TemplateError> {
    let bytes = source.as_bytes();
    let mut parts = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'{' => {
                if literal_start < i {
                    parts.push(Part::Literal(source[literal_start..i].to_owned()));
                }
                let (part, end) = parse_expression(bytes, i)?;
                parts.push(part);
                i = end;
                literal_start = end;
            }
            b'}' => return Err(error(i, "unmatched '}'")),
            _ => i += 1,
        }
    }
    if literal_start < bytes.len() {
        parts.push(Part::Literal(source[literal_start..].to_owned()));
    }
    Ok(parts)
}

/// Parses the expression whose `{` is at `open`; returns it and the offset just past its `}`.
fn parse_expression(bytes: &[u8], open: usize) -> Result<(Part, usize), TemplateError> {
    let unclosed = error(open, "unclosed expression");
    let mut i = open + 1;
    let operator = match bytes.get(i) {
        None => return Err(unclosed),
        Some(b'}') => return Err(error(i, "empty expression")),
        Some(b'=' | b',' | b'!' | b'@' | b'|') => {
            return Err(error(i, "reserved operator"));
        }
        Some(&byte) => match Operator::from_byte(byte) {
            Some(operator) => {
                i += 1;
                operator
            }
            None => Operator::Simple,
        },
    };
    let mut vars = Vec::new();
    loop {
        let name_start = i;
        i = parse_varname(bytes, i)?;
        // Every byte of a varname is ASCII, so this cannot fail; stay panic-free anyway.
        let name = String::from_utf8_lossy(&bytes[name_start..i]).into_owned();
        let modifier = match bytes.get(i) {
            Some(b'*') => {
                i += 1;
                Modifier::Explode
            }
            Some(b':') => {
                i += 1;
                let digits_start = i;
                while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let digits = &bytes[digits_start..i];
                if digits.is_empty() {
                    return Err(error(digits_start, "expected a prefix length"));
                }
                if digits.len() > 4 || digits.first() == Some(&b'0') {
                    return Err(error(
                        digits_start,
                        "prefix length must be between 1 and 9999",
                    ));
                }
                let length = digits
                    .iter()
                    .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
                Modifier::Prefix(length)
            }
            _ => Modifier::None,
        };
        vars.push(VarSpec { name, modifier });
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok((Part::Expression { operator, vars }, i + 1)),
            None => return Err(unclosed),
            Some(_) => return Err(error(i, "unexpected character in expression")),
        }
    }
}

/// Parses a varname starting at `i`; returns the offset just past it.
fn parse_varname(bytes: &[u8], mut i: usize) -> Result<usize, TemplateError> {
    match varchar_len(bytes, i)? {
        Some(len) => i += len,
        None if i >= bytes.len() => return Err(error(i, "unclosed expression")),
        None => return Err(error(i, "expected a variable name")),
    }
    loop {
        if let Some(len) = varchar_len(bytes, i)? {
            i += len;
        } else if bytes.get(i) == Some(&b'.') {
            match varchar_len(bytes, i + 1)? {
                Some(len) => i += 1 + len,
                None => return Err(error(i, "misplaced '.' in variable name")),
            }
        } else {
            return Ok(i);
        }
    }
}

/// The length of the varchar at `i` (1, or 3 for a pct-encoded triplet), `None` if there is none.
fn varchar_len(bytes: &[u8], i: usize) -> Result<Option<usize>, TemplateError> {
    match bytes.get(i) {
        Some(byte) if byte.is_ascii_alphanumeric() || *byte == b'_' => Ok(Some(1)),
        Some(b'%') => {
            let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
            if hex(i + 1) && hex(i + 2) {
                Ok(Some(3))
            } else {
                Err(error(i, "invalid pct-encoded triplet in variable name"))
            }
        }
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation into an NFA

/// The bytes a value may contain outside of pct-encoded triplets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `ALPHA / DIGIT / - . _ ~`.
    Unreserved,
    /// Those and `: / ? # [ ] @ ! $ & ' ( ) * + , ; =`.
    UnreservedOrReserved,
}

impl Class {
    fn contains(self, byte: u8) -> bool {
        let table = match self {
            Class::Unreserved => &UNRESERVED,
            Class::UnreservedOrReserved => &UNRESERVED_OR_RESERVED,
        };
        table[usize::from(byte)]
    }
}

const UNRESERVED: [bool; 256] = byte_table(b"-._~");
const UNRESERVED_OR_RESERVED: [bool; 256] = byte_table(b"-._~:/?#[]@!$&'()*+,;=");

/// A lookup table holding ASCII letters and digits plus `extra`.
const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// One NFA instruction. Targets are indices into [`Program::insts`].
///
/// Every thread carries a counter: the number of value characters consumed so far in the `:N`
/// value it is in. It is zero everywhere else (leaving a value resets it, and unbounded values
/// never increment it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    /// Consume this byte.
    Byte(u8, usize),
    /// Consume one value character: a byte of `class` (then `next`) or the `%` of a triplet (then
    /// `hex`, two [`Inst::Hex`] leading to `next`). With a bound, only while the counter is below
    /// it, and the counter is incremented. With an `exit`, this is the head of a value loop
    /// (`next` is itself) and entering it also enters `exit`, with the counter reset.
    Char {
        class: Class,
        bound: Option<u16>,
        next: usize,
        hex: usize,
        exit: Option<usize>,
    },
    /// Consume one hex digit.
    Hex(usize),
    /// Continue at both targets.
    Split(usize, usize),
    /// Accept (when the input is exhausted).
    Match,
}

#[derive(Debug, Clone)]
struct Program {
    insts: Vec<Inst>,
    start: usize,
    accept: usize,
}

impl Program {
    /// Compiles `parts` back to front, so every fragment knows its continuation.
    fn compile(parts: &[Part]) -> Program {
        let mut builder = Builder { insts: Vec::new() };
        let accept = builder.push(Inst::Match);
        let mut next = accept;
        for part in parts.iter().rev() {
            next = match part {
                Part::Literal(literal) => builder.literal(literal.as_bytes(), next),
                Part::Expression { operator, vars } => builder.expression(*operator, vars, next),
            };
        }
        Program {
            insts: builder.insts,
            start: next,
            accept,
        }
    }

    fn matches(&self, input: &[u8]) -> bool {
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        /// Scratch buffers for bigger programs are dropped after use rather than kept per thread.
        const RETAINED_STATES: usize = 1 << 14;
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                let matched = self.run(&mut scratch, input);
                if self.insts.len() > RETAINED_STATES {
                    *scratch = Scratch::default();
                }
                matched
            }
            Err(_) => self.run(&mut Scratch::default(), input),
        })
    }

    /// Simulates every NFA thread in lockstep over `input`.
    fn run(&self, scratch: &mut Scratch, input: &[u8]) -> bool {
        let Scratch {
            current,
            next,
            stack,
        } = scratch;
        let size = self.insts.len();
        current.reset(size);
        next.reset(size);
        self.add(current, stack, self.start, 0);
        for &byte in input {
            if current.dense.is_empty() {
                return false;
            }
            next.clear();
            for &pc in &current.dense {
                let count = current.counts[pc];
                match self.insts[pc] {
                    Inst::Byte(expected, target) if expected == byte => {
                        self.add(next, stack, target, count);
                    }
                    Inst::Hex(target) if byte.is_ascii_hexdigit() => {
                        self.add(next, stack, target, count);
                    }
                    Inst::Char {
                        class,
                        bound,
                        next: target,
                        hex,
                        exit: _,
                    } => {
                        let count = match bound {
                            None => 0,
                            Some(bound) if count < bound => count + 1,
                            Some(_) => continue,
                        };
                        if class.contains(byte) {
                            self.add(next, stack, target, count);
                        } else if byte == b'%' {
                            self.add(next, stack, hex, count);
                        }
                    }
                    _ => {}
                }
            }
            std::mem::swap(current, next);
        }
        current.contains(self.accept)
    }

    /// Adds the thread `(pc, count)` and everything reachable from it without consuming input.
    ///
    /// A thread with a smaller counter can do everything one with a larger counter can (the
    /// counter is only ever compared against an upper bound, and leaving a value resets it), so
    /// each state keeps the smallest counter that reached it and is re-explored only when a
    /// smaller one arrives. Epsilon moves out of a `:N` value always carry a zero counter, so such
    /// re-exploration never goes beyond the value's own loop head.
    fn add(&self, set: &mut ThreadSet, stack: &mut Vec<(usize, u16)>, pc: usize, count: u16) {
        // Most targets are already there: skip the stack entirely for them.
        if !set.insert(pc, count) {
            return;
        }
        // Only what was just inserted (or lowered) into `set` goes on the stack.
        stack.clear();
        stack.push((pc, count));
        let enter = |set: &mut ThreadSet, stack: &mut Vec<(usize, u16)>, pc, count| {
            if set.insert(pc, count) {
                stack.push((pc, count));
            }
        };
        while let Some((pc, count)) = stack.pop() {
            match self.insts[pc] {
                Inst::Split(a, b) => {
                    enter(set, stack, b, count);
                    enter(set, stack, a, count);
                }
                Inst::Char {
                    exit: Some(exit), ..
                } => enter(set, stack, exit, 0),
                _ => {}
            }
        }
    }
}

struct Builder {
    insts: Vec<Inst>,
}

impl Builder {
    fn push(&mut self, inst: Inst) -> usize {
        self.insts.push(inst);
        self.insts.len() - 1
    }

    /// A slot for an instruction that is only known once its loop body has been compiled.
    fn reserve(&mut self) -> usize {
        self.push(Inst::Match)
    }

    fn set(&mut self, at: usize, inst: Inst) {
        if let Some(slot) = self.insts.get_mut(at) {
            *slot = inst;
        }
    }

    fn literal(&mut self, bytes: &[u8], next: usize) -> usize {
        bytes
            .iter()
            .rev()
            .fold(next, |next, &byte| self.push(Inst::Byte(byte, next)))
    }

    /// `first` + a non-empty in-order subset of the variables joined by `sep`, or nothing.
    ///
    /// Two chains of decision states: `a[i]` ("nothing written yet, decide variable i") and
    /// `b[i]` ("something written, decide variable i"). Writing variable `i` leads to `b[i + 1]`
    /// in both cases; `b[k]` is the continuation and `a[k]` is a dead end, since `first` must be
    /// followed by at least one variable.
    fn expression(&mut self, operator: Operator, vars: &[VarSpec], next: usize) -> usize {
        let mut b_next = next;
        let mut a_next: Option<usize> = None;
        for var in vars.iter().rev() {
            let value = self.variable(operator, var, b_next);
            let separator = self.push(Inst::Byte(operator.separator(), value));
            let b = self.push(Inst::Split(b_next, separator));
            let a = match a_next {
                Some(a_next) => self.push(Inst::Split(a_next, value)),
                None => value,
            };
            b_next = b;
            a_next = Some(a);
        }
        let Some(a_first) = a_next else {
            return next;
        };
        let body = match operator.first() {
            Some(first) => self.push(Inst::Byte(first, a_first)),
            None => a_first,
        };
        self.push(Inst::Split(next, body))
    }

    fn variable(&mut self, operator: Operator, var: &VarSpec, next: usize) -> usize {
        match var.modifier {
            Modifier::Explode => {
                let head = self.reserve();
                let item = self.item(operator, &var.name, None, head);
                let separator = self.push(Inst::Byte(operator.separator(), item));
                self.set(head, Inst::Split(next, separator));
                item
            }
            Modifier::Prefix(bound) => self.item(operator, &var.name, Some(bound), next),
            Modifier::None => self.item(operator, &var.name, None, next),
        }
    }

    fn item(&mut self, operator: Operator, name: &str, bound: Option<u16>, next: usize) -> usize {
        let class = operator.class();
        match operator {
            Operator::PathParam => {
                let value = self.value(class, true, bound, next);
                let equals = self.push(Inst::Byte(b'=', value));
                let choice = self.push(Inst::Split(next, equals));
                self.literal(name.as_bytes(), choice)
            }
            Operator::Query | Operator::QueryContinuation => {
                let value = self.value(class, false, bound, next);
                let equals = self.push(Inst::Byte(b'=', value));
                self.literal(name.as_bytes(), equals)
            }
            _ => self.value(class, false, bound, next),
        }
    }

    /// A run of value characters (a byte of `class` or a pct-encoded triplet), at least one if
    /// `non_empty`, at most `bound` if given, then `next`: one loop head, preceded by a mandatory
    /// first character when `non_empty` (a bound is at least 1, so that one is always allowed).
    fn value(&mut self, class: Class, non_empty: bool, bound: Option<u16>, next: usize) -> usize {
        let head = self.reserve();
        let hex = self.hex_pair(head);
        self.set(
            head,
            Inst::Char {
                class,
                bound,
                next: head,
                hex,
                exit: Some(next),
            },
        );
        if !non_empty {
            return head;
        }
        let hex = self.hex_pair(head);
        self.push(Inst::Char {
            class,
            bound,
            next: head,
            hex,
            exit: None,
        })
    }

    /// Two hex digits, then `next`.
    fn hex_pair(&mut self, next: usize) -> usize {
        let second = self.push(Inst::Hex(next));
        self.push(Inst::Hex(second))
    }
}

// ---------------------------------------------------------------------------------------------
// Simulation state

/// A sparse set of NFA states, each with the smallest counter that reached it. Indexed by pc:
/// every target in a [`Program`] is below its length, and [`ThreadSet::reset`] sizes the set to it.
#[derive(Debug, Default)]
struct ThreadSet {
    dense: Vec<usize>,
    sparse: Vec<usize>,
    counts: Vec<u16>,
}

impl ThreadSet {
    fn reset(&mut self, size: usize) {
        self.dense.clear();
        if self.sparse.len() < size {
            self.sparse.resize(size, 0);
            self.counts.resize(size, 0);
        }
    }

    fn clear(&mut self) {
        self.dense.clear();
    }

    fn contains(&self, pc: usize) -> bool {
        let slot = self.sparse[pc];
        slot < self.dense.len() && self.dense[slot] == pc
    }

    /// Records `(pc, count)`; false if `pc` is already there with a counter no larger.
    fn insert(&mut self, pc: usize, count: u16) -> bool {
        if self.contains(pc) {
            if self.counts[pc] <= count {
                return false;
            }
        } else {
            self.sparse[pc] = self.dense.len();
            self.dense.push(pc);
        }
        self.counts[pc] = count;
        true
    }
}

/// Per-thread buffers reused across calls to [`Template::matches`].
#[derive(Debug, Default)]
struct Scratch {
    current: ThreadSet,
    next: ThreadSet,
    stack: Vec<(usize, u16)>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
