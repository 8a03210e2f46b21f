//! Tool calling: OpenAI's `tools` and `tool_choice` in the model's own call format.
//!
//! The format follows the model's chat template ([`Family::detect`]):
//!
//! | family | the model writes | arguments key | lazy trigger |
//! |---|---|---|---|
//! | Hermes (Qwen 2.5/3, Hermes, many fine-tunes) | `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>` | `arguments` | `<tool_call>` |
//! | Llama 3.x | `{"name": …, "parameters": …}`, maybe after `<\|python_tag\|>` | `parameters` | `{"name"`, `<\|python_tag\|>` |
//! | Mistral | `[TOOL_CALLS][{"name": …, "arguments": …}]` | `arguments` | `[TOOL_CALLS]` |
//! | generic (templates that know no tools) | `{"tool_calls": [{"name": …, "arguments": …}]}` or `{"response": …}` | `arguments` | — (always constrained) |
//!
//! The call's JSON is constrained by a grammar made from each function's parameter schema
//! (llama.cpp's converter), so the name is one of the tools and the arguments parse and
//! match the schema. With `tool_choice: auto` the grammar is *lazy*: the model writes freely
//! until it writes the family's trigger, and from there the call must be well formed. With
//! `required` or a named function it applies from the first token. The generic family has
//! no trigger the model knows, so its whole answer is JSON: a call or a response.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::ApiError;
use crate::grammar::{self, Constraint};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema of the arguments object.
    pub parameters: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

/// The validated tool options of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub functions: Vec<Function>,
    pub choice: Choice,
    /// More than one call in one answer.
    pub parallel: bool,
    /// The request's `tools`, as the chat template receives them.
    pub raw: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolDef {
    #[serde(rename = "type")]
    kind: String,
    function: FunctionDef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionDef {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    /// Honoured always: arguments are constrained by the schema whether or not it is asked.
    #[serde(default)]
    strict: Option<bool>,
}

/// The longest function name OpenAI accepts.
const MAX_NAME: usize = 64;

impl Tools {
    /// Read `tools`, `tool_choice` and `parallel_tool_calls`; None when no tools are given.
    pub fn from_request(
        tools: Option<&Value>,
        choice: Option<&Value>,
        parallel: Option<bool>,
    ) -> Result<Option<Tools>, ApiError> {
        let list = match tools {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(list)) => list.clone(),
            Some(_) => return Err(ApiError::invalid("tools must be an array", Some("tools"))),
        };
        let mut functions = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let param = format!("tools[{i}]");
            let def: ToolDef = serde_path_to_error::deserialize(t).map_err(|e| {
                let path = e.path().to_string();
                let at = if path == "." { param.clone() } else { format!("{param}.{path}") };
                ApiError::invalid(format!("{param}: {}", e.inner()), Some(&at))
            })?;
            if def.kind != "function" {
                return Err(ApiError::invalid(
                    format!("{param}: tools of type {:?} are not supported; only \"function\"", def.kind),
                    Some(&format!("{param}.type")),
                ));
            }
            let f = def.function;
            let ok = !f.name.is_empty()
                && f.name.len() <= MAX_NAME
                && f.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(ApiError::invalid(
                    format!("{param}: function name {:?} must be 1 to {MAX_NAME} of a-z, A-Z, 0-9, _ and -", f.name),
                    Some(&format!("{param}.function.name")),
                ));
            }
            if functions.iter().any(|g: &Function| g.name == f.name) {
                return Err(ApiError::invalid(
                    format!("{param}: function {:?} is defined twice", f.name),
                    Some(&format!("{param}.function.name")),
                ));
            }
            let _ = f.strict;
            let parameters = f.parameters.unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            if !parameters.is_object() {
                return Err(ApiError::invalid(
                    format!("{param}: parameters must be a JSON schema object"),
                    Some(&format!("{param}.function.parameters")),
                ));
            }
            functions.push(Function { name: f.name, description: f.description, parameters });
        }
        let choice = match choice {
            None | Some(Value::Null) => Choice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => Choice::None,
                "auto" => Choice::Auto,
                "required" => Choice::Required,
                other => {
                    return Err(ApiError::invalid(
                        format!("tool_choice {other:?}: expected \"none\", \"auto\", \"required\" or a function"),
                        Some("tool_choice"),
                    ))
                }
            },
            Some(v) => {
                let name = v
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "tool_choice must be a string or {\"type\": \"function\", \"function\": {\"name\": …}}",
                            Some("tool_choice"),
                        )
                    })?;
                if !functions.iter().any(|f| f.name == name) {
                    return Err(ApiError::invalid(
                        format!("tool_choice names {name:?}, which is not among the tools"),
                        Some("tool_choice"),
                    ));
                }
                Choice::Named(name.to_string())
            }
        };
        if functions.is_empty() {
            return match choice {
                Choice::None | Choice::Auto => Ok(None),
                _ => Err(ApiError::invalid("tool_choice asks for a call but no tools are given", Some("tool_choice"))),
            };
        }
        Ok(Some(Tools { functions, choice, parallel: parallel.unwrap_or(true), raw: Value::Array(list) }))
    }

    /// The functions the model may call under the choice.
    fn callable(&self) -> Vec<&Function> {
        match &self.choice {
            Choice::Named(n) => self.functions.iter().filter(|f| &f.name == n).collect(),
            _ => self.functions.iter().collect(),
        }
    }
}

