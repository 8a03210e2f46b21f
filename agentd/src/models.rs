//! `aitherctl models`: the plan's model files — list them (each `verified` against the
//! catalog's SHA-256, `recorded` at its first download, or `unverified`), pull them (from the
//! catalog's URL or a local directory such as a USB stick, with a progress bar, resumed where
//! an earlier pull stopped), and remove them.
//!
//! agentd says which models the plan has and where they go (`Models()` on D-Bus); the
//! download runs in aitherctl, as the admin who asked, through the same code first boot uses
//! (`aither_hwprofile::fetch`). After a pull or a removal agentd reloads, so a worker that
//! was blocked on its file can start.

use std::path::{Path, PathBuf};

use aither_hwprofile::catalog::{Catalog, ModelFile};
use aither_hwprofile::fetch::{self, Source};
use serde_json::Value;

/// A model file to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub name: String,
    pub file: ModelFile,
}

/// The catalog aitherctl resolves names in: the installed one, else the built-in copy.
pub fn catalog() -> anyhow::Result<Catalog> {
    let installed = Path::new("/usr/share/aither");
    let (_, catalog) = aither_hwprofile::cli::load_data(installed.join("catalog").is_dir().then_some(installed))?;
    Ok(catalog)
}

/// What `pull NAMES` means: each name is a model of the plan (its planned file) or of the
/// catalog (its first file, or `quant`); no names: every model of the plan whose file is
/// missing.
pub fn resolve(doc: &Value, catalog: &Catalog, names: &[String], quant: Option<&str>) -> Result<Vec<Wanted>, String> {
    let planned = doc["models"].as_array().cloned().unwrap_or_default();
    let file_for = |url: &str, sha: Option<&str>| -> ModelFile {
        catalog.models.iter().flat_map(|m| &m.files).find(|f| f.url == url).cloned().unwrap_or(ModelFile {
            quant: String::new(),
            url: url.to_string(),
            bytes: None,
            sha256: sha.map(str::to_string),
        })
    };
    if names.is_empty() {
        return Ok(planned
            .iter()
            .filter(|m| m["present"] != true)
            .filter_map(|m| {
                let url = m["url"].as_str()?;
                Some(Wanted { name: m["name"].as_str()?.to_string(), file: file_for(url, m["sha256"].as_str()) })
            })
            .collect());
    }
    let mut out = Vec::new();
    for name in names {
        if let (Some(m), None) = (planned.iter().find(|m| m["name"] == name.as_str()), quant) {
            let url = m["url"].as_str().ok_or_else(|| format!("{name}: the plan gives no URL"))?;
            out.push(Wanted { name: name.clone(), file: file_for(url, m["sha256"].as_str()) });
            continue;
        }
        let model = catalog.models.iter().find(|m| &m.name == name).ok_or_else(|| {
            let known: Vec<&str> = catalog.models.iter().map(|m| m.name.as_str()).collect();
            format!("no model {name:?} in the plan or the catalog; the catalog has: {}", known.join(", "))
        })?;
        let file = fetch::choose_file(model, quant).ok_or_else(|| {
            let quants: Vec<&str> = model.files.iter().map(|f| f.quant.as_str()).collect();
            format!("{name} has no {} file; it has: {}", quant.unwrap_or("default"), quants.join(", "))
        })?;
        out.push(Wanted { name: name.clone(), file: file.clone() });
    }
    Ok(out)
}

