//! aither-infer on a real instruction-tuned model, SmolLM2-135M-Instruct (its own ChatML
//! template, a 49,152-token GPT-2-style vocabulary): where random weights say nothing. Greedy
//! answers on one slot, so they repeat: a chat answer that is text and right, a tool call the
//! model chooses (`tool_choice: auto`, the generic JSON form its template gets), a structured
//! answer constrained on the whole real vocabulary. How often the model is right over many
//! cases is the eval's to say (`make eval`).

mod common;

use common::Worker;
use serde_json::{json, Value};

fn smollm2() -> Worker {
    Worker::start(
        &aither_test_support::test_model("smollm2-135m-instruct-q4_1.gguf"),
        &["--ctx", "4096", "--parallel", "1"],
    )
}

#[test]
fn a_real_model_answers_in_words_and_calls_the_tool_it_chooses() {
    let w = smollm2();
    let (status, answer) = w.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
                "temperature": 0, "max_tokens": 40}),
    );
    assert_eq!(status, 200, "{answer}");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("Paris"), "a real answer: {text:?}");

    // A tool the request asks for: chosen by the model, its arguments from the request.
    let weather = json!([{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let (status, answer) = w.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "What is the weather in Lima?"}],
                "tools": weather, "tool_choice": "auto", "temperature": 0, "max_tokens": 100}),
    );
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
    let call = &choice["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap_or("{}")).expect("JSON arguments");
    assert_eq!(args["city"].as_str().map(str::to_lowercase).as_deref(), Some("lima"), "{args}");
}

#[test]
fn a_structured_answer_holds_to_its_schema_on_the_real_vocabulary() {
    let w = smollm2();
    let schema = json!({"type": "object", "additionalProperties": false, "required": ["class", "evidence"],
        "properties": {"evidence": {"type": "string", "maxLength": 120},
                       "class": {"enum": ["permission_denied", "no_such_file", "out_of_memory"]}}});
    let (status, answer) = w.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content":
                    "Log: billing: cannot open /etc/billing.conf: Permission denied. Which class of failure is it?"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": schema, "strict": true}},
                "temperature": 0, "max_tokens": 120}),
    );
    assert_eq!(status, 200, "{answer}");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    let doc: Value = serde_json::from_str(text).expect("the answer parses");
    assert!(doc["class"].is_string() && doc["evidence"].as_str().is_some_and(|e| e.chars().count() <= 120), "{doc}");
    // The grammar checked the sampled tokens of a real model's 49k vocabulary.
    let constrained = w.metric("aither_infer_constrained_tokens_total");
    assert!(constrained >= 5.0, "{}", w.metrics());
}
