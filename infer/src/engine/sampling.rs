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
    /// Greedy (temperature 0): the chain draws no probabilities; the token chosen has 1.
    greedy: bool,
    /// Keep the candidates the chain leaves, with their probabilities
    /// (llama-server's `post_sampling_probs`): see [`RequestSampler::candidates`].
    post_sampling: bool,
    candidates: Vec<(LlamaToken, f32)>,
}

/// The best candidates checked one by one before masking the whole vocabulary.
const PROBE: usize = 64;

impl RequestSampler {
    pub(super) fn constrained(&self) -> bool {
        self.grammar.is_some()
    }

    /// The next token from the logits at `idx`. `first`, when the grammar reads the next
    /// token's first character on its own: the vocabulary's groups, to rule out many tokens
    /// at once when the whole vocabulary must be masked.
    /// What the chain left at the last draw, likeliest first, each with its probability among
    /// them (empty unless the request asked for `post_sampling_probs`).
    pub(super) fn candidates(&self) -> &[(LlamaToken, f32)] {
        &self.candidates
    }

    /// Keep what the chain left in `cur` (after it drew from it) for [`Self::candidates`].
    fn keep_candidates(&mut self, cur: &LlamaTokenDataArray, tok: LlamaToken) {
        self.candidates.clear();
        if !self.post_sampling {
            return;
        }
        if self.greedy {
            self.candidates.push((tok, 1.0));
            return;
        }
        self.candidates.extend(cur.data.iter().filter(|t| t.p() > 0.0).map(|t| (t.id(), t.p())));
        self.candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    }

    pub(super) fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32, first: Option<&FirstChars>) -> LlamaToken {
        let Some(grammar) = &mut self.grammar else {
            if !self.post_sampling {
                return self.chain.sample(ctx, idx);
            }
            // The chain applied by hand, as llama_sampler_sample does, to see what it left.
            let mut cur = ctx.token_data_array_ith(idx);
            self.chain.apply(&mut cur);
            let tok = cur.selected_token().unwrap_or_else(|| LlamaToken::new(0));
            self.chain.accept(tok);
            self.keep_candidates(&cur, tok);
            return tok;
        };
        let found = self.keep.and_then(|k| best_allowed(ctx.get_logits_ith(idx), k, grammar));
        let mut left = None;
        let tok = found
            .and_then(|mut cur| {
                self.chain.apply(&mut cur);
                let tok = cur.selected_token();
                left = Some(cur);
                tok
            })
            .unwrap_or_else(|| {
                self.full_masks += 1;
                let pruned = first.and_then(|f| f.candidates(ctx.get_logits_ith(idx), grammar));
                let mut cur = match pruned {
                    Some(mut cur) => {
                        grammar.apply(&mut cur);
                        // Nothing left (a character the groups read otherwise than the
                        // grammar): the whole vocabulary, as without them.
                        if cur.data.iter().any(|t| t.logit().is_finite()) {
                            cur
                        } else {
                            let mut all = ctx.token_data_array_ith(idx);
                            grammar.apply(&mut all);
                            all
                        }
                    }
                    None => {
                        let mut all = ctx.token_data_array_ith(idx);
                        grammar.apply(&mut all);
                        all
                    }
                };
                self.chain.apply(&mut cur);
                let tok = cur.selected_token().unwrap_or_else(|| LlamaToken::new(0));
                left = Some(cur);
                tok
            });
        grammar.accept(tok);
        self.chain.accept(tok);
        if let Some(cur) = left {
            self.keep_candidates(&cur, tok);
        }
        tok
    }
}