/// How a model writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Hermes,
    Llama3,
    Mistral,
    Generic,
}

impl Family {
    /// The family a chat template speaks, from the markers it writes.
    pub fn detect(template: &str) -> Family {
        if template.contains("<tool_call>") {
            Family::Hermes
        } else if template.contains("[TOOL_CALLS]") {
            Family::Mistral
        } else if template.contains("<|start_header_id|>") && template.contains("tools") {
            Family::Llama3
        } else {
            Family::Generic
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Hermes => "hermes",
            Family::Llama3 => "llama3",
            Family::Mistral => "mistral",
            Family::Generic => "generic",
        }
    }

    fn arguments_key(self) -> &'static str {
        match self {
            Family::Llama3 => "parameters",
            _ => "arguments",
        }
    }

    fn triggers(self) -> &'static [&'static str] {
        match self {
            Family::Hermes => &["<tool_call>"],
            Family::Llama3 => &["<|python_tag|>", "{\"name\""],
            Family::Mistral => &["[TOOL_CALLS]"],
            Family::Generic => &[],
        }
    }

    /// The schema of one call object of these functions.
    fn call_schema(self, functions: &[&Function]) -> Value {
        let one = |f: &Function| {
            let mut props = serde_json::Map::new();
            props.insert("name".into(), json!({ "const": f.name }));
            props.insert(self.arguments_key().into(), f.parameters.clone());
            json!({
                "type": "object",
                "properties": props,
                "required": ["name", self.arguments_key()],
                "additionalProperties": false,
            })
        };
        match functions {
            [f] => one(f),
            fs => json!({ "anyOf": fs.iter().map(|f| one(f)).collect::<Vec<_>>() }),
        }
    }

    /// The grammar for this request's calls; `response` is the schema a plain answer must
    /// match (`response_format`), if any.
    pub fn constraint(self, tools: &Tools, response: Option<&Value>) -> Result<Option<Constraint>, ApiError> {
        if tools.choice == Choice::None {
            return Ok(None);
        }
        let functions = tools.callable();
        let must_call = matches!(tools.choice, Choice::Required | Choice::Named(_));
        let call = self.call_schema(&functions);
        if self == Family::Generic {
            let max = if tools.parallel { json!(null) } else { json!(1) };
            let mut calls = json!({ "type": "array", "items": call, "minItems": 1 });
            if !max.is_null() {
                calls["maxItems"] = max;
            }
            let call_answer = json!({
                "type": "object", "properties": { "tool_calls": calls },
                "required": ["tool_calls"], "additionalProperties": false,
            });
            let schema = if must_call {
                call_answer
            } else {
                let text = response.cloned().unwrap_or_else(|| json!({ "type": "string" }));
                json!({ "anyOf": [call_answer, {
                    "type": "object", "properties": { "response": text },
                    "required": ["response"], "additionalProperties": false,
                }] })
            };
            return Ok(Some(Constraint::Full { gbnf: grammar::from_schema(&schema, "tools")? }));
        }
        let calls = grammar::prefix_rules(&grammar::from_schema(&call, "tools")?, "call");
        let c = "call-root";
        let body = match (self, tools.parallel) {
            (Family::Hermes, false) => format!("\"<tool_call>\\n\" {c} \"\\n</tool_call>\""),
            (Family::Hermes, true) => {
                format!(
                    "\"<tool_call>\\n\" {c} \"\\n</tool_call>\" (\"\\n\"? \"<tool_call>\\n\" {c} \"\\n</tool_call>\")*"
                )
            }
            (Family::Mistral, false) => format!("\"[TOOL_CALLS]\" \"[\" {c} \"]\""),
            (Family::Mistral, true) => format!("\"[TOOL_CALLS]\" \"[\" {c} (\", \" {c})* \"]\""),
            // Llama 3.x calls one function per turn.
            (Family::Llama3, _) => format!("\"<|python_tag|>\"? {c}"),
            (Family::Generic, _) => unreachable!("handled above"),
        };
        let mut gbnf = format!("root ::= tool-calls\ntool-calls ::= {body}\n{calls}");
        let lazy = !must_call && response.is_none();
        if let Some(schema) = response.filter(|_| !must_call) {
            let answer = grammar::prefix_rules(&grammar::from_schema(schema, "response_format")?, "answer");
            gbnf = format!("root ::= tool-calls | answer-root\ntool-calls ::= {body}\n{calls}{answer}");
        }
        grammar::check_syntax(&gbnf).map_err(|e| ApiError::internal(format!("the tool-call grammar: {e}")))?;
        Ok(Some(if lazy {
            Constraint::Lazy { gbnf, triggers: self.triggers().iter().map(|t| (*t).to_string()).collect() }
        } else {
            Constraint::Full { gbnf }
        }))
    }

    /// Split a model's answer into its text and its complete calls. A call cut short
    /// (`max_tokens`) stays in the text, so nothing the model wrote is lost. A call made again
    /// in the same answer with the same arguments is the same call: it is kept once (small
    /// models repeat themselves; a client would carry the call out twice).
    pub fn parse(self, text: &str) -> Parsed {
        let mut parsed = self.parse_all(text);
        let mut seen = std::collections::HashSet::new();
        parsed.calls.retain(|c| {
            let args =
                serde_json::from_str::<Value>(&c.arguments).map_or_else(|_| c.arguments.clone(), |v| canonical(&v));
            seen.insert((c.name.clone(), args))
        });
        parsed
    }

    fn parse_all(self, text: &str) -> Parsed {
        match self {
            Family::Hermes => parse_hermes(text),
            Family::Mistral => parse_after(text, "[TOOL_CALLS]", self),
            Family::Llama3 => {
                let at = text.find("<|python_tag|>").or_else(|| text.find("{\"name\""));
                match at {
                    Some(at) => {
                        let rest = &text[at..];
                        let json = rest.strip_prefix("<|python_tag|>").unwrap_or(rest);
                        match first_json(json).and_then(|(v, used)| call_of(&v, self).map(|c| (c, used))) {
                            Some((call, used)) if json[used..].trim().is_empty() => {
                                Parsed { content: text[..at].to_string(), calls: vec![call] }
                            }
                            _ => Parsed::text(text),
                        }
                    }
                    None => Parsed::text(text),
                }
            }
            Family::Generic => parse_generic(text),
        }
    }

    /// Where the calls start in `text`, if the model has begun one; and how many bytes at
    /// the end could be the start of a trigger (held back from streamed text).
    pub fn call_start(self, text: &str) -> (Option<usize>, usize) {
        if self == Family::Generic {
            return (Some(0), 0);
        }
        let at = self.triggers().iter().filter_map(|t| text.find(t)).min();
        if at.is_some() {
            return (at, 0);
        }
        let hold = self
            .triggers()
            .iter()
            .map(|t| {
                (1..t.len().min(text.len() + 1))
                    .rev()
                    .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&t[..n]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        (None, hold)
    }
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    /// The arguments object as JSON text (OpenAI sends a string).
    pub arguments: String,
}

/// An answer split into text and calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub content: String,
    pub calls: Vec<Call>,
}

