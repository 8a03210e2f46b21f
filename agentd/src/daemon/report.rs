//! What the API says: units with their states, the plan's models and their files, the
//! gateway, the preset; the engine's exit reasons in words.

use aither_init::{ExitReason, UnitState, UnitStatus};
use anyhow::Result;

use super::Daemon;
use crate::agents::AdmissionQueue;
use crate::config::Listen;
use crate::units::{self, Kind, Planned};
use aither_api::agentd::{self as api, Unit};

impl Daemon {
    /// The plan's models: file, whether it is there, and the state of its worker.
    pub async fn models(&self) -> Result<api::Models> {
        let units = self.units().await?;
        let st = self.state.lock().await;
        let dir = &st.loaded.settings.model_dir;
        let models = st
            .loaded
            .plan
            .models
            .iter()
            .map(|m| {
                let path = aither_plan::plan::local_file(dir, &m.url);
                let bytes = std::fs::metadata(&path).ok().filter(std::fs::Metadata::is_file).map(|md| md.len());
                let file = aither_plan::catalog::ModelFile::of_planned(m);
                let unit = format!("infer-{}", m.name);
                api::Model {
                    name: m.name.clone(),
                    role: m.role,
                    quant: m.quant.clone(),
                    url: m.url.clone(),
                    sha256: m.sha256.clone(),
                    verification: bytes.map(|_| aither_models::verification(dir, &file)),
                    present: bytes.is_some(),
                    bytes,
                    path,
                    pinned: m.pinned,
                    state: units.iter().find(|u| u.name == unit).map(|u| u.state),
                    unit,
                }
            })
            .collect();
        Ok(api::Models { schema_version: api::SCHEMA_VERSION, model_dir: dir.clone(), models })
    }

    /// Where the gateway listens and how clients authenticate, for `aitherctl gateway`.
    pub async fn gateway_info(&self) -> api::Gateway {
        let st = self.state.lock().await;
        let s = &st.loaded.settings;
        let listen = s
            .gateway_listen
            .iter()
            .map(|l| match l {
                Listen::Tcp(a) => {
                    api::Listener::Tcp { address: a.to_string(), key_required: s.gateway_api_key.is_some() }
                }
                Listen::Unix(p) => api::Listener::Unix { path: p.clone(), group: s.gateway_socket_group.clone() },
            })
            .collect();
        let l = &s.gateway_limits;
        api::Gateway {
            listen,
            api_key_file: s.gateway_api_key_file.clone(),
            allowed_hosts: s.gateway_allowed_hosts.clone(),
            limits: api::ListenerLimits {
                header_timeout_seconds: l.header_timeout.as_secs(),
                body_timeout_seconds: l.body_timeout.as_secs(),
                idle_timeout_seconds: l.idle_timeout.as_secs(),
                max_connections: l.max_connections,
                max_body_bytes: l.max_body_bytes,
            },
        }
    }

    /// The preset in use, with the reason and its full definition.
    pub async fn preset(&self) -> api::PresetReply {
        let st = self.state.lock().await;
        let plan = &st.loaded.plan;
        api::PresetReply {
            schema_version: api::SCHEMA_VERSION,
            name: plan.preset.clone(),
            reason: plan.reason.clone(),
            pinned: plan.pinned,
            available: aither_plan::presets::NAMES.iter().map(|n| (*n).to_string()).collect(),
            preset: st.loaded.presets.get(&plan.preset).ok().cloned(),
        }
    }
}

/// The engine's state as the API names it.
pub fn api_state(s: &UnitState) -> api::UnitState {
    match s {
        UnitState::Inactive => api::UnitState::Inactive,
        UnitState::Waiting => api::UnitState::Waiting,
        UnitState::Dormant => api::UnitState::Dormant,
        UnitState::Starting { .. } => api::UnitState::Starting,
        UnitState::Running { .. } => api::UnitState::Running,
        UnitState::Stopping { .. } => api::UnitState::Stopping,
        UnitState::Exited { .. } => api::UnitState::Exited,
        UnitState::Backoff { .. } => api::UnitState::Backoff,
        UnitState::GaveUp { .. } => api::UnitState::GaveUp,
        UnitState::Failed { .. } => api::UnitState::Failed,
    }
}

/// An exit reason in words.
pub fn reason_text(r: &ExitReason) -> String {
    match r {
        ExitReason::Code { code } => format!("exited with status {code}"),
        ExitReason::Signal { signal } => format!(
            "killed by {}",
            nix::sys::signal::Signal::try_from(*signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string())
        ),
        ExitReason::OomKilled => "killed by the OOM killer (memory limit)".into(),
        ExitReason::ReadyTimeout => "did not become ready in time".into(),
        ExitReason::SpawnFailed { error } => format!("could not start: {error}"),
        ExitReason::Unknown => "ended (adopted; exit status unknown)".into(),
        ExitReason::DependencyFailed { unit } => format!("{unit}, which it requires, failed"),
    }
}

/// A worker that ended because its model file is not a usable model (it is not restarted).
pub fn invalid_model(r: &ExitReason) -> bool {
    matches!(r, ExitReason::Code { code } if *code == units::WORKER_BAD_MODEL || *code == units::WORKER_NO_MODEL)
}

