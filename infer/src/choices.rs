//! A choice assembled from the engine's events, in OpenAI's shapes: the whole `choices[i]`
//! object of an answer, or the deltas of a stream.
//!
//! With tools, the model's text is split as it arrives: what comes before a call is sent as
//! content (a possible start of the family's trigger held back), and each call is sent as a
//! `tool_calls` delta once it is complete. A call cut short stays content. Log-probabilities
//! ride on the next chunk after the tokens they describe.

use serde_json::{json, Value};

use crate::engine::{Finish, TokenLogprob};
use crate::tools::{call_id, Call, Family};

/// Which API the choice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Text,
}

/// One choice under assembly.
#[derive(Debug)]
pub struct Choice {
    index: usize,
    kind: Kind,
    /// The tool-call family when the request has tools the model may call.
    tools: Option<Family>,
    /// Everything generated.
    text: String,
    /// Bytes of `text` sent as content (streams).
    sent: usize,
    /// Where the calls begin in `text`, once the model has started one.
    calls_from: Option<usize>,
    calls: Vec<(String, Call)>,
    calls_sent: usize,
    logprobs: Vec<TokenLogprob>,
    logprobs_sent: usize,
    want_logprobs: bool,
    seed: u64,
    pub finish: Option<Finish>,
}

impl Choice {
    pub fn new(index: usize, kind: Kind, tools: Option<Family>, want_logprobs: bool, seed: u64) -> Choice {
        Choice {
            index,
            kind,
            tools,
            text: String::new(),
            sent: 0,
            calls_from: None,
            calls: vec![],
            calls_sent: 0,
            logprobs: vec![],
            logprobs_sent: 0,
            want_logprobs,
            seed,
            finish: None,
        }
    }

    /// Take new text of an answer that is not streamed.
    pub fn push_text(&mut self, t: &str) {
        self.text.push_str(t);
    }

    pub fn logprob(&mut self, lp: TokenLogprob) {
        self.logprobs.push(lp);
    }

    /// Take new text; the stream deltas it allows (none while a trigger may be forming).
    pub fn text(&mut self, t: &str) -> Vec<Value> {
        self.text.push_str(t);
        let Some(family) = self.tools else {
            let content = self.text[self.sent..].to_string();
            self.sent = self.text.len();
            return self.delta(Some(content), vec![], None).into_iter().collect();
        };
        if self.calls_from.is_none() {
            let (start, hold) = family.call_start(&self.text[self.sent..]);
            let upto = match start {
                Some(at) => {
                    self.calls_from = Some(self.sent + at);
                    self.sent + at
                }
                None => self.text.len() - hold,
            };
            let content = self.text[self.sent..upto].to_string();
            self.sent = upto;
            let mut out: Vec<Value> = self.delta(Some(content), vec![], None).into_iter().collect();
            out.extend(self.new_calls(false));
            return out;
        }
        // A call can only have completed with a closing bracket or tag: parse then, not at
        // every piece of a long argument.
        if t.contains(['>', ']', '}']) {
            self.new_calls(false)
        } else {
            vec![]
        }
    }

