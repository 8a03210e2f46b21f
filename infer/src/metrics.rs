//! `GET /metrics`: the worker's figures in Prometheus' text format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::server::AppState;

/// Requests answered, by outcome.
#[derive(Debug, Default)]
pub struct Requests {
    pub ok: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
}

impl Requests {
    pub fn served(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refusal and answer it.
    pub fn refused(&self, e: ApiError) -> Response {
        if e.status.is_client_error() {
            self.client_errors.fetch_add(1, Ordering::Relaxed);
        } else {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        e.into_response()
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP aither_infer_{name} {help}\n# TYPE aither_infer_{name} {kind}\naither_infer_{name} {value}"
    );
}

pub fn render(st: &AppState) -> String {
    let mut out = String::with_capacity(2048);
    let ready = st.ready.get();
    metric(
        &mut out,
        "ready",
        "gauge",
        "1 once the model is loaded and the engine runs.",
        u8::from(ready.is_some_and(|r| r.engine.is_alive())),
    );
    let _ = writeln!(
        out,
        "# HELP aither_infer_requests_total Requests answered, by outcome.\n# TYPE aither_infer_requests_total counter"
    );
    for (outcome, n) in [
        ("ok", &st.requests.ok),
        ("client_error", &st.requests.client_errors),
        ("server_error", &st.requests.server_errors),
    ] {
        let _ = writeln!(out, "aither_infer_requests_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
    }
    out.push_str(&st.http.prometheus("aither_infer_http"));
    let Some(r) = ready else { return out };
    out.push_str(
        "# HELP aither_infer_device_info A device llama.cpp computes on, the CPU variant of ggml loaded and its CPU features.\n\
         # TYPE aither_infer_device_info gauge\n",
    );
    let features = crate::backends::label(&r.backends.system_info);
    let variant = crate::backends::label(r.backends.cpu_variant.as_deref().unwrap_or(""));
    for d in &r.backends.devices {
        let _ = writeln!(
            out,
            "aither_infer_device_info{{name=\"{}\",backend=\"{}\",kind=\"{}\",description=\"{}\",cpu_variant=\"{variant}\",system_info=\"{features}\"}} 1",
            crate::backends::label(&d.name),
            crate::backends::label(&d.backend),
            d.kind,
            crate::backends::label(&d.description),
        );
    }
    let s = &r.engine.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    metric(&mut out, "prompt_tokens_total", "counter", "Prompt tokens decoded.", load(&s.prompt_tokens));
    metric(
        &mut out,
        "shared_prefix_tokens_total",
        "counter",
        "Prompt tokens taken from another slot's KV cells instead of being decoded.",
        load(&s.shared_prefix_tokens),
    );
    metric(
        &mut out,
        "restored_prompt_tokens_total",
        "counter",
        "Prompt tokens whose KV cells came back from the prompt store (--cache-ram) instead of being decoded.",
        load(&s.restored_prompt_tokens),
    );
    metric(
        &mut out,
        "prompt_store_entries",
        "gauge",
        "Prompts kept in host memory after leaving their slots.",
        s.prompt_store_entries.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "prompt_store_bytes",
        "gauge",
        "Bytes of KV state the prompt store holds.",
        s.prompt_store_bytes.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "constrained_tokens_total",
        "counter",
        "Tokens sampled under a grammar.",
        load(&s.constrained_tokens),
    );
    metric(
        &mut out,
        "grammar_full_masks_total",
        "counter",
        "Constrained tokens for which none of the best candidates was allowed and the whole vocabulary was masked.",
        load(&s.grammar_full_masks),
    );
    metric(
        &mut out,
        "context_shifts_total",
        "counter",
        "Times a full slot discarded half of its older tokens to go on generating (--context-shift).",
        load(&s.context_shifts),
    );
    metric(&mut out, "generated_tokens_total", "counter", "Tokens generated.", load(&s.generated_tokens));
    #[allow(clippy::cast_precision_loss)]
    let decode_secs = load(&s.decode_nanos) as f64 / 1e9;
    metric(&mut out, "decode_seconds_total", "counter", "Time spent in llama_decode.", format!("{decode_secs:.6}"));
    metric(&mut out, "decode_calls_total", "counter", "llama_decode calls (batches).", load(&s.decode_calls));
    metric(
        &mut out,
        "generation_tokens_per_second",
        "gauge",
        "Tokens generated per second over the last 10 seconds, all streams together.",
        format!("{:.3}", s.tokens_per_second()),
    );
    metric(
        &mut out,
        "requests_completed_total",
        "counter",
        "Completions and embedding requests finished.",
        load(&s.requests_done),
    );
    metric(
        &mut out,
        "requests_cancelled_total",
        "counter",
        "Requests whose client went away before the end.",
        load(&s.requests_cancelled),
    );
    metric(&mut out, "queue_length", "gauge", "Requests waiting for a free slot.", s.queued.load(Ordering::Relaxed));
    metric(&mut out, "slots_total", "gauge", "Sequences decoded together (--parallel).", r.engine.parallel);
    metric(&mut out, "slots_busy", "gauge", "Slots serving a request.", s.slots_busy.load(Ordering::Relaxed));
    let used = s.kv_cells_used.load(Ordering::Relaxed);
    metric(&mut out, "kv_cache_cells_total", "gauge", "KV cache cells (tokens) of the context.", r.engine.n_ctx);
    metric(&mut out, "kv_cache_cells_used", "gauge", "KV cache cells holding tokens, cached prefixes included.", used);
    #[allow(clippy::cast_precision_loss)]
    let ratio = if r.engine.n_ctx == 0 { 0.0 } else { used as f64 / r.engine.n_ctx as f64 };
    metric(&mut out, "kv_cache_usage_ratio", "gauge", "Share of the KV cache in use (0 to 1).", format!("{ratio:.4}"));
    out
}
