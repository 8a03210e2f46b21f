//! Memory fit: what a model needs (weights, KV cache, compute buffers, the GPU runtime, a
//! margin) and where it goes (which GPUs, how many layers, what stays on the host).
//!
//! The model's shape comes from its GGUF header when the file is present ([`Shape::from_gguf`],
//! exact per-tensor sizes) and from the catalog otherwise ([`Shape::from_catalog`]). The sizes
//! follow what llama.cpp allocates: the token embedding stays on the host; repeating layers go
//! to GPUs in order, each GPU holding the KV cache of its layers and its own compute buffer;
//! the output layer goes to the GPU that holds the last layer when every layer is offloaded.
//! `hwprofile/benches/fit_accuracy.py` measures the estimate against llama.cpp's own figures.

use serde::{Deserialize, Serialize};

pub use aither_api::plan::{KvType, ShapeSource};

use crate::catalog::{self, Model, ModelFile};
use aither_gguf::Gguf;

const MIB: u64 = 1 << 20;

/// GPU memory a process uses before it allocates anything: the CUDA/HIP context, cuBLAS
/// workspaces and the like. Measured on current drivers at 300–500 MiB; the larger figure is
/// used so a plan never counts on memory the runtime takes.
pub const GPU_RUNTIME_OVERHEAD: u64 = 512 * MIB;
/// Safety margin on each GPU, as a fraction of what is placed there.
pub const GPU_MARGIN: f64 = 0.05;
/// llama.cpp's default micro-batch.
pub const DEFAULT_UBATCH: u32 = 512;

/// A model as sizing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub layers: u32,
    pub embedding_length: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim_k: u64,
    pub head_dim_v: u64,
    pub vocab: u64,
    pub context_trained: u64,
    /// Width of the feed-forward block (`intermediate_size`).
    pub feed_forward: u64,
    /// Bytes of each repeating layer's weights.
    pub layer_bytes: Vec<u64>,
    /// The token embedding: on the host in llama.cpp whatever the offload.
    pub input_bytes: u64,
    /// Output norm and head and other non-repeating tensors: with the last layer.
    pub output_bytes: u64,
    pub source: ShapeSource,
}

