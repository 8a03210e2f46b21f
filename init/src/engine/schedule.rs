//! Wanting units and starting them in order: groups by priority, then dependencies;
//! dormant units wait on their sockets.

use std::os::fd::OwnedFd;

use super::Unit;
use super::{Engine, EngineError, Msg};
use crate::backoff::RestartHistory;
use crate::reap;
use crate::state::{Event, ExitReason, UnitState};
use crate::unit::Listen;

impl Engine {
    pub(super) fn want(&mut self, name: &str) {
        let Some(u) = self.units.get_mut(name) else { return };
        u.wanted = true;
        if matches!(u.state, UnitState::GaveUp { .. } | UnitState::Failed { .. }) {
            u.history = RestartHistory::default();
            u.state = UnitState::Inactive;
        }
    }

    pub(super) fn with_unit(&mut self, name: &str, f: impl FnOnce(&mut Engine, &str)) -> Result<(), EngineError> {
        if !self.units.contains_key(name) {
            return Err(EngineError::UnknownUnit(name.to_string()));
        }
        f(self, name);
        Ok(())
    }

    pub(super) fn set_state(&mut self, name: &str, state: UnitState) {
        let Some(u) = self.units.get_mut(name) else { return };
        if u.state == state {
            return;
        }
        u.state = state.clone();
        let _ = self.events.send(Event { unit: name.to_string(), state, status: u.status.clone() });
        self.mark_dirty();
    }

    /// Start every wanted unit whose turn it is.
    pub(super) fn schedule(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let mut order: Vec<(u32, String)> =
            self.units.values().map(|u| (u.spec.priority, u.spec.name.clone())).collect();
        order.sort();
        for (priority, name) in order {
            let u = &self.units[&name];
            if !u.wanted || !matches!(u.state, UnitState::Inactive | UnitState::Waiting | UnitState::Exited { .. }) {
                continue;
            }
            if matches!(u.state, UnitState::Exited { .. }) && !u.restart_after_stop {
                continue;
            }
            // A required unit that failed fails this one.
            if let Some(dep) =
                u.spec.requires.iter().find(|d| {
                    matches!(self.units[d.as_str()].state, UnitState::GaveUp { .. } | UnitState::Failed { .. })
                })
            {
                let reason = ExitReason::DependencyFailed { unit: dep.clone() };
                self.set_state(&name, UnitState::Failed { reason });
                continue;
            }
            let requires_ok =
                u.spec.requires.iter().all(|d| matches!(self.units[d.as_str()].state, UnitState::Running { .. }));
            let after_ok = u.spec.after.iter().all(|d| {
                let dep = &self.units[d.as_str()];
                !dep.wanted || dep.settled()
            });
            let earlier_groups_ok =
                self.units.values().filter(|o| o.wanted && o.spec.priority < priority).all(Unit::settled);
            if requires_ok && after_ok && earlier_groups_ok {
                self.launch(&name, false);
            } else if !matches!(u.state, UnitState::Waiting) {
                self.set_state(&name, UnitState::Waiting);
            }
        }
    }

    /// Bind the listening sockets of wanted dormant units and wait for a connection.
    pub(super) fn arm_dormant(&mut self) {
        let names: Vec<String> = self
            .units
            .values()
            .filter(|u| u.wanted && !u.spec.listen.is_empty() && u.listeners.is_empty() && u.state.pid().is_none())
            .map(|u| u.spec.name.clone())
            .collect();
        for name in names {
            let mut fds = Vec::new();
            let spec = self.units[&name].spec.clone();
            for l in &spec.listen {
                match bind_listener(l) {
                    Ok(fd) => fds.push(fd),
                    Err(e) => {
                        let reason = ExitReason::SpawnFailed { error: format!("cannot listen on {l:?}: {e}") };
                        self.set_state(&name, UnitState::Failed { reason });
                        break;
                    }
                }
            }
            if fds.len() != spec.listen.len() {
                continue;
            }
            for fd in &fds {
                let Ok(watch) = fd.try_clone() else { continue };
                let tx = self.tx.clone();
                let unit = name.clone();
                tokio::spawn(async move {
                    if let Ok(afd) = reap::readable_fd(watch) {
                        if afd.readable().await.is_ok() {
                            let _ = tx.send(Msg::Activate { unit });
                        }
                    }
                });
            }
            self.units.get_mut(&name).expect("exists").listeners = fds;
            self.set_state(&name, UnitState::Dormant);
        }
    }

    pub(super) fn activate(&mut self, name: &str) {
        let Some(u) = self.units.get(name) else { return };
        if u.wanted && matches!(u.state, UnitState::Dormant) {
            self.launch(name, true);
        }
    }
}

fn bind_listener(l: &Listen) -> std::io::Result<OwnedFd> {
    match l {
        Listen::Tcp { addr } => Ok(OwnedFd::from(std::net::TcpListener::bind(addr)?)),
        Listen::Unix { path } => {
            let _ = std::fs::remove_file(path);
            Ok(OwnedFd::from(std::os::unix::net::UnixListener::bind(path)?))
        }
    }
}
