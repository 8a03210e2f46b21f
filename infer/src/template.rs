//! Chat templates: the model's own Jinja template (`tokenizer.chat_template` in the GGUF),
//! rendered the way Hugging Face's `apply_chat_template` does (`trim_blocks`,
//! `lstrip_blocks`, Python string methods, `raise_exception`, `strftime_now`), so a model
//! sees the prompt format it was trained on. A model without a template gets ChatML, as
//! llama-server does. `--chat-template NAME` names one of llama.cpp's built-in formats
//! (`llama3`, `mistral-v7`, `gemma` …), rendered by llama.cpp itself as llama-server does
//! without `--jinja`.

use std::ffi::{c_char, CStr, CString};

use minijinja::{context, Environment, Error, ErrorKind};

use crate::api::ApiError;

/// ChatML, for models that carry no template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// What renders a template.
#[derive(Debug)]
enum Renderer {
    Jinja(Box<Environment<'static>>),
    /// One of llama.cpp's built-in formats, by name.
    Builtin(CString),
}

/// A compiled chat template with the tokens it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    renderer: Renderer,
    bos: String,
    eos: String,
    source: String,
}

/// The names of llama.cpp's built-in chat formats (`llama_chat_builtin_templates`).
#[allow(unsafe_code)]
pub fn builtin_names() -> Vec<String> {
    // SAFETY: the first call only counts; the second fills at most `len` pointers to static
    // C strings that llama.cpp owns for the life of the process.
    unsafe {
        let n = llama_cpp_sys_2::llama_chat_builtin_templates(std::ptr::null_mut(), 0);
        let mut names: Vec<*const c_char> = vec![std::ptr::null(); usize::try_from(n).unwrap_or(0)];
        let n = llama_cpp_sys_2::llama_chat_builtin_templates(names.as_mut_ptr(), names.len());
        names.truncate(usize::try_from(n).unwrap_or(0));
        names.into_iter().filter(|p| !p.is_null()).map(|p| CStr::from_ptr(p).to_string_lossy().into_owned()).collect()
    }
}

impl ChatTemplate {
    /// llama.cpp's built-in format `name` (one of [`builtin_names`]).
    pub fn builtin(name: &str) -> Result<ChatTemplate, String> {
        if !builtin_names().iter().any(|n| n == name) {
            return Err(format!("{name:?} is not one of llama.cpp's built-in chat templates"));
        }
        let c = CString::new(name).map_err(|e| e.to_string())?;
        Ok(ChatTemplate { renderer: Renderer::Builtin(c), bos: String::new(), eos: String::new(), source: name.into() })
    }

    /// Whether this is one of llama.cpp's built-in formats (rendered by llama.cpp).
    pub fn is_builtin(&self) -> bool {
        matches!(self.renderer, Renderer::Builtin(_))
    }

    /// Compile `source`; a template that does not parse is an error naming the line.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<ChatTemplate, String> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| format!("template syntax: {e}"))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |format: String| -> String { strftime_now(&format) });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("the chat template does not compile: {e:#}"))?;
        Ok(ChatTemplate {
            renderer: Renderer::Jinja(Box::new(env)),
            bos: bos.to_string(),
            eos: eos.to_string(),
            source: source.to_string(),
        })
    }

    /// The template's text (tool-call formats are told from it).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template writes the `tools` it is given (llama.cpp's built-in formats
    /// do not: tools are then described in the messages).
    pub fn knows_tools(&self) -> bool {
        !self.is_builtin() && self.source.contains("tools")
    }

    /// The prompt for `messages` (each as [`crate::api::Message::template_value`] makes it),
    /// with the assistant's turn opened when `add_generation_prompt`; `tools` as the
    /// request gave them, for templates that write them.
    pub fn render(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ApiError> {
        let env = match &self.renderer {
            Renderer::Jinja(env) => env,
            Renderer::Builtin(name) => return render_builtin(name, messages, add_generation_prompt),
        };
        let tmpl = env.get_template("chat").map_err(|e| ApiError::internal(e.to_string()))?;
        tmpl.render(context! {
            messages => minijinja::value::Serde(messages),
            tools => tools.map(minijinja::value::Serde),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos,
            eos_token => &self.eos,
        })
        .map_err(|e| match e.kind() {
            // The template refused the conversation (roles out of order, say): the client's fault.
            ErrorKind::InvalidOperation => ApiError::invalid(
                format!("the model's chat template refused the messages: {}", e.detail().unwrap_or("")),
                Some("messages"),
            ),
            _ => ApiError::internal(format!("the model's chat template failed: {e:#}")),
        })
    }
}

