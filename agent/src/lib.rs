//! # aither-agent: the agent runner
//!
//! One confined process per workflow step (issue 20). agentd lays out the step's workspace
//! (`step.json`, `inputs/`) and starts `aither-agent --workspace DIR` as an ordinary agent
//! unit: its own SELinux domain and category pair, its own cgroup limits. The agent converses
//! with the local model through the gateway's Unix socket ([`gateway`]), offering only the
//! tools the step was granted ([`tools`]) and carrying out each call itself, inside its own
//! confinement: files of its workspace ([`workspace`]), one of the step's listed commands
//! ([`command`]), a URL when the step has outbound network ([`fetch`]), a search of its
//! documents through the embedding model ([`search`]), a proposal from the closed set. It stops at the first budget it reaches (turns, generated tokens, seconds) and
//! leaves `result.json` and `transcript.jsonl` ([`step`]). It never talks to agentd: whatever
//! it wants done goes out as proposals, for agentd to validate and a human to approve.
//!
//! It is built so that a small model gets it right (the eval, `aither-eval`, measures it): the
//! step's small inputs, the output of the commands it runs first and the passages nearest its
//! question are shown with its instructions ([`evidence`]); a step that may only read and write
//! and has everything it reads there answers its outputs at once; tool turns end on a repeated
//! call or errors in a row, and the errors teach; every declared output not yet written is
//! asked for as the model's whole answer, constrained by the output's JSON Schema or grammar
//! when it has one, and written by the runner.
//!
//! ## Limitations
//!
//! - `search_docs` keeps its index in the agent's memory for the step (bounded by the step's
//!   share of the plan's L2 tier): a later step or run embeds its documents again.
//! - Only the workspace is readable by the file tools; paths the manifest grants outside it
//!   are to come with the workflow engine (agentd copies inputs in until then).
//! - `fetch_url` checks the addresses it connects to (never this machine or the link-local
//!   network) but allows private networks (a LAN's documentation server); the SELinux domain
//!   decides whether the step may connect at all.

pub mod command;
pub mod evidence;
pub mod fetch;
pub mod gateway;
pub mod search;
pub mod step;
pub mod tools;
pub mod workspace;
