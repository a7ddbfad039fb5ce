#!/usr/bin/python3
"""NumPy GPT-2 forward pass over a Hugging Face checkpoint directory
(config.json + model.safetensors + vocab.json/merges.txt), and goldens for it.

  /usr/bin/python3 tools/reference/gpt2_ref.py --model DIR --out tests/goldens/NAME \\
      [--prompt TEXT | --prompt-tokens 1,2,3] [--no-f32-check]
  /usr/bin/python3 tools/reference/gpt2_ref.py --tiny [--scale S]
      # make_gpt2.py --shape tiny --dtype f16 --gguf [--scale S] into a temp dir;
      # golden tests/goldens/gpt2-tiny-random (gpt2-tiny-sS-random with --scale)

Writes NAME.json and NAME.logits.f32 in make_goldens.py's format (see
tools/reference/README.md), except that fewer than 64 greedy tokens are
generated when the context is shorter (tiny: 64 positions).

The forward pass, per token t at position p (Conv1D weights W are [in, out]:
y = x @ W + b):
  x = wte[t] + wpe[p]
  per layer: h = LN(x; ln_1)            LN(x) = (x - mean) / sqrt(var + eps) * w + b
             q, k, v = split(h @ c_attn.W + c_attn.b, 3)   (q first)
             per head: softmax(q_h . K_h^T / sqrt(head_dim)) over positions 0..p, @ V_h
             x += concat(heads) @ attn.c_proj.W + attn.c_proj.b
             x += gelu_tanh(LN(x; ln_2) @ c_fc.W + c_fc.b) @ mlp.c_proj.W + mlp.c_proj.b
  logits = LN(x; ln_f) @ wte^T          (tied head)
gelu_tanh(u) = 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from llama_ref import greedy, run, teacher_forced, top2_gap  # noqa: E402
from make_goldens import cross_check_full_recompute, sha256  # noqa: E402
from tokenize_ref import Tokenizer  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
N_GEN = 64
RECORD_GEN_INDEX = 32
TINY_PROMPT = "Hello, my dog is cute. Once upon a time"

_ST_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    """{name: numpy array} (read-only views over the file bytes)."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError("%s: too short" % path)
    (n,) = struct.unpack("<Q", buf[:8])
    if n > len(buf) - 8:
        raise ValueError("%s: header length %d past the end" % (path, n))
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = memoryview(buf)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = np.dtype(_ST_NP[e["dtype"]]).newbyteorder("<")
        b, end = e["data_offsets"]
        count = int(np.prod(e["shape"], dtype=np.int64))
        if not (0 <= b <= end <= len(data)) or end - b != count * dt.itemsize:
            raise ValueError("%s: tensor %s: bad data_offsets" % (path, name))
        out[name] = np.frombuffer(data[b:end], dtype=dt).reshape(e["shape"])
    return out


class Config:
    def __init__(self, c):
        self.n_layer = c["n_layer"]
        self.n_head = c["n_head"]
        self.n_embd = c["n_embd"]
        self.n_positions = c["n_positions"]
        self.vocab = c["vocab_size"]
        self.eps = c.get("layer_norm_epsilon", 1e-5)
        self.head_dim = self.n_embd // self.n_head

    def __repr__(self):
        return "GPT2Config(%s)" % ", ".join("%s=%s" % kv for kv in vars(self).items())


