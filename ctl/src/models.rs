//! `aitherctl models`: the plan's model files — list them (each `verified` against the
//! catalog's SHA-256, `recorded` at its first download, or `unverified`), pull them (from the
//! catalog's URL or a local directory such as a USB stick, with a progress bar, resumed where
//! an earlier pull stopped), and remove them.
//!
//! agentd says which models the plan has and where they go (`Models()` on D-Bus, an
//! `aither_api::agentd::Models`); the download runs in aitherctl, as the admin who asked,
//! through the same code first boot uses (`aither_models`), and agentd reloads after it, so
//! a worker that was blocked on its file can start. A removal is agentd's (`RemoveModel`: its
//! worker stops first).

use std::path::Path;

use aither_api::agentd as api;
use aither_models::{self as fetch, Source};
use aither_plan::catalog::{Catalog, ModelFile};

/// A model file to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub name: String,
    pub file: ModelFile,
}

/// The catalog aitherctl resolves names in: the installed one, else the built-in copy.
pub fn catalog() -> anyhow::Result<Catalog> {
    let installed = Path::new("/usr/share/aither");
    let (_, catalog) = aither_plan::data::load(installed.join("catalog").is_dir().then_some(installed))?;
    Ok(catalog)
}

/// What `pull NAMES` means: each name is a model of the plan (its planned file) or of the
/// catalog (its first file, or `quant`); no names: every model of the plan whose file is
/// missing.
pub fn resolve(
    doc: &api::Models,
    catalog: &Catalog,
    names: &[String],
    quant: Option<&str>,
) -> Result<Vec<Wanted>, String> {
    let file_for = |m: &api::Model| -> ModelFile {
        catalog.models.iter().flat_map(|c| &c.files).find(|f| f.url == m.url).cloned().unwrap_or(ModelFile {
            quant: m.quant.clone(),
            url: m.url.clone(),
            bytes: None,
            sha256: m.sha256.clone(),
        })
    };
    if names.is_empty() {
        return Ok(doc
            .models
            .iter()
            .filter(|m| !m.present)
            .map(|m| Wanted { name: m.name.clone(), file: file_for(m) })
            .collect());
    }
    let mut out = Vec::new();
    for name in names {
        if let (Some(m), None) = (doc.models.iter().find(|m| &m.name == name), quant) {
            out.push(Wanted { name: name.clone(), file: file_for(m) });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, url: &str, present: bool, path: &str) -> api::Model {
        api::Model {
            name: name.into(),
            role: aither_api::plan::Role::Chat,
            quant: "Q4_K_M".into(),
            url: url.into(),
            sha256: None,
            path: path.into(),
            present,
            bytes: None,
            verification: None,
            pinned: false,
            unit: format!("infer-{name}"),
            state: None,
        }
    }

    fn doc() -> api::Models {
        api::Models {
            schema_version: api::SCHEMA_VERSION,
            model_dir: "/m".into(),
            models: vec![
                model("qwen2.5-7b-instruct", "https://h/x/qwen-q4.gguf", false, "/m/qwen-q4.gguf"),
                model("nomic-embed-text-v1.5", "https://h/nomic.gguf", true, "/m/nomic.gguf"),
            ],
        }
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
}
