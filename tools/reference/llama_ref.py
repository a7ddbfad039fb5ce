"""Independent NumPy reference of the Llama forward pass (GGUF weights).

Computation (per token at absolute position p; x is a d_model vector):
  x = token_embd[token]
  for each layer:
    h = rmsnorm(x) * attn_norm
    q = Wq h, k = Wk h, v = Wv h          (W stored as (out, in), so y = W @ x)
    rope(q), rope(k)                     GGML "normal" mode: adjacent pairs
    append k, v to the layer's KV cache
    per query head h: kv head = h // (n_head / n_kv)
       a = softmax(q.k_j / sqrt(head_dim), j <= p) ; o = sum_j a_j v_j
    x = x + Wo o
    h = rmsnorm(x) * ffn_norm
    x = x + Wdown (silu(Wgate h) * (Wup h))
  logits = Wout (rmsnorm(x) * output_norm)     Wout = output.weight or token_embd

Activation quantization (int8_activations=True, the engine's default): every
product W x whose W is stored as Q4_0, Q4_1 or Q8_0 uses instead of x its
int8 quantization per 32-element block, q8(x) = d * q (quants.py
quantize_activations_q8, bit-exact with src/ops/matmul_int8.h when given the
same float32 x). Then W q8(x) is computed exactly (in float64) from the
dequantized weights: the engine's integer block sums are exact too, so the
remaining difference is the engine's f32 rounding plus the rare code that
rounds the other way because its x differs from this float64 x in the last
f32 bit.

The dtype of all arithmetic is a constructor argument: float64 is the
reference (its own rounding error, ~1e-13 relative, is negligible next to
the ~1e-6 error of any f32 engine, so differences seen by a test are the
engine's); float32 is used only to measure how far an honest f32
implementation drifts, to choose test tolerances.
"""

import math

import numpy as np

from gguf_reader import GGUFFile
from quants import Q4_0, Q4_1, Q8_0, quantize_activations_q8

INT8_ACTIVATION_TYPES = (Q4_0, Q4_1, Q8_0)


class Config:
    def __init__(self, g):
        arch = g.get("general.architecture", "llama")
        if arch != "llama":
            raise ValueError("architecture %r is not llama" % arch)

        def req(key):
            v = g.get("llama." + key)
            if v is None:
                raise ValueError("missing metadata llama.%s" % key)
            return v

        self.n_layers = int(req("block_count"))
        self.d_model = int(req("embedding_length"))
        self.d_ff = int(req("feed_forward_length"))
        self.n_heads = int(req("attention.head_count"))
        self.n_kv_heads = int(g.get("llama.attention.head_count_kv", self.n_heads))
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError("bad head counts %d/%d for d_model %d"
                             % (self.n_heads, self.n_kv_heads, self.d_model))
        self.head_dim = self.d_model // self.n_heads
        self.rope_dims = int(g.get("llama.rope.dimension_count", self.head_dim))
        if self.rope_dims > self.head_dim or self.rope_dims % 2:
            raise ValueError("bad rope_dims %d for head_dim %d" % (self.rope_dims, self.head_dim))
        self.rope_theta = float(g.get("llama.rope.freq_base", 10000.0))
        self.eps = float(req("attention.layer_norm_rms_epsilon"))
        self.vocab = int(g.tensors["token_embd.weight"].ne[1])

    def __repr__(self):
        return "Config(%s)" % ", ".join("%s=%s" % kv for kv in vars(self).items())


