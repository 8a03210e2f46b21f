//! The only things the generator writes into a module: identifiers and paths, validated.

use std::path::Path;

use crate::PolicyError;

/// An SELinux identifier (a type or attribute name): an ASCII letter, then letters, digits
/// and '_', at most 128 characters. The only kind of name the generator writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ident(pub(crate) String);

impl Ident {
    pub fn new(s: &str) -> Option<Ident> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphabetic()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ok.then(|| Ident(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path that may be written into a CIL string or comment: absolute, ASCII (file contexts
/// hold nothing else), no control characters, quotes, parentheses, semicolons, backslashes
/// or `..` components, at most 4096 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath(String);

impl SafePath {
    /// Validate `path`; the error names `field`.
    pub fn new(field: &str, path: &Path) -> Result<SafePath, PolicyError> {
        let bad = |problem: String| PolicyError::Field { field: field.to_string(), problem };
        let Some(text) = path.to_str() else {
            return Err(bad(format!("{} is not valid UTF-8", path.display())));
        };
        if !text.starts_with('/') {
            return Err(bad(format!("{text:?} is not an absolute path")));
        }
        if text.len() > 4096 {
            return Err(bad("the path is longer than 4096 bytes".into()));
        }
        if let Some(c) = text.chars().find(|c| c.is_control() || matches!(c, '"' | '(' | ')' | ';' | '\\')) {
            return Err(bad(format!("{text:?} contains {c:?}, which a policy path may not hold")));
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii()) {
            return Err(bad(format!("{text:?} contains {c:?}: SELinux file contexts hold ASCII only")));
        }
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(bad(format!("{text:?} contains '..'")));
        }
        let trimmed = text.trim_end_matches('/');
        Ok(SafePath(if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() }))
    }

    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl std::fmt::Display for SafePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A type name the policy tools answered, checked before it goes into the module.
pub(crate) fn resolved(field: &str, t: String) -> Result<Ident, PolicyError> {
    Ident::new(&t).ok_or_else(|| PolicyError::Resolve {
        field: field.to_string(),
        problem: format!("the policy answered {t:?}, which is not a type name"),
    })
}

/// Check an agent name and turn it into the part used in type names.
pub fn type_stem(name: &str) -> Result<String, PolicyError> {
    let bad = |problem: &str| PolicyError::Name { name: name.to_string(), problem: problem.to_string() };
    if name.is_empty() || name.len() > 32 {
        return Err(bad("must be 1 to 32 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err(bad("may hold only a-z, 0-9, '-' and '_'"));
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(bad("must start with a letter"));
    }
    Ok(name.replace('-', "_"))
}
