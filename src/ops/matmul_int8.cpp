// The int8-activation MatMul: formula, layout and kernels are described in
// matmul_int8.h. Three kernels compute that same formula: portable scalar
// code, AVX2 (8 rows per tile, vpmaddubsw) and AVX-512 VNNI (16 rows per
// tile, vpdpbusd). The SIMD kernels are compiled with target attributes and
// chosen at run time (__builtin_cpu_supports), so no -march flag is needed.

#include "ops/matmul_int8.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/matmul_scratch.h"
#include "ops/ops.h"

#if defined(__x86_64__) || defined(__i386__)
#define KVINFER_INT8_X86 1
// GCC 12 reports the AVX-512 intrinsics' own _mm512_undefined_*() operands as
// uninitialized (a false positive in its headers, inlined here).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#else
#define KVINFER_INT8_X86 0
#endif

namespace kvinfer::ops {

namespace int8 {
namespace {

constexpr size_t kBlock = 32;  // elements per activation / weight block

// Byte layout of one weight block.
template <DType kType>
struct Blk;
template <>
struct Blk<DType::kQ4_0> {
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static constexpr size_t kQs = offsetof(BlockQ4_0, qs);
  static constexpr bool kNibbles = true;
  static constexpr bool kMin = false;
};
template <>
struct Blk<DType::kQ4_1> {
  static constexpr size_t kBytes = sizeof(BlockQ4_1);
  static constexpr size_t kQs = offsetof(BlockQ4_1, qs);
  static constexpr bool kNibbles = true;
  static constexpr bool kMin = true;
};
template <>
struct Blk<DType::kQ8_0> {
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static constexpr size_t kQs = offsetof(BlockQ8_0, qs);
  static constexpr bool kNibbles = false;
  static constexpr bool kMin = false;
};

uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

int32_t Load32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The quantized activations of one call. `bias` is what the SIMD kernels
// start each block's integer sum at: their codes are offset (Q4_0 nibbles
// are c + 8, VNNI's Q8_0 codes are c + 128) and bias = -offset * sum.
struct Acts {
  const int8_t* q;      // [n, cols]
  const float* d;       // [n, blocks]
  const float* s;       // [n, blocks]
  const int32_t* bias;  // [n, blocks]
  size_t cols;
  size_t blocks;
};

// ---------------------------------------------------------------------------
// Quantizers (the formula of matmul_int8.h; all give the same bits).

int8_t RoundToInt8(float v) {
  const float r = std::nearbyint(v);  // default rounding mode: half to even
  if (r >= 127.0f) return 127;
  if (r >= -128.0f) return static_cast<int8_t>(r);
  return -128;  // also NaN (as cvtps + saturating packs give)
}

void QuantizeBlockScalar(const float* x, int8_t* q, float* d_out, float* s_out, int32_t* sum_out) {
  float amax = 0.0f;
  for (size_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int32_t sum = 0;
  for (size_t j = 0; j < kBlock; ++j) {
    q[j] = RoundToInt8(x[j] * id);
    sum += q[j];
  }
  *d_out = d;
  *s_out = d * static_cast<float>(sum);
  *sum_out = sum;
}

#if KVINFER_INT8_X86
#define KVINFER_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define KVINFER_TARGET_VNNI \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

KVINFER_TARGET_AVX2 void QuantizeBlockAvx2(const float* x, int8_t* q, float* d_out, float* s_out,
                                           int32_t* sum_out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int c = 0; c < 4; ++c) {
    v[c] = _mm256_loadu_ps(x + 8 * c);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[c]));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float d = _mm_cvtss_f32(m4) / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m256 idv = _mm256_set1_ps(id);
  __m256i qi[4];
  for (int c = 0; c < 4; ++c) qi[c] = _mm256_cvtps_epi32(_mm256_mul_ps(v[c], idv));
  // Saturating packs: 32 -> 16 -> 8 bits, then undo the in-lane interleave.
  const __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]);
  const __m256i p16b = _mm256_packs_epi32(qi[2], qi[3]);
  const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
  // Sum of the (saturated) codes: sign-extend to 16 bits and add pairs.
  const __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(ordered));
  const __m256i hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(ordered, 1));
  const __m256i s32 = _mm256_madd_epi16(_mm256_add_epi16(lo, hi), _mm256_set1_epi16(1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
  const int32_t sum = _mm_cvtsi128_si32(s4);
  *d_out = d;
  *s_out = d * static_cast<float>(sum);
  *sum_out = sum;
}

KVINFER_TARGET_VNNI void QuantizeBlockAvx512(const float* x, int8_t* q, float* d_out, float* s_out,
                                             int32_t* sum_out) {
  const __m512 v0 = _mm512_loadu_ps(x);
  const __m512 v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 idv = _mm512_set1_ps(id);
  const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
  const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
  const __m128i b0 = _mm512_cvtsepi32_epi8(q0);
  const __m128i b1 = _mm512_cvtsepi32_epi8(q1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), b0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), b1);
  // Sum of the saturated codes.
  const __m512i s = _mm512_add_epi32(_mm512_cvtepi8_epi32(b0), _mm512_cvtepi8_epi32(b1));
  const int32_t sum = _mm512_reduce_add_epi32(s);
  *d_out = d;
  *s_out = d * static_cast<float>(sum);
  *sum_out = sum;
}
#endif  // KVINFER_INT8_X86

