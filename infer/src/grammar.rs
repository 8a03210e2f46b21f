//! Constrained output: GBNF grammars as llama.cpp's grammar sampler runs them.
//!
//! Grammars come from three places: a client's own GBNF (llama-server's `grammar` field),
//! a JSON schema (`response_format`, llama-server's `json_schema`, each tool's parameters)
//! turned into GBNF by llama.cpp's converter, and the tool-call formats ([`crate::tools`]),
//! which wrap the converter's rules in the model's own call syntax.
//!
//! A client's grammar is checked here before llama.cpp sees it ([`check_syntax`]): a syntax
//! error or an undefined rule is a 400 naming its line and column, as llama.cpp's own
//! parser would only print it on the worker's stderr. Grammars are combined by giving each
//! part's rules a prefix ([`prefix_rules`]), so two generated grammars never collide.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use serde_json::Value;

use crate::api::ApiError;

/// The largest grammar or schema a request may carry (bytes).
pub const MAX_GRAMMAR_BYTES: usize = 256 * 1024;
/// The deepest nesting of parentheses: llama.cpp's grammar parser recurses into each.
pub const MAX_NESTING: usize = 64;
/// The largest bound of one repetition `{m,n}`, and of all of them together: llama.cpp
/// expands a bounded repetition into that many copies of the element.
pub const MAX_REPEAT: u64 = 4096;
pub const MAX_REPEAT_TOTAL: u64 = 65_536;

/// How generation is constrained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// The whole output matches `gbnf` from its first token (rule `root`).
    Full { gbnf: String },
    /// Free text until one of `triggers` is generated; from the trigger on (the trigger
    /// included) the output matches `gbnf`. Tool calls in `auto` mode.
    Lazy { gbnf: String, triggers: Vec<String> },
}

impl Constraint {
    pub fn gbnf(&self) -> &str {
        match self {
            Constraint::Full { gbnf } | Constraint::Lazy { gbnf, .. } => gbnf,
        }
    }

    /// The sampler that enforces it.
    pub fn sampler(&self, model: &LlamaModel) -> Result<LlamaSampler, String> {
        let made = match self {
            Constraint::Full { gbnf } => LlamaSampler::grammar(model, gbnf, ROOT),
            Constraint::Lazy { gbnf, triggers } => {
                LlamaSampler::grammar_lazy(model, gbnf, ROOT, triggers.iter().map(String::as_bytes), &[])
            }
        };
        made.map_err(|e| format!("llama.cpp refused the grammar ({e}); is a rule left-recursive?"))
    }

    /// Refuse, as the client's fault, a grammar llama.cpp will not build. The sampler is
    /// made once here and dropped: it is cheap beside a decode.
    pub fn check(&self, model: &LlamaModel, param: &str) -> Result<(), ApiError> {
        self.sampler(model).map(drop).map_err(|e| ApiError::invalid(e, Some(param)))
    }
}

/// The start rule of every grammar here.
pub const ROOT: &str = "root";

/// GBNF for values matching a JSON schema, by llama.cpp's converter.
pub fn from_schema(schema: &Value, param: &str) -> Result<String, ApiError> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err(ApiError::invalid("a JSON schema must be an object", Some(param)));
    }
    let text = schema.to_string();
    if text.len() > MAX_GRAMMAR_BYTES {
        return Err(ApiError::invalid(
            format!("the schema is {} bytes; at most {MAX_GRAMMAR_BYTES}", text.len()),
            Some(param),
        ));
    }
    let gbnf = llama_cpp_2::json_schema_to_grammar(&text).map_err(|_| {
        ApiError::invalid(
            format!(
                "llama.cpp cannot make a grammar of this JSON schema ({}); check its types and $refs",
                schema_hint(schema)
            ),
            Some(param),
        )
    })?;
    // A schema can ask for more than a grammar may hold (`"minLength": 1000000000`).
    check_syntax(&gbnf)
        .map_err(|e| ApiError::invalid(format!("the grammar made from this schema is refused: {e}"), Some(param)))?;
    Ok(gbnf)
}

