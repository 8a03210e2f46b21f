//! The state file: running units recorded (atomically) so that a restarted supervisor adopts
//! them rather than starting them again; and recovery when that file is corrupt.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aither_sys::children;
use serde::{Deserialize, Serialize};

use super::{lifecycle, procfs, Engine, Msg};
use crate::state::{Event, UnitState};

/// What the state file records of a running unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Recorded {
    name: String,
    pid: i32,
    /// Field 22 of /proc/<pid>/stat, so a reused PID is not mistaken for the unit.
    start_time: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StateFile {
    schema_version: u32,
    units: Vec<Recorded>,
}

impl Engine {
    pub(super) fn mark_dirty(&mut self) {
        if self.cfg.state_file.is_none() || self.dirty {
            return;
        }
        self.dirty = true;
        let tx = self.tx.clone();
        // Coalesce a burst of changes (1000 units starting) into one write.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(Msg::Flush);
        });
    }

    pub(super) fn flush(&mut self) {
        self.dirty = false;
        let Some(path) = self.cfg.state_file.clone() else { return };
        let units = self
            .units
            .values()
            .filter_map(|u| {
                let pid = u.state.pid()?;
                Some(Recorded {
                    name: u.spec.name.clone(),
                    pid,
                    start_time: procfs::start_time(&self.cfg.host.proc, pid)?,
                })
            })
            .collect();
        let file = StateFile { schema_version: 1, units };
        if let Err(e) = aither_sys::atomic::write(&path, &serde_json::to_vec(&file).unwrap_or_default()) {
            tracing::warn!("cannot write the state file {}: {e}", path.display());
        }
    }

    /// Take over units recorded by an earlier engine that are still running.
    pub(super) fn adopt(&mut self) {
        if !self.cfg.adopt {
            return;
        }
        let Some(path) = self.cfg.state_file.clone() else { return };
        let Ok(text) = std::fs::read(&path) else { return };
        let records = match serde_json::from_slice::<StateFile>(&text) {
            Ok(file) => file.units,
            Err(e) => self.recover(&path, &e),
        };
        for r in records {
            let Some(u) = self.units.get_mut(&r.name) else { continue };
            if procfs::start_time(&self.cfg.host.proc, r.pid) != Some(r.start_time) {
                continue; // gone, or the PID was reused
            }
            // With cgroups, the process must still be in the unit's cgroup.
            if let Ok(cg) = &self.cfg.cgroups {
                if !cg.procs(&r.name).contains(&r.pid) {
                    continue;
                }
            }
            // Limits were released when the last supervisor detached: apply them again.
            if let Ok(cg) = &self.cfg.cgroups {
                if let Err(e) = cg.create_unit(&r.name, &u.spec.limits) {
                    tracing::warn!("{}: cannot apply its limits again: {e}", r.name);
                }
            }
            u.generation += 1;
            u.wanted = true;
            u.started = Instant::now();
            u.state = UnitState::Running { pid: r.pid };
            let ours = procfs::parent_of(&self.cfg.host.proc, r.pid) == Some(std::process::id());
            children::track(r.pid);
            lifecycle::watch_exit(&self.tx, &r.name, u.generation, r.pid, ours);
            let _ = self.events.send(Event { unit: r.name.clone(), state: u.state.clone(), status: None });
        }
    }

    /// The state file is corrupt: keep it aside for whoever wants to look, and find the
    /// units' processes again (their cgroups, or their session and `AITHER_UNIT`), so the
    /// running units are adopted rather than started a second time.
    pub(super) fn recover(&self, path: &Path, problem: &serde_json::Error) -> Vec<Recorded> {
        let aside = path.with_extension("json.corrupt");
        let kept = std::fs::rename(path, &aside)
            .map_or_else(|e| format!("it could not be moved aside ({e})"), |()| format!("kept as {}", aside.display()));
        let proc_root = self.cfg.host.proc.as_path();
        let names: Vec<&str> = self.units.keys().map(String::as_str).collect();
        let found: BTreeMap<String, crate::recover::Found> = match &self.cfg.cgroups {
            Ok(cg) => names
                .iter()
                .filter_map(|n| crate::recover::session_leader(proc_root, &cg.procs(n)).map(|f| ((*n).to_string(), f)))
                .collect(),
            Err(_) => {
                let uid = nix::unistd::geteuid();
                crate::recover::scan(proc_root, &names, (!uid.is_root()).then(|| uid.as_raw()))
            }
        };
        tracing::warn!(
            "{}: not a state file ({problem}); {kept}; found {} running unit{} again{}",
            path.display(),
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            if found.is_empty() {
                String::new()
            } else {
                format!(": {}", found.keys().cloned().collect::<Vec<_>>().join(", "))
            }
        );
        found.into_iter().map(|(name, f)| Recorded { name, pid: f.pid, start_time: f.start_time }).collect()
    }
}