using QuantizeBlockFn = void (*)(const float*, int8_t*, float*, float*, int32_t*);

QuantizeBlockFn QuantizerFor(Isa isa) {
#if KVINFER_INT8_X86
  switch (isa) {
    case Isa::kScalar:
      return QuantizeBlockScalar;
    case Isa::kAvx2:
    case Isa::kAvx512:
      return QuantizeBlockAvx2;
    case Isa::kAvx512Vnni:
      return QuantizeBlockAvx512;
  }
#else
  (void)isa;
#endif
  return QuantizeBlockScalar;
}

// Tokens [t0, t1) of x[*, cols].
void QuantizeTokens(QuantizeBlockFn fn, const float* x, int64_t t0, int64_t t1, size_t cols,
                    int8_t* q, float* d, float* s, int32_t* sum) {
  const size_t blocks = cols / kBlock;
  for (size_t t = static_cast<size_t>(t0); t < static_cast<size_t>(t1); ++t) {
    for (size_t b = 0; b < blocks; ++b) {
      const size_t k = t * blocks + b;
      fn(x + t * cols + b * kBlock, q + t * cols + b * kBlock, d + k, s + k, sum + k);
    }
  }
}

// ---------------------------------------------------------------------------
// Scalar kernel: the formula written out, one output at a time.

template <DType kType>
int32_t Code(const uint8_t* blk, size_t j) {
  const uint8_t* qs = blk + Blk<kType>::kQs;
  if constexpr (kType == DType::kQ8_0) {
    return static_cast<int8_t>(qs[j]);
  } else {
    const int32_t nib = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    return kType == DType::kQ4_0 ? nib - 8 : nib;
  }
}

template <DType kType>
void RowsScalar(const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
                int64_t r_end) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const uint8_t* row = w.row(r);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.q + static_cast<size_t>(t) * a.cols;
      const size_t tb = static_cast<size_t>(t) * a.blocks;
      float acc = 0.0f;
      for (size_t b = 0; b < a.blocks; ++b) {
        const uint8_t* blk = row + b * Blk<kType>::kBytes;
        int32_t isum = 0;
        for (size_t j = 0; j < kBlock; ++j) isum += Code<kType>(blk, j) * xq[b * kBlock + j];
        const float scale = F16ToF32(Load16(blk)) * a.d[tb + b];
        acc = std::fma(scale, static_cast<float>(isum), acc);
        if constexpr (Blk<kType>::kMin) acc = std::fma(F16ToF32(Load16(blk + 2)), a.s[tb + b], acc);
      }
      y[static_cast<size_t>(t * w.rows + r)] = acc;
    }
  }
}

// Rows [r0, r0 + kRows) of w copied into a zero-padded tile when fewer than
// kRows remain, so that every tile has kRows rows at a uniform stride. Zero
// bytes decode to scale 0; their outputs are never stored.
const uint8_t* TileBase(const WeightView& w, int64_t r0, int64_t r_end, int rows_per_tile,
                        std::vector<uint8_t>& pad, int* valid) {
  const int64_t left = r_end - r0;
  if (left >= rows_per_tile) {
    *valid = rows_per_tile;
    return w.row(r0);
  }
  *valid = static_cast<int>(left);
  pad.assign(w.row_bytes * static_cast<size_t>(rows_per_tile), 0);
  for (int64_t r = 0; r < left; ++r) std::memcpy(&pad[r * w.row_bytes], w.row(r0 + r), w.row_bytes);
  return pad.data();
}

// ---------------------------------------------------------------------------
// The packed layout (matmul_int8.h): per 16-row tile, every block's codes in
// the order the VNNI kernel's registers hold them, then the blocks' scales.