/// The vocabulary grouped by the first two characters of each token's text as llama.cpp's
/// grammar reads it (the piece with special tokens written out). A grammar that refuses a
/// character refuses every token starting with it, so masking the whole vocabulary starts
/// with one probe per character — the token that is that character alone. A large group
/// that passes (the tokens starting with a space, in most vocabularies) is split again by
/// its second character: a copy of the grammar takes the first character, and the probes
/// are asked again. Only the tokens left are checked one by one. In a JSON structure, where
/// a quote, a brace or a space is all that may come, that is a few hundred tokens instead
/// of the vocabulary.
pub(crate) struct FirstChars {
    /// Each token's first character (an index into `probes`), or [`ALWAYS`]: checked whatever
    /// the probes say (end-of-generation tokens, empty pieces, invalid UTF-8, characters no
    /// token is alone, characters standing for fewer than [`MIN_GROUP`] tokens).
    first: Vec<u32>,
    /// Each token's second character, or [`ALWAYS`] (one character long, or no probe).
    second: Vec<u32>,
    /// The token that is each character alone.
    probes: Vec<LlamaToken>,
    /// How many tokens start with each character.
    sizes: Vec<usize>,
    /// A group of more tokens than this is split by the second character when its first passes.
    split: usize,
}

const ALWAYS: u32 = u32::MAX;

/// The fewest tokens a character must stand for (first, or second in a group that is split)
/// to get a probe; the others are checked one by one.
const MIN_GROUP: usize = 4;

impl FirstChars {
    pub(crate) fn new(model: &LlamaModel) -> FirstChars {
        Self::split_above(model, 256)
    }

    fn split_above(model: &LlamaModel, split: usize) -> FirstChars {
        let vocab = model.vocab();
        // Each token's first two characters (none for special and invalid pieces).
        let heads: Vec<(LlamaToken, Option<char>, Option<char>)> = model
            .tokens(true)
            .map(|(tok, piece)| {
                let text = String::from_utf8(piece).ok().filter(|t| !t.starts_with('\0') && !vocab.is_eog(tok));
                let mut chars = text.as_deref().unwrap_or("").chars();
                (tok, chars.next(), chars.next())
            })
            .collect();
        // A probe costs one check; it is worth it only for a character that stands for several
        // tokens (Qwen's vocabulary has some 17,800 characters alone, most starting no other):
        // as their first character, or as their second in a group large enough to be split
        // (the letters after a space, in a vocabulary where few tokens start with a letter).
        let mut starts: std::collections::HashMap<char, usize> = std::collections::HashMap::new();
        for c in heads.iter().filter_map(|(_, f, _)| *f) {
            *starts.entry(c).or_default() += 1;
        }
        let mut stands_for = starts.clone();
        for (_, f, c) in &heads {
            if let (Some(f), Some(c)) = (f, c) {
                if starts.get(f).is_some_and(|n| *n > split) {
                    *stands_for.entry(*c).or_default() += 1;
                }
            }
        }
        let mut index: std::collections::HashMap<char, u32> = std::collections::HashMap::new();
        let mut probes = Vec::new();
        for (tok, f, c) in &heads {
            // The token that is a character alone.
            if let (Some(f), None) = (f, c) {
                if stands_for.get(f).is_some_and(|n| *n >= MIN_GROUP) {
                    if let std::collections::hash_map::Entry::Vacant(e) = index.entry(*f) {
                        e.insert(u32::try_from(probes.len()).unwrap_or(ALWAYS));
                        probes.push(*tok);
                    }
                }
            }
        }
        let at = |c: &Option<char>| c.and_then(|c| index.get(&c).copied()).unwrap_or(ALWAYS);
        let mut sizes = vec![0; probes.len()];
        let (mut first, mut second) = (Vec::with_capacity(heads.len()), Vec::with_capacity(heads.len()));
        for (_, f, c) in &heads {
            let f = at(f);
            if f != ALWAYS {
                sizes[f as usize] += 1;
            }
            first.push(f);
            second.push(at(c));
        }
        FirstChars { first, second, probes, sizes, split }
    }

    /// Which characters `grammar` allows next: the probes, asked.
    fn allowed(&self, grammar: &mut LlamaSampler) -> Vec<bool> {
        let mut probes =
            LlamaTokenDataArray::new(self.probes.iter().map(|t| LlamaTokenData::new(*t, 0.0, 0.0)).collect(), false);
        grammar.apply(&mut probes);
        let mut allowed = vec![false; self.probes.len()];
        for t in probes.data.iter().filter(|t| t.logit().is_finite()) {
            if let Some(c) = usize::try_from(t.id().0).ok().and_then(|i| self.first.get(i)).filter(|c| **c != ALWAYS) {
                allowed[*c as usize] = true;
            }
        }
        allowed
    }

