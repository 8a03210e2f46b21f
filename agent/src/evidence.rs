//! What a step is shown with its instructions, so that a small model need not go looking for
//! it: its input files when they are small (JSON compacted), the listing of its input
//! folders, the output of the commands it is to run first (`run_first`) and the passages of
//! its documents nearest its question (`search_first`). Those two run through the step's own
//! tools, with the same checks as when the model calls them.
//!
//! A step is *direct* when everything it reads is here, it may do nothing but read and write
//! its workspace, and it has outputs to write, or when it says so (`direct`, its first
//! commands showing what it needs): it then answers them straight away, without tool turns.

use std::time::Duration;

use aither_api::workflow::{StepSpec, Tool};
use serde_json::json;

use crate::gateway::ToolCall;
use crate::tools::Toolbox;

/// The largest input file shown inline, and the most all inline evidence may take: about
/// 2,000 tokens, which leaves a 4,096-token context room to answer.
pub const FILE_BYTES: usize = 6 * 1024;
pub const TOTAL_BYTES: usize = 8 * 1024;
/// The most of one command's output or of the passages found shown inline.
const PREFETCH_BYTES: usize = 4 * 1024;
/// The most entries of a folder listed.
const LISTED: usize = 40;

/// The evidence, and what was called to gather it (for the transcript).
#[derive(Debug, Default)]
pub struct Evidence {
    pub text: String,
    /// Everything the step reads is in `text`, and it may only read and write its workspace.
    pub direct: bool,
    /// `(tool, arguments, answer)` of the calls made to gather it.
    pub calls: Vec<(String, String, String)>,
    /// The labels of the known signatures found in the inputs (said again where an output
    /// is asked for: a small model heeds the last thing it reads).
    pub signatures: Vec<String>,
    /// The document file names its inputs name (`inputs/docs/a.md` → `a.md`), first seen
    /// first: what a `cite` rule may choose from.
    pub documents: Vec<String>,
}

/// The most document names a `cite` rule offers.
const CITED: usize = 24;

/// The document names (`*.md`, `*.txt`, `*.html`, `*.rst`; letters, digits, `._-`) that `text`
/// names by path or by name, added to `names` in the order they come.
pub fn document_names(text: &str, names: &mut Vec<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    for token in text.split(|c: char| !word(c)) {
        let name = token.rsplit('/').next().unwrap_or("").trim_end_matches('.');
        let ext = name.rsplit_once('.').map(|(stem, ext)| (stem, ext.to_ascii_lowercase()));
        let Some((stem, ext)) = ext else { continue };
        let plain = !stem.is_empty() && !stem.starts_with('.') && name.len() <= 64;
        let document = plain && ["md", "txt", "html", "rst"].contains(&ext.as_str());
        if document && names.len() < CITED && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
}

/// Gather the step's evidence within `time`.
pub fn gather(spec: &StepSpec, tools: &mut Toolbox, time: Duration) -> Evidence {
    let mut ev = Evidence::default();
    let mut all_inline = true;
    for name in &spec.inputs {
        let path = format!("inputs/{name}");
        if let Some(listing) = tools.listing(&path, LISTED) {
            ev.text.push_str(&format!("{path}/ holds:\n{listing}\n"));
            all_inline = false;
            continue;
        }
        match tools.read_text(&path) {
            Some(text) if text.len() <= FILE_BYTES && ev.text.len() + text.len() <= TOTAL_BYTES => {
                let shown = if name.ends_with(".json") {
                    serde_json::from_str::<serde_json::Value>(&text).map_or(text.clone(), |v| v.to_string())
                } else {
                    text
                };
                ev.text.push_str(&format!("{path}:\n```\n{}\n```\n", shown.trim_end()));
            }
            Some(text) => {
                ev.text.push_str(&format!(
                    "{path} ({} bytes) is too long to show here: read it with read_file.\n",
                    text.len()
                ));
                all_inline = false;
            }
            None => all_inline = false,
        }
    }
    let mut ran = Vec::new();
    for argv in &spec.run_first {
        let command = argv.join(" ");
        let arguments = json!({ "command": command }).to_string();
        let answer = call(tools, "run_command", &arguments, time, &mut ev);
        ev.text
            .push_str(&format!("The output of `{command}`:\n```\n{}\n```\n", cut(&answer, PREFETCH_BYTES).trim_end()));
        ran.push((format!("the output of `{command}`"), answer));
    }
    let (signatures, labels) = signatures(spec, tools, &ran);
    ev.signatures = labels;
    if spec.cite.is_some() {
        for name in &spec.inputs {
            if let Some(text) = tools.read_text(&format!("inputs/{name}")) {
                document_names(&text, &mut ev.documents);
            }
        }
    }
    if let Some(query) = &spec.search_first {
        let arguments = json!({ "query": query }).to_string();
        let answer = call(tools, "search_docs", &arguments, time, &mut ev);
        if let Some(keep) = &spec.search_keep {
            // The passages found are the step's output as they are: a small model rewriting
            // them garbles them.
            if tools.write_output(keep, answer.as_bytes()).is_ok() {
                ev.calls.push(("write_output".into(), keep.clone(), format!("{} bytes", answer.len())));
            }
        }
        ev.text.push_str(&format!(
            "The passages of your documents nearest to {query:?}:\n{}\n",
            cut(&answer, PREFETCH_BYTES)
        ));
    }
    if !spec.signatures.is_empty() {
        ev.text.push_str(&signatures);
    }
    let reads_only = spec.tools.iter().all(|t| matches!(t, Tool::ReadFile | Tool::ListFiles | Tool::WriteFile));
    // A step with no outputs still takes a turn: its answer is its summary.
    ev.direct = (spec.direct || all_inline && reads_only) && !spec.outputs.is_empty();
    ev
}

/// The step's known signatures found in its input files and in what its first commands
/// printed: each label with the first line that bears it (a small model copies a name it is
/// shown far better than it classifies).
fn signatures(spec: &StepSpec, tools: &Toolbox, ran: &[(String, String)]) -> (String, Vec<String>) {
    let mut found = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    let files = spec.inputs.iter().filter_map(|name| {
        let path = format!("inputs/{name}");
        tools.read_text(&path).map(|text| (path, text))
    });
    for (path, text) in files.chain(ran.iter().cloned()) {
        for (label, words) in &spec.signatures {
            let hit = text.lines().enumerate().find(|(_, line)| {
                let line = line.to_lowercase();
                words.iter().any(|w| line.contains(&w.to_lowercase()))
            });
            if let Some((n, line)) = hit {
                let line: String = line.chars().take(200).collect();
                found.push(format!("- {label}: {path} line {}: {line}", n + 1));
                if !labels.contains(label) {
                    labels.push(label.clone());
                }
            }
        }
    }
    let text = if found.is_empty() {
        "No known signature is in the inputs: judge from what they say.\n".into()
    } else {
        format!("Known signatures found in the inputs:\n{}\n", found.join("\n"))
    };
    (text, labels)
}

fn call(tools: &mut Toolbox, name: &str, arguments: &str, time: Duration, ev: &mut Evidence) -> String {
    let answer = tools.call(&ToolCall { id: "evidence".into(), name: name.into(), arguments: arguments.into() }, time);
    ev.calls.push((name.to_string(), arguments.to_string(), answer.clone()));
    answer
}

/// At most `max` bytes of `text`, cut on a character boundary, saying so.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[cut: {} more bytes]", &text[..end], text.len() - end)
}
