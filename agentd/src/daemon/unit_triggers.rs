//! Runs a unit's failure starts: the workflows whose `units` trigger matches it, one run at a
//! time per workflow and unit, further and further apart while the unit keeps failing.

use std::collections::BTreeMap;

use super::runs;
use super::workflow::Trigger;
use super::Daemon;

/// A unit's failures that started runs of a workflow, in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Triggered {
    /// Unix seconds of the last run started.
    pub last: u64,
    pub streak: u32,
}

/// The first wait between runs a unit's failures start, doubled with each run in a row.
const TRIGGER_BACKOFF: u64 = 60;
/// The longest wait; a unit quiet for this long starts afresh.
const TRIGGER_BACKOFF_MAX: u64 = 3600;

/// Whether a unit's failure at `now` may start another run of a workflow that its failures
/// started `before`: `Ok` with the record to keep, or `Err` with when it may.
pub(super) fn trigger_backoff(before: Option<Triggered>, now: u64) -> Result<Triggered, u64> {
    let Some(b) = before.filter(|b| now.saturating_sub(b.last) < TRIGGER_BACKOFF_MAX) else {
        return Ok(Triggered { last: now, streak: 1 });
    };
    let wait = TRIGGER_BACKOFF.saturating_mul(1u64 << b.streak.saturating_sub(1).min(16)).min(TRIGGER_BACKOFF_MAX);
    if now < b.last + wait {
        Err(b.last + wait)
    } else {
        Ok(Triggered { last: now, streak: b.streak + 1 })
    }
}

impl Daemon {
    /// A unit left `failed` or `gave-up`: start the workflows it triggers (one run at a time
    /// per workflow and unit).
    pub(super) async fn unit_failed(&self, unit: &str) {
        let wanted: Vec<String> = {
            let mut st = self.state.lock().await;
            if st.engine.steps.contains_key(unit) || !st.by_name.contains_key(unit) {
                return;
            }
            let candidates: Vec<String> =
                st.loaded
                    .workflows
                    .values()
                    .filter(|w| st.loaded.switches.is_on(w) && w.triggers.matches_unit(unit))
                    .filter(|w| {
                        !st.engine.runs.values().any(|r| {
                            r.workflow == w.name && r.trigger_unit.as_deref() == Some(unit) && !r.state.is_final()
                        })
                    })
                    .map(|w| w.name.clone())
                    .collect();
            // A unit failing at every start gets runs further and further apart, not one per
            // failure.
            let now = runs::now();
            let mut wanted = Vec::new();
            for name in candidates {
                let key = (name.clone(), unit.to_string());
                match trigger_backoff(st.engine.triggered.get(&key).copied(), now) {
                    Ok(t) => {
                        st.engine.triggered.insert(key, t);
                        wanted.push(name);
                    }
                    Err(at) => tracing::info!(
                        "{unit} failed again: workflow {name} runs for it again no sooner than in {} s",
                        at.saturating_sub(now)
                    ),
                }
            }
            wanted
        };
        for name in wanted {
            let trigger = Trigger { text: format!("unit {unit} failed"), unit: Some(unit.to_string()) };
            if let Err(e) = self.run_workflow(&name, BTreeMap::new(), trigger, false).await {
                tracing::warn!("workflow {name}: not started for {unit}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_failing_again_and_again_gets_runs_further_apart() {
        let first = trigger_backoff(None, 1000).expect("the first failure starts a run");
        assert_eq!(first, Triggered { last: 1000, streak: 1 });
        assert_eq!(trigger_backoff(Some(first), 1030), Err(1060), "a minute after the first");
        let second = trigger_backoff(Some(first), 1060).expect("then");
        assert_eq!(trigger_backoff(Some(second), 1100), Err(1180), "two minutes after the second");
        let third = trigger_backoff(Some(second), 1180).expect("then");
        assert_eq!(trigger_backoff(Some(third), 1181), Err(1420), "four after the third");
        let long = Triggered { last: 0, streak: 30 };
        assert_eq!(trigger_backoff(Some(long), 3599), Err(3600), "never more than an hour");
        assert_eq!(
            trigger_backoff(Some(long), 3600),
            Ok(Triggered { last: 3600, streak: 1 }),
            "quiet for an hour: afresh"
        );
    }
}
