//! What agentd does with model files. Downloads: an approved `pull_model` proposal, and
//! `PullModel` over D-Bus (the Cockpit page's Pull), which runs in the background and reports
//! its progress as `PullChanged` signals; one pull at a time per model. Removal
//! (`RemoveModel`): the worker stops first, then the file goes. The model directory is
//! agentd's, so neither needs any write access of the caller's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::workflow::refused;
use super::{stop_and_wait, ApiEvent, Daemon, Outcome};

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
        PullClaim::take(&self.pulls, model)?.keep();
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

impl Daemon {
    /// `RemoveModel`: stop the worker of the plan's model `name`, remove its file (and a part
    /// of an unfinished download, and its recorded checksum), and reload: the worker is then
    /// blocked on the missing file until the model is pulled again.
    pub async fn remove_model(&self, name: &str) -> Outcome {
        let (file, dir) = {
            let st = self.state.lock().await;
            let models = &st.loaded.plan.models;
            let m = models.iter().find(|m| m.name == name).ok_or_else(|| {
                let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
                refused(format!("no model {name:?} in the plan (its models: {})", names.join(", ")))
            })?;
            (aither_plan::catalog::ModelFile::of_planned(m), st.loaded.settings.model_dir.clone())
        };
        if self.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(name) {
            return Err(refused(format!("{name} is being pulled: wait until its pull ends")));
        }
        let unit = format!("infer-{name}");
        if !stop_and_wait(&self.sup, &unit, STOP_WITHIN).await {
            return Err(refused(format!("{unit} did not stop within {} s: the file is kept", STOP_WITHIN.as_secs())));
        }
        let path = aither_plan::plan::local_file(&dir, &file.url);
        let removed = tokio::task::spawn_blocking(move || aither_models::remove(&file, &dir))
            .await
            .map_err(|e| refused(e.to_string()))?
            .map_err(|e| refused(e.to_string()))?;
        let reloaded = self.reload().await?;
        // A request that came between the stop and the removal may have started it again.
        stop_and_wait(&self.sup, &unit, STOP_WITHIN).await;
        tracing::info!("{name}: {} removed", path.display());
        Ok(match removed {
            Some(bytes) => format!("removed {} ({bytes} bytes); {reloaded}", path.display()),
            None => format!("{name} had no file at {}; {reloaded}", path.display()),
        })
    }
}

/// A model claimed for one pull, released when dropped ([`PullClaim::keep`]: by hand).
pub(super) struct PullClaim<'a> {
    pulls: &'a std::sync::Mutex<std::collections::BTreeSet<String>>,
    model: String,
}

impl<'a> PullClaim<'a> {
    /// Claim `model`, or refuse when it is being pulled.
    pub fn take(
        pulls: &'a std::sync::Mutex<std::collections::BTreeSet<String>>,
        model: &str,
    ) -> Result<Self, super::DaemonError> {
        if !pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(model.to_string()) {
            return Err(refused(format!("{model} is already being pulled")));
        }
        Ok(PullClaim { pulls, model: model.to_string() })
    }

    /// Keep the claim past this scope (the background pull releases it when it ends).
    pub fn keep(mut self) {
        self.model.clear();
    }
}

impl Drop for PullClaim<'_> {
    fn drop(&mut self) {
        if !self.model.is_empty() {
            self.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.model);
        }
    }
}

/// How long a worker may take to stop before its file is removed.
const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The file a catalog model is downloaded as (the catalog installed under `data`, or the one
/// agentd carries).
fn catalog_file(data: &std::path::Path, name: &str) -> Result<aither_plan::catalog::ModelFile, String> {
    let installed = data.join("presets").is_dir().then_some(data);
    let (_, catalog) = aither_plan::data::load(installed).map_err(|e| format!("{e:#}"))?;
    let entry = catalog.get(name).ok_or_else(|| format!("{name:?} is not a model of the catalog"))?;
    aither_models::choose_file(entry, None).cloned().ok_or_else(|| format!("{name} has no file to download"))
}