/// What a schema the converter refused has that it cannot take, where it can be seen.
fn schema_hint(schema: &Value) -> String {
    const TYPES: [&str; 7] = ["object", "array", "string", "number", "integer", "boolean", "null"];
    let mut stack = vec![(String::from("#"), schema)];
    while let Some((path, v)) = stack.pop() {
        let Some(map) = v.as_object() else { continue };
        match map.get("type") {
            Some(Value::String(t)) if !TYPES.contains(&t.as_str()) => return format!("{path}/type is {t:?}"),
            Some(Value::Array(ts)) if ts.iter().any(|t| t.as_str().is_none_or(|t| !TYPES.contains(&t))) => {
                return format!("{path}/type has an unknown type");
            }
            _ => {}
        }
        if let Some(Value::String(r)) = map.get("$ref") {
            if !r.starts_with("#/") && r != "#" {
                return format!("{path}/$ref {r:?} is not local to the schema");
            }
        }
        for (k, child) in map {
            match child {
                Value::Object(_) => stack.push((format!("{path}/{k}"), child)),
                Value::Array(items) => {
                    stack.extend(items.iter().enumerate().map(|(i, c)| (format!("{path}/{k}/{i}"), c)));
                }
                _ => {}
            }
        }
    }
    "a construct it does not support".into()
}

/// GBNF for any JSON object (`response_format: json_object`).
pub fn json_object() -> String {
    from_schema(&serde_json::json!({ "type": "object" }), "response_format").expect("a constant schema converts")
}

/// A grammar error with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}: {}", self.line, self.column, self.message)
    }
}

/// One lexical piece of a grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Name(&'a str),
    Define,
    Literal,
    Class,
    Any,
    Open,
    Close,
    Alt,
    Repeat,
    /// A newline not inside a group: may end a rule.
    Newline,
}

/// Split a grammar into pieces with their byte offsets; literals and classes are checked
/// for termination and escapes.
fn lex(src: &str) -> Result<Vec<(usize, Tok<'_>)>, (usize, String)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\n' => {
                out.push((start, Tok::Newline));
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'"' | b'[' => {
                let close = if c == b'"' { b'"' } else { b']' };
                i += 1;
                loop {
                    match b.get(i) {
                        None | Some(b'\n') => {
                            let what = if c == b'"' { "string" } else { "character class" };
                            return Err((start, format!("unterminated {what}")));
                        }
                        Some(b'\\') => {
                            let n = escape_len(&b[i + 1..]).ok_or((i, "bad escape sequence".to_string()))?;
                            i += 1 + n;
                        }
                        Some(&x) if x == close => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                out.push((start, if c == b'"' { Tok::Literal } else { Tok::Class }));
            }
            b'{' => {
                let end = src[i..].find('}').ok_or((start, "unterminated repetition {m,n}".to_string()))?;
                let inner = &src[i + 1..i + end];
                let ok = match inner.split_once(',') {
                    None => inner.trim().parse::<u32>().is_ok(),
                    Some((m, n)) => {
                        m.trim().parse::<u32>().is_ok() && (n.trim().is_empty() || n.trim().parse::<u32>().is_ok())
                    }
                };
                if !ok {
                    return Err((start, format!("bad repetition {{{inner}}}")));
                }
                i += end + 1;
                out.push((start, Tok::Repeat));
            }
            b'*' | b'+' | b'?' => {
                i += 1;
                out.push((start, Tok::Repeat));
            }
            b'(' => {
                i += 1;
                out.push((start, Tok::Open));
            }
            b')' => {
                i += 1;
                out.push((start, Tok::Close));
            }
            b'|' => {
                i += 1;
                out.push((start, Tok::Alt));
            }
            b'.' => {
                i += 1;
                out.push((start, Tok::Any));
            }
            b':' if src[i..].starts_with("::=") => {
                i += 3;
                out.push((start, Tok::Define));
            }
            c if c.is_ascii_alphanumeric() || c == b'-' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
                    i += 1;
                }
                out.push((start, Tok::Name(&src[start..i])));
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err((start, format!("unexpected {ch:?}")));
            }
        }
    }
    Ok(out)
}

/// Bytes an escape takes after its backslash.
fn escape_len(rest: &[u8]) -> Option<usize> {
    let hex = |n: usize| (rest.len() > n && rest[1..=n].iter().all(u8::is_ascii_hexdigit)).then_some(n + 1);
    match rest.first()? {
        b'x' => hex(2),
        b'u' => hex(4),
        b'U' => hex(8),
        b't' | b'n' | b'r' | b'\\' | b'"' | b'[' | b']' => Some(1),
        _ => None,
    }
}

fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count()) + 1;
    (line, column)
}

/// Check a GBNF grammar: its syntax, every rule it uses defined, a `root` rule, and its
/// size. What llama.cpp's parser would refuse is refused here with a line and column.
pub fn check_syntax(src: &str) -> Result<(), SyntaxError> {
    let err = |offset: usize, message: String| {
        let (line, column) = position(src, offset);
        SyntaxError { line, column, message }
    };
    if src.len() > MAX_GRAMMAR_BYTES {
        return Err(SyntaxError {
            line: 1,
            column: 1,
            message: format!("the grammar is {} bytes; at most {MAX_GRAMMAR_BYTES}", src.len()),
        });
    }
    let toks = lex(src).map_err(|(at, m)| err(at, m))?;
    let mut repeats = 0u64;
    for &(at, t) in &toks {
        if t != Tok::Repeat || src.as_bytes()[at] != b'{' {
            continue;
        }
        let inner = &src[at + 1..at + src[at..].find('}').unwrap_or(1)];
        let bound = inner.split(',').filter_map(|n| n.trim().parse::<u64>().ok()).max().unwrap_or(0);
        if bound > MAX_REPEAT {
            return Err(err(at, format!("a repetition of up to {bound}: at most {MAX_REPEAT}")));
        }
        repeats += bound;
        if repeats > MAX_REPEAT_TOTAL {
            return Err(err(at, format!("the repetitions add up to more than {MAX_REPEAT_TOTAL}")));
        }
    }
    let mut defined = std::collections::HashSet::new();
    let mut used: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match toks[i] {
            (_, Tok::Newline) => {
                i += 1;
                continue;
            }
            (at, Tok::Name(name)) => {
                if !matches!(toks.get(i + 1), Some((_, Tok::Define))) {
                    return Err(err(at, format!("expected ::= after the rule name {name:?}")));
                }
                defined.insert(name);
                i += 2;
            }
            (at, _) => return Err(err(at, "expected a rule name".into())),
        }
        // The rule's body: up to a newline outside parentheses, as llama.cpp reads it: a
        // body may start on the next line after `::=` and go on after a `|`.
        let mut depth = 0usize;
        let mut empty = true;
        let mut prev_term = false;
        let mut after_alt = false;
        while i < toks.len() {
            let (at, t) = toks[i];
            match t {
                Tok::Newline if depth == 0 => {
                    if !(empty || after_alt) {
                        break;
                    }
                }
                Tok::Newline => {}
                Tok::Name(n) => {
                    if matches!(toks.get(i + 1), Some((_, Tok::Define))) {
                        if depth > 0 || empty {
                            return Err(err(at, format!("rule {n:?} starts inside another rule's body")));
                        }
                        break;
                    }
                    used.push((at, n));
                    prev_term = true;
                    empty = false;
                    after_alt = false;
                }
                Tok::Literal | Tok::Class | Tok::Any => {
                    prev_term = true;
                    empty = false;
                    after_alt = false;
                }
                Tok::Open => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(err(at, format!("parentheses nested deeper than {MAX_NESTING}")));
                    }
                    prev_term = false;
                    empty = false;
                    after_alt = false;
                }
                Tok::Close => {
                    if depth == 0 {
                        return Err(err(at, "unmatched )".into()));
                    }
                    depth -= 1;
                    prev_term = true;
                }
                Tok::Alt => {
                    prev_term = false;
                    after_alt = true;
                }
                Tok::Repeat => {
                    if !prev_term {
                        return Err(err(at, "a repetition needs something before it".into()));
                    }
                }
                Tok::Define => return Err(err(at, "unexpected ::=".into())),
            }
            i += 1;
        }
        if depth > 0 {
            return Err(err(src.len(), "unclosed (".into()));
        }
    }
    if let Some((at, name)) = used.iter().find(|(_, n)| !defined.contains(n)) {
        return Err(err(*at, format!("rule {name:?} is used but not defined")));
    }
    if !defined.contains(ROOT) {
        return Err(err(0, format!("the grammar has no {ROOT:?} rule")));
    }
    Ok(())
}

