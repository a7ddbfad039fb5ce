#!/usr/bin/python3
"""Writes a RANDOM-weight Llama GGUF of the default model's shape, for speed
measurements of weight types no real file here has.

Shape (the reference comparison's files): SmolLM2-135M — Llama, 30 layers, hidden
576, 9 heads / 3 KV heads (head dim 64), FFN 1536, tied embeddings, RoPE theta
100000, context 8192; vocabulary 50257 with the real GPT-2 byte-level BPE
tokenizer (taken from ../shared/models/tokenizers/llamacpp-vocab/
ggml-vocab-gpt-2.gguf) so that every kvinfer command can run it.

Types: every layer matrix in --type; token_embd (= the tied LM head) in Q8_0
for the quantized types, as in the real SmolLM2 Q4_1 file, and in --type for
F16/F32/BF16; norms F32. Values ~ N(0, 1/in) (speed does not depend on them;
the text it generates is noise). Deterministic for a given --seed.

usage: /usr/bin/python3 tools/bench/make_bench_model.py --type q4_0 [--out PATH]
       (default PATH: models/bench-smollm2-shape-<type>.gguf)
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))

from gguf_reader import GGUFFile  # noqa: E402
from gguf_writer import write_gguf  # noqa: E402
from quants import BF16, F16, F32, Q4_0, Q4_1, Q8_0, quantize  # noqa: E402

TYPES = {"f32": F32, "f16": F16, "bf16": BF16, "q8_0": Q8_0, "q4_0": Q4_0, "q4_1": Q4_1}
D, LAYERS, HEADS, KV_HEADS, FF, VOCAB = 576, 30, 9, 3, 1536, 50257
HEAD_DIM = D // HEADS
VOCAB_GGUF = os.path.join(ROOT, "..", "shared", "models", "tokenizers", "llamacpp-vocab",
                          "ggml-vocab-gpt-2.gguf")


def build(path, type_name, seed):
    wtype = TYPES[type_name]
    embd_type = Q8_0 if wtype in (Q4_0, Q4_1, Q8_0) else wtype
    rng = np.random.default_rng(seed)
    tensors = []

    def add(name, ttype, x):
        x = np.asarray(x, np.float32)
        tensors.append((name, tuple(reversed(x.shape)), ttype, quantize(ttype, x)))

    def mat(out_dim, in_dim):
        return (rng.standard_normal((out_dim, in_dim), dtype=np.float32) / np.sqrt(in_dim))

    add("token_embd.weight", embd_type, rng.standard_normal((VOCAB, D), dtype=np.float32))
    add("output_norm.weight", F32, np.ones(D))
    for i in range(LAYERS):
        p = "blk.%d." % i
        print("\rlayer %d/%d" % (i + 1, LAYERS), end="", file=sys.stderr, flush=True)
        add(p + "attn_norm.weight", F32, np.ones(D))
        add(p + "attn_q.weight", wtype, mat(HEADS * HEAD_DIM, D))
        add(p + "attn_k.weight", wtype, mat(KV_HEADS * HEAD_DIM, D))
        add(p + "attn_v.weight", wtype, mat(KV_HEADS * HEAD_DIM, D))
        add(p + "attn_output.weight", wtype, mat(D, HEADS * HEAD_DIM))
        add(p + "ffn_norm.weight", F32, np.ones(D))
        add(p + "ffn_gate.weight", wtype, mat(FF, D))
        add(p + "ffn_up.weight", wtype, mat(FF, D))
        add(p + "ffn_down.weight", wtype, mat(D, FF))
    print(file=sys.stderr)

    vocab = GGUFFile(VOCAB_GGUF)
    md = {
        "general.architecture": "llama",
        "general.name": "kvinfer bench: SmolLM2-135M shape, %s, RANDOM weights" % type_name,
        "llama.context_length": 8192,
        "llama.embedding_length": D,
        "llama.block_count": LAYERS,
        "llama.feed_forward_length": FF,
        "llama.attention.head_count": HEADS,
        "llama.attention.head_count_kv": KV_HEADS,
        "llama.rope.dimension_count": HEAD_DIM,
        "llama.rope.freq_base": 100000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.vocab_size": VOCAB,
    }
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id"):
        md[key] = vocab.get(key)
    md["tokenizer.ggml.token_type"] = np.asarray(vocab.get("tokenizer.ggml.token_type"), np.int32)
    return write_gguf(path, md, tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--type", required=True, choices=sorted(TYPES))
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=6)
    a = ap.parse_args()
    out = a.out or os.path.join(ROOT, "models", "bench-smollm2-shape-%s.gguf" % a.type)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    t0 = time.time()
    n = build(out, a.type, a.seed)
    print("wrote %s (%.1f MiB, %.1f s)" % (out, n / 1048576.0, time.time() - t0))


if __name__ == "__main__":
    main()
