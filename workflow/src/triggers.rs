//! When a run starts: by hand, when a unit matching a pattern fails, or on a calendar.

use super::Schedule;

/// When a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggers {
    /// `aitherctl workflows run NAME`.
    pub manual: bool,
    /// Unit-name patterns (`*` matches any run of characters): a matching unit entering
    /// `failed` or `gave-up` starts a run.
    pub units: Vec<String>,
    pub calendar: Option<Schedule>,
}

impl Triggers {
    /// Whether unit `name` failing starts a run.
    pub fn matches_unit(&self, name: &str) -> bool {
        self.units.iter().any(|p| pattern_matches(p, name))
    }
}

pub use aither_api::workflow::pattern_matches;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_patterns_match_with_stars() {
        assert!(pattern_matches("infer-*", "infer-qwen"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("a*b*c", "a-x-b-y-c"));
        assert!(!pattern_matches("infer-*", "vector-store"));
        assert!(!pattern_matches("store", "store2"));
    }
}
