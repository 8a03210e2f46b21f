//! The inference workers' figures over the last minutes, for the `Inference` D-Bus method
//! (the Cockpit page's charts, `aitherctl inference`): every [`INTERVAL`] agentd reads each
//! running worker's `/metrics` on its socket and keeps [`WINDOW`] of samples. The workers'
//! counters (tokens generated, prompt tokens decoded) become rates between two samples; a
//! worker that restarted (its counters went back) or was away starts over.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aither_api::agentd::{self as api, InferenceSample, WorkerSamples};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use http_body_util::BodyExt;

use crate::daemon::Daemon;
use crate::gateway::{upstream, Backend, Worker};

/// How often each running worker is read.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long samples are kept.
pub const WINDOW: Duration = Duration::from_secs(600);
/// A worker that does not answer `/metrics` within this is skipped this time.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a `/metrics` answer read (a worker's is about 5 KiB).
const MAX_METRICS_BYTES: usize = 256 * 1024;

/// What one read of a worker's `/metrics` gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    pub generated: u64,
    pub prompt: u64,
    pub queue: u64,
    pub slots_busy: u64,
    pub slots_total: u64,
    pub kv_used: u64,
    pub kv_total: u64,
}

/// The figures of a worker's `/metrics` (Prometheus' text format); `None` while its model is
/// not loaded (it has no engine figures yet).
pub fn parse(text: &str) -> Option<Reading> {
    let mut values: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(' ') else { continue };
        let Some(name) = name.strip_prefix("aither_infer_") else { continue };
        // Integers only: the figures read here are counts (the float ones are not needed).
        if let Ok(v) = value.trim().parse::<u64>() {
            values.insert(name, v);
        }
    }
    let get = |name: &str| values.get(name).copied();
    Some(Reading {
        generated: get("generated_tokens_total")?,
        prompt: get("prompt_tokens_total")?,
        queue: get("queue_length").unwrap_or(0),
        slots_busy: get("slots_busy").unwrap_or(0),
        slots_total: get("slots_total").unwrap_or(0),
        kv_used: get("kv_cache_cells_used").unwrap_or(0),
        kv_total: get("kv_cache_cells_total").unwrap_or(0),
    })
}

#[derive(Debug, Clone)]
struct Kept {
    at: Instant,
    reading: Reading,
    sample: InferenceSample,
}

/// Each worker's samples in the window, by unit.
#[derive(Debug, Default)]
pub struct History {
    workers: BTreeMap<String, (String, VecDeque<Kept>)>,
}

impl History {
    /// Keep a reading of `unit` (serving `model`) taken at `at` (`time`: the same moment in Unix
    /// seconds), with the rates since the worker's previous reading when there is one to
    /// compare with.
    pub fn record(&mut self, unit: &str, model: &str, at: Instant, time: u64, reading: Reading) {
        let (name, kept) = self.workers.entry(unit.to_string()).or_default();
        model.clone_into(name);
        let rates = kept.back().and_then(|prev| {
            let secs = at.checked_duration_since(prev.at)?.as_secs_f64();
            let continuous = secs > 0.0 && secs <= 3.0 * INTERVAL.as_secs_f64();
            let counted = reading.generated >= prev.reading.generated && reading.prompt >= prev.reading.prompt;
            #[allow(clippy::cast_precision_loss)]
            let rate = |now: u64, then: u64| (now - then) as f64 / secs;
            (continuous && counted)
                .then(|| (rate(reading.generated, prev.reading.generated), rate(reading.prompt, prev.reading.prompt)))
        });
        let sample = InferenceSample {
            time,
            generated_per_second: rates.map(|r| round(r.0)),
            prompt_per_second: rates.map(|r| round(r.1)),
            queue: reading.queue,
            slots_busy: reading.slots_busy,
            slots_total: reading.slots_total,
            kv_cells_used: reading.kv_used,
            kv_cells_total: reading.kv_total,
        };
        kept.push_back(Kept { at, reading, sample });
    }

    /// Forget what is older than the window, and workers left with nothing.
    pub fn prune(&mut self, now: Instant) {
        for (_, kept) in self.workers.values_mut() {
            while kept.front().is_some_and(|k| now.saturating_duration_since(k.at) > WINDOW) {
                kept.pop_front();
            }
        }
        self.workers.retain(|_, (_, kept)| !kept.is_empty());
    }

    /// The `Inference` document, answered at `now` (Unix seconds).
    pub fn document(&self, now: u64) -> api::Inference {
        api::Inference {
            schema_version: api::SCHEMA_VERSION,
            now,
            interval_seconds: INTERVAL.as_secs(),
            window_seconds: WINDOW.as_secs(),
            workers: self
                .workers
                .iter()
                .map(|(unit, (model, kept))| WorkerSamples {
                    model: model.clone(),
                    unit: unit.clone(),
                    samples: kept.iter().map(|k| k.sample.clone()).collect(),
                })
                .collect(),
        }
    }
}