struct PackedLayout {
  size_t code_bytes;  // per block: 4 (Q4) or 8 (Q8_0) chunks of 64 bytes
  size_t scales;      // offset of the d scales in a tile (blocks x 32 bytes)
  size_t mins;        // offset of the m scales (Q4_1)
  size_t tile_bytes;  // tile stride, a multiple of 64
};

PackedLayout LayoutOf(DType type, size_t blocks) {
  PackedLayout l{};
  l.code_bytes = type == DType::kQ8_0 ? 512 : 256;
  l.scales = blocks * l.code_bytes;
  l.mins = l.scales + blocks * 32;
  const size_t end = type == DType::kQ4_1 ? l.mins + blocks * 32 : l.mins;
  l.tile_bytes = (end + 63) / 64 * 64;
  return l;
}

template <DType kType>
void PackTile(const WeightView& w, int64_t r0, const PackedLayout& l, uint8_t* tile) {
  using L = Blk<kType>;
  const size_t blocks = static_cast<size_t>(w.cols) / kBlock;
  const int valid = static_cast<int>(std::min<int64_t>(16, w.rows - r0));
  for (int i = 0; i < valid; ++i) {
    const uint8_t* row = w.row(r0 + i);
    for (size_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = row + b * L::kBytes;
      uint8_t* codes = tile + b * l.code_bytes;
      for (size_t c = 0; c < l.code_bytes / 64; ++c) {
        for (int j = 0; j < 4; ++j) {
          uint8_t v = blk[L::kQs + 4 * c + j];
          if constexpr (!L::kNibbles) v ^= 0x80;  // c + 128: vpdpbusd's unsigned operand
          codes[c * 64 + static_cast<size_t>(i) * 4 + j] = v;
        }
      }
      std::memcpy(tile + l.scales + b * 32 + i * 2, blk, 2);
      if constexpr (L::kMin) std::memcpy(tile + l.mins + b * 32 + i * 2, blk + 2, 2);
    }
  }
}

#if KVINFER_INT8_X86
// ---------------------------------------------------------------------------
// AVX-512 VNNI: 16 rows per tile, lane i = row i.

// o[k] lane i = dword k of the 16 bytes at p + i * rb (i < 16, k < 4). z[j]
// holds rows j, 4 + j, 8 + j, 12 + j in its 128-bit lanes; the 4 x 4 dword
// transpose within each 128-bit lane then puts row 4L + j in lane 4L + j.
KVINFER_TARGET_VNNI inline void Transpose16(const uint8_t* p, size_t rb, __m512i* o) {
  __m512i z[4];
  for (int j = 0; j < 4; ++j) {
    const uint8_t* pj = p + static_cast<size_t>(j) * rb;
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pj)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 4 * rb)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 8 * rb)), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 12 * rb)), 3);
    z[j] = v;
  }
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  o[0] = _mm512_unpacklo_epi64(t0, t2);
  o[1] = _mm512_unpackhi_epi64(t0, t2);
  o[2] = _mm512_unpacklo_epi64(t1, t3);
  o[3] = _mm512_unpackhi_epi64(t1, t3);
}

// One block of 16 rows, decoded: wc[c] lane i = the 4 codes of elements
// 4c..4c+3 of row i as u8 (Q4: nibbles; Q8_0: c + 128), dw / mw the scales.
struct TileVnni {
  __m512i wc[8];
  __m512 dw;
  __m512 mw;
};

template <DType kType>
KVINFER_TARGET_VNNI inline void DecodeVnni(const uint8_t* base, size_t rb, __m512i offs, size_t b,
                                           TileVnni* out) {
  using L = Blk<kType>;
  const uint8_t* blk = base + b * L::kBytes;
  const __m512i hdr = _mm512_i32gather_epi32(offs, blk, 1);
  out->dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hdr));
  if constexpr (L::kMin)
    out->mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(hdr, 16)));
  if constexpr (L::kNibbles) {
    __m512i o[4];
    Transpose16(blk + L::kQs, rb, o);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      out->wc[k] = _mm512_and_si512(o[k], m4);
      out->wc[4 + k] = _mm512_and_si512(_mm512_srli_epi16(o[k], 4), m4);
    }
  } else {
    Transpose16(blk + L::kQs, rb, out->wc);
    Transpose16(blk + L::kQs + 16, rb, out->wc + 4);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int k = 0; k < 8; ++k) out->wc[k] = _mm512_xor_si512(out->wc[k], flip);
  }
}