    /// Parse the calls written so far; deltas for those not sent yet. At the end
    /// (`last`), what is not a complete call is sent as content.
    fn new_calls(&mut self, last: bool) -> Vec<Value> {
        let (Some(family), Some(from)) = (self.tools, self.calls_from) else { return vec![] };
        let parsed = family.parse(&self.text[from..]);
        for (k, call) in parsed.calls.into_iter().enumerate().skip(self.calls.len()) {
            let id = call_id(family, self.seed.wrapping_add(k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            self.calls.push((id, call));
        }
        let mut out = vec![];
        if self.calls.len() > self.calls_sent {
            let new: Vec<Value> = self.calls[self.calls_sent..]
                .iter()
                .enumerate()
                .map(|(k, (id, c))| {
                    json!({ "index": self.calls_sent + k, "id": id, "type": "function",
                            "function": { "name": c.name, "arguments": c.arguments } })
                })
                .collect();
            self.calls_sent = self.calls.len();
            out.extend(self.delta(None, new, None));
        }
        if last {
            // The text from the trigger on that is not a complete call (all of it when
            // there is none).
            self.sent = self.text.len();
            out.extend(self.delta(Some(parsed.content), vec![], None));
        }
        out
    }

    /// The end: remaining content and calls, then the finish reason.
    pub fn done(&mut self, finish: Finish) -> Vec<Value> {
        self.finish = Some(finish);
        let mut out = if self.tools.is_some() {
            if self.calls_from.is_none() {
                // A trigger start held back that never completed is text.
                let rest = self.text[self.sent..].to_string();
                self.sent = self.text.len();
                self.delta(Some(rest), vec![], None).into_iter().collect()
            } else {
                self.new_calls(true)
            }
        } else {
            vec![]
        };
        let reason = self.finish_reason();
        out.extend(self.delta(None, vec![], Some(reason)));
        out
    }

    pub fn finish_reason(&self) -> &'static str {
        if self.calls.is_empty() {
            self.finish.map_or("stop", Finish::as_str)
        } else {
            "tool_calls"
        }
    }

    /// A stream delta; None when it would carry nothing.
    fn delta(&mut self, content: Option<String>, calls: Vec<Value>, finish: Option<&str>) -> Option<Value> {
        let content = content.filter(|c| !c.is_empty());
        let lps = self.pending_logprobs();
        if content.is_none() && calls.is_empty() && finish.is_none() && lps.is_none() {
            return None;
        }
        Some(match self.kind {
            Kind::Chat => {
                let mut d = serde_json::Map::new();
                if let Some(c) = content {
                    d.insert("content".into(), json!(c));
                }
                if !calls.is_empty() {
                    d.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({ "index": self.index, "delta": d, "logprobs": lps, "finish_reason": finish })
            }
            Kind::Text => json!({ "index": self.index, "text": content.unwrap_or_default(), "logprobs": lps,
                                  "finish_reason": finish }),
        })
    }

    fn pending_logprobs(&mut self) -> Option<Value> {
        if !self.want_logprobs || self.logprobs_sent == self.logprobs.len() {
            return None;
        }
        let new = &self.logprobs[self.logprobs_sent..];
        self.logprobs_sent = self.logprobs.len();
        Some(logprobs_value(self.kind, new, 0))
    }

    /// The whole choice of an answer that is not streamed.
    /// Everything generated, as the model wrote it (tool calls unparsed).
    pub fn raw_text(&self) -> &str {
        &self.text
    }

    pub fn whole(&self) -> Value {
        let lps = self.want_logprobs.then(|| logprobs_value(self.kind, &self.logprobs, 0));
        let (content, calls) = match (self.tools, self.calls_from) {
            (Some(family), Some(from)) => {
                let parsed = family.parse(&self.text[from..]);
                if parsed.calls.is_empty() {
                    (self.text.clone(), vec![])
                } else {
                    let mut content = self.text[..from].to_string();
                    content.push_str(&parsed.content);
                    (content, self.calls.clone())
                }
            }
            _ => (self.text.clone(), vec![]),
        };
        match self.kind {
            Kind::Chat => {
                let mut message = json!({ "role": "assistant",
                    "content": if content.is_empty() && !calls.is_empty() { Value::Null } else { json!(content) } });
                if !calls.is_empty() {
                    message["tool_calls"] = calls
                        .iter()
                        .map(|(id, c)| {
                            json!({ "id": id, "type": "function",
                                    "function": { "name": c.name, "arguments": c.arguments } })
                        })
                        .collect();
                }
                json!({ "index": self.index, "message": message, "logprobs": lps,
                        "finish_reason": self.finish_reason() })
            }
            Kind::Text => {
                json!({ "index": self.index, "text": content, "logprobs": lps, "finish_reason": self.finish_reason() })
            }
        }
    }

    /// Parse the calls of the whole text (answers that are not streamed).
    pub fn settle(&mut self) {
        if let Some(family) = self.tools {
            if self.calls_from.is_none() {
                self.calls_from = family.call_start(&self.text).0;
            }
            let _ = self.new_calls(false);
        }
    }

    pub fn calls(&self) -> &[(String, Call)] {
        &self.calls
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// OpenAI's log-probability objects: chat's `{"content": [...]}`, completions' parallel
/// lists. `offset` is the text offset of the first token (completions).
pub fn logprobs_value(kind: Kind, lps: &[TokenLogprob], offset: usize) -> Value {
    match kind {
        Kind::Chat => json!({
            "content": lps.iter().map(|t| json!({
                "token": lossy(&t.bytes), "logprob": t.logprob, "bytes": t.bytes,
                "top_logprobs": t.top.iter().map(|(_, b, l)| json!({ "token": lossy(b), "logprob": l, "bytes": b }))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "refusal": null,
        }),
        Kind::Text => {
            let mut at = offset;
            let mut offsets = Vec::with_capacity(lps.len());
            for t in lps {
                offsets.push(at);
                at += lossy(&t.bytes).len();
            }
            json!({
                "tokens": lps.iter().map(|t| lossy(&t.bytes)).collect::<Vec<_>>(),
                "token_logprobs": lps.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                "top_logprobs": lps.iter().map(|t| {
                    t.top.iter().map(|(_, b, l)| (lossy(b), json!(l))).collect::<serde_json::Map<_, _>>()
                }).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &mut Choice, parts: &[&str], finish: Finish) -> Vec<Value> {
        let mut out = vec![];
        for p in parts {
            out.extend(c.text(p));
        }
        out.extend(c.done(finish));
        out
    }

    fn contents(deltas: &[Value]) -> String {
        deltas.iter().filter_map(|d| d["delta"]["content"].as_str()).collect()
    }

    #[test]
    fn plain_text_streams_as_it_comes() {
        let mut c = Choice::new(0, Kind::Chat, None, false, 1);
        let d = run(&mut c, &["Hel", "lo"], Finish::Stop);
        assert_eq!(contents(&d), "Hello");
        assert_eq!(d.last().expect("finish")["finish_reason"], "stop");
        assert_eq!(c.whole()["message"]["content"], "Hello");
    }

    #[test]
    fn a_hermes_call_is_held_back_then_sent_whole() {
        let mut c = Choice::new(0, Kind::Chat, Some(Family::Hermes), false, 7);
        let mut d = c.text("Sure. <tool");
        assert_eq!(contents(&d), "Sure. ", "the possible trigger is held back");
        d.extend(c.text("_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>"));
        let calls: Vec<&Value> = d.iter().filter(|v| v["delta"].get("tool_calls").is_some()).collect();
        assert_eq!(calls.len(), 1, "{d:?}");
        let call = &calls[0]["delta"]["tool_calls"][0];
        assert_eq!((call["index"].as_u64(), call["function"]["name"].as_str()), (Some(0), Some("add")));
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
        let end = c.done(Finish::Stop);
        assert_eq!(end.last().expect("finish")["finish_reason"], "tool_calls");
        assert_eq!(contents(&end), "");
        let whole = c.whole();
        assert_eq!(whole["message"]["content"], "Sure. ");
        assert_eq!(whole["message"]["tool_calls"][0]["id"], call["id"], "one id for the stream and the answer");
    }

    #[test]
    fn a_held_back_start_that_is_not_a_call_is_text_in_the_end() {
        let mut c = Choice::new(0, Kind::Chat, Some(Family::Hermes), false, 1);
        let d = run(&mut c, &["a <tool"], Finish::Length);
        assert_eq!(contents(&d), "a <tool");
        assert_eq!(d.last().expect("finish")["finish_reason"], "length");
    }

    #[test]
    fn a_call_cut_short_is_content() {
        let mut c = Choice::new(0, Kind::Chat, Some(Family::Hermes), false, 1);
        let d = run(&mut c, &["x<tool_call>\n{\"name\": \"a"], Finish::Length);
        assert_eq!(contents(&d), "x<tool_call>\n{\"name\": \"a");
        assert_eq!(d.last().expect("finish")["finish_reason"], "length");
        c.settle();
        assert_eq!(c.whole()["message"]["content"], "x<tool_call>\n{\"name\": \"a");
    }

    #[test]
    fn generic_answers_are_parsed_at_the_end() {
        let mut c = Choice::new(1, Kind::Chat, Some(Family::Generic), false, 1);
        let d = run(&mut c, &["{\"response\": ", "\"hi\"}"], Finish::Stop);
        assert_eq!(contents(&d), "hi");
        assert_eq!(d[0]["index"], 1);
        let mut c = Choice::new(0, Kind::Chat, Some(Family::Generic), false, 1);
        let d = run(&mut c, &["{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {}}]}"], Finish::Stop);
        assert!(d.iter().any(|v| v["delta"]["tool_calls"][0]["function"]["name"] == "f"), "{d:?}");
        assert_eq!(c.whole()["message"]["content"], Value::Null);
    }

    #[test]
    fn logprobs_ride_on_the_next_chunk() {
        let mut c = Choice::new(0, Kind::Chat, None, true, 1);
        c.logprob(TokenLogprob { id: 5, bytes: b"Hi".to_vec(), logprob: -0.5, top: vec![(5, b"Hi".to_vec(), -0.5)] });
        let d = c.text("Hi");
        assert_eq!(d[0]["logprobs"]["content"][0]["token"], "Hi");
        assert_eq!(d[0]["logprobs"]["content"][0]["top_logprobs"][0]["logprob"], -0.5);
        let t = logprobs_value(Kind::Text, &c.logprobs, 3);
        assert_eq!(t["text_offset"], json!([3]));
        assert_eq!(t["top_logprobs"][0]["Hi"], -0.5);
    }
}
