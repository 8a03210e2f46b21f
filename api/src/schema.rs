//! The JSON Schema of every top-level document, for clients not written in Rust (the Cockpit
//! page). `docs/schema/NAME.schema.json` holds each; the test below fails when they differ
//! from the types (run it with `AITHER_BLESS=1` to write them after an intended change).

use schemars::{schema_for, Schema};

/// Each top-level document: its file name stem and its schema.
pub fn documents() -> Vec<(&'static str, Schema)> {
    use crate::agentd;
    vec![
        ("profile", schema_for!(crate::profile::Profile)),
        ("plan", schema_for!(crate::plan::Plan)),
        ("agentd-status", schema_for!(agentd::Status)),
        ("agentd-unit", schema_for!(agentd::UnitReply)),
        ("agentd-units", schema_for!(agentd::UnitList)),
        ("agentd-models", schema_for!(agentd::Models)),
        ("agentd-preset", schema_for!(agentd::PresetReply)),
        ("agentd-log-target", schema_for!(agentd::LogTargetReply)),
        ("agentd-done", schema_for!(agentd::Done)),
        ("agentd-inference", schema_for!(agentd::Inference)),
        ("workflow-artifact", schema_for!(agentd::Artifact)),
        ("checksums", schema_for!(crate::store::Checksums)),
        ("step", schema_for!(crate::workflow::StepSpec)),
        ("step-result", schema_for!(crate::workflow::StepResult)),
        ("workflow-run", schema_for!(crate::workflow::RunReply)),
        ("workflow-runs", schema_for!(crate::workflow::RunList)),
        ("workflow-approvals", schema_for!(crate::workflow::ApprovalList)),
        ("workflows", schema_for!(crate::workflow::WorkflowList)),
        ("workflow-audit-entry", schema_for!(crate::workflow::AuditEntry)),
        ("eval-report", schema_for!(crate::eval::EvalReport)),
        ("eval-results", schema_for!(crate::eval::EvalResults)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_files_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema");
        let bless = std::env::var_os("AITHER_BLESS").is_some();
        for (name, schema) in documents() {
            let path = dir.join(format!("{name}.schema.json"));
            let text = serde_json::to_string_pretty(&schema).expect("a schema is JSON") + "\n";
            if bless {
                std::fs::create_dir_all(&dir).expect("docs/schema");
                std::fs::write(&path, &text).expect("write");
                continue;
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "{} differs from the {name} type: run `AITHER_BLESS=1 cargo test -p aither-api` and commit it",
                path.display()
            );
        }
    }
}