// The same TileVnni from a packed tile: plain aligned loads, no transpose.
template <DType kType>
KVINFER_TARGET_VNNI inline void DecodePacked(const uint8_t* tile, const PackedLayout& l, size_t b,
                                             TileVnni* out) {
  const __m512i* codes = reinterpret_cast<const __m512i*>(tile + b * l.code_bytes);
  out->dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(tile + l.scales + b * 32)));
  if constexpr (Blk<kType>::kMin) {
    out->mw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(tile + l.mins + b * 32)));
  }
  if constexpr (Blk<kType>::kNibbles) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      const __m512i o = _mm512_load_si512(codes + k);
      out->wc[k] = _mm512_and_si512(o, m4);
      out->wc[4 + k] = _mm512_and_si512(_mm512_srli_epi16(o, 4), m4);
    }
  } else {
    for (int k = 0; k < 8; ++k) out->wc[k] = _mm512_load_si512(codes + k);
  }
}

// Where a kernel call finds its 16-row tile's weights: rows in GGML layout
// at `base`, rb bytes apart (decoded here, block by block); the tile already
// decoded into `pre` ([blocks] TileVnni); or a packed tile at `base`.
enum class Src { kRows, kPre, kPacked };

// Tokens [t0, t0 + T) against one 16-row tile; y points at column r0 of
// token 0's output row (ldy apart).
template <DType kType, int T, Src kSrc>
KVINFER_TARGET_VNNI void TokensVnni(const uint8_t* base, size_t rb, __m512i offs,
                                    const PackedLayout& layout, const TileVnni* pre, const Acts& a,
                                    size_t t0, float* y, size_t ldy, __mmask16 store_mask) {
  constexpr bool kBias = kType != DType::kQ4_1;
  // Streaming GGML rows reads 16 rows at once; the next tile (the next
  // 16 * rb bytes) is prefetched evenly over this tile's blocks,
  // lines_per_block lines each. A packed tile is one sequential stream,
  // which the hardware prefetcher follows by itself.
  const size_t lines_per_block = (16 * rb / 64 + a.blocks - 1) / a.blocks;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (size_t b = 0; b < a.blocks; ++b) {
    TileVnni local;
    const TileVnni* tile = &local;
    if constexpr (kSrc == Src::kPre) {
      tile = pre + b;
    } else if constexpr (kSrc == Src::kPacked) {
      DecodePacked<kType>(base, layout, b, &local);
    } else {
      const char* next = reinterpret_cast<const char*>(base + 16 * rb + b * lines_per_block * 64);
      for (size_t l = 0; l < lines_per_block; ++l) _mm_prefetch(next + l * 64, _MM_HINT_T0);
      DecodeVnni<kType>(base, rb, offs, b, &local);
    }
    for (int t = 0; t < T; ++t) {
      const size_t tb = (t0 + t) * a.blocks + b;
      const int8_t* xq = a.q + (t0 + t) * a.cols + b * kBlock;
      __m512i ia = kBias ? _mm512_set1_epi32(a.bias[tb]) : _mm512_setzero_si512();
      if constexpr (T <= 2) {
        // Few tokens: two dependency chains (exact integer sums either way).
        __m512i ib = _mm512_setzero_si512();
        for (int c = 0; c < 8; c += 2) {
          ia = _mm512_dpbusd_epi32(ia, tile->wc[c], _mm512_set1_epi32(Load32(xq + 4 * c)));
          ib = _mm512_dpbusd_epi32(ib, tile->wc[c + 1], _mm512_set1_epi32(Load32(xq + 4 * c + 4)));
        }
        ia = _mm512_add_epi32(ia, ib);
      } else {
        for (int c = 0; c < 8; ++c) {
          ia = _mm512_dpbusd_epi32(ia, tile->wc[c], _mm512_set1_epi32(Load32(xq + 4 * c)));
        }
      }
      const __m512 scale = _mm512_mul_ps(tile->dw, _mm512_set1_ps(a.d[tb]));
      acc[t] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(ia), acc[t]);
      if constexpr (Blk<kType>::kMin) {
        acc[t] = _mm512_fmadd_ps(tile->mw, _mm512_set1_ps(a.s[tb]), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, store_mask, acc[t]);
}

constexpr int kTokTileVnni = 8;

template <DType kType, Src kSrc>
KVINFER_TARGET_VNNI void TokenTileVnni(int count, const uint8_t* base, size_t rb, __m512i offs,
                                       const PackedLayout& l, const TileVnni* pre, const Acts& a,
                                       size_t t0, float* y, size_t ldy, __mmask16 mask) {
  switch (count) {
    case 1:
      return TokensVnni<kType, 1, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 2:
      return TokensVnni<kType, 2, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 3:
      return TokensVnni<kType, 3, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 4:
      return TokensVnni<kType, 4, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 5:
      return TokensVnni<kType, 5, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 6:
      return TokensVnni<kType, 6, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 7:
      return TokensVnni<kType, 7, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    default:
      return TokensVnni<kType, 8, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
  }
}

template <DType kType>
KVINFER_TARGET_VNNI void RowsVnni(const WeightView& w, const Acts& a, int64_t n64, float* y,
                                  int64_t r_begin, int64_t r_end, MatMulScratch& scratch) {
  const size_t n = static_cast<size_t>(n64);
  const size_t rb = w.row_bytes;
  const size_t ldy = static_cast<size_t>(w.rows);
  const __m512i offs =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int32_t>(rb)));
  const PackedLayout layout = LayoutOf(kType, a.blocks);
  const bool packed = w.packed != nullptr;
  KVINFER_CHECK(!packed || r_begin % 16 == 0);
  std::vector<uint8_t>& pad = scratch.tile_pad;
  TileVnni* pre = n > static_cast<size_t>(kTokTileVnni)
                      ? AlignedScratch<TileVnni>(scratch.tile_decoded, a.blocks)
                      : nullptr;
  for (int64_t r0 = r_begin; r0 < r_end; r0 += 16) {
    int valid = 0;
    const uint8_t* base = nullptr;
    if (packed) {
      valid = static_cast<int>(std::min<int64_t>(16, r_end - r0));
      base = static_cast<const uint8_t*>(w.packed) + static_cast<size_t>(r0 / 16) * layout.tile_bytes;
    } else {
      base = TileBase(w, r0, r_end, 16, pad, &valid);
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1u);
    float* yr = y + r0;
    if (n <= static_cast<size_t>(kTokTileVnni)) {
      if (packed) {
        TokenTileVnni<kType, Src::kPacked>(static_cast<int>(n), base, rb, offs, layout, nullptr, a,
                                           0, yr, ldy, mask);
      } else {
        TokenTileVnni<kType, Src::kRows>(static_cast<int>(n), base, rb, offs, layout, nullptr, a,
                                         0, yr, ldy, mask);
      }
      continue;
    }
    for (size_t b = 0; b < a.blocks; ++b) {
      if (packed) {
        DecodePacked<kType>(base, layout, b, &pre[b]);
      } else {
        DecodeVnni<kType>(base, rb, offs, b, &pre[b]);
      }
    }
    for (size_t t0 = 0; t0 < n; t0 += kTokTileVnni) {
      const int count = static_cast<int>(std::min<size_t>(kTokTileVnni, n - t0));
      TokenTileVnni<kType, Src::kPre>(count, base, rb, offs, layout, pre, a, t0, yr, ldy, mask);
    }
  }
}

