//! A workflow step's unit: its definition (the same when it is started and when a later agentd
//! adopts it), the gateway socket it reaches the model through, and its category pair freed
//! when its run is over.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aither_api::workflow::{Run, RunState, StepState};

use super::runs;
use crate::agents::CategoryMap;
use crate::units::{self, Planned, StepUnit};
use crate::workflows::Workflow;

/// Step units of the runs still running, for the engine to adopt at start: the same unit
/// definition they were started with.
pub(super) fn units_to_adopt(
    loaded: &super::Loaded,
    runs: &BTreeMap<String, Run>,
    mcs: &mut CategoryMap,
) -> Vec<Planned> {
    let mut out = Vec::new();
    for r in runs.values().filter(|r| r.state == RunState::Running) {
        let Some(w) = loaded.workflows.get(&r.workflow) else { continue };
        for (i, s) in r.steps.iter().enumerate().filter(|(_, s)| s.state == StepState::Running) {
            let Some(unit) = &s.unit else { continue };
            let Some(pair) = mcs.pair_for(unit).filter(|_| i < w.steps.len()) else { continue };
            out.push(step_unit(loaded, r, w, i, unit, pair));
        }
    }
    out
}

/// The socket step agents reach the model through: `workflows.gateway_socket`, else the
/// gateway's own Unix socket.
fn step_gateway(s: &crate::config::Settings) -> PathBuf {
    s.workflow_gateway_socket.clone().unwrap_or_else(|| {
        s.gateway_listen
            .iter()
            .find_map(|l| match l {
                crate::config::Listen::Unix(p) => Some(p.clone()),
                crate::config::Listen::Tcp(_) => None,
            })
            .unwrap_or_else(|| PathBuf::from(aither_sys::paths::GATEWAY_SOCKET))
    })
}

/// Free the category pairs of a finished run's steps, but for a step still being stopped:
/// exactly its own step units — a prefix would free another run's too (`wf-a-1-` begins the
/// units of run `a-1-1` of a workflow named `a-1`).
pub(super) fn release_pairs(mcs: &mut CategoryMap, run: &Run) {
    let done: Vec<String> =
        run.steps.iter().filter(|s| s.state != StepState::Running).map(|s| runs::step_unit(&run.id, &s.name)).collect();
    mcs.pairs.retain(|name, _| !done.contains(name));
}

/// Step `index` of `run` as its unit `unit` at category pair `pair`: the same definition
/// when it is started and when a later agentd adopts it.
pub(super) fn step_unit(
    loaded: &super::Loaded,
    run: &Run,
    w: &Workflow,
    index: usize,
    unit: &str,
    pair: (u16, u16),
) -> Planned {
    let step = &w.steps[index];
    let s = &loaded.settings;
    units::step(
        s,
        &loaded.plan,
        &loaded.host,
        &StepUnit {
            name: unit,
            description: format!("workflow {} run {}: step {}", w.name, run.id, step.name),
            workspace: units::workspace(&s.state_dir, unit),
            pair,
            gateway: &step_gateway(s),
            outbound: step.network == crate::workflows::Network::Outbound,
            source: runs::runs_dir(&s.state_dir).join(&run.id).join("run.json").display().to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run_frees_only_its_own_steps_pairs() {
        let run = |id: &str, workflow: &str, running: bool| -> Run {
            serde_json::from_value(serde_json::json!({
                "schema_version": 1, "id": id, "workflow": workflow, "trigger": "manual",
                "trigger_unit": null, "inputs": {}, "state": "completed", "reason": null, "created": 1, "ended": 2,
                "steps": [{"name": "go", "state": if running { "running" } else { "done" }, "unit": null,
                           "started": null, "ended": null, "result": null, "error": null, "attempts": 1}],
                "approvals": []
            }))
            .expect("run")
        };
        let mut mcs = CategoryMap::default();
        for unit in ["wf-a-1-go", "wf-a-1-1-go", "wf-a-12-go", "agent-x"] {
            mcs.pair_for(unit).expect("pair");
        }
        release_pairs(&mut mcs, &run("a-1", "a", false));
        let left: Vec<&str> = mcs.pairs.keys().map(String::as_str).collect();
        assert_eq!(left, ["agent-x", "wf-a-1-1-go", "wf-a-12-go"]);
        // A step still being stopped keeps its pair until its end.
        release_pairs(&mut mcs, &run("a-1-1", "a-1", true));
        assert!(mcs.pairs.contains_key("wf-a-1-1-go"));
    }
}