impl Parsed {
    fn text(text: &str) -> Parsed {
        Parsed { content: text.to_string(), calls: vec![] }
    }
}

/// The first JSON value at the start of `text` (after spaces) and the bytes it took.
fn first_json(text: &str) -> Option<(Value, usize)> {
    let mut de = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let v = de.next()?.ok()?;
    Some((v, de.byte_offset()))
}

fn call_of(v: &Value, family: Family) -> Option<Call> {
    let name = v.get("name")?.as_str()?.to_string();
    let args = v.get(family.arguments_key()).or_else(|| v.get("arguments"))?;
    let arguments = match args {
        // Some models write the arguments as a JSON string already.
        Value::String(s) if serde_json::from_str::<Value>(s).is_ok_and(|a| a.is_object()) => s.clone(),
        Value::Object(_) => args.to_string(),
        _ => return None,
    };
    Some(Call { name, arguments })
}

fn parse_hermes(text: &str) -> Parsed {
    let Some(first) = text.find("<tool_call>") else { return Parsed::text(text) };
    let mut calls = vec![];
    let mut rest = &text[first..];
    while let Some(body) = rest.trim_start().strip_prefix("<tool_call>") {
        let Some(end) = body.find("</tool_call>") else { break };
        let Some(call) = first_json(&body[..end]).and_then(|(v, _)| call_of(&v, Family::Hermes)) else { break };
        calls.push(call);
        rest = &body[end + "</tool_call>".len()..];
    }
    if calls.is_empty() {
        return Parsed::text(text);
    }
    // Text after the last complete call (a call cut short) is kept as text.
    let mut content = text[..first].to_string();
    content.push_str(rest.trim_start());
    Parsed { content, calls }
}

