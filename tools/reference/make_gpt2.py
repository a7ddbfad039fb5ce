"""Writes a random-weight GPT-2 checkpoint in Hugging Face's layout (and,
optionally, the same weights as a GGUF).

The weights are RANDOM (GPT-2's initialisation scale), not trained: the files
exist so the engine's GPT-2 path can be tested and timed at real shapes. Say
so wherever results made with them are reported.

Output directory:
  config.json          model_type gpt2, n_layer, n_head, n_embd, n_positions,
                       vocab_size, layer_norm_epsilon, ...
  model.safetensors    HF GPT-2 tensor names (no "transformer." prefix):
                         wte.weight [vocab, n_embd], wpe.weight [n_positions, n_embd],
                         h.{i}.ln_1.weight/bias [n_embd],
                         h.{i}.attn.c_attn.weight [n_embd, 3 n_embd] + bias [3 n_embd],
                         h.{i}.attn.c_proj.weight [n_embd, n_embd] + bias,
                         h.{i}.ln_2.weight/bias,
                         h.{i}.mlp.c_fc.weight [n_embd, 4 n_embd] + bias [4 n_embd],
                         h.{i}.mlp.c_proj.weight [4 n_embd, n_embd] + bias [n_embd],
                         ln_f.weight/bias; the LM head is tied to wte.
                       The matrices are Conv1D weights: [in, out], i.e. y = x @ W + b,
                       TRANSPOSED relative to nn.Linear. Every tensor in --dtype.
  vocab.json, merges.txt   the real GPT-2 tokenizer (copied)
  model.gguf           (--gguf) llama.cpp's gpt2 layout: token_embd, position_embd,
                       blk.N.attn_norm(.bias), attn_qkv, attn_output, ffn_norm, ffn_up,
                       ffn_down, output_norm (matrices row-major [out, in], i.e. the
                       Conv1D weight transposed; GGUF dims {in, out}); matrices and
                       embeddings in --dtype, norms and biases F32 (the same values);
                       the gpt-2 tokenizer in tokenizer.ggml.*.

Values: matrices and embeddings ~ N(0, 0.02) (c_proj matrices scaled by
1/sqrt(2 n_layer) as in GPT-2), wpe ~ N(0, 0.01), LayerNorm weights 1 + N(0, 0.05),
and (unlike GPT-2's zero init, so that biases are exercised) biases ~ N(0, 0.02).
They are rounded to --dtype once; the GGUF holds exactly the same numbers.

Deterministic: a fixed seed gives byte-identical files.

usage: /usr/bin/python3 tools/reference/make_gpt2.py [--shape tiny|124m] [--dtype f16|f32]
           [--out DIR] [--gguf] [--seed N] [--scale S] [--tokenizer-dir DIR]
  tiny: 2 layers, n_embd 64, 4 heads, 64 positions, vocab 50257 (~7 MB in F16)
  124m: 12 layers, n_embd 768, 12 heads, 1024 positions, vocab 50257 (GPT-2 small)
"""

import argparse
import json
import os
import shutil
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

SHAPES = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=50257),
    "124m": dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257),
}
EPS = 1e-5
EOT_ID = 50256  # <|endoftext|>

_ST_DTYPE = {"f32": ("F32", np.float32), "f16": ("F16", np.float16)}


