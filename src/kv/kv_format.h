// K/V element formats: how one token's K (or V) vector of one head is
// stored in each KvPrecision, and the conversions that write it. The cache
// (kv/kv_cache.h) lays rows out with these sizes; the attention kernels
// (ops/attention.h) read rows through these definitions.
//
//   f32   head_dim floats
//   f16   head_dim IEEE fp16 values (F32ToF16Row)
//   q8_0  head_dim int8 codes + one f16 scale per block of 32 (QuantizeKvQ8)
//   q4_0  head_dim / 2 bytes of packed 4-bit codes + one f16 scale per block
//         of 32 (QuantizeKvQ4)
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvinfer/kvinfer.h"

namespace kvinfer {

// What the cache needs of a model's attention: K/V vectors per token.
struct KvShape {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// Bytes of one token's K (or V) elements of one head, without the q8_0 /
// q4_0 scales.
constexpr size_t KvCodeRowBytes(KvPrecision p, int head_dim) {
  const size_t hd = static_cast<size_t>(head_dim);
  switch (p) {
    case KvPrecision::kF16: return 2 * hd;
    case KvPrecision::kQ8_0: return hd;
    case KvPrecision::kQ4_0: return hd / 2;
    case KvPrecision::kF32: break;
  }
  return 4 * hd;
}

// Bytes of one token's K (or V) vector of one head: its elements, and for
// q8_0 / q4_0 their f16 scales (one per 32 elements).
constexpr size_t KvRowBytes(KvPrecision p, int head_dim) {
  const bool scaled = p == KvPrecision::kQ8_0 || p == KvPrecision::kQ4_0;
  return KvCodeRowBytes(p, head_dim) + (scaled ? 2 * ((static_cast<size_t>(head_dim) + 31) / 32) : 0);
}

// K and V of one token across all layers and KV heads.
inline int64_t KvBytesPerToken(const KvShape& s, KvPrecision p) {
  return 2 * static_cast<int64_t>(s.n_layers) * s.n_kv_heads *
         static_cast<int64_t>(KvRowBytes(p, s.head_dim));
}

// out[n] = x[n] as IEEE fp16, rounded to nearest even: F32ToF16's bits for
// every input but NaN (a NaN stays a NaN; its payload may differ). Writes
// the rows of an f16 KV cache (F16C where the target has it).
void F32ToF16Row(const float* x, int64_t n, uint16_t* out);

// q8_0 K/V rows: a head's vector x[head_dim] in blocks of kKvQ8Block
// elements (the last one shorter when head_dim is not a multiple), each
// block b stored as int8 codes c and an f16 scale d_b = f16(max|x_b| / 127),
// with x_i ~= d_b * c_i and c_i = round(x_i / d_b) (0 for an all-zero block).
constexpr int kKvQ8Block = 32;
constexpr int KvQ8Blocks(int head_dim) { return (head_dim + kKvQ8Block - 1) / kKvQ8Block; }
// codes[n], scales[KvQ8Blocks(n)] (f16 bits).
void QuantizeKvQ8(const float* x, int n, int8_t* codes, uint16_t* scales);

// q4_0 K/V rows: the same blocks, GGML's Q4_0 rounding: with x_m the
// block's element of largest magnitude, d_b = f16(x_m / -8) (negative when
// x_m > 0) and codes c_i = clamp(round(x_i / d_b), -8, 7), so x_m is exact
// and every other element is off by at most half a step, |x_m| / 16, but
// for elements of the opposite sign beyond 15/16 |x_m|, clamped to code 7:
// at most a step, |x_m| / 8. A row is n / 2
// bytes (n even), in slices of 64 elements (the last one r = n mod 64 when
// that is not 0) of 32 (r / 2) bytes: byte j of a slice holds the slice's
// code j + 8 in its low nibble and code j + 32 (j + r / 2) + 8 in its high
// one, so a slice unpacks in order by a mask and a shift, no shuffle.
// packed[n / 2], scales[KvQ8Blocks(n)] (f16 bits).
constexpr int kKvQ4Slice = 64;
void QuantizeKvQ4(const float* x, int n, uint8_t* packed, uint16_t* scales);
// Where element i of a packed row of n elements lives: its byte, and the
// shift of its nibble in it (0 low, 4 high).
struct KvQ4Place {
  int byte, shift;
};
inline KvQ4Place KvQ4PlaceOf(int n, int i) {
  const int s = i / kKvQ4Slice * kKvQ4Slice;
  const int half = (n - s < kKvQ4Slice ? n - s : kKvQ4Slice) / 2;
  const int k = i - s;
  return {s / 2 + k % half, k < half ? 0 : 4};
}
// Code i in [-8, 7] of a packed row of n elements.
inline int KvQ4Code(const uint8_t* packed, int n, int i) {
  const KvQ4Place at = KvQ4PlaceOf(n, i);
  return (packed[at.byte] >> at.shift & 0x0F) - 8;
}

}  // namespace kvinfer
