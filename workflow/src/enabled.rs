//! Which workflows are on: `/etc/aither/workflows-enabled.toml`, written by first boot (the
//! packs the admin chose) and by `aitherctl workflows enable|disable`. The packs agentd ships
//! are off until enabled; the admin's own workflows are on until disabled. A disabled
//! workflow is listed but neither triggered nor run.

use std::path::{Path, PathBuf};

use aither_api::workflow::WorkflowSwitches;

use super::{Origin, Workflow, WorkflowError};

/// The file, under the root.
pub const ENABLED_FILE: &str = "etc/aither/workflows-enabled.toml";

/// The switches and the file they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    pub file: PathBuf,
    pub switches: WorkflowSwitches,
}

impl Enabled {
    /// Read the file under `root`; none is every shipped pack off.
    pub fn read(root: &Path) -> Result<Enabled, WorkflowError> {
        let file = root.join(ENABLED_FILE);
        let fail = |problem: String| WorkflowError { file: file.display().to_string(), problem };
        let switches = match std::fs::read_to_string(&file) {
            Ok(text) => toml::from_str::<WorkflowSwitches>(&text).map_err(|e| {
                let at = e.span().map(|s| format!("line {}: ", super::line_of(&text, s.start))).unwrap_or_default();
                fail(format!("{at}{}", e.message()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => WorkflowSwitches::default(),
            Err(e) => return Err(fail(e.to_string())),
        };
        Ok(Enabled { file, switches })
    }

    /// Whether `w` is on.
    pub fn is_on(&self, w: &Workflow) -> bool {
        match w.origin {
            Origin::Admin => !self.switches.disabled.contains(&w.name),
            Origin::BuiltIn | Origin::Shipped => self.switches.enabled.contains(&w.name),
        }
    }

    /// Turn `w` on or off and write the file.
    pub fn set(&mut self, w: &Workflow, on: bool) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let s = &mut self.switches;
        if on {
            s.disabled.remove(&w.name);
            if w.origin != Origin::Admin {
                s.enabled.insert(w.name.clone());
            }
        } else {
            s.enabled.remove(&w.name);
            if w.origin == Origin::Admin {
                s.disabled.insert(w.name.clone());
            }
        }
        let text = format!(
            "# Which workflows are on (aitherctl workflows enable|disable NAME writes this file).\n\
             # The shipped packs are off until listed in `enabled`; the workflows of\n\
             # /etc/aither/workflows.d are on until listed in `disabled`.\n{}",
            toml::to_string(&self.switches).context("cannot write the switches")?
        );
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        aither_sys::atomic::write(&self.file, text.as_bytes())
            .with_context(|| format!("cannot write {}", self.file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(name: &str, origin: Origin) -> Workflow {
        let text = "[workflow]\ndescription = \"d\"\n[[step]]\nname = \"a\"\nmodel = \"chat\"\nsystem_prompt = \"p\"\ninstructions = \"i\"\n";
        super::super::parse(&Path::new("/x").join(format!("{name}.toml")), text, origin).expect("valid")
    }

    #[test]
    fn packs_are_off_and_the_admins_on_until_switched_and_the_file_keeps_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let pack = workflow("devops", Origin::Shipped);
        let mine = workflow("mine", Origin::Admin);
        let mut e = Enabled::read(root.path()).expect("no file: defaults");
        assert!(!e.is_on(&pack) && e.is_on(&mine));
        e.set(&pack, true).expect("enable");
        e.set(&mine, false).expect("disable");
        let back = Enabled::read(root.path()).expect("reads back");
        assert!(back.is_on(&pack) && !back.is_on(&mine));
        assert_eq!(back.switches.enabled.iter().collect::<Vec<_>>(), ["devops"]);
        std::fs::write(root.path().join(ENABLED_FILE), "enabled = [\"a\"]\ncolour = 1\n").expect("write");
        let err = Enabled::read(root.path()).expect_err("unknown key");
        assert!(err.to_string().contains("workflows-enabled.toml: line 2: unknown field `colour`"), "{err}");
    }
}
