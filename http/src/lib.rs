//! # aither-http: the front door every AitherOS HTTP listener goes through
//!
//! agentd's gateway (TCP and its Unix socket) and every aither-infer worker serve their
//! routes through this crate, so one set of limits holds at every door.
//!
//! ## How it works
//!
//! - [`Front::serve`] accepts on a TCP or Unix listener and runs each connection with
//!   hyper's HTTP/1.1 server (hyper does the protocol; this crate only decides who gets a
//!   connection and for how long):
//!   - **Connection cap**: one per listener, so a flood on TCP cannot take the connections
//!     of the Unix socket (the agents'). A connection beyond the cap is accepted, answered
//!     with a canned `503` and closed at once, so a flood costs one descriptor for a moment,
//!     never one per attacker, and the kernel's backlog never fills with connections nobody
//!     will read.
//!   - **Header timeout**: hyper's own `header_read_timeout`. Its clock runs whenever a
//!     connection waits for a request head: from the connection's start, and on a kept-alive
//!     connection from the end of the previous response.
//!   - **Idle timeout**: a connection with no request in flight and no bytes either way for
//!     this long is shut down gracefully (a request in flight always finishes).
//!   - **Body timeout and size**: [`guard::read_body`] reads the whole request body within
//!     the deadline and the size cap before any handler sees it (`408` / `413`).
//!   - Stopping ([`Front::serve`]'s `stop`) closes the listener, lets requests in flight
//!     finish and returns once every connection has ended.
//! - [`guard`]: what a browser must not be able to do. [`guard::check_host`] answers only
//!   to `Host` values that name this machine (loopback names, IP literals, the host name and
//!   the configured names), which defeats DNS rebinding; [`guard::require_json`] refuses a
//!   body that is not `application/json`, so a cross-site form or a `text/plain` "simple
//!   request" cannot drive the API. No CORS headers are ever sent.
//! - [`Stats`]: counters (accepted, shed, open, timeouts) for `/metrics` and the chaos figures.
//! - [`body::Tracked`]: a response body that runs a closure when it ends or is dropped.
//!
//! ## Limitations
//!
//! - HTTP/1.1 only (every client of the appliance speaks it; h2c is not offered).
//! - The idle timeout cannot be longer than the header timeout: hyper's header clock also
//!   runs while a kept-alive connection waits, so it would close the connection first.
//!   [`Limits::validate`] refuses that combination rather than pretend to honour it.

pub mod body;
pub mod guard;
pub mod keys;
mod limits;
mod serve;

pub use limits::{Limits, LimitsError};
pub use serve::{Front, Listener, Stats};