/// Two decimals are all a chart shows.
fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Read every running worker's figures every [`INTERVAL`], for as long as agentd runs.
pub async fn sample_forever(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let view = daemon.gateway_view().await;
        let workers = match Backend::workers(&*daemon).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("inference figures: {e}");
                continue;
            }
        };
        let running = view.models.iter().filter(|m| workers.get(&m.unit) == Some(&Worker::Running));
        let reads = futures_util::future::join_all(running.map(|m| async move { (m, read(&m.socket).await) })).await;
        let now = Instant::now();
        let time = aither_sys::time::unix_now();
        let mut history = daemon.inference.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (m, reading) in reads {
            match reading {
                Ok(Some(r)) => history.record(&m.unit, &m.name, now, time, r),
                Ok(None) => {}
                Err(e) => tracing::debug!("inference figures of {}: {e}", m.unit),
            }
        }
        history.prune(now);
    }
}

/// One worker's `/metrics`, read on its socket.
async fn read(socket: &Path) -> Result<Option<Reading>, String> {
    let fetch = async {
        let resp = upstream::to_worker(socket, Method::GET, "/metrics", &HeaderMap::new(), Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("/metrics answered {}", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_METRICS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("/metrics: {e}"))?
            .to_bytes();
        Ok(parse(&String::from_utf8_lossy(&body)))
    };
    tokio::time::timeout(READ_TIMEOUT, fetch).await.map_err(|_| format!("no answer within {READ_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str =
        "# HELP aither_infer_ready 1 once loaded.\n# TYPE aither_infer_ready gauge\naither_infer_ready 1\n\
        aither_infer_requests_total{outcome=\"ok\"} 3\n\
        aither_infer_prompt_tokens_total 120\naither_infer_generated_tokens_total 40\n\
        aither_infer_decode_seconds_total 1.250000\naither_infer_generation_tokens_per_second 3.500\n\
        aither_infer_queue_length 2\naither_infer_slots_total 4\naither_infer_slots_busy 3\n\
        aither_infer_kv_cache_cells_total 4096\naither_infer_kv_cache_cells_used 512\n\
        aither_infer_kv_cache_usage_ratio 0.1250\n";

    #[test]
    fn a_workers_metrics_give_its_counts() {
        let r = parse(METRICS).expect("figures");
        assert_eq!(
            r,
            Reading {
                generated: 40,
                prompt: 120,
                queue: 2,
                slots_busy: 3,
                slots_total: 4,
                kv_used: 512,
                kv_total: 4096
            }
        );
        // Before its model is loaded a worker has only its HTTP counters.
        assert_eq!(parse("aither_infer_ready 0\naither_infer_http_connections_total 1\n"), None);
    }

    fn reading(generated: u64, prompt: u64) -> Reading {
        Reading { generated, prompt, slots_total: 1, kv_total: 100, ..Reading::default() }
    }

    #[test]
    fn counters_become_rates_between_samples() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record("infer-a", "a", t0, 1000, reading(0, 0));
        h.record("infer-a", "a", t0 + INTERVAL, 1005, reading(50, 200));
        h.record("infer-a", "a", t0 + 2 * INTERVAL, 1010, reading(60, 200));
        let doc = h.document(0);
        let s = &doc.workers[0].samples;
        assert_eq!(doc.workers[0].model, "a");
        let rates: Vec<_> = s.iter().map(|s| (s.generated_per_second, s.prompt_per_second)).collect();
        assert_eq!(rates, vec![(None, None), (Some(10.0), Some(40.0)), (Some(2.0), Some(0.0))]);
        assert_eq!((doc.interval_seconds, doc.window_seconds), (5, 600));
    }

    #[test]
    fn a_restart_or_an_absence_starts_the_rates_over() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record("infer-a", "a", t0, 0, reading(500, 900));
        // Restarted: its counters went back.
        h.record("infer-a", "a", t0 + INTERVAL, 5, reading(10, 20));
        // Away for a minute (stopped, dormant): no rate across the gap.
        h.record("infer-a", "a", t0 + INTERVAL * 14, 70, reading(30, 20));
        let rates: Vec<_> = h.document(0).workers[0].samples.iter().map(|s| s.generated_per_second).collect();
        assert_eq!(rates, vec![None, None, None]);
    }

    #[test]
    fn samples_older_than_the_window_are_forgotten_with_workers_left_empty() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record("infer-a", "a", t0, 0, reading(0, 0));
        h.record("infer-b", "b", t0, 0, reading(0, 0));
        h.record("infer-b", "b", t0 + WINDOW, 600, reading(1, 1));
        h.prune(t0 + WINDOW + INTERVAL);
        let doc = h.document(0);
        assert_eq!(doc.workers.len(), 1);
        assert_eq!((doc.workers[0].unit.as_str(), doc.workers[0].samples.len()), ("infer-b", 1));
    }
}
