#!/usr/bin/env python3
"""Write a llama-architecture GGUF model with random weights, for tests and benchmarks.

The tokenizer is a real SentencePiece-style ("llama") vocabulary: <unk>, <s>, </s>, the 256
byte tokens <0x00>..<0xFF> (so any text can be encoded), then filler pieces up to --vocab.
Weights are random (seeded), so the model loads and runs in llama.cpp like any other; its
output is noise. Shapes are free: pass a real model's numbers to get a file of that model's
size and layout.

    make_gguf.py OUT.gguf --layers 24 --embd 896 --heads 14 --kv-heads 2 --ff 4864 \
        --vocab 151936 --ctx 32768 --type q8_0
"""
import argparse
import sys

import numpy as np
import gguf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--type", choices=["f16", "q8_0", "f32"], default="f16")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", default="aither-test")
    a = ap.parse_args()
    if a.embd % a.heads or a.heads % a.kv_heads:
        sys.exit("embd must divide by heads, heads by kv-heads")
    if a.vocab < 259:
        sys.exit("vocab must hold the 3 specials and 256 byte tokens")
    head_dim = a.embd // a.heads
    rng = np.random.default_rng(a.seed)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(a.name)
    w.add_context_length(a.ctx)
    w.add_embedding_length(a.embd)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(a.ff)
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[a.type]
    w.add_file_type(ftype)

    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    toktypes = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < a.vocab:
        # Filler pieces: "▁a", "▁b", ..., "▁aa", ... (distinct, printable).
        n, s = i, ""
        while True:
            s = letters[n % 26] + s
            n = n // 26 - 1
            if n < 0:
                break
        tokens.append(("\u2581" + s).encode())
        toktypes.append(gguf.TokenType.NORMAL)
        i += 1
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(k) for k in range(len(tokens))])
    w.add_token_types(toktypes)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")

    def matrix(name, rows, cols):
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
        if a.type == "f32":
            w.add_tensor(name, data)
        elif a.type == "f16":
            w.add_tensor(name, data.astype(np.float16))
        else:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def norm(name):
        w.add_tensor(name, np.ones(a.embd, dtype=np.float32))

    matrix("token_embd.weight", a.vocab, a.embd)
    for l in range(a.layers):
        p = f"blk.{l}."
        norm(p + "attn_norm.weight")
        matrix(p + "attn_q.weight", a.heads * head_dim, a.embd)
        matrix(p + "attn_k.weight", a.kv_heads * head_dim, a.embd)
        matrix(p + "attn_v.weight", a.kv_heads * head_dim, a.embd)
        matrix(p + "attn_output.weight", a.embd, a.heads * head_dim)
        norm(p + "ffn_norm.weight")
        matrix(p + "ffn_gate.weight", a.ff, a.embd)
        matrix(p + "ffn_up.weight", a.ff, a.embd)
        matrix(p + "ffn_down.weight", a.embd, a.ff)
    norm("output_norm.weight")
    matrix("output.weight", a.vocab, a.embd)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