// ---------------------------------------------------------------------------
// AVX2: 8 rows per tile, lane i = row i. The same transpose as Transpose16
// with two 128-bit lanes: z[j] holds rows j and 4 + j.

KVINFER_TARGET_AVX2 inline void Transpose8(const uint8_t* p, size_t rb, __m256i* o) {
  __m256i z[4];
  for (int j = 0; j < 4; ++j) {
    const uint8_t* pj = p + static_cast<size_t>(j) * rb;
    z[j] = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pj))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 4 * rb)), 1);
  }
  const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]);
  const __m256i t1 = _mm256_unpackhi_epi32(z[0], z[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]);
  const __m256i t3 = _mm256_unpackhi_epi32(z[2], z[3]);
  o[0] = _mm256_unpacklo_epi64(t0, t2);
  o[1] = _mm256_unpackhi_epi64(t0, t2);
  o[2] = _mm256_unpacklo_epi64(t1, t3);
  o[3] = _mm256_unpackhi_epi64(t1, t3);
}

// wc[c] lane i: the u8 operand of vpmaddubsw for elements 4c..4c+3 of row i
// (Q4: nibbles; Q8_0: |c|); ws (Q8_0 only): the signed codes, whose signs
// are moved onto the activations (|c| * sign(c) x: no int16 overflow).
struct TileAvx2 {
  __m256i wc[8];
  __m256i ws[8];
  __m256 dw;
  __m256 mw;
};

