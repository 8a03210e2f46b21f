//! Sampling: the sampler chain for a request's options, log-probabilities, pooled vectors.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

use super::TokenLogprob;
use crate::api::Generation;

/// A request's sampling: the chain llama-server uses for the same options (logit biases,
/// penalties, then top-k, top-p, min-p, temperature and the draw, or greedy), and the
/// grammar, if any, kept apart.
///
/// A grammar masks the tokens it does not allow before the chain cuts the candidates.
/// Masking the whole vocabulary costs a walk of the grammar per token of it at every step;
/// but when the chain keeps only the best `k` candidates (greedy: one; top-k: k) and nothing
/// before it changes the logits, the result is the same as taking the best tokens in logit
/// order and keeping the first `k` the grammar allows. So the best few are checked one by
/// one, and the whole vocabulary is masked only when too few of them pass (at the end of a
/// grammar, say, where only end-of-generation is left).
pub(super) struct RequestSampler {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
    /// Steps where the whole vocabulary had to be masked (for `/metrics`).
    pub(super) full_masks: u64,
    /// How many allowed candidates the chain needs when they can be found in logit order
    /// (None: mask them all).
    keep: Option<usize>,
}

/// The best candidates checked one by one before masking the whole vocabulary.
const PROBE: usize = 64;

impl RequestSampler {
    pub(super) fn constrained(&self) -> bool {
        self.grammar.is_some()
    }

    pub(super) fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken {
        let Some(grammar) = &mut self.grammar else { return self.chain.sample(ctx, idx) };
        let found = self.keep.and_then(|k| best_allowed(ctx.get_logits_ith(idx), k, grammar));
        let tok = found
            .and_then(|mut cur| {
                self.chain.apply(&mut cur);
                cur.selected_token()
            })
            .unwrap_or_else(|| {
                self.full_masks += 1;
                let mut cur = ctx.token_data_array_ith(idx);
                grammar.apply(&mut cur);
                self.chain.apply(&mut cur);
                cur.selected_token().unwrap_or_else(|| LlamaToken::new(0))
            });
        grammar.accept(tok);
        self.chain.accept(tok);
        tok
    }
}

/// The `k` best tokens by logit that `grammar` allows, found among the best [`PROBE`]
/// (or `2k`); None when fewer pass.
fn best_allowed(logits: &[f32], k: usize, grammar: &mut LlamaSampler) -> Option<LlamaTokenDataArray> {
    let n = logits.len();
    let probe = PROBE.max(2 * k).min(n);
    if probe == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    let desc = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
    order.select_nth_unstable_by(probe - 1, desc);
    order[..probe].sort_unstable_by(desc);
    let mut allowed = Vec::with_capacity(k);
    for &i in &order[..probe] {
        let tok = LlamaToken::new(i32::try_from(i).ok()?);
        let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(tok, logits[i], 0.0)], false);
        grammar.apply(&mut one);
        if one.data[0].logit().is_finite() {
            allowed.push(LlamaTokenData::new(tok, logits[i], 0.0));
            if allowed.len() == k {
                return Some(LlamaTokenDataArray::new(allowed, true));
            }
        }
    }
    None
}

/// The sampling of a request's options.
pub(super) fn sampler(model: &LlamaModel, g: &Generation) -> Result<RequestSampler, String> {
    let s = &g.sampling;
    let grammar = g.constraint.as_ref().map(|c| c.sampler(model)).transpose()?;
    let mut chain = Vec::with_capacity(8);
    if !g.logit_bias.is_empty() {
        let biases: Vec<LlamaLogitBias> =
            g.logit_bias.iter().map(|&(id, b)| LlamaLogitBias::new(LlamaToken::new(id), b)).collect();
        chain.push(LlamaSampler::logit_bias(model.n_vocab(), &biases));
    }
    if s.presence_penalty != 0.0 || s.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(model.n_vocab(), 64, 1.0, s.frequency_penalty, s.presence_penalty));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        chain.push(LlamaSampler::top_p(s.top_p, 1));
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed));
    }
    // The best allowed tokens in logit order are what the chain would keep when nothing
    // changes the logits before its cut (no bias, no penalty) and it cuts to a number.
    let plain = g.logit_bias.is_empty() && s.presence_penalty == 0.0 && s.frequency_penalty == 0.0;
    let keep = match (plain, s.temperature <= 0.0, s.top_k) {
        (true, true, _) => Some(1),
        (true, false, k) if k > 0 => usize::try_from(k).ok(),
        _ => None,
    };
    Ok(RequestSampler { chain: LlamaSampler::chain_simple(chain), grammar, keep, full_masks: 0 })
}

/// The log-probability of `tok` under the model's logits and the `top` likeliest tokens.
pub(super) fn logprob(model: &LlamaModel, logits: &[f32], tok: LlamaToken, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let bytes = |id: i32| model.vocab().token_to_piece(LlamaToken::new(id), true, None);
    let id = tok.0;
    let lp = |id: i32| usize::try_from(id).ok().and_then(|i| logits.get(i)).map_or(f32::NEG_INFINITY, |l| l - lse);
    let mut best: Vec<(i32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i32::try_from(i).unwrap_or(i32::MAX), l));
                best.truncate(top);
            }
        }
    }
    TokenLogprob {
        id,
        bytes: bytes(id),
        logprob: lp(id),
        top: best.into_iter().map(|(i, l)| (i, bytes(i), l - lse)).collect(),
    }
}

pub(super) fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    #[allow(clippy::cast_possible_truncation)]
    let scale = if norm > 0.0 { (1.0 / norm) as f32 } else { 0.0 };
    v.iter().map(|x| x * scale).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_unit_length() {
        let v = normalize(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
