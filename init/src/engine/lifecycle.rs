//! A unit's life: launch (notify socket, log streams, cgroup, spawn), readiness, exit and
//! the restart decision, stop with escalation, shutdown.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use aither_sys::children;
use tokio::sync::mpsc;

use super::{journal, probe, procfs, Engine, Msg, TimerKind};
use crate::backoff::{Decision, RestartMode};
use crate::notify;
use crate::reap;
use crate::spawn::{self, SpawnRequest};
use crate::state::{Event, ExitReason, UnitState};
use crate::unit::Readiness;

impl Engine {
    pub(super) fn launch(&mut self, name: &str, with_listeners: bool) {
        let runtime_dir = self.cfg.runtime_dir.clone();
        let tx = self.tx.clone();
        let Some(u) = self.units.get_mut(name) else { return };
        u.generation += 1;
        u.restart_after_stop = false;
        u.stop_reason = None;
        let generation = u.generation;
        let spec = u.spec.clone();
        // The notify socket lives as long as the unit; bound on first start.
        if spec.readiness == Readiness::Notify && u.notify_path.is_none() {
            let owner = spec.uid.map(|uid| (uid, spec.gid.unwrap_or(uid)));
            match notify::bind(&runtime_dir.join("notify"), name, owner) {
                Ok((path, sock)) => {
                    u.notify_path = Some(path);
                    let unit = name.to_string();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        loop {
                            let got =
                                sock.async_io(tokio::io::Interest::READABLE, || notify::recv(&sock, &mut buf)).await;
                            let Ok((n, sender)) = got else { break };
                            let note = notify::parse(&String::from_utf8_lossy(&buf[..n.min(buf.len())]));
                            if tx.send(Msg::Notify { unit: unit.clone(), note, sender }).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) => {
                    let reason = ExitReason::SpawnFailed { error: format!("notify socket: {e}") };
                    self.exited(name, generation, reason);
                    return;
                }
            }
        }
        let mut env = spec.env.clone();
        // Names the unit in its processes, for finding them again without a state file.
        env.push((crate::recover::UNIT_ENV.into(), name.to_string()));
        if let Some(p) = &u.notify_path {
            env.push(("NOTIFY_SOCKET".into(), p.display().to_string()));
        }
        let listen_fds: Vec<OwnedFd> = if with_listeners || !u.listeners.is_empty() {
            u.listeners.iter().filter_map(|fd| fd.try_clone().ok()).collect()
        } else {
            vec![]
        };
        let log_context = spec.selinux_context.as_deref().filter(|_| self.cfg.host.selinux_enabled());
        let log = match journal::open_log(&spec.log, name, log_context, &self.cfg.host.journal_stdout) {
            Ok(l) => l,
            Err(e) => {
                let reason = ExitReason::SpawnFailed { error: format!("log target: {e}") };
                self.exited(name, generation, reason);
                return;
            }
        };
        let cgroup = match &self.cfg.cgroups {
            Ok(cg) => match cg.create_unit(name, &spec.limits) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.exited(name, generation, ExitReason::SpawnFailed { error: format!("cgroup: {e}") });
                    return;
                }
            },
            Err(_) => None,
        };
        let oom_before = self.cfg.cgroups.as_ref().ok().and_then(|cg| cg.oom_kills(name));
        let Some(u) = self.units.get_mut(name) else { return };
        u.oom_before = oom_before;
        let req = SpawnRequest {
            argv: &spec.argv,
            env,
            working_directory: spec.working_directory.as_deref(),
            uid: spec.uid,
            gid: spec.gid,
            rlimits: &spec.rlimits,
            no_new_privs: spec.no_new_privs,
            selinux_context: spec.selinux_context.as_deref().filter(|_| self.cfg.host.selinux_enabled()),
            cgroup_procs: cgroup.as_ref().map(|c| &c.procs),
            stdout: log.as_ref().map(|(o, _)| o),
            stderr: log.as_ref().map(|(_, e)| e),
            listen_fds: &listen_fds,
        };
        let pid = match children::spawn_tracked(|| spawn::spawn(&req), |&pid| pid) {
            Ok(pid) => pid,
            Err(e) => {
                self.exited(name, generation, ExitReason::SpawnFailed { error: e.to_string() });
                return;
            }
        };
        u.started = Instant::now();
        watch_exit(&tx, name, generation, pid, true);
        self.set_state(name, UnitState::Starting { pid });
        match &spec.readiness {
            Readiness::Exec => self.set_state(name, UnitState::Running { pid }),
            Readiness::Notify => {}
            Readiness::Tcp { addr } => probe::probe(tx.clone(), name.to_string(), generation, *addr, None),
            Readiness::Http { addr, path } => {
                probe::probe(tx.clone(), name.to_string(), generation, *addr, Some(path.clone()))
            }
        }
        if spec.readiness != Readiness::Exec {
            self.timer_after(name, generation, spec.ready_timeout, TimerKind::ReadyTimeout);
        }
    }

    pub(super) fn timer_after(&self, name: &str, generation: u64, after: Duration, kind: TimerKind) {
        let tx = self.tx.clone();
        let unit = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Msg::Timer { unit, generation, kind });
        });
    }

    pub(super) fn exited(&mut self, name: &str, generation: u64, reason: ExitReason) {
        let now = self.epoch.elapsed();
        let Some(u) = self.units.get_mut(name) else { return };
        if generation != u.generation {
            return;
        }
        let mut reason = u.stop_reason.take().unwrap_or(reason);
        if let (Ok(cg), Some(before)) = (&self.cfg.cgroups, u.oom_before) {
            if cg.oom_kills(name).is_some_and(|now| now > before) {
                reason = ExitReason::OomKilled;
            }
        }
        // The unit is over when its main process is: whatever it left behind goes too (its
        // whole cgroup, or its process group without one), before any restart.
        if let Some(pid) = u.state.pid() {
            if !self.cfg.cgroups.as_ref().is_ok_and(|cg| cg.kill(name).is_ok()) {
                kill_group(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        let stopping = matches!(u.state, UnitState::Stopping { .. });
        let restart_now = u.restart_after_stop;
        if stopping || !u.wanted || self.shutdown.is_some() {
            if restart_now {
                // Asked for (Restart): counted with the restarts of its policy.
                u.restarts += 1;
                u.wanted = true;
                self.set_state(name, UnitState::Exited { reason });
                self.launch(name, false);
                return;
            }
            let next = if u.listeners.is_empty() || !u.wanted { UnitState::Inactive } else { UnitState::Dormant };
            self.set_state(name, UnitState::Exited { reason });
            self.set_state(name, next);
            self.schedule();
            return;
        }
        let uptime = u.started.elapsed();
        let prevented =
            matches!(reason, ExitReason::Code { code } if u.spec.restart_prevent_exit_status.contains(&code));
        let mode = if prevented { RestartMode::Never } else { u.spec.restart };
        let decision = u.spec.backoff.decide(mode, reason.failed(), uptime, now, &mut u.history);
        self.set_state(name, UnitState::Exited { reason: reason.clone() });
        match decision {
            Decision::RestartAfter(d) => {
                let u = self.units.get_mut(name).expect("exists");
                u.restarts += 1;
                if d.is_zero() {
                    self.launch(name, false);
                } else {
                    self.set_state(name, UnitState::backoff(d, reason));
                    self.timer_after(name, generation, d, TimerKind::Restart);
                }
            }
            Decision::GiveUp => self.set_state(name, UnitState::GaveUp { reason }),
            Decision::Stay if reason.failed() => self.set_state(name, UnitState::Failed { reason }),
            Decision::Stay => {}
        }
        self.schedule();
    }

    /// Whether `pid` is a process of unit `name` whose main process is `main`: the main
    /// process, a process in its cgroup, or (without cgroups) one of its descendants.
    pub(super) fn belongs_to(&self, name: &str, main: i32, pid: i32) -> bool {
        if pid == main {
            return true;
        }
        if let Ok(cg) = &self.cfg.cgroups {
            return cg.procs(name).contains(&pid);
        }
        let mut p = pid;
        for _ in 0..64 {
            match procfs::parent_of(&self.cfg.host.proc, p).and_then(|pp| i32::try_from(pp).ok()) {
                Some(pp) if pp == main => return true,
                Some(pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    }

    pub(super) fn notified(&mut self, name: &str, note: notify::Notification, sender: Option<i32>) {
        let Some(main) = self.units.get(name).and_then(|u| u.state.pid()) else { return };
        if !sender.is_some_and(|p| self.belongs_to(name, main, p)) {
            tracing::warn!(
                "{name}: a notification from pid {} was ignored: not a process of this unit",
                sender.map_or_else(|| "unknown".to_string(), |p| p.to_string())
            );
            return;
        }
        let Some(u) = self.units.get_mut(name) else { return };
        if let Some(s) = note.status {
            u.status = Some(s);
            let _ =
                self.events.send(Event { unit: name.to_string(), state: u.state.clone(), status: u.status.clone() });
        }
        if note.ready {
            if let UnitState::Starting { pid } = u.state {
                self.set_state(name, UnitState::Running { pid });
                self.schedule();
            }
        }
    }

    pub(super) fn probed(&mut self, name: &str, generation: u64) {
        let Some(u) = self.units.get(name) else { return };
        if u.generation == generation {
            if let UnitState::Starting { pid } = u.state {
                self.set_state(name, UnitState::Running { pid });
                self.schedule();
            }
        }
    }

    pub(super) fn timer(&mut self, name: &str, generation: u64, kind: TimerKind) {
        let Some(u) = self.units.get(name) else { return };
        if u.generation != generation {
            return;
        }
        match kind {
            TimerKind::Restart => {
                if u.wanted && matches!(u.state, UnitState::Backoff { .. }) {
                    self.launch(name, false);
                }
            }
            TimerKind::ReadyTimeout => {
                if matches!(u.state, UnitState::Starting { .. }) {
                    self.stop_unit(name, Some(ExitReason::ReadyTimeout));
                    // A ready timeout is a failure: the unit stays wanted for its restart policy.
                    if let Some(u) = self.units.get_mut(name) {
                        u.wanted = true;
                    }
                }
            }
            TimerKind::Kill => {
                if let UnitState::Stopping { pid } = u.state {
                    // The whole cgroup when there is one: processes that left the group too.
                    let killed = self.cfg.cgroups.as_ref().is_ok_and(|cg| cg.kill(name).is_ok());
                    if !killed {
                        kill_group(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
        }
    }

    /// SIGTERM to the unit's process group, SIGKILL after its stop timeout.
    pub(super) fn stop_unit(&mut self, name: &str, reason: Option<ExitReason>) {
        let Some(u) = self.units.get_mut(name) else { return };
        u.wanted = reason.is_some();
        u.stop_reason = reason;
        match u.state.clone() {
            UnitState::Starting { pid } | UnitState::Running { pid } => {
                let (generation, timeout) = (u.generation, u.spec.stop_timeout);
                kill_group(pid, nix::sys::signal::Signal::SIGTERM);
                if let Ok(cg) = &self.cfg.cgroups {
                    for p in cg.procs(name) {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGTERM);
                    }
                }
                self.set_state(name, UnitState::Stopping { pid });
                self.timer_after(name, generation, timeout, TimerKind::Kill);
            }
            UnitState::Stopping { .. } => {}
            _ => {
                u.listeners.clear();
                self.set_state(name, UnitState::Inactive);
                self.schedule();
            }
        }
    }

    /// Stop the units of the highest priority number that are still up, then the next.
    pub(super) fn advance_shutdown(&mut self) {
        let up: Vec<(u32, String)> = self
            .units
            .values()
            .filter(|u| u.state.pid().is_some())
            .map(|u| (u.spec.priority, u.spec.name.clone()))
            .collect();
        let Some(top) = up.iter().map(|(p, _)| *p).max() else { return };
        for (p, name) in up {
            if p == top && !matches!(self.units[&name].state, UnitState::Stopping { .. }) {
                self.stop_unit(&name, None);
            }
        }
        for u in self.units.values_mut() {
            u.listeners.clear();
        }
    }
}

pub(super) fn watch_exit(tx: &mpsc::UnboundedSender<Msg>, name: &str, generation: u64, pid: i32, child: bool) {
    let tx = tx.clone();
    let unit = name.to_string();
    match reap::pidfd(pid) {
        Ok(fd) => {
            tokio::spawn(async move {
                let reason = reap::wait_exit(fd, child).await;
                children::untrack(pid);
                let _ = tx.send(Msg::Exited { unit, generation, reason });
                let _ = tx.send(Msg::Reap);
            });
        }
        Err(e) => {
            let _ = tx.send(Msg::Exited {
                unit,
                generation,
                reason: ExitReason::SpawnFailed { error: format!("pidfd_open: {e}") },
            });
        }
    }
}

fn kill_group(pid: i32, sig: nix::sys::signal::Signal) {
    // Each unit leads its own session and process group.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
}
