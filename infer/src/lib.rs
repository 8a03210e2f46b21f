//! # aither-infer: one inference worker per loaded model
//!
//! One process per model, llama.cpp through `llama-cpp-2`, an OpenAI-compatible HTTP API on
//! a Unix socket (or TCP), continuous batching. `agentd` never links llama.cpp: a bad model
//! file crashes a worker, not the supervisor.
//!
//! ## How it works
//!
//! - [`cli`]: the command line (or one model of a plan document), the model check, the
//!   worker's life. The GGUF header is read first with `aither_gguf`, which checks
//!   every declared count and size against the file, so a truncated or hostile file gives a
//!   clear message and exit status 65 ([`cli::exit::BAD_MODEL`]) before llama.cpp reads it;
//!   a missing one exits 66. A supervisor does not restart either.
//! - The listener is up at once; `/health` says `loading` until the model is mapped (mmap)
//!   and the context made, then `ok`, and `READY=1` goes to `$NOTIFY_SOCKET`.
//! - [`engine`]: one thread owns the llama.cpp context and runs continuous batching over
//!   `--parallel` sequences of one unified KV cache (see its design note).
//! - [`server`] and [`api`]: `/v1/models`, `/v1/chat/completions` (the model's own Jinja
//!   chat template, [`template`]), `/v1/completions`, `/v1/embeddings` (embedding models,
//!   detected from the GGUF's pooling type), SSE streaming, OpenAI error bodies;
//!   [`metrics`]: Prometheus text.
//!
//! ## Limitations
//!
//! - One choice per request (`n` = 1); no logprobs, tools or JSON-schema output (refused
//!   with a 400 naming the field).
//! - `--tensor-split` is taken and logged, but llama-cpp-2 exposes no setter for llama.cpp's
//!   `tensor_split`: layers are spread over the GPUs in proportion to their free memory,
//!   which is the plan's split when the GPUs are alike.
//! - A non-streaming request whose client disconnects is noticed when its HTTP connection
//!   is dropped by the server; a streaming one at its next token.

pub mod api;
pub mod backends;
pub mod choices;
pub mod cli;
pub mod engine;
pub mod fields;
pub mod generate;
pub mod grammar;
pub mod listen;
pub mod llama;
pub mod metrics;
pub mod options;
pub mod responses;
pub mod server;
pub mod template;
pub mod tools;
