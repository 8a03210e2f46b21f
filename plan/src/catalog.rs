//! The model catalog: real open models published as GGUF, with what sizing needs.
//!
//! One TOML file per family under `plan/catalog/` (installed to
//! `/usr/share/aither/catalog`), each a list of `[[models]]`. The built-in copy is compiled
//! in, so the plan works on a machine where nothing is installed. See `catalog/README.md`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use aither_api::plan::Role;

/// The catalog files compiled into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("qwen2.5.toml", include_str!("../catalog/qwen2.5.toml")),
    ("llama3.toml", include_str!("../catalog/llama3.toml")),
    ("mistral.toml", include_str!("../catalog/mistral.toml")),
    ("gemma-phi.toml", include_str!("../catalog/gemma-phi.toml")),
    ("embedding.toml", include_str!("../catalog/embedding.toml")),
];

/// One model, with the architecture numbers from its published config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub name: String,
    pub family: String,
    pub role: Role,
    /// Parameter count from the model card.
    pub params: u64,
    pub license: String,
    pub layers: u32,
    pub embedding_length: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub context_trained: u32,
    pub vocab_size: u32,
    /// `intermediate_size`: width of the feed-forward block.
    pub feed_forward_length: u32,
    pub files: Vec<ModelFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub quant: String,
    pub url: String,
    /// Exact size when known; otherwise estimated from the quantization (see [`file_bytes`]).
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
}

impl ModelFile {
    /// The file a model of the plan is fetched as and checked against (its size unknown).
    pub fn of_planned(m: &aither_api::plan::PlannedModel) -> ModelFile {
        ModelFile { quant: m.quant.clone(), url: m.url.clone(), bytes: None, sha256: m.sha256.clone() }
    }
}

/// Average bits per weight of llama.cpp's quantizations, whole file (embeddings and output
/// included), as llama.cpp's quantize tool reports them for Llama-class models.
pub fn bits_per_weight(quant: &str) -> Option<f64> {
    Some(match quant {
        "F32" => 32.0,
        "F16" | "BF16" => 16.0,
        "Q8_0" => 8.50,
        "Q6_K" => 6.56,
        "Q5_K_M" => 5.70,
        "Q5_0" => 5.50,
        "Q4_K_M" => 4.89,
        "Q4_K_S" => 4.58,
        "Q4_0" => 4.55,
        "Q3_K_M" => 3.91,
        "Q2_K" => 3.35,
        _ => return None,
    })
}

/// Size of a model file: exact when the catalog knows it, else params × bpw / 8.
pub fn file_bytes(model: &Model, file: &ModelFile) -> Option<u64> {
    if let Some(b) = file.bytes {
        return Some(b);
    }
    let bpw = bits_per_weight(&file.quant)?;
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // parameter counts are far below 2^53 and the result is positive
    Some((model.params as f64 * bpw / 8.0).round() as u64)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    models: Vec<Model>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("catalog {file}: {source}")]
    Parse { file: String, source: toml::de::Error },
    #[error("catalog {file}: model {model:?}: {problem}")]
    Invalid { file: String, model: String, problem: String },
}

/// All models, in file then entry order.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub models: Vec<Model>,
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::from_sources(BUILTIN.iter().map(|(n, t)| ((*n).to_string(), (*t).to_string())))
    }

    /// Every `*.toml` in `dir`, in lexical order.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let sources =
            crate::datafiles::toml_sources(dir).map_err(|(path, source)| CatalogError::Read { path, source })?;
        Catalog::from_sources(sources)
    }

    fn from_sources(sources: impl IntoIterator<Item = (String, String)>) -> Result<Catalog, CatalogError> {
        let mut models = Vec::new();
        let mut names = BTreeSet::new();
        for (file, text) in sources {
            let parsed: CatalogFile =
                toml::from_str(&text).map_err(|source| CatalogError::Parse { file: file.clone(), source })?;
            for m in parsed.models {
                let invalid =
                    |problem: String| CatalogError::Invalid { file: file.clone(), model: m.name.clone(), problem };
                validate(&m).map_err(invalid)?;
                if !names.insert(m.name.clone()) {
                    return Err(invalid("defined twice".into()));
                }
                models.push(m);
            }
        }
        Ok(Catalog { models })
    }

    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }
}

fn validate(m: &Model) -> Result<(), String> {
    let positive = [
        ("params", m.params),
        ("layers", u64::from(m.layers)),
        ("embedding_length", u64::from(m.embedding_length)),
        ("heads", u64::from(m.heads)),
        ("kv_heads", u64::from(m.kv_heads)),
        ("head_dim", u64::from(m.head_dim)),
        ("context_trained", u64::from(m.context_trained)),
        ("vocab_size", u64::from(m.vocab_size)),
        ("feed_forward_length", u64::from(m.feed_forward_length)),
    ];
    if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{field} must be positive"));
    }
    if m.heads % m.kv_heads != 0 {
        return Err(format!("heads ({}) must be a multiple of kv_heads ({})", m.heads, m.kv_heads));
    }
    if m.files.is_empty() {
        return Err("no files".into());
    }
    for f in &m.files {
        if file_bytes(m, f).is_none() {
            return Err(format!("file {}: unknown quantization {:?} and no bytes", f.url, f.quant));
        }
        if !(f.url.starts_with("https://") || f.url.starts_with("http://") || f.url.starts_with("file://")) {
            return Err(format!("file url {:?} is not http(s) or file", f.url));
        }
        if let Some(s) = &f.sha256 {
            if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("file {}: sha256 is not 64 hex digits", f.url));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_loads_and_every_entry_sizes() {
        let c = Catalog::builtin().expect("builtin catalog is valid");
        assert!(c.models.len() >= 15);
        assert!(c.models.iter().any(|m| m.role == Role::Embedding));
        for m in &c.models {
            for f in &m.files {
                let b = file_bytes(m, f).expect("sizes");
                assert!(b > m.params / 4, "{} {}: {b} bytes is implausibly small", m.name, f.quant);
            }
        }
    }

    #[test]
    fn an_invalid_entry_names_the_file_and_the_model() {
        let text = BUILTIN[0].1.replacen("kv_heads = 2", "kv_heads = 5", 1);
        let err =
            Catalog::from_sources([("bad.toml".to_string(), text)]).expect_err("14 heads over 5 kv heads is invalid");
        assert!(
            matches!(err, CatalogError::Invalid { ref file, ref model, .. } if file == "bad.toml" && model == "qwen2.5-0.5b-instruct")
        );
        let err = Catalog::from_sources([("typo.toml".to_string(), "[[models]]\nnmae = 1\n".to_string())])
            .expect_err("unknown key");
        assert!(matches!(err, CatalogError::Parse { ref file, .. } if file == "typo.toml"));
    }
}
