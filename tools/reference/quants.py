"""GGML tensor types: byte sizes, dequantization and (reference) quantization.

Written from the block layouts, independently of the C++ engine:
  F32   : 4-byte IEEE float
  F16   : 2-byte IEEE half
  BF16  : upper 16 bits of an IEEE float
  Q8_0  : blocks of 32: fp16 d, int8 qs[32];                    x = d * q
  Q4_0  : blocks of 32: fp16 d, u8 qs[16];                      x = d * (q - 8)
  Q4_1  : blocks of 32: fp16 d, fp16 m, u8 qs[16];              x = d * q + m
For Q4_*: element j (j < 16) is the low nibble of qs[j], element j + 16 the
high nibble of qs[j].  Dequantized values are returned in float64 (every
value above is exactly representable there: fp16 * small int is exact).
"""

import numpy as np

# type id -> (name, block_size (elements), type_size (bytes per block))
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    8: ("Q8_0", 32, 34),
    30: ("BF16", 1, 2),
}
F32, F16, Q4_0, Q4_1, Q8_0, BF16 = 0, 1, 2, 3, 8, 30
TYPE_BY_NAME = {v[0]: k for k, v in GGML_TYPES.items()}


def tensor_nbytes(ggml_type, ne):
    name, bs, ts = GGML_TYPES[ggml_type]
    n = 1
    for d in ne:
        n *= int(d)
    if ne and int(ne[0]) % bs:
        raise ValueError("%s tensor: ne[0]=%d not a multiple of block size %d" % (name, ne[0], bs))
    return n // bs * ts


def _blocks(raw, n, bs, ts):
    nb = n // bs
    if raw.size != nb * ts:
        raise ValueError("raw size %d != %d blocks x %d bytes" % (raw.size, nb, ts))
    return np.ascontiguousarray(raw).reshape(nb, ts)


def _f16(b, col):
    """fp16 at byte column `col` of every block row -> float64 column vector."""
    return b[:, col:col + 2].copy().view("<f2").astype(np.float64)


def _nibbles(qs):
    """qs: (nb, 16) uint8 -> (nb, 32) ints, low nibbles then high nibbles."""
    lo = (qs & 0x0F).astype(np.int64)
    hi = (qs >> 4).astype(np.int64)
    return np.concatenate([lo, hi], axis=1)


def dequantize(ggml_type, raw, n):
    """raw: uint8 array with the tensor's bytes; n: element count.
    Returns a flat float64 array of n values."""
    raw = np.asarray(raw, dtype=np.uint8)
    if ggml_type == F32:
        return raw.view("<f4").astype(np.float64)
    if ggml_type == F16:
        return raw.view("<f2").astype(np.float64)
    if ggml_type == BF16:
        u = raw.view("<u2").astype(np.uint32) << 16
        return u.view("<f4").astype(np.float64)
    if ggml_type == Q8_0:
        b = _blocks(raw, n, 32, 34)
        d = _f16(b, 0)
        q = b[:, 2:34].copy().view(np.int8).astype(np.float64)
        return (d * q).reshape(-1)
    if ggml_type == Q4_0:
        b = _blocks(raw, n, 32, 18)
        d = _f16(b, 0)
        q = _nibbles(b[:, 2:18]).astype(np.float64) - 8.0
        return (d * q).reshape(-1)
    if ggml_type == Q4_1:
        b = _blocks(raw, n, 32, 20)
        d = _f16(b, 0)
        m = _f16(b, 2)
        q = _nibbles(b[:, 4:20]).astype(np.float64)
        return (d * q + m).reshape(-1)
    raise ValueError("unsupported ggml type %d" % ggml_type)


# ------------------------------------------------- activation quantization

def quantize_activations_q8(x):
    """The engine's int8 activations (src/ops/matmul_int8.h) for x (..., n),
    n a multiple of 32: per 32-block, in float32 with IEEE rounding,
      d = max|x| / 127,  id = 1 / d (0 if d == 0),  q = rint(x * id)
    (rint: ties to even). Returns d * q as float64 (exact), shaped like x.
    Given the engine's float32 x, d and q are bit-identical to the engine's."""
    x32 = np.asarray(x, dtype=np.float32)
    if x32.shape[-1] % 32:
        raise ValueError("activation length %d not a multiple of 32" % x32.shape[-1])
    b = x32.reshape(-1, 32)
    d = (np.abs(b).max(axis=1) / np.float32(127.0)).astype(np.float32)
    safe = np.where(d != 0, d, np.float32(1.0)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1.0) / safe, np.float32(0.0)).astype(np.float32)
    q = np.clip(np.rint((b * inv[:, None]).astype(np.float32)), -128, 127)
    return (d.astype(np.float64)[:, None] * q.astype(np.float64)).reshape(x32.shape)