def make_weights(shape, dtype, seed, scale=1.0):
    """Returns [(hf_name, array)] in file order, arrays already in `dtype`.
    `scale` multiplies the standard deviation of every matrix and embedding."""
    rng = np.random.default_rng(seed)
    L, n, P, V = shape["n_layer"], shape["n_embd"], shape["n_positions"], shape["vocab_size"]
    np_dtype = _ST_DTYPE[dtype][1]
    out = []

    def normal(shape_, std):
        std = std * scale if len(shape_) == 2 else std
        return (rng.standard_normal(shape_, dtype=np.float32) * np.float32(std)).astype(np_dtype)

    def ln(name):
        out.append((name + ".weight", (1.0 + normal((n,), 0.05).astype(np.float32)).astype(np_dtype)))
        out.append((name + ".bias", normal((n,), 0.02)))

    out.append(("wte.weight", normal((V, n), 0.02)))
    out.append(("wpe.weight", normal((P, n), 0.01)))
    proj_std = 0.02 / np.sqrt(2 * L)
    for i in range(L):
        p = "h.%d." % i
        ln(p + "ln_1")
        out.append((p + "attn.c_attn.weight", normal((n, 3 * n), 0.02)))
        out.append((p + "attn.c_attn.bias", normal((3 * n,), 0.02)))
        out.append((p + "attn.c_proj.weight", normal((n, n), proj_std)))
        out.append((p + "attn.c_proj.bias", normal((n,), 0.02)))
        ln(p + "ln_2")
        out.append((p + "mlp.c_fc.weight", normal((n, 4 * n), 0.02)))
        out.append((p + "mlp.c_fc.bias", normal((4 * n,), 0.02)))
        out.append((p + "mlp.c_proj.weight", normal((4 * n, n), proj_std)))
        out.append((p + "mlp.c_proj.bias", normal((n,), 0.02)))
    ln("ln_f")
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors: [(name, numpy array)] written in order; header padded with
    spaces to a multiple of 8 (as the safetensors library does)."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
             np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, a in tensors:
        nbytes = a.size * a.itemsize
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return 8 + len(h) + offset


def read_gpt2_tokenizer(tok_dir):
    """(tokens by id, merges) from vocab.json/merges.txt or encoder.json/vocab.bpe."""
    for v, m in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
        if os.path.exists(os.path.join(tok_dir, v)):
            vocab_path, merges_path = os.path.join(tok_dir, v), os.path.join(tok_dir, m)
            break
    else:
        sys.exit("make_gpt2.py: no vocab.json or encoder.json in %s" % tok_dir)
    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    tokens = [None] * len(vocab)
    for piece, i in vocab.items():
        tokens[i] = piece
    assert all(t is not None for t in tokens), "vocabulary ids have gaps"
    merges = []
    with open(merges_path, encoding="utf-8") as f:
        for k, line in enumerate(f):
            line = line.rstrip("\r\n")
            if not line or (k == 0 and line.startswith("#version")):
                continue
            merges.append(line)
    return vocab_path, merges_path, tokens, merges


