//! The eval reports agentd keeps: the latest `aitherctl eval` of each model
//! (`RecordEval`, admins), read back for the Cockpit page (`EvalResults`), one file per model
//! under the state directory's `eval/`. A report is input from a client: it is read into its
//! type (unknown fields refused), bounded in size, and its model must be a plain name.

use std::path::{Path, PathBuf};

use aither_api::eval::{EvalReport, EvalResults, SCHEMA_VERSION};

use super::workflow::refused;
use super::{Daemon, DaemonError, Outcome};

/// The largest report kept.
pub const MAX_REPORT_BYTES: usize = 1 << 20;

/// The directory of the reports, under the state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("eval")
}

/// A model name that can name a file: letters, digits, `.`, `_`, `-`, `:`; not starting with
/// a dot; at most 128 characters.
fn file_name(model: &str) -> Option<String> {
    let plain = !model.is_empty()
        && model.len() <= 128
        && !model.starts_with('.')
        && model.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    plain.then(|| format!("{model}.json"))
}

/// Check a report sent by a client; the report and the file it goes to.
pub fn check(text: &str) -> Result<(EvalReport, String), String> {
    if text.len() > MAX_REPORT_BYTES {
        return Err(format!("the report is {} bytes; at most {MAX_REPORT_BYTES} are kept", text.len()));
    }
    let report: EvalReport = serde_json::from_str(text).map_err(|e| format!("not an eval report: {e}"))?;
    if report.schema_version != SCHEMA_VERSION {
        return Err(format!("schema_version {} is not {SCHEMA_VERSION}", report.schema_version));
    }
    let name =
        file_name(&report.model).ok_or_else(|| format!("the model name {:?} cannot name a report", report.model))?;
    Ok((report, name))
}

/// Every kept report, by model (a file that no longer reads is left out, with a warning).
pub fn read_all(dir: &Path) -> Vec<EvalReport> {
    let mut reports: Vec<EvalReport> = aither_sys::paths::files_ending(dir, "json")
        .into_iter()
        .filter_map(|p| match std::fs::read(&p).map(|b| serde_json::from_slice::<EvalReport>(&b)) {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                tracing::warn!("{}: not an eval report ({e}); left out", p.display());
                None
            }
            Err(e) => {
                tracing::warn!("{}: {e}", p.display());
                None
            }
        })
        .collect();
    reports.sort_by(|a, b| a.model.cmp(&b.model));
    reports
}

impl Daemon {
    /// `RecordEval`: keep `text`, an eval report, as its model's latest.
    pub async fn record_eval(&self, text: &str) -> Outcome {
        let (report, name) = check(text).map_err(refused)?;
        let dir = dir(&self.state.lock().await.loaded.settings.state_dir);
        let path = dir.join(&name);
        let data = serde_json::to_vec_pretty(&report).map_err(|e| refused(e.to_string()))?;
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|source| DaemonError::Io { path: dir.clone(), source })?;
            aither_sys::atomic::write(&path, &data).map_err(|source| DaemonError::Io { path: path.clone(), source })
        })
        .await
        .map_err(|e| refused(e.to_string()))?;
        written?;
        let passed: Vec<String> =
            report.suites.iter().map(|s| format!("{} {:.0} %", s.suite, 100.0 * s.pass_rate)).collect();
        tracing::info!("eval of {} kept: {}", report.model, passed.join(", "));
        Ok(format!("the eval of {} is kept ({})", report.model, passed.join(", ")))
    }

    /// `EvalResults`: the latest report of each model.
    pub async fn eval_results(&self) -> EvalResults {
        let dir = dir(&self.state.lock().await.loaded.settings.state_dir);
        let reports = tokio::task::spawn_blocking(move || read_all(&dir)).await.unwrap_or_default();
        EvalResults { schema_version: SCHEMA_VERSION, reports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(model: &str) -> String {
        serde_json::json!({"schema_version": 1, "model": model, "endpoint": "unix:/x", "started": 0, "seconds": 1.0,
            "seeds": [1], "quick": true, "suites": []})
        .to_string()
    }

    #[test]
    fn a_report_is_checked_before_it_is_kept() {
        assert_eq!(check(&report("qwen2.5-7b-instruct")).expect("good").1, "qwen2.5-7b-instruct.json");
        assert!(check(&report("../../etc/passwd")).expect_err("a path").contains("cannot name"));
        assert!(check(&report(".hidden")).is_err());
        assert!(check("{\"schema_version\": 1}").expect_err("missing fields").contains("not an eval report"));
        let extra = report("m").replace("\"quick\"", "\"extra\": 1, \"quick\"");
        assert!(check(&extra).is_err(), "unknown fields are refused");
        let big = format!("{}{}", report("m"), " ".repeat(MAX_REPORT_BYTES));
        assert!(check(&big).expect_err("too big").contains("at most"));
    }

    #[test]
    fn kept_reports_read_back_by_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        for m in ["b-model", "a-model"] {
            std::fs::write(dir.path().join(format!("{m}.json")), report(m)).expect("write");
        }
        std::fs::write(dir.path().join("broken.json"), "{").expect("write");
        let all = read_all(dir.path());
        assert_eq!(all.iter().map(|r| r.model.as_str()).collect::<Vec<_>>(), ["a-model", "b-model"]);
    }
}