pub(super) fn report(p: &Planned, s: &UnitStatus, admission: &AdmissionQueue) -> Unit {
    let mut state = api_state(&s.state);
    if let (Kind::Worker, UnitState::Failed { reason }) = (p.kind, &s.state) {
        if invalid_model(reason) {
            return Unit {
                state: api::UnitState::Invalid,
                detail: Some(format!(
                    "the model file is not usable ({}); it is not restarted: see `aitherctl logs {}`, then replace the file",
                    reason_text(reason),
                    p.name
                )),
                ..report_base(p, s)
            };
        }
    }
    let mut detail = match &s.state {
        UnitState::Exited { reason } | UnitState::GaveUp { reason } | UnitState::Failed { reason } => {
            Some(reason_text(reason))
        }
        UnitState::Backoff { delay_ms, reason } => {
            Some(format!("{}; restarting in {delay_ms} ms", reason_text(reason)))
        }
        _ => None,
    };
    if matches!(s.state, UnitState::Inactive) {
        if let Some(pos) = admission.waiting.iter().position(|a| a == &p.name) {
            state = api::UnitState::Queued;
            detail = Some(format!("position {} in the admission queue", pos + 1));
        } else if let Some(why) = &p.blocked {
            state = api::UnitState::Blocked;
            detail = Some(why.clone());
        } else if p.dormant {
            state = api::UnitState::Dormant;
            detail = Some("starts on demand".into());
        }
    }
    Unit { state, detail, ..report_base(p, s) }
}

fn report_base(p: &Planned, s: &UnitStatus) -> Unit {
    Unit {
        name: p.name.clone(),
        kind: p.kind,
        group: p.group.clone(),
        priority: s.priority,
        state: api_state(&s.state),
        pid: s.state.pid(),
        detail: None,
        status: s.status.clone(),
        restarts: s.restarts,
        description: p.description.clone(),
        source: p.source.clone(),
        agent: p.agent.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aither_init::UnitSpec;

    fn planned(name: &str, kind: Kind, dormant: bool, blocked: Option<&str>) -> Planned {
        Planned {
            spec: UnitSpec::new(name, &["/bin/true"]),
            name: name.into(),
            kind,
            group: "g".into(),
            description: None,
            source: "test".into(),
            dormant,
            blocked: blocked.map(str::to_string),
            agent: None,
        }
    }

    fn status(name: &str, state: UnitState) -> UnitStatus {
        UnitStatus { name: name.into(), group: "g".into(), priority: 50, state, status: None, restarts: 0 }
    }

    fn queue(waiting: &[&str]) -> AdmissionQueue {
        AdmissionQueue { limit: 1, running: Default::default(), waiting: waiting.iter().map(|s| (*s).into()).collect() }
    }

    #[test]
    fn a_worker_that_refused_its_model_file_is_invalid_and_says_what_to_do() {
        let p = planned("infer-a", Kind::Worker, false, None);
        let bad = ExitReason::Code { code: units::WORKER_BAD_MODEL };
        let u = report(&p, &status("infer-a", UnitState::Failed { reason: bad.clone() }), &queue(&[]));
        assert_eq!(u.state, api::UnitState::Invalid);
        let detail = u.detail.expect("detail");
        assert!(detail.contains("exited with status 65") && detail.contains("aitherctl logs infer-a"), "{detail}");
        // A service that exits with the same status is only failed: the code means nothing there.
        let s = planned("svc", Kind::Service, false, None);
        let u = report(&s, &status("svc", UnitState::Failed { reason: bad }), &queue(&[]));
        assert_eq!(u.state, api::UnitState::Failed);
    }

    #[test]
    fn an_inactive_unit_says_whether_it_is_queued_blocked_or_dormant() {
        let q = queue(&["a1", "a2"]);
        let u = report(&planned("a2", Kind::Agent, false, None), &status("a2", UnitState::Inactive), &q);
        assert_eq!((u.state, u.detail.as_deref()), (api::UnitState::Queued, Some("position 2 in the admission queue")));
        let u = report(
            &planned("w", Kind::Worker, true, Some("model file missing")),
            &status("w", UnitState::Inactive),
            &q,
        );
        assert_eq!((u.state, u.detail.as_deref()), (api::UnitState::Blocked, Some("model file missing")));
        let u = report(&planned("w", Kind::Worker, true, None), &status("w", UnitState::Inactive), &q);
        assert_eq!((u.state, u.detail.as_deref()), (api::UnitState::Dormant, Some("starts on demand")));
        let u = report(&planned("w", Kind::Worker, false, None), &status("w", UnitState::Inactive), &q);
        assert_eq!((u.state, u.detail), (api::UnitState::Inactive, None));
    }

    #[test]
    fn exits_are_told_in_words_with_the_restart_delay() {
        let p = planned("svc", Kind::Service, false, None);
        let st = UnitState::Backoff { delay_ms: 400, reason: ExitReason::Signal { signal: 9 } };
        let u = report(&p, &status("svc", st), &queue(&[]));
        assert_eq!(u.state, api::UnitState::Backoff);
        assert_eq!(u.detail.as_deref(), Some("killed by SIGKILL; restarting in 400 ms"));
        assert_eq!(reason_text(&ExitReason::OomKilled), "killed by the OOM killer (memory limit)");
        assert_eq!(reason_text(&ExitReason::DependencyFailed { unit: "db".into() }), "db, which it requires, failed");
        let u = report(&p, &status("svc", UnitState::Running { pid: 42 }), &queue(&[]));
        assert_eq!((u.state, u.pid, u.detail), (api::UnitState::Running, Some(42), None));
    }
}