/// A conversation in one of llama.cpp's built-in formats: each message's role and text
/// (parts joined), rendered by `llama_chat_apply_template`.
#[allow(unsafe_code)]
fn render_builtin(
    name: &CStr,
    messages: &[serde_json::Value],
    add_generation_prompt: bool,
) -> Result<String, ApiError> {
    let mut owned = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let text = match &m["content"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        };
        let nul = |_| ApiError::invalid(format!("messages[{i}] holds a NUL character"), Some("messages"));
        owned
            .push((CString::new(m["role"].as_str().unwrap_or("user")).map_err(nul)?, CString::new(text).map_err(nul)?));
    }
    let chat: Vec<llama_cpp_sys_2::llama_chat_message> = owned
        .iter()
        .map(|(role, content)| llama_cpp_sys_2::llama_chat_message { role: role.as_ptr(), content: content.as_ptr() })
        .collect();
    let total: usize = owned.iter().map(|(r, c)| r.as_bytes().len() + c.as_bytes().len()).sum();
    let mut buf = vec![0u8; total * 2 + 256];
    loop {
        // SAFETY: every pointer in `chat` points into `owned`, alive for the call; llama.cpp
        // writes at most `buf.len()` bytes and returns the length the whole prompt needs.
        let n = unsafe {
            llama_cpp_sys_2::llama_chat_apply_template(
                name.as_ptr(),
                chat.as_ptr(),
                chat.len(),
                add_generation_prompt,
                buf.as_mut_ptr().cast::<c_char>(),
                i32::try_from(buf.len()).unwrap_or(i32::MAX),
            )
        };
        let Ok(n) = usize::try_from(n) else {
            return Err(ApiError::invalid(
                format!("llama.cpp's {} chat template refused the messages", name.to_string_lossy()),
                Some("messages"),
            ));
        };
        if n <= buf.len() {
            return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        buf.resize(n, 0);
    }
}

/// `strftime_now(format)` for templates that print today's date (Llama 3.x): the common
/// directives, in UTC.
fn strftime_now(format: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = aither_sys::time::civil_from_days(days);
    let rem = secs % 86_400;
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(&month[..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<serde_json::Value> {
        pairs.iter().map(|(r, c)| serde_json::json!({ "role": r, "content": c })).collect()
    }

    #[test]
    fn chatml_opens_the_assistant_turn() {
        let t = ChatTemplate::new(CHATML, "", "").expect("chatml");
        let p = t.render(&msgs(&[("system", "be brief"), ("user", "hi")]), None, true).expect("render");
        assert_eq!(
            p,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    /// The shape of Llama 3's template: bos_token, trim_blocks, python's strip(), raise_exception.
    #[test]
    fn hugging_face_idioms_render() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m['role'] not in ['user', 'assistant', 'system'] %}{{ raise_exception('bad role ' + m['role']) }}{% endif %}\n<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
        let t = ChatTemplate::new(src, "<|begin_of_text|>", "<|eot_id|>").expect("compile");
        let p = t.render(&msgs(&[("user", "  hi  ")]), None, true).expect("render");
        assert_eq!(p, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        let e = t.render(&msgs(&[("tool", "x")]), None, true).expect_err("refused");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("bad role tool"), "{}", e.message);
        let py = ChatTemplate::new("{{ messages[0]['content'].strip().upper() }}", "", "").expect("compile");
        assert_eq!(py.render(&msgs(&[("user", " a ")]), None, true).expect("render"), "A");
    }

    #[test]
    fn a_template_that_does_not_compile_is_an_error() {
        assert!(ChatTemplate::new("{% for %}", "", "").expect_err("bad").contains("does not compile"));
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(aither_sys::time::civil_from_days(0), (1970, 1, 1));
        assert_eq!(aither_sys::time::civil_from_days(20_819), (2027, 1, 1));
        assert_eq!(aither_sys::time::civil_from_days(11_016), (2000, 2, 29));
    }
}
