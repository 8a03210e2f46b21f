//! The limits of a front door, with their defaults and the rules that bind them.

use std::time::Duration;

/// What one [`crate::Front`] allows a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a complete request head (hyper's `header_read_timeout`).
    pub header_timeout: Duration,
    /// Longest time to receive a whole request body once its head is in.
    pub body_timeout: Duration,
    /// A connection with no request in flight and no traffic for this long is closed;
    /// zero turns keep-alive off (one request per connection).
    pub idle_timeout: Duration,
    /// Open connections at once, per listener.
    pub max_connections: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_body_bytes: 32 << 20,
        }
    }
}

/// A limit that cannot be honoured; `key` is the setting's name as the caller's
/// configuration spells it (the `*_seconds` forms).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct LimitsError {
    pub key: &'static str,
    pub problem: String,
}

impl Limits {
    /// Check that the limits can all be honoured together.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let bad = |key, problem: &str| Err(LimitsError { key, problem: problem.to_string() });
        if self.header_timeout.is_zero() {
            return bad("header_timeout_seconds", "must be at least 1");
        }
        if self.body_timeout.is_zero() {
            return bad("body_timeout_seconds", "must be at least 1");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes", "must be at least 1");
        }
        if self.idle_timeout > self.header_timeout {
            return Err(LimitsError {
                key: "idle_timeout_seconds",
                problem: format!(
                    "{} s is longer than header_timeout_seconds ({} s), which also bounds how long a kept-alive \
                     connection may wait for its next request; raise header_timeout_seconds too",
                    self.idle_timeout.as_secs(),
                    self.header_timeout.as_secs()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn an_idle_timeout_beyond_the_header_timeout_is_refused_naming_both() {
        let l = Limits { idle_timeout: Duration::from_secs(60), ..Limits::default() };
        let e = l.validate().expect_err("idle > header");
        assert_eq!(e.key, "idle_timeout_seconds");
        assert!(e.problem.contains("header_timeout_seconds"), "{e}");
    }

    #[test]
    fn zero_limits_are_refused() {
        for (l, key) in [
            (Limits { header_timeout: Duration::ZERO, ..Limits::default() }, "header_timeout_seconds"),
            (Limits { body_timeout: Duration::ZERO, ..Limits::default() }, "body_timeout_seconds"),
            (Limits { max_connections: 0, ..Limits::default() }, "max_connections"),
            (Limits { max_body_bytes: 0, ..Limits::default() }, "max_body_bytes"),
        ] {
            assert_eq!(l.validate().map_err(|e| e.key), Err(key));
        }
        assert_eq!(Limits { idle_timeout: Duration::ZERO, ..Limits::default() }.validate(), Ok(()), "no keep-alive");
    }
}