KVINFER_TARGET_AVX2 inline __m256 HalvesToFloats(__m256i hdr, int high) {
  // Bytes 0,1 (or 2,3) of each dword to the low 8 bytes of each 128-bit lane.
  const __m256i pick =
      high ? _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 6,
                              7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1)
           : _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5,
                              8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(hdr, pick), 0x08);
  return _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
}

template <DType kType>
KVINFER_TARGET_AVX2 inline void DecodeAvx2(const uint8_t* base, size_t rb, __m256i offs, size_t b,
                                           TileAvx2* out) {
  using L = Blk<kType>;
  const uint8_t* blk = base + b * L::kBytes;
  const __m256i hdr = _mm256_i32gather_epi32(reinterpret_cast<const int*>(blk), offs, 1);
  out->dw = HalvesToFloats(hdr, 0);
  if constexpr (L::kMin) out->mw = HalvesToFloats(hdr, 1);
  if constexpr (L::kNibbles) {
    __m256i o[4];
    Transpose8(blk + L::kQs, rb, o);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      out->wc[k] = _mm256_and_si256(o[k], m4);
      out->wc[4 + k] = _mm256_and_si256(_mm256_srli_epi16(o[k], 4), m4);
    }
  } else {
    Transpose8(blk + L::kQs, rb, out->ws);
    Transpose8(blk + L::kQs + 16, rb, out->ws + 4);
    for (int k = 0; k < 8; ++k) out->wc[k] = _mm256_abs_epi8(out->ws[k]);
  }
}

template <DType kType, int T>
KVINFER_TARGET_AVX2 void TokensAvx2(const TileAvx2* pre, const Acts& a, size_t t0, float* y,
                                    size_t ldy, __m256i store_mask) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (size_t b = 0; b < a.blocks; ++b) {
    const TileAvx2& tile = pre[b];
    for (int t = 0; t < T; ++t) {
      const size_t tb = (t0 + t) * a.blocks + b;
      const int8_t* xq = a.q + (t0 + t) * a.cols + b * kBlock;
      __m256i ia;
      if constexpr (kType == DType::kQ8_0) {
        // |c| * (sign(c) x) <= 128 * 127 per product: pairs fit int16.
        ia = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
          const __m256i xv = _mm256_set1_epi32(Load32(xq + 4 * c));
          const __m256i p = _mm256_maddubs_epi16(tile.wc[c], _mm256_sign_epi8(xv, tile.ws[c]));
          ia = _mm256_add_epi32(ia, _mm256_madd_epi16(p, ones));
        }
      } else {
        // Nibbles: |8 chunks x 2 products| <= 16 * 15 * 127 < 2^15, so the
        // int16 sums are exact.
        __m256i s16 = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
          const __m256i xv = _mm256_set1_epi32(Load32(xq + 4 * c));
          s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(tile.wc[c], xv));
        }
        ia = _mm256_madd_epi16(s16, ones);
        if constexpr (kType == DType::kQ4_0)
          ia = _mm256_add_epi32(ia, _mm256_set1_epi32(a.bias[tb]));
      }
      const __m256 scale = _mm256_mul_ps(tile.dw, _mm256_set1_ps(a.d[tb]));
      acc[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(ia), acc[t]);
      if constexpr (Blk<kType>::kMin) {
        acc[t] = _mm256_fmadd_ps(tile.mw, _mm256_set1_ps(a.s[tb]), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm256_maskstore_ps(y + (t0 + t) * ldy, store_mask, acc[t]);
}

constexpr int kTokTileAvx2 = 4;

template <DType kType>
KVINFER_TARGET_AVX2 void RowsAvx2(const WeightView& w, const Acts& a, int64_t n64, float* y,
                                  int64_t r_begin, int64_t r_end, MatMulScratch& scratch) {
  const size_t n = static_cast<size_t>(n64);
  const size_t rb = w.row_bytes;
  const size_t ldy = static_cast<size_t>(w.rows);
  const __m256i offs = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(static_cast<int32_t>(rb)));
  std::vector<uint8_t>& pad = scratch.tile_pad;
  TileAvx2* pre = AlignedScratch<TileAvx2>(scratch.tile_decoded, a.blocks);
  for (int64_t r0 = r_begin; r0 < r_end; r0 += 8) {
    int valid = 0;
    const uint8_t* base = TileBase(w, r0, r_end, 8, pad, &valid);
    const __m256i mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (size_t b = 0; b < a.blocks; ++b) DecodeAvx2<kType>(base, rb, offs, b, &pre[b]);
    for (size_t t0 = 0; t0 < n; t0 += kTokTileAvx2) {
      float* yr = y + r0;
      switch (std::min<size_t>(kTokTileAvx2, n - t0)) {
        case 1:
          TokensAvx2<kType, 1>(pre, a, t0, yr, ldy, mask);
          break;
        case 2:
          TokensAvx2<kType, 2>(pre, a, t0, yr, ldy, mask);
          break;
        case 3:
          TokensAvx2<kType, 3>(pre, a, t0, yr, ldy, mask);
          break;
        default:
          TokensAvx2<kType, 4>(pre, a, t0, yr, ldy, mask);
          break;
      }
    }
  }
}
#endif  // KVINFER_INT8_X86

