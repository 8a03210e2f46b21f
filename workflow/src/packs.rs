//! The five workflow packs AitherOS ships (`workflows/` in the source tree, installed to
//! `/usr/share/aither/workflows/`), carried in agentd for systems without that directory
//! (development mode, test roots), as the presets and the catalog are.

/// The directory they are named under when built in.
pub const BUILT_IN_DIR: &str = "(built in)/workflows";

/// The packs: file name and text.
pub const BUILT_IN: [(&str, &str); 5] = [
    ("content-pipeline.toml", include_str!("../../workflows/content-pipeline.toml")),
    ("devops.toml", include_str!("../../workflows/devops.toml")),
    ("research.toml", include_str!("../../workflows/research.toml")),
    ("social-media.toml", include_str!("../../workflows/social-media.toml")),
    ("code-review.toml", include_str!("../../workflows/code-review.toml")),
];
