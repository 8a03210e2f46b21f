//! Model downloads agentd carries out: an approved `pull_model` proposal, and `PullModel` over
//! D-Bus (the Cockpit page's Pull), which runs in the background and reports its progress as
//! `PullChanged` signals. One pull at a time per model; the model directory is agentd's, so a
//! pull needs no write access of the caller's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::workflow::refused;
use super::{ApiEvent, Daemon, Outcome};

/// How often a running pull reports its progress, at most.
const REPORT_EVERY: Duration = Duration::from_millis(250);

impl Daemon {
    /// Download catalog model `model` into the model directory, reporting `(done, total)` as
    /// bytes arrive; then reload (its worker appears or starts).
    pub(super) async fn pull_model_reporting(
        &self,
        model: &str,
        progress: impl FnMut(u64, Option<u64>) + Send + 'static,
    ) -> Outcome {
        let file = catalog_file(&self.opts.root.join("usr/share/aither"), model).map_err(refused)?;
        self.fetch_and_reload(model, file, progress).await
    }

    /// Download `file` (catalog model `model`'s) into the model directory, then reload.
    async fn fetch_and_reload(
        &self,
        model: &str,
        file: aither_plan::catalog::ModelFile,
        mut progress: impl FnMut(u64, Option<u64>) + Send + 'static,
    ) -> Outcome {
        let dir = self.state.lock().await.loaded.settings.model_dir.clone();
        let name = model.to_string();
        let fetched = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let got = aither_models::fetch(
                &file,
                &aither_models::Source::Catalog,
                &dir,
                &aither_models::FetchOptions::default(),
                &mut progress,
            )
            .map_err(|e| e.to_string())?;
            Ok(format!("{name}: {} ({} bytes)", got.path.display(), got.bytes))
        })
        .await
        .map_err(|e| refused(e.to_string()))?
        .map_err(refused)?;
        let reloaded = self.reload().await?;
        Ok(format!("{fetched}; {reloaded}"))
    }

    /// `PullModel`: start downloading `model` in the background; `PullChanged` follows it.
    pub async fn start_pull(self: &Arc<Self>, model: &str) -> Outcome {
        // A name that is not the catalog's is refused now, not reported later.
        let file = catalog_file(&self.opts.root.join("usr/share/aither"), model).map_err(refused)?;
        {
            let mut pulls = self.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !pulls.insert(model.to_string()) {
                return Err(refused(format!("{model} is already being pulled")));
            }
        }
        let daemon = Arc::clone(self);
        let name = model.to_string();
        tokio::spawn(async move {
            let events = daemon.api_events.clone();
            let report = name.clone();
            let mut last: Option<Instant> = None;
            let progress = move |done: u64, total: Option<u64>| {
                if last.is_none_or(|t| t.elapsed() >= REPORT_EVERY) || total == Some(done) {
                    last = Some(Instant::now());
                    let _ = events.send(ApiEvent::Pull {
                        model: report.clone(),
                        done,
                        total: total.unwrap_or(0),
                        state: "pulling".into(),
                        message: String::new(),
                    });
                }
            };
            let outcome = daemon.fetch_and_reload(&name, file, progress).await;
            let (state, message) = match &outcome {
                Ok(m) => ("done", m.clone()),
                Err(e) => ("failed", e.to_string()),
            };
            tracing::info!("pull of {name}: {state}: {message}");
            daemon.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&name);
            let _ =
                daemon.api_events.send(ApiEvent::Pull { model: name, done: 0, total: 0, state: state.into(), message });
        });
        Ok(format!("pulling {model}: PullChanged signals follow it (aitherctl models shows it when done)"))
    }
}

/// The file a catalog model is downloaded as (the catalog installed under `data`, or the one
/// agentd carries).
fn catalog_file(data: &std::path::Path, name: &str) -> Result<aither_plan::catalog::ModelFile, String> {
    let installed = data.join("presets").is_dir().then_some(data);
    let (_, catalog) = aither_plan::data::load(installed).map_err(|e| format!("{e:#}"))?;
    let entry = catalog.get(name).ok_or_else(|| format!("{name:?} is not a model of the catalog"))?;
    aither_models::choose_file(entry, None).cloned().ok_or_else(|| format!("{name} has no file to download"))
}