    /// The candidates worth checking under `grammar`: the tokens whose first characters (and
    /// second, in a large group) it allows, and those always checked. None when that would be
    /// most of the vocabulary anyway (inside a string, say): the probes would only add work.
    fn candidates(&self, logits: &[f32], grammar: &mut LlamaSampler) -> Option<LlamaTokenDataArray> {
        if self.first.len() != logits.len() || self.probes.is_empty() {
            return None;
        }
        let allowed = self.allowed(grammar);
        if allowed.iter().filter(|a| **a).count() * 2 > allowed.len() {
            return None;
        }
        // Large groups that pass, split by what may follow their first character.
        let mut then: Vec<Option<Vec<bool>>> = vec![None; self.probes.len()];
        for (c, next) in then.iter_mut().enumerate() {
            if allowed[c] && self.sizes[c] > self.split {
                let mut copy = grammar.clone();
                copy.accept(self.probes[c]);
                *next = Some(self.allowed(&mut copy));
            }
        }
        let data = (0..logits.len())
            .filter(|&i| {
                let (f, s) = (self.first[i], self.second[i]);
                f == ALWAYS
                    || (allowed[f as usize]
                        && (s == ALWAYS || then[f as usize].as_ref().is_none_or(|next| next[s as usize])))
            })
            .filter_map(|i| Some(LlamaTokenData::new(LlamaToken::new(i32::try_from(i).ok()?), logits[i], 0.0)))
            .collect();
        Some(LlamaTokenDataArray::new(data, false))
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
    Ok(RequestSampler {
        chain: LlamaSampler::chain_simple(chain),
        grammar,
        keep,
        full_masks: 0,
        greedy: s.temperature <= 0.0,
        post_sampling: g.post_sampling && g.logprobs.is_some(),
        candidates: Vec::new(),
    })
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

/// A token and the likeliest `top` among the candidates the chain left, with their
/// probabilities after it (as log-probabilities; llama-server's `post_sampling_probs`).
pub(super) fn post_sampling(
    model: &LlamaModel,
    candidates: &[(LlamaToken, f32)],
    tok: LlamaToken,
    top: usize,
) -> TokenLogprob {
    let bytes = |t: LlamaToken| model.vocab().token_to_piece(t, true, None);
    let p = candidates.iter().find(|(t, _)| *t == tok).map_or(0.0, |(_, p)| *p);
    TokenLogprob {
        id: tok.0,
        bytes: bytes(tok),
        logprob: p.ln(),
        top: candidates.iter().take(top).map(|(t, p)| (t.0, bytes(*t), p.ln())).collect(),
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

    /// The pruned candidates, once the grammar has masked them, are exactly the tokens the
    /// grammar allows of the whole vocabulary — along a JSON value generated token by token
    /// from random logits: the tiny model's vocabulary with every group split, and real
    /// vocabularies (Qwen 2.5's 151,665 tokens, Llama 3's 128,256; llama.cpp's vocabulary-only
    /// test files) with the groups as the engine makes them.
    #[test]
    fn first_character_groups_allow_exactly_what_the_whole_vocabulary_allows() {
        use llama_cpp_2::model::params::LlamaModelParams;
        let exe = std::env::current_exe().expect("exe");
        let ggml = exe.parent().and_then(std::path::Path::parent).expect("target dir").join("ggml");
        crate::backends::load(&ggml).expect("ggml's modules");
        let backend = llama_cpp_2::llama_backend::LlamaBackend::init().expect("backend");
        let tiny =
            LlamaModel::load_from_file(&backend, aither_test_support::chat_model(), &LlamaModelParams::default())
                .expect("the tiny model");
        groups_match(&tiny, &FirstChars::split_above(&tiny, 0), 120);
        for name in ["vocab-spm-32k.gguf", "vocab-qwen2.gguf", "vocab-llama-bpe.gguf"] {
            let params = LlamaModelParams::default().with_vocab_only(true);
            let model = LlamaModel::load_from_file(&backend, aither_test_support::test_model(name), &params)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(model.n_vocab() >= 32_000, "{name}: {} tokens", model.n_vocab());
            let most = groups_match(&model, &FirstChars::new(&model), 40);
            // A grammar allowing a few characters leaves a small part of the vocabulary to
            // check (a second character's probe lost once left the whole space group: 99 %).
            assert!(most * 5 <= usize::try_from(model.n_vocab()).expect("vocab"), "{name}: {most} checked");
        }
    }

    /// Walks `steps` tokens; returns the most tokens the groups left to check where the
    /// grammar allowed at most 1 % of the vocabulary.
    fn groups_match(model: &LlamaModel, first: &FirstChars, steps: usize) -> usize {
        let schema = serde_json::json!({"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"},
            "ok": {"type": "boolean"}}, "required": ["name", "n", "ok"], "additionalProperties": false});
        let gbnf = crate::grammar::from_schema(&schema, "schema").expect("gbnf");
        let mut grammar = LlamaSampler::grammar(model, &gbnf, crate::grammar::ROOT).expect("grammar");
        let n = usize::try_from(model.n_vocab()).expect("vocab");
        // Whole characters only: the groups apply at a character boundary.
        let whole: Vec<bool> = model.tokens(true).map(|(_, piece)| std::str::from_utf8(&piece).is_ok()).collect();
        let mut seed = 0x2545_f491_u64;
        let (mut pruned, mut text) = (0, String::new());
        // Where the grammar allows little (a structure's next character): the most tokens the
        // groups leave to check, and the time of both masks on the steps they prune.
        let (mut narrow, mut worst) = (0, 0);
        let (mut t_whole, mut t_pruned) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for _ in 0..steps {
            let logits: Vec<f32> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    #[allow(clippy::cast_precision_loss)]
                    let v = (seed % 10_000) as f32 / 1000.0;
                    v
                })
                .collect();
            let all = |logits: &[f32]| {
                let data =
                    (0..n).map(|i| LlamaTokenData::new(LlamaToken::new(i32::try_from(i).expect("id")), logits[i], 0.0));
                LlamaTokenDataArray::new(data.collect(), false)
            };
            let finite = |a: &LlamaTokenDataArray| -> std::collections::BTreeSet<i32> {
                a.data.iter().filter(|t| t.logit().is_finite()).map(|t| t.id().0).collect()
            };
            let mut whole_vocab = all(&logits);
            let t = std::time::Instant::now();
            grammar.apply(&mut whole_vocab);
            let this_whole = t.elapsed();
            let allowed = finite(&whole_vocab);
            let t = std::time::Instant::now();
            // Unpruned, the engine checks the whole vocabulary.
            let mut checked = n;
            if let Some(mut cur) = first.candidates(&logits, &mut grammar) {
                checked = cur.data.len();
                grammar.apply(&mut cur);
                t_pruned += t.elapsed();
                t_whole += this_whole;
                assert_eq!(finite(&cur), allowed, "after {text:?}");
                assert!(checked < n, "after {text:?}: pruned to {checked} of {n}");
                pruned += 1;
            }
            if allowed.len() * 100 <= n {
                narrow += 1;
                worst = worst.max(checked);
            }
            let best = whole_vocab
                .data
                .iter()
                .filter(|t| t.logit().is_finite() && usize::try_from(t.id().0).is_ok_and(|i| whole[i]))
                .max_by(|a, b| a.logit().total_cmp(&b.logit()));
            let Some(best) = best.map(LlamaTokenData::id) else { break };
            if model.vocab().is_eog(best) {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&model.vocab().token_to_piece(best, true, None)));
            grammar.accept(best);
        }
        assert!(pruned >= 5, "the groups were used {pruned} times along {text:?}");
        eprintln!(
            "{n} tokens: {pruned} steps pruned, masked in {:.2} ms each against {:.2} ms for the whole vocabulary; \
             where at most 1% is allowed ({narrow} steps) at most {worst} checked",
            t_pruned.as_secs_f64() * 1000.0 / f64::from(pruned),
            t_whole.as_secs_f64() * 1000.0 / f64::from(pruned)
        );
        assert!(narrow > 0, "no step allowed as little as 1 % along {text:?}");
        worst
    }

    #[test]
    fn embeddings_are_unit_length() {
        let v = normalize(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