def write_gguf_file(path, shape, dtype, weights, tokens, merges):
    sys.path.insert(0, HERE)
    from gguf_writer import write_gguf
    from quants import F16, F32

    w = dict(weights)
    L, n = shape["n_layer"], shape["n_embd"]
    mat_type = F16 if dtype == "f16" else F32
    tensors = []

    def add(name, a, as_matrix):
        """a: numpy array with GGUF row-major shape (out, in) or (n,)."""
        ttype = mat_type if as_matrix else F32
        a = np.ascontiguousarray(a.astype(np.float16 if ttype == F16 else np.float32))
        ne = tuple(reversed(a.shape))  # GGML ne[0] is the contiguous dim
        tensors.append((name, ne, ttype, a.view(np.uint8).reshape(-1)))

    add("token_embd.weight", w["wte.weight"], True)
    add("position_embd.weight", w["wpe.weight"], True)
    for i in range(L):
        h, b = "h.%d." % i, "blk.%d." % i
        add(b + "attn_norm.weight", w[h + "ln_1.weight"], False)
        add(b + "attn_norm.bias", w[h + "ln_1.bias"], False)
        # Conv1D [in, out] -> row-major [out, in].
        add(b + "attn_qkv.weight", w[h + "attn.c_attn.weight"].T, True)
        add(b + "attn_qkv.bias", w[h + "attn.c_attn.bias"], False)
        add(b + "attn_output.weight", w[h + "attn.c_proj.weight"].T, True)
        add(b + "attn_output.bias", w[h + "attn.c_proj.bias"], False)
        add(b + "ffn_norm.weight", w[h + "ln_2.weight"], False)
        add(b + "ffn_norm.bias", w[h + "ln_2.bias"], False)
        add(b + "ffn_up.weight", w[h + "mlp.c_fc.weight"].T, True)
        add(b + "ffn_up.bias", w[h + "mlp.c_fc.bias"], False)
        add(b + "ffn_down.weight", w[h + "mlp.c_proj.weight"].T, True)
        add(b + "ffn_down.bias", w[h + "mlp.c_proj.bias"], False)
    add("output_norm.weight", w["ln_f.weight"], False)
    add("output_norm.bias", w["ln_f.bias"], False)

    token_type = np.ones(len(tokens), np.int32)
    token_type[EOT_ID] = 3  # control, as llama.cpp's converter marks it
    md = {
        "general.architecture": "gpt2",
        "general.name": "kvinfer random gpt2 (random weights)",
        "general.file_type": 1 if dtype == "f16" else 0,
        "gpt2.context_length": shape["n_positions"],
        "gpt2.embedding_length": n,
        "gpt2.feed_forward_length": 4 * n,
        "gpt2.block_count": L,
        "gpt2.attention.head_count": shape["n_head"],
        "gpt2.attention.layer_norm_epsilon": EPS,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": token_type,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": EOT_ID,
        "tokenizer.ggml.eos_token_id": EOT_ID,
    }
    return write_gguf(path, md, tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--dtype", choices=sorted(_ST_DTYPE), default="f16")
    ap.add_argument("--out", help="output directory (default models/gpt2-SHAPE-DTYPE)")
    ap.add_argument("--gguf", action="store_true", help="also write OUT/model.gguf")
    ap.add_argument("--seed", type=int, default=20240612)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the std of matrices and embeddings (a sharper, less uniform "
                         "output distribution for goldens; default 1 = GPT-2's init)")
    ap.add_argument("--tokenizer-dir",
                    default=os.path.join(ROOT, "..", "shared", "models", "tokenizers", "gpt2"))
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    out = a.out or os.path.join(ROOT, "models", "gpt2-%s-%s" % (a.shape, a.dtype))
    os.makedirs(out, exist_ok=True)
    t0 = time.time()

    vocab_path, merges_path, tokens, merges = read_gpt2_tokenizer(a.tokenizer_dir)
    if len(tokens) != shape["vocab_size"]:
        sys.exit("make_gpt2.py: tokenizer has %d tokens, expected %d" % (len(tokens), shape["vocab_size"]))
    weights = make_weights(shape, a.dtype, a.seed, a.scale)

    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_layer": shape["n_layer"],
        "n_head": shape["n_head"],
        "n_embd": shape["n_embd"],
        "n_positions": shape["n_positions"],
        "n_ctx": shape["n_positions"],
        "n_inner": None,
        "vocab_size": shape["vocab_size"],
        "layer_norm_epsilon": EPS,
        "activation_function": "gelu_new",
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "tie_word_embeddings": True,
        "torch_dtype": {"f16": "float16", "f32": "float32"}[a.dtype],
        "kvinfer_note": "random weights from tools/reference/make_gpt2.py (seed %d, scale %g)"
                        % (a.seed, a.scale),
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    n_st = write_safetensors(os.path.join(out, "model.safetensors"), weights, {"format": "pt"})
    shutil.copyfile(vocab_path, os.path.join(out, "vocab.json"))
    shutil.copyfile(merges_path, os.path.join(out, "merges.txt"))
    msg = "wrote %s: model.safetensors (%d bytes)" % (os.path.normpath(out), n_st)
    if a.gguf:
        n_gg = write_gguf_file(os.path.join(out, "model.gguf"), shape, a.dtype, weights, tokens, merges)
        msg += ", model.gguf (%d bytes)" % n_gg
    print(msg + " in %.1f s (RANDOM weights)" % (time.time() - t0))


if __name__ == "__main__":
    main()