fn parse_after(text: &str, marker: &str, family: Family) -> Parsed {
    let Some(at) = text.find(marker) else { return Parsed::text(text) };
    let json = &text[at + marker.len()..];
    match first_json(json) {
        Some((Value::Array(items), used)) if json[used..].trim().is_empty() => {
            let calls: Option<Vec<Call>> = items.iter().map(|v| call_of(v, family)).collect();
            match calls {
                Some(calls) if !calls.is_empty() => Parsed { content: text[..at].to_string(), calls },
                _ => Parsed::text(text),
            }
        }
        _ => Parsed::text(text),
    }
}

fn parse_generic(text: &str) -> Parsed {
    match first_json(text) {
        Some((v, used)) if text[used..].trim().is_empty() => {
            if let Some(Value::Array(items)) = v.get("tool_calls") {
                let calls: Option<Vec<Call>> = items.iter().map(|c| call_of(c, Family::Generic)).collect();
                if let Some(calls) = calls.filter(|c| !c.is_empty()) {
                    return Parsed { content: String::new(), calls };
                }
            }
            match v.get("response") {
                Some(Value::String(s)) => Parsed::text(s),
                Some(other) => Parsed::text(&other.to_string()),
                None => Parsed::text(text),
            }
        }
        _ => Parsed::text(text),
    }
}

/// The system text that tells a model whose template knows no tools how to call them: each
/// tool as a one-line signature (far fewer tokens than its schema, and easier for a small
/// model to follow; the grammar holds the arguments to the schema anyway), then the two
/// answers it may give.
pub fn generic_instructions(tools: &Tools) -> String {
    let mut text = String::from("You have these tools:\n");
    for f in tools.callable() {
        text.push_str(&format!("- {}({})", f.name, signature(&f.parameters)));
        if let Some(d) = f.description.as_deref().filter(|d| !d.trim().is_empty()) {
            text.push_str(&format!(": {}", d.trim()));
        }
        text.push('\n');
    }
    if matches!(tools.choice, Choice::Required | Choice::Named(_)) {
        text.push_str(
            "Answer with the call that does what the request asks: {\"tool_calls\": [{\"name\": ..., \"arguments\": {...}}]}, \
             the arguments taken from the request (several calls only when it asks for several things).",
        );
    } else {
        text.push_str(
            "If one of these tools does what the request asks, answer with the call that does it: \
             {\"tool_calls\": [{\"name\": ..., \"arguments\": {...}}]}, the arguments taken from the request \
             (several calls only when it asks for several things). If no tool does it, answer {\"response\": ...}.",
        );
    }
    text
}