class Gpt2:
    def __init__(self, model_dir, dtype=np.float64):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = Config(json.load(f))
        raw = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        # Some checkpoints prefix names with "transformer.".
        self.w = {k[len("transformer."):] if k.startswith("transformer.") else k: v.astype(dtype)
                  for k, v in raw.items()}
        self.dtype = dtype
        self.kv_f16 = False

    def _ln(self, x, name):
        mu = x.mean()
        var = ((x - mu) ** 2).mean()
        return (x - mu) / np.sqrt(var + self.dtype(self.cfg.eps)) * self.w[name + ".weight"] + self.w[name + ".bias"]

    @staticmethod
    def _gelu(u):
        c = u.dtype.type(np.sqrt(2.0 / np.pi))
        return u.dtype.type(0.5) * u * (1 + np.tanh(c * (u + u.dtype.type(0.044715) * u ** 3)))

    def new_cache(self):
        return {"k": [[] for _ in range(self.cfg.n_layer)], "v": [[] for _ in range(self.cfg.n_layer)]}

    def step(self, cache, token):
        c, w = self.cfg, self.w
        p = len(cache["k"][0])
        if p >= c.n_positions:
            raise ValueError("position %d past n_positions %d" % (p, c.n_positions))
        n, H, hd = c.n_embd, c.n_head, c.head_dim
        x = w["wte.weight"][token] + w["wpe.weight"][p]
        for i in range(c.n_layer):
            L = "h.%d." % i
            h = self._ln(x, L + "ln_1")
            qkv = h @ w[L + "attn.c_attn.weight"] + w[L + "attn.c_attn.bias"]
            q, k, v = qkv[:n], qkv[n:2 * n], qkv[2 * n:]
            if self.kv_f16:
                k = k.astype(np.float16).astype(self.dtype)
                v = v.astype(np.float16).astype(self.dtype)
            cache["k"][i].append(k)
            cache["v"][i].append(v)
            K = np.stack(cache["k"][i]).reshape(p + 1, H, hd)
            V = np.stack(cache["v"][i]).reshape(p + 1, H, hd)
            qh = q.reshape(H, hd)
            s = np.einsum("hd,thd->ht", qh, K) / self.dtype(np.sqrt(hd))
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            o = np.einsum("ht,thd->hd", s, V).reshape(n)
            x = x + o @ w[L + "attn.c_proj.weight"] + w[L + "attn.c_proj.bias"]
            h2 = self._ln(x, L + "ln_2")
            u = self._gelu(h2 @ w[L + "mlp.c_fc.weight"] + w[L + "mlp.c_fc.bias"])
            x = x + u @ w[L + "mlp.c_proj.weight"] + w[L + "mlp.c_proj.bias"]
        return self._ln(x, "ln_f") @ w["wte.weight"].T

    def forward_full(self, tokens):
        """Whole sequence at once with a causal mask, no cache: a second code
        path to cross-check step()."""
        c, w = self.cfg, self.w
        T, n, H, hd = len(tokens), c.n_embd, c.n_head, c.head_dim

        def ln(x, name):
            mu = x.mean(axis=1, keepdims=True)
            var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
            return (x - mu) / np.sqrt(var + c.eps) * w[name + ".weight"] + w[name + ".bias"]

        x = w["wte.weight"][np.asarray(tokens)] + w["wpe.weight"][:T]
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        for i in range(c.n_layer):
            L = "h.%d." % i
            qkv = ln(x, L + "ln_1") @ w[L + "attn.c_attn.weight"] + w[L + "attn.c_attn.bias"]
            q = qkv[:, :n].reshape(T, H, hd).transpose(1, 0, 2)
            k = qkv[:, n:2 * n].reshape(T, H, hd).transpose(1, 0, 2)
            v = qkv[:, 2 * n:].reshape(T, H, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=2, keepdims=True))
            s /= s.sum(axis=2, keepdims=True)
            o = (s @ v).transpose(1, 0, 2).reshape(T, n)
            x = x + o @ w[L + "attn.c_proj.weight"] + w[L + "attn.c_proj.bias"]
            u = self._gelu(ln(x, L + "ln_2") @ w[L + "mlp.c_fc.weight"] + w[L + "mlp.c_fc.bias"])
            x = x + u @ w[L + "mlp.c_proj.weight"] + w[L + "mlp.c_proj.bias"]
        return ln(x, "ln_f") @ w["wte.weight"].T