impl Shape {
    /// Exact sizes from a GGUF header.
    pub fn from_gguf(g: &Gguf) -> Result<Shape, String> {
        let arch = g.architecture().ok_or("no general.architecture")?.to_string();
        let need = |key: &str| g.arch_u64(key).ok_or_else(|| format!("no {arch}.{key}"));
        let layers = u32::try_from(need("block_count")?).map_err(|_| "block_count too large".to_string())?;
        let embedding_length = need("embedding_length")?;
        let heads = need("attention.head_count")?.max(1);
        let kv_heads = g.arch_u64("attention.head_count_kv").unwrap_or(heads).max(1);
        let head_dim_k = g.arch_u64("attention.key_length").unwrap_or(embedding_length / heads);
        let head_dim_v = g.arch_u64("attention.value_length").unwrap_or(head_dim_k);
        let mut layer_bytes = vec![0u64; layers as usize];
        let (mut input_bytes, mut output_bytes) = (0u64, 0u64);
        for t in &g.tensors {
            let layer =
                t.name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|n| n.parse::<usize>().ok());
            match layer {
                Some(i) if i < layer_bytes.len() => layer_bytes[i] += t.bytes,
                Some(i) => return Err(format!("tensor {} is in layer {i} of {layers}", t.name)),
                None if t.name.starts_with("token_embd") => input_bytes += t.bytes,
                None => output_bytes += t.bytes,
            }
        }
        Ok(Shape {
            layers,
            embedding_length,
            heads,
            kv_heads,
            head_dim_k,
            head_dim_v,
            vocab: g.vocab_size().unwrap_or(0),
            context_trained: g.arch_u64("context_length").unwrap_or(0),
            feed_forward: g.arch_u64("feed_forward_length").unwrap_or(4 * embedding_length),
            layer_bytes,
            input_bytes,
            output_bytes,
            source: ShapeSource::Gguf,
        })
    }

    /// Estimated sizes from the catalog: the embedding and the output head at the file's
    /// average bits per weight, the rest shared evenly by the layers.
    pub fn from_catalog(m: &Model, f: &ModelFile) -> Shape {
        let total = catalog::file_bytes(m, f).unwrap_or(0);
        let bpw = catalog::bits_per_weight(&f.quant).unwrap_or(16.0);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let table = (u64::from(m.vocab_size) as f64 * f64::from(m.embedding_length) * bpw / 8.0) as u64;
        // Tiny models are mostly embedding; never let the tables eat the layers.
        let table = table.min(total / 4);
        let layers_total = total.saturating_sub(2 * table);
        let per_layer = layers_total / u64::from(m.layers.max(1));
        Shape {
            layers: m.layers,
            embedding_length: u64::from(m.embedding_length),
            heads: u64::from(m.heads),
            kv_heads: u64::from(m.kv_heads),
            head_dim_k: u64::from(m.head_dim),
            head_dim_v: u64::from(m.head_dim),
            vocab: u64::from(m.vocab_size),
            context_trained: u64::from(m.context_trained),
            feed_forward: u64::from(m.feed_forward_length),
            layer_bytes: vec![per_layer; m.layers as usize],
            input_bytes: table,
            output_bytes: table,
            source: ShapeSource::Catalog,
        }
    }

    pub fn weights_bytes(&self) -> u64 {
        self.layer_bytes.iter().sum::<u64>() + self.input_bytes + self.output_bytes
    }

    /// KV cache of one layer for `context` tokens.
    pub fn kv_bytes_per_layer(&self, context: u32, kv: KvType) -> u64 {
        let elements = u64::from(context) * self.kv_heads * (self.head_dim_k + self.head_dim_v);
        elements * kv.bytes_per_32() / 32
    }

    /// The compute buffer llama.cpp reserves on a device. The graph allocator reuses memory
    /// between stages, so it is the largest stage, not their sum:
    ///
    /// - logits (only on the device that computes the output): `vocab × ubatch` f32 plus two
    ///   embedding-wide activations;
    /// - attention without flash attention: the `ubatch × ctx` score matrix per head (f32),
    ///   the f32 mask and six embedding-wide activations;
    /// - attention with flash attention: the f16 mask plus the feed-forward activations
    ///   (three `ubatch × ff` and three `ubatch × embd`, f32).
    ///
    /// Fitted to llama.cpp's reported CPU compute buffers by `benches/fit_accuracy.py`.
    pub fn compute_bytes(&self, p: &FitParams, with_output: bool) -> u64 {
        let ub = u64::from(p.ubatch.min(p.context).max(1));
        let ctx = u64::from(p.context);
        let embd = self.embedding_length;
        let logits = if with_output { (self.vocab * ub + 2 * ub * embd) * 4 } else { 0 };
        let ffn = ub * (3 * self.feed_forward + 3 * embd) * 4;
        let attention = if p.flash_attention {
            ub * ctx * 2 + ffn
        } else {
            ub * ctx * self.heads * 4 + ub * ctx * 4 + 6 * ub * embd * 4
        };
        logits.max(attention).max(ffn)
    }
}

/// How the model will be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitParams {
    pub context: u32,
    pub kv_type: KvType,
    pub ubatch: u32,
    pub flash_attention: bool,
}

impl FitParams {
    /// llama.cpp's defaults: flash attention `auto` resolves to on for the CPU, CUDA and ROCm
    /// backends (and a quantized V cache requires it).
    pub fn new(context: u32, kv_type: KvType) -> FitParams {
        FitParams { context, kv_type, ubatch: DEFAULT_UBATCH, flash_attention: true }
    }
}

/// Free memory of one GPU for models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuBudget {
    pub pci_address: String,
    pub bytes: u64,
}

