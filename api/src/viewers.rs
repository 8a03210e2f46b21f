//! What callers outside `aither-admin` see of runs and proposals: names, states, costs and
//! times, never what a run's model wrote or was given.

use crate::workflow::{Approval, Run, StepOutcome};

/// What a caller outside `aither-admin` is shown in place of what a run's model wrote or was
/// given.
pub const FOR_ADMINS: &str = "(for admins)";

impl Run {
    /// The run as those who may not change agentd see it: names, states, costs and times; its
    /// inputs' values, the failure's reason, the steps' summaries and errors, the proposals'
    /// reasons and what they would publish left out (they carry what the model wrote or was
    /// given).
    pub fn for_viewers(mut self) -> Run {
        for v in self.inputs.values_mut() {
            *v = FOR_ADMINS.into();
        }
        if self.reason.is_some() {
            self.reason = Some(FOR_ADMINS.into());
        }
        for s in &mut self.steps {
            if s.error.is_some() {
                s.error = Some(FOR_ADMINS.into());
            }
            if let Some(r) = &mut s.result {
                r.summary = FOR_ADMINS.into();
                if let StepOutcome::Failed { reason } = &mut r.outcome {
                    *reason = FOR_ADMINS.into();
                }
                for p in &mut r.proposals {
                    *p.reason_mut() = FOR_ADMINS.into();
                }
                for c in &mut r.refused {
                    c.reason = FOR_ADMINS.into();
                }
            }
        }
        self.approvals = self.approvals.into_iter().map(Approval::for_viewers).collect();
        self
    }
}

impl Approval {
    /// The proposal as those who may not change agentd see it: its action and state, not the
    /// model's reason or the content it would publish.
    pub fn for_viewers(mut self) -> Approval {
        *self.proposal.reason_mut() = FOR_ADMINS.into();
        self.preview = None;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::StepState;

    #[test]
    fn viewers_see_names_and_states_not_what_the_model_wrote() {
        let run: Run = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "id": "post-1", "workflow": "post", "trigger": "manual",
            "trigger_unit": null, "inputs": {"topic": "the secret launch"}, "state": "awaiting_approval",
            "reason": null, "created": 1, "ended": null,
            "steps": [{"name": "write", "state": "done", "unit": "wf-post-1-write", "started": 1, "ended": 2,
                       "error": null, "attempts": 1,
                       "result": {"schema_version": 1, "run_id": "post-1", "step": "write", "outcome": "completed",
                                  "turns": 2, "prompt_tokens": 9, "completion_tokens": 9, "seconds": 1.0,
                                  "summary": "the launch is on the 9th", "context": null, "outputs": ["post.md"],
                                  "proposals": [{"kind": "publish", "file": "post.md", "reason": "the 9th"}],
                                  "refused": [{"tool": "read_file", "reason": "/etc/shadow"}]}}],
            "approvals": [{"id": "post-1.1", "run_id": "post-1", "workflow": "post", "step": "write",
                           "proposal": {"kind": "publish", "file": "post.md", "reason": "the 9th"},
                           "state": "pending", "created": 1, "expires": 9, "decided_by": null, "decided": null,
                           "outcome": null, "preview": {"bytes": 5, "head": "9th!!", "cut": false}}]
        }))
        .expect("run");
        let seen = serde_json::to_string(&run.clone().for_viewers()).expect("json");
        for secret in ["secret launch", "on the 9th", "\"the 9th\"", "9th!!", "/etc/shadow"] {
            assert!(!seen.contains(secret), "{secret} in {seen}");
        }
        let v = run.for_viewers();
        assert_eq!(
            (v.steps[0].state, v.approvals[0].proposal.action()),
            (StepState::Done, "publish outputs/post.md".into())
        );
        assert_eq!(v.steps[0].result.as_ref().map(|r| r.outputs.clone()), Some(vec!["post.md".to_string()]));
    }
}
