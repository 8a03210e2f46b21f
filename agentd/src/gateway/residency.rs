//! Which inference workers stay loaded: the VRAM budget, least recently used first out,
//! pinned models never, and idle unloading after the preset's keep-alive.
//!
//! Pure decisions over plain data, so the policy is tested without processes; the gateway
//! applies them (stops the workers named).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A model as the budget sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub name: String,
    /// VRAM per GPU (PCI address), from the plan.
    pub vram: BTreeMap<String, u64>,
    pub pinned: bool,
}

/// A loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resident {
    pub model: Footprint,
    pub last_used: Instant,
    /// Requests being answered: a busy model is never unloaded.
    pub in_flight: usize,
}

/// Why a model cannot be loaded now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{model} needs {needed} bytes of VRAM on GPU {gpu}, which has {budget}; {held} are held by models that cannot be unloaded now ({holders})")]
pub struct NoRoom {
    pub model: String,
    pub gpu: String,
    pub needed: u64,
    pub budget: u64,
    pub held: u64,
    pub holders: String,
}

/// The resident models to unload, least recently used first, so that `incoming` fits in
/// `budgets` (bytes per GPU for models). Pinned and busy models stay.
pub fn evictions(
    incoming: &Footprint,
    resident: &[Resident],
    budgets: &BTreeMap<String, u64>,
) -> Result<Vec<String>, NoRoom> {
    let used = |set: &[&Resident], gpu: &str| -> u64 { set.iter().filter_map(|r| r.model.vram.get(gpu)).sum() };
    let mut kept: Vec<&Resident> = resident.iter().filter(|r| r.model.name != incoming.name).collect();
    let fits = |kept: &[&Resident]| {
        incoming.vram.iter().all(|(gpu, need)| {
            let budget = budgets.get(gpu).copied().unwrap_or(0);
            used(kept, gpu).saturating_add(*need) <= budget
        })
    };
    let mut candidates: Vec<&Resident> = kept.iter().copied().filter(|r| !r.model.pinned && r.in_flight == 0).collect();
    candidates.sort_by_key(|r| r.last_used);
    let mut out = Vec::new();
    for c in candidates {
        if fits(&kept) {
            break;
        }
        // Only unload a model that frees memory on a GPU the incoming one needs.
        if !c.model.vram.keys().any(|g| incoming.vram.contains_key(g)) {
            continue;
        }
        kept.retain(|r| r.model.name != c.model.name);
        out.push(c.model.name.clone());
    }
    if fits(&kept) {
        return Ok(out);
    }
    let (gpu, need) = incoming
        .vram
        .iter()
        .find(|(gpu, need)| used(&kept, gpu).saturating_add(**need) > budgets.get(*gpu).copied().unwrap_or(0))
        .map(|(g, n)| (g.clone(), *n))
        .unwrap_or_default();
    let holders: Vec<String> = kept
        .iter()
        .filter(|r| r.model.vram.contains_key(&gpu))
        .map(|r| format!("{}{}", r.model.name, if r.model.pinned { ", pinned" } else { ", busy" }))
        .collect();
    Err(NoRoom {
        model: incoming.name.clone(),
        budget: budgets.get(&gpu).copied().unwrap_or(0),
        held: used(&kept, &gpu),
        gpu,
        needed: need,
        holders: if holders.is_empty() { "none".into() } else { holders.join("; ") },
    })
}

/// Resident models idle for longer than `keep_alive` (not pinned, not busy).
pub fn idle(resident: &[Resident], keep_alive: Duration, now: Instant) -> Vec<String> {
    resident
        .iter()
        .filter(|r| !r.model.pinned && r.in_flight == 0 && now.saturating_duration_since(r.last_used) >= keep_alive)
        .map(|r| r.model.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn fp(name: &str, gpu_gb: &[(&str, u64)], pinned: bool) -> Footprint {
        Footprint { name: name.into(), vram: gpu_gb.iter().map(|(g, b)| ((*g).to_string(), b * GB)).collect(), pinned }
    }

    fn res(model: Footprint, ago_s: u64, in_flight: usize, now: Instant) -> Resident {
        Resident { model, last_used: now - Duration::from_secs(ago_s), in_flight }
    }

    fn budget(gpus: &[(&str, u64)]) -> BTreeMap<String, u64> {
        gpus.iter().map(|(g, b)| ((*g).to_string(), b * GB)).collect()
    }

    #[test]
    fn nothing_is_unloaded_when_the_model_fits() {
        let now = Instant::now();
        let r = [res(fp("chat", &[("0", 10)], true), 1, 0, now)];
        assert_eq!(evictions(&fp("code", &[("0", 8)], false), &r, &budget(&[("0", 20)])), Ok(vec![]));
    }

    #[test]
    fn the_least_recently_used_goes_first_and_only_as_many_as_needed() {
        let now = Instant::now();
        let r = [
            res(fp("a", &[("0", 6)], false), 10, 0, now),
            res(fp("b", &[("0", 6)], false), 300, 0, now),
            res(fp("c", &[("0", 6)], false), 100, 0, now),
        ];
        // 18 of 20 used; 9 more needs two unloaded: b (oldest), then c.
        assert_eq!(
            evictions(&fp("d", &[("0", 9)], false), &r, &budget(&[("0", 20)])),
            Ok(vec!["b".into(), "c".into()])
        );
        // 4 more needs only b.
        assert_eq!(evictions(&fp("d", &[("0", 4)], false), &r, &budget(&[("0", 20)])), Ok(vec!["b".into()]));
    }

    #[test]
    fn pinned_and_busy_models_are_never_unloaded() {
        let now = Instant::now();
        let r = [res(fp("chat", &[("0", 14)], true), 1000, 0, now), res(fp("code", &[("0", 4)], false), 1000, 2, now)];
        let e = evictions(&fp("big", &[("0", 8)], false), &r, &budget(&[("0", 20)])).expect_err("no room");
        assert_eq!((e.gpu.as_str(), e.held), ("0", 18 * GB));
        assert!(e.to_string().contains("chat, pinned; code, busy"), "{e}");
    }

    #[test]
    fn models_on_other_gpus_are_left_alone() {
        let now = Instant::now();
        let r = [res(fp("other", &[("1", 20)], false), 1000, 0, now), res(fp("near", &[("0", 10)], false), 5, 0, now)];
        assert_eq!(
            evictions(&fp("new", &[("0", 15)], false), &r, &budget(&[("0", 20), ("1", 20)])),
            Ok(vec!["near".into()])
        );
    }

    #[test]
    fn a_cpu_model_needs_no_vram() {
        assert_eq!(evictions(&fp("cpu", &[], false), &[], &BTreeMap::new()), Ok(vec![]));
    }

    #[test]
    fn idle_models_past_the_keep_alive_unload_unless_pinned_or_busy() {
        let now = Instant::now();
        let r = [
            res(fp("old", &[], false), 600, 0, now),
            res(fp("fresh", &[], false), 10, 0, now),
            res(fp("pinned", &[], true), 600, 0, now),
            res(fp("busy", &[], false), 600, 1, now),
        ];
        assert_eq!(idle(&r, Duration::from_secs(300), now), vec!["old".to_string()]);
    }
}