/// The same grammar with every rule renamed `PREFIX-name`, so it can sit beside another.
/// The grammar must have passed [`check_syntax`].
pub fn prefix_rules(src: &str, prefix: &str) -> String {
    let toks = lex(src).unwrap_or_default();
    let mut out = String::with_capacity(src.len() + 64);
    let mut last = 0;
    for (at, t) in toks {
        if let Tok::Name(n) = t {
            out.push_str(&src[last..at]);
            out.push_str(prefix);
            out.push('-');
            out.push_str(n);
            last = at + n.len();
        }
    }
    out.push_str(&src[last..]);
    out
}

/// A GBNF string literal of `text`.
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_grammar_passes() {
        let g = "root ::= answer (\" \" answer)*\nanswer ::= \"yes\" | \"no\" | [0-9]{1,3} | # a number\n  \"maybe\"\n";
        check_syntax(g).expect("valid");
        check_syntax("root ::= ( \"a\"\n  | \"b\" )+ .\n").expect("group over lines");
        check_syntax("root ::= [^\"\\\\\\x00-\\x1F] \"\\u00e9\"").expect("escapes");
        let e = check_syntax("root ::= \"a\"\n  | \"b\"\n").expect_err("a rule ends at its line");
        assert_eq!((e.line, e.column), (2, 3), "{e}");
        assert!(check_syntax("root ::= a_b\n").is_err(), "llama.cpp names have no underscore");
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let e = check_syntax("root ::= x\n").expect_err("undefined");
        assert_eq!((e.line, e.column), (1, 10), "{e}");
        assert!(e.message.contains("\"x\" is used but not defined"), "{e}");
        let e = check_syntax("root ::= \"abc\nx ::= \"y\"").expect_err("unterminated");
        assert_eq!((e.line, e.column, e.message.as_str()), (1, 10, "unterminated string"));
        let e = check_syntax("a ::= \"a\"").expect_err("no root");
        assert!(e.message.contains("no \"root\" rule"), "{e}");
        let e = check_syntax("root ::= (\"a\"").expect_err("unclosed");
        assert!(e.message.contains("unclosed"), "{e}");
        let e = check_syntax("root ::= \"a\" {x}").expect_err("repetition");
        assert!(e.message.contains("bad repetition"), "{e}");
        let e = check_syntax("root ::= * \"a\"").expect_err("dangling repeat");
        assert_eq!(e.column, 10);
        let e = check_syntax("root \"a\"").expect_err("no ::=");
        assert!(e.message.contains("expected ::="), "{e}");
        let e = check_syntax("root ::= \"\\q\"").expect_err("escape");
        assert!(e.message.contains("escape"), "{e}");
    }

    #[test]
    fn grammars_that_would_exhaust_llama_cpp_are_refused() {
        let deep = format!("root ::= {}\"a\"{}", "(".repeat(65), ")".repeat(65));
        assert!(check_syntax(&deep).expect_err("deep").message.contains("nested deeper"));
        check_syntax(&format!("root ::= {}\"a\"{}", "(".repeat(64), ")".repeat(64))).expect("64 is fine");
        assert!(check_syntax("root ::= \"a\"{0,100000}").expect_err("big").message.contains("at most 4096"));
        let many = format!("root ::= {}", "\"a\"{4000} ".repeat(17));
        assert!(check_syntax(&many).expect_err("total").message.contains("add up"));
    }

    #[test]
    fn prefixed_rules_keep_literals_classes_and_counts() {
        let g = "root ::= item{2,3} \"root item\" [a-z]\nitem ::= \"x\" root?\n";
        check_syntax(g).expect("valid");
        let p = prefix_rules(g, "t");
        assert_eq!(p, "t-root ::= t-item{2,3} \"root item\" [a-z]\nt-item ::= \"x\" t-root?\n");
        check_syntax(&format!("root ::= t-root\n{p}")).expect("combined");
    }

    #[test]
    fn literals_escape_what_gbnf_needs() {
        assert_eq!(literal("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
        check_syntax(&format!("root ::= {}", literal("<tool_call>\n{\"x\"}"))).expect("literal parses");
    }
}
