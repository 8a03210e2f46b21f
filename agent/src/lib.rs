//! # aither-agent: the agent runner
//!
//! One confined process per workflow step (issue 20): it reads its step from its workspace,
//! converses with the local model through the gateway, runs the tool calls it is granted
//! inside its own confinement and leaves its result and proposals as files.
//!
//! ## Limitations
//!
//! - So far only the workspace's file access ([`workspace`]) exists: the conversation loop,
//!   the other tools and the binary are still to come.

pub mod workspace;
