//! The profile as a person reads it on an 80-column console.

/// Bytes as GiB with one decimal.
pub use aither_api::gib;
pub use aither_api::render::{plan_table, profile_table};

/// What one model needs on the host, as `aither-hwprofile fit` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FitReport {
    pub model: String,
    pub sized_from: aither_plan::fit::ShapeSource,
    pub context: u32,
    pub layers: u32,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
}

impl FitReport {
    pub fn new(model: &str, s: &aither_plan::fit::Shape, p: &aither_plan::fit::FitParams) -> FitReport {
        let weights_bytes = s.weights_bytes();
        let kv_cache_bytes = s.kv_bytes_per_layer(p.context, p.kv_type) * u64::from(s.layers);
        let compute_bytes = s.compute_bytes(p, true);
        FitReport {
            model: model.to_string(),
            sized_from: s.source,
            context: p.context,
            layers: s.layers,
            weights_bytes,
            kv_cache_bytes,
            compute_bytes,
            total_bytes: weights_bytes + kv_cache_bytes + compute_bytes,
        }
    }

    pub fn table(&self) -> String {
        format!(
            "{} ({} layers, ctx {}): weights {}, KV cache {}, compute {}, total {}\n",
            self.model,
            self.layers,
            self.context,
            gib(self.weights_bytes),
            gib(self.kv_cache_bytes),
            gib(self.compute_bytes),
            gib(self.total_bytes)
        )
    }
}
