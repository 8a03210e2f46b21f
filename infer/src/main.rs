//! # aither-infer: one inference worker per loaded model
//!
//! One process per model, llama.cpp through `llama-cpp-2`, an OpenAI-compatible HTTP API on
//! a Unix socket, continuous batching. `agentd` never links llama.cpp: a bad model file
//! crashes a worker, not the supervisor.
//!
//! ## Status
//!
//! Not implemented yet: the binary says so and exits with status 69 (`EX_UNAVAILABLE`).
//!
//! ## Limitations
//!
//! Everything above is not yet built.
fn main() {
    eprintln!("aither-infer: not implemented yet (see the issue \"aither-infer and the gateway\")");
    std::process::exit(69);
}
