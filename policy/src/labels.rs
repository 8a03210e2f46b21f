//! The types the loaded policy gives to files and ports, asked of the policy tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use aither_sys::command::{run, CommandError};

use crate::manifest::Protocol;

/// A label that could not be found.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// The policy tool could not run or failed.
    #[error(transparent)]
    Tool(#[from] CommandError),
    #[error("{tool} answered {answer:?}, which holds no context")]
    NoContext { tool: &'static str, answer: String },
    #[error("{0}: no file context covers it")]
    Unlabelled(PathBuf),
}

/// Finds the types the loaded policy gives to files and ports.
pub trait LabelResolver {
    /// The type of `path` by the policy's file contexts (`matchpathcon`).
    fn file_type(&self, path: &Path) -> Result<String, LabelError>;
    /// The type of a port by the policy's port contexts; `None` when no portcon covers it.
    fn port_type(&self, protocol: Protocol, port: u16) -> Result<Option<String>, LabelError>;
}

/// The resolver for a real system: `matchpathcon -n` and `seinfo --portcon` on the loaded policy.
#[derive(Debug, Clone)]
pub struct SystemResolver {
    pub policy: PathBuf,
}

impl Default for SystemResolver {
    fn default() -> Self {
        SystemResolver { policy: PathBuf::from("/sys/fs/selinux/policy") }
    }
}

fn type_of_context(context: &str) -> Option<String> {
    context.trim().split(':').nth(2).map(str::to_string)
}

impl LabelResolver for SystemResolver {
    fn file_type(&self, path: &Path) -> Result<String, LabelError> {
        let out = run(Command::new("matchpathcon").arg("-n").arg(path))?;
        type_of_context(&out)
            .ok_or_else(|| LabelError::NoContext { tool: "matchpathcon", answer: out.trim().to_string() })
    }

    fn port_type(&self, protocol: Protocol, port: u16) -> Result<Option<String>, LabelError> {
        let text = run(Command::new("seinfo").arg(&self.policy).arg(format!("--portcon={port}")))?;
        // Lines like "   portcon tcp 8080 system_u:object_r:http_cache_port_t:s0"; the most
        // specific (single port before ranges) wins.
        let mut best: Option<(u32, String)> = None;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 4 || f[0] != "portcon" || f[1] != protocol.name() {
                continue;
            }
            let width = match f[2].split_once('-') {
                Some((lo, hi)) => hi.parse::<u32>().unwrap_or(0).saturating_sub(lo.parse::<u32>().unwrap_or(0)),
                None => 0,
            };
            if let Some(t) = type_of_context(f[3]) {
                if best.as_ref().is_none_or(|(w, _)| width < *w) {
                    best = Some((width, t));
                }
            }
        }
        Ok(best.map(|(_, t)| t))
    }
}
