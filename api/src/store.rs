//! The model store's documents: `checksums.json` in the model directory, and how far a
//! model file can be trusted.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of `checksums.json`.
pub const CHECKSUMS_SCHEMA_VERSION: u32 = 1;

/// How far a model file can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verification {
    /// Its SHA-256 matches the catalog's.
    Verified,
    /// The catalog has no SHA-256; the file matches the one recorded at its first download.
    Recorded,
    /// No check applies: never fetched here, changed since, or differing from the catalog.
    Unverified,
}

impl Verification {
    pub fn name(self) -> &'static str {
        match self {
            Verification::Verified => "verified",
            Verification::Recorded => "recorded",
            Verification::Unverified => "unverified",
        }
    }
}

/// `checksums.json`: the SHA-256 of every file fetched into the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checksums {
    pub schema_version: u32,
    pub files: BTreeMap<String, Recorded>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    pub sha256: String,
    pub bytes: u64,
    /// `catalog` (checked against it) or `first-download` (trust on first use).
    pub from: String,
}
