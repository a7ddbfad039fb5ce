"""Writes tests/goldens/tiny-random.gguf: a small random-weight Llama that uses
every weight type kvinfer computes with (F32 norms; F16, BF16, Q8_0, Q4_0,
Q4_1 matrices), a separate output.weight, GQA, partial RoPE (rope_dims 8 of
head_dim 16) and a non-default RoPE base and RMS epsilon.

Deterministic: fixed seed, so re-running gives a byte-identical file.

usage: /usr/bin/python3 tools/reference/make_tiny_random.py [--out PATH]
"""

import argparse
import os

import numpy as np

from gguf_writer import write_gguf
from quants import BF16, F16, F32, Q4_0, Q4_1, Q8_0, quantize

D, N_LAYERS, N_HEADS, N_KV, FF, VOCAB, ROPE_DIMS = 64, 2, 4, 2, 96, 300, 8
HEAD_DIM = D // N_HEADS

# Per layer: the GGML type of each matrix, chosen so each type appears in
# several roles (row length 64 and 96 both occur for the block types).
LAYER_TYPES = [
    dict(attn_q=Q4_0, attn_k=Q4_1, attn_v=Q8_0, attn_output=F16,
         ffn_gate=Q4_1, ffn_up=Q4_0, ffn_down=Q8_0),
    dict(attn_q=Q8_0, attn_k=F16, attn_v=Q4_0, attn_output=BF16,
         ffn_gate=Q8_0, ffn_up=Q4_1, ffn_down=Q4_0),
]


def vocab():
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    extra = ["\u2581" + c for c in letters] + list(letters[:VOCAB - len(toks) - 26])
    toks += extra
    types += [1] * len(extra)
    assert len(toks) == VOCAB
    scores = np.array([0.0] * 259 + [-float(i) for i in range(len(extra))], np.float32)
    return toks, scores, np.array(types, np.int32)


def build(path):
    rng = np.random.default_rng(20240607)
    tensors = []

    def add(name, ttype, x):
        x = np.asarray(x, np.float32)
        ne = tuple(reversed(x.shape))     # numpy (out, in) -> GGML ne {in, out}
        tensors.append((name, ne, ttype, quantize(ttype, x)))

    def mat(out_dim, in_dim, gain=1.0):
        return rng.standard_normal((out_dim, in_dim)) * (gain / np.sqrt(in_dim))

    def norm_w(n):
        return 1.0 + 0.2 * rng.standard_normal(n)

    add("token_embd.weight", F16, rng.standard_normal((VOCAB, D)))
    for i, types in enumerate(LAYER_TYPES):
        p = "blk.%d." % i
        add(p + "attn_norm.weight", F32, norm_w(D))
        # Gain 2 on Q/K so attention is far from uniform.
        add(p + "attn_q.weight", types["attn_q"], mat(N_HEADS * HEAD_DIM, D, 2.0))
        add(p + "attn_k.weight", types["attn_k"], mat(N_KV * HEAD_DIM, D, 2.0))
        add(p + "attn_v.weight", types["attn_v"], mat(N_KV * HEAD_DIM, D))
        add(p + "attn_output.weight", types["attn_output"], mat(D, N_HEADS * HEAD_DIM))
        add(p + "ffn_norm.weight", F32, norm_w(D))
        add(p + "ffn_gate.weight", types["ffn_gate"], mat(FF, D))
        add(p + "ffn_up.weight", types["ffn_up"], mat(FF, D))
        add(p + "ffn_down.weight", types["ffn_down"], mat(D, FF))
    add("output_norm.weight", F32, norm_w(D))
    add("output.weight", Q8_0, mat(VOCAB, D, 3.0))

    toks, scores, types = vocab()
    md = {
        "general.architecture": "llama",
        "general.name": "kvinfer tiny random llama (random weights)",
        "llama.context_length": 256,
        "llama.embedding_length": D,
        "llama.block_count": N_LAYERS,
        "llama.feed_forward_length": FF,
        "llama.attention.head_count": N_HEADS,
        "llama.attention.head_count_kv": N_KV,
        "llama.rope.dimension_count": ROPE_DIMS,
        "llama.rope.freq_base": 50000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-6,
        "llama.vocab_size": VOCAB,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": toks,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
    }
    return write_gguf(path, md, tensors)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "goldens", "tiny-random.gguf"))
    a = ap.parse_args()
    n = build(a.out)
    print("wrote %s (%d bytes)" % (os.path.normpath(a.out), n))