class Llama:
    def __init__(self, path_or_gguf, dtype=np.float64, kv_f16=False, int8_activations=True):
        """kv_f16: round K and V to float16 when they enter the cache (only
        in step(); used to measure what an f16 KV cache costs).
        int8_activations: quantize the activations of Q4_0/Q4_1/Q8_0 matrix
        products as the engine does by default (False: its --f32-activations)."""
        g = path_or_gguf if isinstance(path_or_gguf, GGUFFile) else GGUFFile(path_or_gguf)
        self.g = g
        self.dtype = np.dtype(dtype)
        self.kv_f16 = kv_f16
        self.int8_activations = int8_activations
        self.cfg = c = Config(g)

        def q8(name):
            return g.tensors[name].ggml_type in INT8_ACTIVATION_TYPES

        def w(name, shape):
            if name not in g.tensors:
                raise ValueError("missing tensor %s" % name)
            t = g.tensor(name, self.dtype)
            if t.shape != shape:
                raise ValueError("tensor %s has shape %s, expected %s" % (name, t.shape, shape))
            return t

        D, F, hd = c.d_model, c.d_ff, c.head_dim
        self.tok_embd = w("token_embd.weight", (c.vocab, D))
        self.out_norm = w("output_norm.weight", (D,))
        self.tied = "output.weight" not in g.tensors
        self.out = self.tok_embd if self.tied else w("output.weight", (c.vocab, D))
        self.out_q8 = q8("token_embd.weight" if self.tied else "output.weight")
        self.layers = []
        for i in range(c.n_layers):
            p = "blk.%d." % i
            self.layers.append(dict(
                attn_norm=w(p + "attn_norm.weight", (D,)),
                wq=w(p + "attn_q.weight", (c.n_heads * hd, D)),
                wk=w(p + "attn_k.weight", (c.n_kv_heads * hd, D)),
                wv=w(p + "attn_v.weight", (c.n_kv_heads * hd, D)),
                wo=w(p + "attn_output.weight", (D, c.n_heads * hd)),
                ffn_norm=w(p + "ffn_norm.weight", (D,)),
                gate=w(p + "ffn_gate.weight", (F, D)),
                up=w(p + "ffn_up.weight", (F, D)),
                down=w(p + "ffn_down.weight", (D, F)),
            ))
            names = dict(wq="attn_q", wk="attn_k", wv="attn_v", wo="attn_output",
                         gate="ffn_gate", up="ffn_up", down="ffn_down")
            self.layers[-1]["q8"] = {k for k, v in names.items() if q8(p + v + ".weight")}
        # RoPE inverse frequencies theta^(-2i/rope_dims), i < rope_dims/2,
        # kept in float64 here and cast to the model dtype when used.
        i = np.arange(c.rope_dims // 2, dtype=np.float64)
        self.inv_freq = c.rope_theta ** (-2.0 * i / c.rope_dims)

    # ------------------------------------------------------------ pieces
    def act(self, x, quantized):
        """What a matrix product sees of activations x (..., in)."""
        if quantized and self.int8_activations:
            return quantize_activations_q8(x).astype(self.dtype)
        return x

    def lin(self, L, key, x):
        """x (..., in) -> (..., out) = x W^T for the layer's matrix `key`."""
        return self.act(x, key in L["q8"]) @ L[key].T

    def rmsnorm(self, x, w):
        """x: (..., D). y = x / sqrt(mean(x^2) + eps) * w."""
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + self.dtype.type(self.cfg.eps))) * w

    def rope(self, x, positions):
        """x: (T, n_heads, head_dim), positions: (T,) ints. Rotates pairs
        (x[2i], x[2i+1]) for i < rope_dims/2 of every head; rest untouched."""
        c = self.cfg
        # Angles in the model dtype: in float32 this mimics an f32 engine.
        ang = (np.asarray(positions, dtype=self.dtype)[:, None]
               * self.inv_freq.astype(self.dtype)[None, :])           # (T, R/2)
        cos = np.cos(ang)[:, None, :]
        sin = np.sin(ang)[:, None, :]
        y = x.copy()
        x0 = x[..., 0:c.rope_dims:2]
        x1 = x[..., 1:c.rope_dims:2]
        y[..., 0:c.rope_dims:2] = x0 * cos - x1 * sin
        y[..., 1:c.rope_dims:2] = x0 * sin + x1 * cos
        return y

    @staticmethod
    def silu(x):
        return x / (1.0 + np.exp(-x))

    def ffn(self, L, x):
        h = self.rmsnorm(x, L["ffn_norm"])
        return self.lin(L, "down", self.silu(self.lin(L, "gate", h)) * self.lin(L, "up", h))

    def logits_of(self, x):
        return self.act(self.rmsnorm(x, self.out_norm), self.out_q8) @ self.out.T

    # ------------------------------------------------- KV-cache path
    def new_cache(self):
        c = self.cfg
        # Per layer: list of K and V rows, each (n_kv_heads, head_dim); grown per step.
        return dict(pos=0, k=[[] for _ in range(c.n_layers)], v=[[] for _ in range(c.n_layers)])

    def step(self, cache, token):
        """Processes one token at position cache['pos'] using and appending to
        the KV cache. Returns logits (vocab,)."""
        c = self.cfg
        pos = cache["pos"]
        hd, nh, nkv = c.head_dim, c.n_heads, c.n_kv_heads
        group = nh // nkv
        scale = self.dtype.type(1.0 / math.sqrt(hd))
        x = self.tok_embd[token].copy()
        for li, L in enumerate(self.layers):
            h = self.rmsnorm(x, L["attn_norm"])
            q = self.lin(L, "wq", h).reshape(1, nh, hd)
            k = self.lin(L, "wk", h).reshape(1, nkv, hd)
            v = self.lin(L, "wv", h).reshape(nkv, hd)
            q = self.rope(q, [pos])[0]
            k = self.rope(k, [pos])[0]
            if self.kv_f16:
                k = k.astype(np.float16).astype(self.dtype)
                v = v.astype(np.float16).astype(self.dtype)
            cache["k"][li].append(k)
            cache["v"][li].append(v)
            K = np.stack(cache["k"][li])          # (pos+1, nkv, hd)
            V = np.stack(cache["v"][li])
            o = np.empty((nh, hd), dtype=self.dtype)
            for head in range(nh):
                kv = head // group
                s = (K[:, kv, :] @ q[head]) * scale   # (pos+1,)
                s = np.exp(s - s.max())
                a = s / s.sum()
                o[head] = a @ V[:, kv, :]
            x = x + self.lin(L, "wo", o.reshape(-1))
            x = x + self.ffn(L, x)
        cache["pos"] = pos + 1
        return self.logits_of(x)

    # ------------------------------------------ no-cache full recompute
    def forward_full(self, tokens):
        """Whole sequence at once, causal mask, no cache. Returns (T, vocab).
        Independent code path used to cross-check step()."""
        c = self.cfg
        T = len(tokens)
        hd, nh, nkv = c.head_dim, c.n_heads, c.n_kv_heads
        pos = np.arange(T)
        x = self.tok_embd[np.asarray(tokens)]               # (T, D)
        mask = np.triu(np.full((T, T), -np.inf, dtype=self.dtype), k=1)
        for L in self.layers:
            h = self.rmsnorm(x, L["attn_norm"])
            q = self.rope(self.lin(L, "wq", h).reshape(T, nh, hd), pos)
            k = self.rope(self.lin(L, "wk", h).reshape(T, nkv, hd), pos)
            v = self.lin(L, "wv", h).reshape(T, nkv, hd)
            k = np.repeat(k, nh // nkv, axis=1)             # (T, nh, hd): head h -> kv h//group
            v = np.repeat(v, nh // nkv, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / self.dtype.type(math.sqrt(hd)) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            a = s / s.sum(axis=-1, keepdims=True)
            o = np.einsum("hts,shd->thd", a, v).reshape(T, nh * hd)
            x = x + self.lin(L, "wo", o)
            x = x + self.ffn(L, x)
        return self.logits_of(x)


def greedy(logits):
    """argmax, lowest id on exact ties (np.argmax returns the first max)."""
    return int(np.argmax(logits))


def top2_gap(logits):
    s = np.sort(np.asarray(logits, dtype=np.float64))
    return float(s[-1] - s[-2])


def run(model, prompt_tokens, n_gen):
    """Prompt through the KV cache one token at a time, then n_gen greedy
    tokens (never stopping at EOS). Returns (logits, generated) where
    logits[p] are the logits computed at absolute position p, for
    p = 0 .. len(prompt) + n_gen - 2 (the logits at p = n - 1 + i produce
    generated token i)."""
    cache = model.new_cache()
    logits = [model.step(cache, t) for t in prompt_tokens]
    gen = []
    for i in range(n_gen):
        tok = greedy(logits[-1])
        gen.append(tok)
        if i + 1 < n_gen:
            logits.append(model.step(cache, tok))
    return np.stack(logits), gen


def teacher_forced(model, tokens):
    """Logits at every position of `tokens`, via the KV cache."""
    cache = model.new_cache()
    return np.stack([model.step(cache, t) for t in tokens])
