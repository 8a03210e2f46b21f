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
//! A step that ends without writing a declared output is reminded once, and the next turn
//! must write it: only `write_file` is offered, its path one of the missing outputs and its
//! content bounded by what the budget can hold, and the call is required (the worker's
//! grammar makes it valid).
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
pub mod fetch;
pub mod gateway;
pub mod search;
pub mod step;
pub mod tools;
pub mod workspace;