/// Fetch every wanted file into `dir`, with a progress bar each; the first failure stops.
pub fn pull(wanted: &[Wanted], dir: &Path, source: &Source, quiet: bool) -> Result<Vec<fetch::Fetched>, String> {
    let mut done = Vec::new();
    for w in wanted {
        let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:30!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(w.name.clone());
        let result = fetch::fetch(&w.file, source, dir, &fetch::FetchOptions::default(), &mut |got, total| {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(got);
        });
        match result {
            Ok(f) => {
                let how = match (f.present, f.verification) {
                    (true, v) => format!("already there, {}", v.name()),
                    (false, fetch::Verification::Verified) => "SHA-256 verified against the catalog".into(),
                    (false, _) => "the catalog has no SHA-256: this download's is recorded".into(),
                };
                bar.finish_with_message(format!("{} ({how})", w.name));
                done.push(f);
            }
            Err(e) => {
                bar.abandon_with_message(format!("{}: failed", w.name));
                return Err(format!("{}: {e}", w.name));
            }
        }
    }
    Ok(done)
}

/// The file of a planned model, for `remove`.
pub fn planned_path(doc: &Value, name: &str) -> Result<(PathBuf, String), String> {
    let m = doc["models"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .ok_or_else(|| format!("no model {name:?} in the plan"))?;
    let path = m["path"].as_str().ok_or_else(|| format!("{name}: no path"))?;
    Ok((PathBuf::from(path), m["unit"].as_str().unwrap_or_default().to_string()))
}

pub fn table(doc: &Value) -> String {
    let rows: Vec<Vec<String>> = doc["models"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    #[allow(clippy::cast_precision_loss)] // a size to two decimals
                    let size = m["bytes"]
                        .as_u64()
                        .map_or("-".into(), |b| format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30)));
                    vec![
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["role"].as_str().unwrap_or_default().to_string(),
                        m["quant"].as_str().unwrap_or_default().to_string(),
                        if m["present"] == true { size } else { "missing".into() },
                        m["verification"].as_str().unwrap_or("-").to_string(),
                        m["state"].as_str().unwrap_or("-").to_string(),
                        if m["pinned"] == true { "pinned".into() } else { "on demand".into() },
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!("model directory: {}\n", doc["model_dir"].as_str().unwrap_or_default());
    out.push_str(&crate::ctl::table(&["NAME", "ROLE", "QUANT", "FILE", "CHECKED", "WORKER", "LOADED"], rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({ "model_dir": "/m", "models": [
            { "name": "qwen2.5-7b-instruct", "url": "https://h/x/qwen-q4.gguf", "present": false, "sha256": null,
              "path": "/m/qwen-q4.gguf", "unit": "infer-qwen2.5-7b-instruct" },
            { "name": "nomic-embed-text-v1.5", "url": "https://h/nomic.gguf", "present": true, "path": "/m/nomic.gguf",
              "unit": "infer-nomic-embed-text-v1.5" },
        ]})
    }

    #[test]
    fn no_names_pulls_the_missing_models_of_the_plan() {
        let catalog = catalog().expect("built-in catalog");
        let w = resolve(&doc(), &catalog, &[], None).expect("resolve");
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].name.as_str(), w[0].file.url.as_str()), ("qwen2.5-7b-instruct", "https://h/x/qwen-q4.gguf"));
    }

    #[test]
    fn catalog_names_and_quants_resolve_and_unknown_ones_say_what_there_is() {
        let catalog = catalog().expect("built-in catalog");
        let any = &catalog.models[0];
        let w = resolve(&doc(), &catalog, std::slice::from_ref(&any.name), None).expect("resolve");
        assert_eq!(w[0].file, any.files[0]);
        let e = resolve(&doc(), &catalog, &["nope".into()], None).expect_err("unknown");
        assert!(e.contains("the catalog has:") && e.contains(&any.name), "{e}");
        let e = resolve(&doc(), &catalog, std::slice::from_ref(&any.name), Some("Q1_X")).expect_err("no such quant");
        assert!(e.contains("has no Q1_X file"), "{e}");
    }

    #[test]
    fn remove_finds_the_planned_file() {
        assert_eq!(
            planned_path(&doc(), "nomic-embed-text-v1.5"),
            Ok(("/m/nomic.gguf".into(), "infer-nomic-embed-text-v1.5".into()))
        );
        assert!(planned_path(&doc(), "x").is_err());
    }
}