class _FakeGguf:
    """Enough of GGUFFile for tokenize_ref.Tokenizer, from vocab.json + merges.txt."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        tokens = [None] * len(vocab)
        for piece, i in vocab.items():
            tokens[i] = piece
        merges = []
        with open(os.path.join(model_dir, "merges.txt"), encoding="utf-8") as f:
            for k, line in enumerate(f):
                line = line.rstrip("\r\n")
                if line and not (k == 0 and line.startswith("#version")):
                    merges.append(line)
        types = np.ones(len(tokens), np.int32)
        eot = vocab.get("<|endoftext|>")
        if eot is not None:
            types[eot] = 3
        self.metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
                         "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
                         "tokenizer.ggml.token_type": types,
                         "tokenizer.ggml.bos_token_id": eot, "tokenizer.ggml.eos_token_id": eot}


def make_golden(model_dir, out_prefix, prompt=None, prompt_tokens=None, f32_check=True, note=None):
    t0 = time.time()
    name = os.path.basename(out_prefix)
    tok = Tokenizer(_FakeGguf(model_dir)) if os.path.exists(os.path.join(model_dir, "vocab.json")) else None
    if prompt_tokens is None:
        prompt_tokens = tok.encode(prompt, add_bos=False)
    prompt_tokens = [int(t) for t in prompt_tokens]
    n = len(prompt_tokens)
    model = Gpt2(model_dir, np.float64)
    V = model.cfg.vocab
    # Up to 64 greedy tokens, fewer when the context is shorter (the tiny
    # shape has 64 positions): the last token generated needs no position.
    n_gen = min(N_GEN, model.cfg.n_positions - n + 1)
    if n_gen < RECORD_GEN_INDEX + 1:
        raise SystemExit("prompt of %d tokens leaves room for only %d generated tokens (n_positions %d)"
                         % (n, n_gen, model.cfg.n_positions))
    print("[%s] %s" % (name, model.cfg))
    print("[%s] prompt tokens (%d): %s" % (name, n, prompt_tokens))

    logits, gen = run(model, prompt_tokens, n_gen)
    seq = prompt_tokens + gen
    t1 = time.time()
    cross_check_full_recompute(name, model, seq, n, logits, gen)

    positions = sorted(set([0, n // 2, n - 1, n - 1 + (RECORD_GEN_INDEX - 1)]))
    rows = logits[positions].astype("<f4")
    rows.tofile(out_prefix + ".logits.f32")
    gaps = [top2_gap(logits[n - 1 + i]) for i in range(n_gen)]
    gmin = int(np.argmin(gaps))
    st = os.path.join(model_dir, "model.safetensors")
    info = {
        "model_file": "model.safetensors",
        "model_sha256": sha256(st),
        "model_note": note or ("RANDOM weights: tools/reference/make_gpt2.py --shape tiny --dtype f16 "
                               "(deterministic; regenerate, do not commit)"),
        "prompt": prompt,
        "prompt_tokens": prompt_tokens,
        "logit_positions": positions,
        "logit_positions_note": ("absolute positions; 0, len//2 and len-1 are prompt positions, the last "
                                 "is the step whose logits produce greedy token #%d" % RECORD_GEN_INDEX),
        "logits_file": name + ".logits.f32",
        "vocab_size": V,
        "greedy_tokens": gen,
        "greedy_tokens_note": "%d tokens (min(64, n_positions - len(prompt) + 1))" % n_gen,
        "reference": "numpy float64",
        "max_abs_logit": float(np.abs(rows).max()),
        "greedy_top2_gaps": [round(x, 6) for x in gaps],
        "greedy_min_top2_gap": gaps[gmin],
        "greedy_min_top2_gap_step": gmin,
        "config": dict(vars(model.cfg), arch="gpt2"),
    }
    gguf = os.path.join(model_dir, "model.gguf")
    if os.path.exists(gguf):
        # The same weights as llama.cpp's gpt2 GGUF (make_gpt2.py --gguf):
        # the engine must give these goldens from it too.
        info["gguf_file"] = "model.gguf"
        info["gguf_sha256"] = sha256(gguf)
    if tok is not None:
        info["greedy_text"] = tok.decode(gen)
        if prompt is not None:
            info["prompt_pieces"] = [tok.tokens[t] for t in prompt_tokens]
    print("[%s] greedy tokens: %s" % (name, gen))
    print("[%s] min top1-top2 gap over %d greedy steps: %.4g at step %d" % (name, n_gen, gaps[gmin], gmin))

    if f32_check:
        for label, kv16 in (("f32_check", False), ("f32_f16kv_check", True)):
            m32 = Gpt2(model_dir, np.float32)
            m32.kv_f16 = kv16
            l32 = teacher_forced(m32, seq[:-1]).astype(np.float64)
            d = np.abs(l32 - logits)
            row_scale = np.abs(logits).max(axis=1)
            agree = [greedy(l32[n - 1 + i]) == gen[i] for i in range(n_gen)]
            info[label] = {
                "max_abs_diff": float(d.max()),
                "max_abs_diff_stored_rows": float(d[positions].max()),
                "max_rel_diff_vs_row_max_abs": float((d.max(axis=1) / row_scale).max()),
                "greedy_argmax_agree_steps": int(sum(agree)),
            }
            print("[%s] %s: %s" % (name, label, info[label]))

    with open(out_prefix + ".json", "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(" %s: %s" % (json.dumps(k), json.dumps(v, ensure_ascii=False))
                                     for k, v in info.items()) + "\n}\n")
    print("[%s] wrote %s.json / .logits.f32 (%d rows) in %.1fs (+%.1fs checks)"
          % (name, out_prefix, len(positions), t1 - t0, time.time() - t1))
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint directory")
    ap.add_argument("--out", help="output prefix (NAME.json / NAME.logits.f32)")
    ap.add_argument("--prompt")
    ap.add_argument("--prompt-tokens")
    ap.add_argument("--no-f32-check", action="store_true")
    ap.add_argument("--note", help="model_note for the golden (how to regenerate the model)")
    ap.add_argument("--tiny", action="store_true",
                    help="generate the tiny random GPT-2 (with its GGUF) and write "
                         "tests/goldens/gpt2-tiny-random, or gpt2-tiny-sS-random with --scale S")
    ap.add_argument("--scale", type=float, default=1.0, help="with --tiny: make_gpt2.py --scale")
    a = ap.parse_args()
    if a.tiny:
        with tempfile.TemporaryDirectory() as d:
            cmd = ["--shape", "tiny", "--dtype", "f16", "--gguf"]
            name = "gpt2-tiny-random"
            if a.scale != 1.0:
                cmd += ["--scale", "%g" % a.scale]
                name = "gpt2-tiny-s%g-random" % a.scale
            subprocess.run([sys.executable, os.path.join(HERE, "make_gpt2.py")] + cmd + ["--out", d],
                           check=True)
            note = ("RANDOM weights: tools/reference/make_gpt2.py %s --out models/%s "
                    "(deterministic; regenerated by scripts/setup.sh, not committed)"
                    % (" ".join(cmd), name))
            make_golden(d, a.out or os.path.join(REPO, "tests", "goldens", name),
                        prompt=a.prompt or TINY_PROMPT, f32_check=not a.no_f32_check, note=note)
        return
    if not a.model or not a.out:
        ap.error("--model and --out are required (or --tiny)")
    toks = [int(t) for t in a.prompt_tokens.split(",")] if a.prompt_tokens else None
    if toks is None and a.prompt is None:
        ap.error("--prompt or --prompt-tokens")
    make_golden(a.model, a.out, prompt=a.prompt, prompt_tokens=toks, f32_check=not a.no_f32_check,
                note=a.note)


if __name__ == "__main__":
    main()