# ---------------------------------------------------------------- quantizers
# Used only to write the random test model; the reference always dequantizes
# exactly what is stored, so the quantizer's rounding choices do not matter.

def quantize(ggml_type, x):
    """x: float array (any shape, last dim multiple of block size).
    Returns raw bytes (uint8 array)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if ggml_type == F32:
        return x.astype("<f4").view(np.uint8)
    if ggml_type == F16:
        return x.astype("<f2").view(np.uint8)
    if ggml_type == BF16:
        u = x.view(np.uint32)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")  # round-to-nearest-even
        return r.view(np.uint8)
    xb = x.reshape(-1, 32)
    nb = xb.shape[0]
    if ggml_type == Q8_0:
        amax = np.abs(xb).max(axis=1)
        d = (amax / 127.0).astype(np.float32)
        inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0).astype(np.float32)
        q = np.clip(np.rint(xb * inv[:, None]), -127, 127).astype(np.int8)
        out = np.zeros((nb, 34), np.uint8)
        out[:, 0:2] = d.astype("<f2").reshape(-1, 1).view(np.uint8)
        out[:, 2:34] = q.view(np.uint8)
        return out.reshape(-1)
    if ggml_type == Q4_0:
        idx = np.abs(xb).argmax(axis=1)
        mx = xb[np.arange(nb), idx]                      # signed value of max |x|
        d = (mx / -8.0).astype(np.float32)
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0.0).astype(np.float32)
        q = np.minimum(15, np.trunc(xb * inv[:, None] + 8.5)).astype(np.uint8)
        out = np.zeros((nb, 18), np.uint8)
        out[:, 0:2] = d.astype("<f2").reshape(-1, 1).view(np.uint8)
        out[:, 2:18] = q[:, :16] | (q[:, 16:] << 4)
        return out.reshape(-1)
    if ggml_type == Q4_1:
        mn = xb.min(axis=1)
        mx = xb.max(axis=1)
        d = ((mx - mn) / 15.0).astype(np.float32)
        inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0.0).astype(np.float32)
        q = np.clip(np.trunc((xb - mn[:, None]) * inv[:, None] + 0.5), 0, 15).astype(np.uint8)
        out = np.zeros((nb, 20), np.uint8)
        out[:, 0:2] = d.astype("<f2").reshape(-1, 1).view(np.uint8)
        out[:, 2:4] = mn.astype("<f2").reshape(-1, 1).view(np.uint8)
        out[:, 4:20] = q[:, :16] | (q[:, 16:] << 4)
        return out.reshape(-1)
    raise ValueError("unsupported ggml type %d" % ggml_type)


if __name__ == "__main__":
    # Self-check: quantize/dequantize round trip error bounds.
    rng = np.random.default_rng(0)
    x = rng.standard_normal(32 * 64).astype(np.float32)
    for t in (F32, F16, BF16, Q8_0, Q4_0, Q4_1):
        raw = quantize(t, x)
        assert raw.size == tensor_nbytes(t, (x.size,)), GGML_TYPES[t]
        y = dequantize(t, raw, x.size)
        err = np.abs(y - x).reshape(-1, 32).max(axis=1)
        scale = np.abs(x).reshape(-1, 32).max(axis=1)
        rel = (err / scale).max()
        print("%-5s max err / block amax = %.4g" % (GGML_TYPES[t][0], rel))
        bound = {F32: 0, F16: 1e-3, BF16: 1e-2, Q8_0: 0.5 / 127 + 1e-3, Q4_0: 1 / 8 + 1e-3,
                 Q4_1: 1 / 15 + 1e-3}[t]
        assert rel <= bound, (GGML_TYPES[t][0], rel)
    # Hand-built Q4_0 block: d = 1, nibble order check.
    blk = np.zeros(18, np.uint8)
    blk[0:2] = np.array([1.0], "<f2").view(np.uint8)
    blk[2:18] = np.arange(16, dtype=np.uint8) | (np.uint8(15) << 4)
    y = dequantize(Q4_0, blk, 32)
    assert list(y[:16]) == [j - 8 for j in range(16)] and list(y[16:]) == [7] * 16
    # Activation quantization: ties to even, zero blocks, error <= d / 2.
    a = np.zeros(64, np.float32)
    a[:5] = [127.0, 2.5, 3.5, -2.5, 126.5]            # d = 1: exact ties
    qa = quantize_activations_q8(a)
    assert list(qa[:5]) == [127.0, 2.0, 4.0, -2.0, 126.0] and not qa[32:].any(), qa[:5]
    xa = rng.standard_normal((3, 96)).astype(np.float32)
    err = np.abs(quantize_activations_q8(xa) - xa).reshape(-1, 32).max(axis=1)
    assert (err <= np.abs(xa).reshape(-1, 32).max(axis=1) / 127 / 2 * (1 + 1e-6)).all()
    print("quants self-check OK")
