//! Which units may be added together, and in what order.

use super::{Engine, EngineError, Unit, UnitState};
use crate::state::Event;
use crate::unit::UnitSpec;
use std::collections::BTreeMap;

/// `names` ordered so that each comes after the dependencies `deps_of` gives it (following
/// dependencies through units outside `names` too); a cycle is an error naming it.
pub(super) fn dependency_order<'a>(
    names: impl Iterator<Item = &'a str>,
    deps_of: &dyn Fn(&str) -> Vec<String>,
) -> Result<Vec<String>, EngineError> {
    fn visit(
        name: &str,
        deps_of: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Result<(), EngineError> {
        if done.iter().any(|d| d == name) {
            return Ok(());
        }
        if let Some(at) = path.iter().position(|p| p == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name.to_string());
            return Err(EngineError::Invalid {
                unit: name.to_string(),
                problem: format!("dependency cycle: {}", cycle.join(" -> ")),
            });
        }
        path.push(name.to_string());
        for d in deps_of(name) {
            visit(&d, deps_of, path, done)?;
        }
        path.pop();
        done.push(name.to_string());
        Ok(())
    }
    let wanted: Vec<&str> = names.collect();
    let mut done = Vec::new();
    for n in &wanted {
        visit(n, deps_of, &mut Vec::new(), &mut done)?;
    }
    Ok(done.into_iter().filter(|d| wanted.contains(&d.as_str())).collect())
}

pub(super) fn validate(spec: &UnitSpec) -> Result<(), EngineError> {
    let bad = |problem: &str| Err(EngineError::Invalid { unit: spec.name.clone(), problem: problem.into() });
    if spec.name.is_empty() || spec.name.contains('/') || spec.name.starts_with('.') {
        return bad("names are non-empty and hold no '/' nor a leading '.'");
    }
    if spec.argv.is_empty() {
        return bad("argv is empty");
    }
    Ok(())
}

impl Engine {
    /// Add or replace `specs` together: every one is checked against the units there and the
    /// others added with it, and nothing changes unless all are valid. They go in in
    /// dependency order, so a unit's dependencies always exist before it does.
    pub(super) fn add(&mut self, specs: Vec<UnitSpec>) -> Result<(), EngineError> {
        for spec in &specs {
            validate(spec)?;
        }
        let deps_of = |name: &str| -> Vec<String> {
            match specs.iter().find(|s| s.name == name) {
                Some(s) => s.requires.iter().chain(&s.after).cloned().collect(),
                None => self
                    .units
                    .get(name)
                    .map(|u| u.spec.requires.iter().chain(&u.spec.after).cloned().collect())
                    .unwrap_or_default(),
            }
        };
        for spec in &specs {
            let known = |d: &String| self.units.contains_key(d.as_str()) || specs.iter().any(|s| &s.name == d);
            if let Some(dep) = spec.requires.iter().chain(&spec.after).find(|d| !known(d)) {
                return Err(EngineError::Invalid {
                    unit: spec.name.clone(),
                    problem: format!("depends on unknown unit {dep:?}"),
                });
            }
        }
        let order = dependency_order(specs.iter().map(|s| s.name.as_str()), &deps_of)?;
        let mut by_name: BTreeMap<String, UnitSpec> = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        for name in order {
            let Some(spec) = by_name.remove(&name) else { continue };
            match self.units.get_mut(&spec.name) {
                Some(u) => u.spec = spec,
                None => {
                    self.units.insert(name.clone(), Unit::new(spec));
                    let _ = self.events.send(Event { unit: name, state: UnitState::Inactive, status: None });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(edges: &'a [(&'a str, &'a [&'a str])]) -> impl Fn(&str) -> Vec<String> + 'a {
        move |n: &str| {
            edges
                .iter()
                .find(|(m, _)| *m == n)
                .map(|(_, d)| d.iter().map(|s| (*s).to_string()).collect())
                .unwrap_or_default()
        }
    }

    #[test]
    fn dependencies_come_first_whatever_their_count() {
        // x needs y; y needs two units already there: counting dependencies would put x first.
        let deps = graph(&[("x", &["y"]), ("y", &["old1", "old2"])]);
        let order = dependency_order(["x", "y"].into_iter(), &deps).expect("no cycle");
        assert_eq!(order, ["y", "x"]);
    }

    #[test]
    fn a_dependency_cycle_is_an_error_naming_it() {
        let deps = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        let err = dependency_order(["a"].into_iter(), &deps).expect_err("cycle");
        assert!(
            matches!(err, EngineError::Invalid { ref problem, .. } if problem == "dependency cycle: a -> b -> c -> a"),
            "{err}"
        );
    }
}