/// Where a model goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Repeating layers on GPUs (llama.cpp's `--gpu-layers`; all of them plus the output
    /// layer when `output_on_gpu`).
    pub gpu_layers: u32,
    pub output_on_gpu: bool,
    /// PCI addresses of the GPUs used, in layer order.
    pub gpus: Vec<String>,
    /// GPU memory taken on each of `gpus`, runtime overhead and margin included.
    pub bytes_per_gpu: Vec<u64>,
    /// Layers per GPU, for llama.cpp's `--tensor-split`.
    pub layers_per_gpu: Vec<u32>,
    /// Host memory: the token embedding, layers not offloaded, their KV cache, the host
    /// compute buffer.
    pub host_bytes: u64,
    /// KV cache held on GPUs (the L0 tier).
    pub gpu_kv_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("needs {need} bytes of GPU memory for all {layers} layers, the GPUs offer {have} (strict: not spilling to the CPU)")]
    DoesNotFit { need: u64, have: u64, layers: u32 },
    #[error("needs {need} bytes of host memory, {have} are allowed")]
    HostTooSmall { need: u64, have: u64 },
}

fn with_margin(bytes: u64) -> u64 {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let m = (bytes as f64 * GPU_MARGIN) as u64;
    bytes + m
}

/// Place `shape` on the GPUs of `budgets` (tried largest first, as few as possible), or on
/// the host when `budgets` is empty. `strict` refuses rather than leave layers on the CPU;
/// `host_limit` bounds what may go to the host.
pub fn place(
    shape: &Shape,
    p: &FitParams,
    budgets: &[GpuBudget],
    strict: bool,
    host_limit: u64,
) -> Result<Placement, FitError> {
    let kv_layer = shape.kv_bytes_per_layer(p.context, p.kv_type);
    let host_compute_small = u64::from(p.ubatch.min(p.context)) * shape.embedding_length * 4 * 2;
    if budgets.is_empty() {
        let need = shape.weights_bytes() + kv_layer * u64::from(shape.layers) + shape.compute_bytes(p, true);
        if need > host_limit {
            return Err(FitError::HostTooSmall { need, have: host_limit });
        }
        return Ok(Placement {
            gpu_layers: 0,
            output_on_gpu: false,
            gpus: vec![],
            bytes_per_gpu: vec![],
            layers_per_gpu: vec![],
            host_bytes: need,
            gpu_kv_bytes: 0,
        });
    }
    let mut order: Vec<&GpuBudget> = budgets.iter().collect();
    order.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.pci_address.cmp(&b.pci_address)));

    // Fill GPUs in order; each carries the runtime, its compute buffer, then whole layers.
    let mut next_layer = 0usize;
    let (mut gpus, mut bytes_per_gpu, mut layers_per_gpu) = (vec![], vec![], vec![]);
    let mut output_on_gpu = false;
    let mut gpu_kv_bytes = 0;
    for gpu in &order {
        if next_layer >= shape.layer_bytes.len() {
            break;
        }
        let fixed = GPU_RUNTIME_OVERHEAD;
        let mut used = shape.compute_bytes(p, false);
        let mut count = 0u32;
        while next_layer < shape.layer_bytes.len() {
            let add = shape.layer_bytes[next_layer] + kv_layer;
            let is_last = next_layer + 1 == shape.layer_bytes.len();
            // The GPU that takes the last layer also takes the output head and the logits.
            let extra = if is_last {
                shape.output_bytes + shape.compute_bytes(p, true) - shape.compute_bytes(p, false)
            } else {
                0
            };
            if fixed + with_margin(used + add + extra) > gpu.bytes {
                break;
            }
            used += add + extra;
            output_on_gpu |= is_last;
            next_layer += 1;
            count += 1;
            gpu_kv_bytes += kv_layer;
        }
        if count > 0 {
            gpus.push(gpu.pci_address.clone());
            bytes_per_gpu.push(fixed + with_margin(used));
            layers_per_gpu.push(count);
        }
    }
    let gpu_layers = u32::try_from(next_layer).unwrap_or(u32::MAX);
    if gpu_layers < shape.layers && strict {
        let need = GPU_RUNTIME_OVERHEAD
            + with_margin(
                shape.weights_bytes() - shape.input_bytes
                    + kv_layer * u64::from(shape.layers)
                    + shape.compute_bytes(p, true),
            );
        return Err(FitError::DoesNotFit { need, have: order.iter().map(|g| g.bytes).sum(), layers: shape.layers });
    }
    let host_layers: u64 = shape.layer_bytes[next_layer..].iter().sum();
    let host_kv = kv_layer * u64::from(shape.layers - gpu_layers);
    let host_bytes = shape.input_bytes
        + host_layers
        + host_kv
        + if output_on_gpu { host_compute_small } else { shape.output_bytes + shape.compute_bytes(p, true) };
    if host_bytes > host_limit {
        return Err(FitError::HostTooSmall { need: host_bytes, have: host_limit });
    }
    Ok(Placement { gpu_layers, output_on_gpu, gpus, bytes_per_gpu, layers_per_gpu, host_bytes, gpu_kv_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn shape(layers: u32, layer_gib_tenths: u64) -> Shape {
        Shape {
            layers,
            embedding_length: 4096,
            heads: 32,
            kv_heads: 8,
            head_dim_k: 128,
            head_dim_v: 128,
            vocab: 128_256,
            context_trained: 131_072,
            feed_forward: 14_336,
            layer_bytes: vec![layer_gib_tenths * GIB / 10; layers as usize],
            input_bytes: GIB / 2,
            output_bytes: GIB / 2,
            source: ShapeSource::Catalog,
        }
    }

    fn gpu(addr: &str, gib: u64) -> GpuBudget {
        GpuBudget { pci_address: addr.into(), bytes: gib * GIB }
    }

    #[test]
    fn kv_cache_matches_the_llama_formula() {
        // Llama 3.1 8B: 32 layers x 8192 ctx x 8 kv heads x (128 + 128) x 2 bytes = 1 GiB.
        let s = shape(32, 1);
        assert_eq!(s.kv_bytes_per_layer(8192, KvType::F16) * 32, GIB);
        assert_eq!(s.kv_bytes_per_layer(8192, KvType::Q8_0) * 32, GIB * 34 / 64);
    }

    #[test]
    fn a_model_that_fits_uses_one_gpu_the_largest() {
        let s = shape(32, 2); // 6.4 GiB of layers
        let p = place(
            &s,
            &FitParams::new(8192, KvType::F16),
            &[gpu("0000:01:00.0", 12), gpu("0000:02:00.0", 24)],
            true,
            u64::MAX,
        )
        .expect("fits");
        assert_eq!(p.gpus, vec!["0000:02:00.0"]);
        assert_eq!((p.gpu_layers, p.output_on_gpu), (32, true));
        assert!(p.bytes_per_gpu[0] <= 24 * GIB);
        assert!(p.host_bytes < GIB, "only the embedding and a small buffer stay on the host");
    }

    #[test]
    fn a_model_too_big_for_one_gpu_is_split_and_never_exceeds_a_budget() {
        let s = shape(80, 5); // 40 GiB of layers
        let budgets = [gpu("0000:21:00.0", 24), gpu("0000:49:00.0", 24)];
        let p = place(&s, &FitParams::new(4096, KvType::F16), &budgets, true, u64::MAX).expect("fits on two");
        assert_eq!(p.gpus.len(), 2);
        assert_eq!(p.layers_per_gpu.iter().sum::<u32>(), 80);
        for (b, budget) in p.bytes_per_gpu.iter().zip(&budgets) {
            assert!(*b <= budget.bytes);
        }
    }

    #[test]
    fn strict_refuses_to_spill_and_lenient_offloads_what_fits() {
        let s = shape(80, 5);
        let budgets = [gpu("0000:01:00.0", 12)];
        let err = place(&s, &FitParams::new(4096, KvType::F16), &budgets, true, u64::MAX).expect_err("does not fit");
        assert!(matches!(err, FitError::DoesNotFit { layers: 80, .. }));
        let p = place(&s, &FitParams::new(4096, KvType::F16), &budgets, false, u64::MAX).expect("partial");
        assert!(p.gpu_layers > 0 && p.gpu_layers < 80 && !p.output_on_gpu);
        assert!(p.host_bytes > 20 * GIB);
    }

    #[test]
    fn on_the_host_the_limit_is_enforced() {
        let s = shape(32, 2);
        let p = place(&s, &FitParams::new(4096, KvType::F16), &[], true, 16 * GIB).expect("fits in 16 GiB");
        assert_eq!(p.gpu_layers, 0);
        assert!(matches!(
            place(&s, &FitParams::new(4096, KvType::F16), &[], true, 4 * GIB),
            Err(FitError::HostTooSmall { .. })
        ));
    }
}