// ---------------------------------------------------------------------------
// Dispatch.

// The kernel of instruction set `isa` (AVX-512 without VNNI: AVX2's).
template <DType kType>
void RowsFor(Isa isa, const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
             int64_t r_end, MatMulScratch& scratch) {
#if KVINFER_INT8_X86
  switch (isa) {
    case Isa::kScalar:
      break;
    case Isa::kAvx2:
    case Isa::kAvx512:
      return RowsAvx2<kType>(w, a, n, y, r_begin, r_end, scratch);
    case Isa::kAvx512Vnni:
      return RowsVnni<kType>(w, a, n, y, r_begin, r_end, scratch);
  }
#else
  (void)isa;
  (void)scratch;
#endif
  RowsScalar<kType>(w, a, n, y, r_begin, r_end);
}

void Rows(Isa isa, const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
          int64_t r_end, MatMulScratch& scratch) {
  switch (w.type) {
    case DType::kQ4_0:
      return RowsFor<DType::kQ4_0>(isa, w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ4_1:
      return RowsFor<DType::kQ4_1>(isa, w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ8_0:
      return RowsFor<DType::kQ8_0>(isa, w, a, n, y, r_begin, r_end, scratch);
    default:
      KVINFER_CHECK_MSG(false, "int8 MatMul: unsupported weight type {}", DTypeName(w.type));
  }
}

}  // namespace

bool TakesInt8Path(const MatMulContext& ctx) {
  return ctx.activation_precision() == ActivationPrecision::kInt8 &&
         (ctx.isa_forced() || ctx.isa() != Isa::kScalar);
}

bool IsInt8Type(DType t) { return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ8_0; }

void QuantizeActivations(Isa isa, const float* x, int64_t n, int64_t cols, int8_t* q, float* d,
                         float* s, int32_t* sum) {
  KVINFER_CHECK_MSG(n >= 0 && cols >= 0 && cols % kBlock == 0,
                    "QuantizeActivations: bad shape [{}, {}]", n, cols);
  QuantizeTokens(QuantizerFor(isa), x, 0, n, static_cast<size_t>(cols), q, d, s, sum);
}

bool PacksWeights(DType type) { return IsInt8Type(type) && BestIsa() == Isa::kAvx512Vnni; }

AlignedBuffer Pack(const WeightView& w) {
  if (!PacksWeights(w.type) || w.rows == 0 || w.cols % kBlock != 0) return {};
  const PackedLayout l = LayoutOf(w.type, static_cast<size_t>(w.cols) / kBlock);
  const size_t tiles = static_cast<size_t>((w.rows + 15) / 16);
  // Zeroed: rows past the end of the last tile have zero codes and scales.
  AlignedBuffer out(tiles * l.tile_bytes, AlignedBuffer::Init::kZero);
  uint8_t* p = out.as<uint8_t>();
  for (size_t t = 0; t < tiles; ++t) {
    const int64_t r0 = static_cast<int64_t>(t) * 16;
    uint8_t* tile = p + t * l.tile_bytes;
    switch (w.type) {
      case DType::kQ4_0:
        PackTile<DType::kQ4_0>(w, r0, l, tile);
        break;
      case DType::kQ4_1:
        PackTile<DType::kQ4_1>(w, r0, l, tile);
        break;
      default:
        PackTile<DType::kQ8_0>(w, r0, l, tile);
        break;
    }
  }
  return out;
}

void MatMulMany(const MatMulContext& ctx, std::span<const WeightView* const> ws, const float* x,
                int64_t n, std::span<float* const> ys) {
  KVINFER_CHECK(!ws.empty() && ws.size() == ys.size());
  const WeightView& w0 = *ws[0];
  for (const WeightView* w : ws) {
    KVINFER_CHECK_MSG(IsInt8Type(w->type) && w->cols % kBlock == 0 && w->type == w0.type &&
                          w->cols == w0.cols,
                      "int8 MatMul: bad weight {} [{}, {}]", DTypeName(w->type), w->rows, w->cols);
  }
  const Isa isa = ctx.isa();
  ThreadPool* const pool = ctx.pool();
  const size_t cols = static_cast<size_t>(w0.cols);
  const size_t blocks = cols / kBlock;
  // The caller's scratch holds the activations; the tasks read them there.
  MatMulScratch& caller = ctx.scratch(0);
  {
    const size_t elems = static_cast<size_t>(n) * cols;
    const size_t nblocks = static_cast<size_t>(n) * blocks;
    if (caller.act_q.size() < elems) caller.act_q.resize(elems);
    if (caller.act_d.size() < nblocks) {
      caller.act_d.resize(nblocks);
      caller.act_s.resize(nblocks);
      caller.act_sum.resize(nblocks);
      caller.act_bias.resize(nblocks);
    }
  }
  int8_t* const q = caller.act_q.data();
  float* const d = caller.act_d.data();
  float* const s = caller.act_s.data();
  int32_t* const sum = caller.act_sum.data();
  int32_t* const bias = caller.act_bias.data();
  // What the kernel's offset codes need (see Acts).
  const int32_t bias_mult = w0.type == DType::kQ4_0                                 ? -8
                            : w0.type == DType::kQ8_0 && isa == Isa::kAvx512Vnni ? -128
                                                                                    : 0;
  const QuantizeBlockFn quantize = QuantizerFor(isa);
  const bool threaded = pool != nullptr && pool->num_threads() > 1;
  auto quantize_tokens = [&](int64_t t0, int64_t t1, int) {
    QuantizeTokens(quantize, x, t0, t1, cols, q, d, s, sum);
    for (size_t k = static_cast<size_t>(t0) * blocks; k < static_cast<size_t>(t1) * blocks; ++k) {
      bias[k] = bias_mult * sum[k];
    }
  };
  // ~64K activations per task: a few microseconds, worth a thread's wake-up.
  const int64_t quant_grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, w0.cols));
  if (threaded && n > quant_grain) {
    pool->ParallelFor(n, quant_grain, quantize_tokens);
  } else {
    quantize_tokens(0, n, 0);
  }
  const Acts acts{q, d, s, bias, cols, blocks};
  if (!threaded) {
    for (size_t i = 0; i < ws.size(); ++i) {
      Rows(isa, *ws[i], acts, n, ys[i], 0, ws[i]->rows, caller);
    }
    return;
  }
  // Row tiles are 16 (VNNI) or 8 (AVX2) rows: grains are multiples of 16.
  // Tasks are claimed dynamically, so small ones balance 2 threads well (k/v
  // at 192 rows: 6 tasks, not 2 uneven ones); each still gets ~16K
  // multiply-adds, ~1 us, well above the cost of claiming it. The weights'
  // row ranges are laid end to end as one task space.
  constexpr int64_t kRowGrain = 16;
  constexpr int64_t kMinMacsPerChunk = 16384;
  const int64_t grain = RowGrain(kRowGrain, kMinMacsPerChunk, w0.cols, n);
  if (ws.size() == 1) {
    pool->ParallelFor(w0.rows, grain, [&](int64_t begin, int64_t end, int thread) {
      Rows(isa, w0, acts, n, ys[0], begin, end, ctx.scratch(thread));
    });
    return;
  }
  std::array<int64_t, 9> first_task{};  // task index where weight i starts
  KVINFER_CHECK_MSG(ws.size() < first_task.size(), "MatMulMany: at most {} weights",
                    first_task.size() - 1);
  for (size_t i = 0; i < ws.size(); ++i) {
    first_task[i + 1] = first_task[i] + (ws[i]->rows + grain - 1) / grain;
  }
  pool->ParallelFor(first_task[ws.size()], 1, [&](int64_t begin, int64_t end, int thread) {
    MatMulScratch& scratch = ctx.scratch(thread);
    for (int64_t task = begin; task < end; ++task) {
      size_t i = 0;
      while (task >= first_task[i + 1]) ++i;
      const int64_t r0 = (task - first_task[i]) * grain;
      Rows(isa, *ws[i], acts, n, ys[i], r0, std::min(ws[i]->rows, r0 + grain), scratch);
    }
  });
}

void MatMul(const MatMulContext& ctx, const WeightView& w, const float* x, int64_t n, float* y) {
  const WeightView* ws[] = {&w};
  float* ys[] = {y};
  int8::MatMulMany(ctx, ws, x, n, ys);
}

}  // namespace int8
}  // namespace kvinfer::ops