/// A JSON value as text with every object's keys in order, to tell equal values apart from
/// their spelling.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[*k]))).collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// A parameters schema as `name: type, name?: type` (`?`: optional), enums as their values.
fn signature(schema: &Value) -> String {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return String::new() };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    props
        .iter()
        .map(|(name, p)| {
            let kind = match p.get("enum").and_then(Value::as_array) {
                Some(values) => values.iter().map(Value::to_string).collect::<Vec<_>>().join("|"),
                None => match p.get("type") {
                    Some(Value::String(t)) if t == "array" => {
                        let item = p.pointer("/items/type").and_then(Value::as_str).unwrap_or("any");
                        format!("array of {item}")
                    }
                    Some(Value::String(t)) => t.clone(),
                    _ => "any".into(),
                },
            };
            let optional = if required.contains(&name.as_str()) { "" } else { "?" };
            let hint = p.get("description").and_then(Value::as_str).map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{name}{optional}: {kind}{hint}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An id for a call: `call_` and 24 letters and digits; Mistral's templates want exactly
/// nine letters and digits.
pub fn call_id(family: Family, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ALPHABET[usize::try_from(x % ALPHABET.len() as u64).unwrap_or(0)] as char
    };
    match family {
        Family::Mistral => (0..9).map(|_| next()).collect(),
        _ => format!("call_{}", (0..24).map(|_| next()).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{ "type": "function", "function": { "name": "get_weather", "description": "weather in a city",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
            { "type": "function", "function": { "name": "add", "parameters": { "type": "object",
            "properties": { "a": { "type": "integer" }, "b": { "type": "integer" } }, "required": ["a", "b"] } } }])
    }

    #[test]
    fn a_call_repeated_in_one_answer_is_kept_once() {
        let text = "{\"tool_calls\": [{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}, \
                    {\"name\": \"add\", \"arguments\": {\"b\": 2, \"a\": 1}}, {\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 2}}]}";
        let p = Family::Generic.parse(text);
        assert_eq!(p.calls.len(), 2, "{p:?}");
        assert_eq!(p.calls[1].arguments, "{\"a\":2,\"b\":2}");
    }

    #[test]
    fn generic_instructions_give_each_tool_as_a_signature() {
        let t = Tools::from_request(Some(&weather()), None, None).expect("valid").expect("tools");
        let text = generic_instructions(&t);
        assert!(text.contains("- get_weather(city: string): weather in a city\n"), "{text}");
        assert!(text.contains("- add(a: integer, b: integer)\n"), "{text}");
        assert!(text.contains("{\"response\": ...}"), "{text}");
        let schema = json!({"type": "object", "properties": {"unit": {"enum": ["c", "f"]}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["tags"]});
        assert_eq!(signature(&schema), "unit?: \"c\"|\"f\", tags: array of string");
    }

    #[test]
    fn tools_and_choice_are_read_and_bad_ones_named() {
        let t = Tools::from_request(Some(&weather()), None, None).expect("valid").expect("tools");
        assert_eq!((t.functions.len(), &t.choice, t.parallel), (2, &Choice::Auto, true));
        let t = Tools::from_request(
            Some(&weather()),
            Some(&json!({"type": "function", "function": {"name": "add"}})),
            Some(false),
        )
        .expect("valid")
        .expect("tools");
        assert_eq!(t.choice, Choice::Named("add".into()));
        assert_eq!(t.callable().len(), 1);
        for (tools, choice, param) in [
            (json!([{"type": "code_interpreter"}]), None, "tools[0]"),
            (json!([{"type": "retrieval", "function": {"name": "x"}}]), None, "tools[0].type"),
            (json!([{"type": "function", "function": {"name": "a b"}}]), None, "tools[0].function.name"),
            (
                json!([{"type": "function", "function": {"name": "x", "parameters": 3}}]),
                None,
                "tools[0].function.parameters",
            ),
            (json!([{"type": "function", "function": {"name": "x", "bogus": 1}}]), None, "tools[0].function.bogus"),
            (weather(), Some(json!("sometimes")), "tool_choice"),
            (weather(), Some(json!({"type": "function", "function": {"name": "nope"}})), "tool_choice"),
            (json!([]), Some(json!("required")), "tool_choice"),
        ] {
            let e = Tools::from_request(Some(&tools), choice.as_ref(), None).expect_err(param);
            assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
        }
        assert_eq!(Tools::from_request(Some(&json!([])), None, None).expect("empty"), None);
    }

    #[test]
    fn families_are_told_by_their_templates() {
        assert_eq!(Family::detect("{% if tools %}<tools></tools>{% endif %}<tool_call>"), Family::Hermes);
        assert_eq!(Family::detect("[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]"), Family::Mistral);
        assert_eq!(Family::detect("<|start_header_id|>{% if tools %}ipython{% endif %}"), Family::Llama3);
        assert_eq!(Family::detect("<|im_start|>{{ m.content }}"), Family::Generic);
    }

    #[test]
    fn calls_are_parsed_in_each_family() {
        let p = Family::Hermes.parse(
            "Let me look.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>",
        );
        assert_eq!(p.content, "Let me look.");
        assert_eq!(p.calls.len(), 2);
        assert_eq!(p.calls[0], Call { name: "get_weather".into(), arguments: "{\"city\":\"Oslo\"}".into() });
        let p = Family::Mistral
            .parse("[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}, \"id\": \"abcdefghi\"}]");
        assert_eq!((p.content.as_str(), p.calls.len()), ("", 1));
        let p = Family::Llama3.parse("<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}");
        assert_eq!(p.calls, vec![Call { name: "add".into(), arguments: "{\"a\":1,\"b\":2}".into() }]);
        let p = Family::Generic.parse("{\"tool_calls\": [{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}]}");
        assert_eq!(p.calls.len(), 1);
        assert_eq!(Family::Generic.parse("{\"response\": \"hello\"}"), Parsed::text("hello"));
    }

    #[test]
    fn a_call_cut_short_stays_text() {
        let cut = "ok <tool_call>\n{\"name\": \"add\", \"argu";
        assert_eq!(Family::Hermes.parse(cut), Parsed::text(cut));
        let half = "<tool_call>\n{\"name\": \"add\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"na";
        let p = Family::Hermes.parse(half);
        assert_eq!((p.calls.len(), p.content.as_str()), (1, "<tool_call>\n{\"na"));
        assert_eq!(Family::Mistral.parse("[TOOL_CALLS][{\"name\""), Parsed::text("[TOOL_CALLS][{\"name\""));
    }

    #[test]
    fn a_trigger_in_the_making_is_held_back() {
        assert_eq!(Family::Hermes.call_start("Hello <tool"), (None, 5));
        assert_eq!(Family::Hermes.call_start("Hello <tool_call>"), (Some(6), 0));
        assert_eq!(Family::Hermes.call_start("Hello"), (None, 0));
        assert_eq!(Family::Generic.call_start("x"), (Some(0), 0));
    }

    #[test]
    fn each_family_gets_a_grammar_llama_cpp_can_read() {
        let tools = |choice: Option<Value>| {
            Tools::from_request(Some(&weather()), choice.as_ref(), None).expect("valid").expect("tools")
        };
        for family in [Family::Hermes, Family::Llama3, Family::Mistral] {
            match family.constraint(&tools(None), None).expect("auto") {
                Some(Constraint::Lazy { gbnf, triggers }) => {
                    grammar::check_syntax(&gbnf).expect("syntax");
                    assert_eq!(triggers, family.triggers());
                }
                other => panic!("{family:?}: auto is lazy: {other:?}"),
            }
            let required = family.constraint(&tools(Some(json!("required"))), None).expect("required");
            assert!(matches!(required, Some(Constraint::Full { .. })), "{family:?}");
            let answer = family.constraint(&tools(None), Some(&json!({"type": "object"}))).expect("with a format");
            assert!(
                matches!(&answer, Some(Constraint::Full { gbnf }) if gbnf.contains("answer-root")),
                "tools and a response format: either, from the first token: {answer:?}"
            );
        }
        let g =
            Family::Generic.constraint(&tools(Some(json!({"type": "function", "function": {"name": "add"}}))), None);
        match g.expect("generic") {
            Some(Constraint::Full { gbnf }) => {
                assert!(gbnf.contains("add") && !gbnf.contains("get_weather"), "only the named function: {gbnf}");
            }
            other => panic!("generic is always constrained: {other:?}"),
        }
        assert_eq!(Family::Hermes.constraint(&tools(Some(json!("none"))), None).expect("none"), None);
    }

    #[test]
    fn ids_have_each_familys_shape() {
        let id = call_id(Family::Hermes, 42);
        assert!(id.starts_with("call_") && id.len() == 29, "{id}");
        let id = call_id(Family::Mistral, 42);
        assert!(id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert_ne!(call_id(Family::Hermes, 1), call_id(Family::Hermes, 2));
    }
}
