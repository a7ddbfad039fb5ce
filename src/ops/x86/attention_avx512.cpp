// The x86 AVX-512 parts of the attention kernel (see attention_avx512.h).

#include "ops/x86/attention_avx512.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "ops/dispatch.h"
#include "ops/kv_span_prefetcher.h"

#if defined(__x86_64__) || defined(__i386__)

// GCC 12 reports the AVX-512 intrinsics' own _mm512_undefined_*() operands as
// uninitialized (a false positive in its headers, inlined here).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define X86_INLINE inline __attribute__((always_inline))
#define X86_NOINLINE __attribute__((noinline))

namespace kvinfer::ops::x86 {

// Query heads per pass of the values (SoftmaxValuesQ8Vnni): 4 heads' sums
// of 64 dims fill 16 of the 32 vector registers.
constexpr int kMaxHeadsPerPass = 4;

// WidenScales for two blocks per row (head_dim 33..64) with AVX-512: 16
// rows' scales (32 f16) widened and split by block in three shuffles,
// straight into out[kv][b][j], no transpose buffer.
KVINFER_TARGET_AVX512 void WidenScalesTwoBlocks(std::span<const KvSpan> spans, int32_t total,
                                                int first_kv, float* out) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int kv = first_kv; kv < 2; ++kv) {
    float* const b0 = out + static_cast<size_t>(kv) * 2 * total;
    float* const b1 = b0 + total;
    int32_t j = 0;
    for (const KvSpan& sp : spans) {
      const uint16_t* src = kv == 0 ? sp.k_scale : sp.v_scale;
      int32_t t = 0;
      for (; t + 16 <= sp.n; t += 16, j += 16) {
        const __m512i raw = _mm512_loadu_si512(src + 2 * t);
        const __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(raw));
        const __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(raw, 1));
        _mm512_storeu_ps(b0 + j, _mm512_permutex2var_ps(lo, even, hi));
        _mm512_storeu_ps(b1 + j, _mm512_permutex2var_ps(lo, odd, hi));
      }
      for (; t < sp.n; ++t, ++j) {
        b0[j] = F16ToF32(src[2 * t]);
        b1[j] = F16ToF32(src[2 * t + 1]);
      }
    }
  }
}

namespace {

// One vector holding the lane sums of 16 vectors: lane i = sum of a[i]'s
// lanes. 45 shuffles and adds for 16 sums, where 16 separate horizontal
// reductions would cost ~4x that: (1) within each 128-bit quarter, pairs of
// vectors are interleaved and added, then (2) pairs of those as 64-bit
// halves, leaving per quarter the quarter-sums of four vectors; (3, 4) the
// four quarters are added across by two rounds of 128-bit shuffles.
KVINFER_TARGET_AVX512 X86_INLINE __m512 SumsOf16(const __m512* a) {
  __m512 x[8], y[4], z[2];
  for (int p = 0; p < 8; ++p) {
    x[p] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * p], a[2 * p + 1]),
                         _mm512_unpackhi_ps(a[2 * p], a[2 * p + 1]));
  }
  for (int r = 0; r < 4; ++r) {
    const __m512d u = _mm512_castps_pd(x[2 * r]), v = _mm512_castps_pd(x[2 * r + 1]);
    y[r] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(u, v)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(u, v)));
  }
  for (int r = 0; r < 2; ++r) {
    z[r] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * r], y[2 * r + 1], 0x44),
                         _mm512_shuffle_f32x4(y[2 * r], y[2 * r + 1], 0xEE));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88),
                       _mm512_shuffle_f32x4(z[0], z[1], 0xDD));
}


// Key row j of the chunk (at p) as f32 lanes [c, c + 16): f32 as it is,
// f16 widened exactly, q8_0 codes converted and times the row's scale of
// their block (kv_scales [nb][total]).
template <KvElem kElem>
KVINFER_TARGET_AVX512 X86_INLINE __m512 LoadKey16(const char* p, int c, const float* kv_scales,
                                                  int32_t total, int32_t j) {
  if constexpr (kElem == KvElem::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(p) + c);
  } else if constexpr (kElem == KvElem::kF16) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p) + c;
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
  } else {
    const __m512 codes = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + c))));
    const float scale = kv_scales[static_cast<size_t>(c / kKvQ8Block) * total + j];
    return _mm512_mul_ps(codes, _mm512_set1_ps(scale));
  }
}

// Scores for head_dim a multiple of 16: keys in tiles of 16, each head's 16
// dot products reduced together by SumsOf16. f16 / q8_0 tiles are widened
// to f32 once, then read by every head of the group.
template <KvElem kElem>
KVINFER_TARGET_AVX512 void Scores16T(const float* __restrict__ q, int group, int hd, float scale,
                                     std::span<const KvSpan> spans, int32_t total,
                                     const float* kv_scales, float* __restrict__ s) {
  constexpr size_t kElemBytes = kElem == KvElem::kF32 ? 4 : kElem == KvElem::kF16 ? 2 : 1;
  alignas(64) float tile[kElem == KvElem::kF32 ? 1 : 16 * kMaxTileHeadDim];
  const float* kp[16];
  const __m512 vscale = _mm512_set1_ps(scale);
  const size_t row_bytes = static_cast<size_t>(hd) * kElemBytes;
  size_t si = 0;
  int32_t t_in_span = 0;
  for (int32_t j0 = 0; j0 < total; j0 += 16) {
    const int m = std::min<int32_t>(16, total - j0);
    for (int t = 0; t < m; ++t) {
      while (t_in_span == spans[si].n) {
        ++si;
        t_in_span = 0;
      }
      const char* row =
          static_cast<const char*>(spans[si].k) + static_cast<size_t>(t_in_span++) * row_bytes;
      // The row 16 ahead in memory (f32 / f16: a SpanPrefetcher's bursts
      // cost more here than they gain on a paged layout, see there).
      for (size_t c = 0; c < row_bytes; c += 64) _mm_prefetch(row + 16 * row_bytes + c, _MM_HINT_T0);
      if constexpr (kElem == KvElem::kF32) {
        kp[t] = reinterpret_cast<const float*>(row);
      } else {
        float* dst = tile + static_cast<size_t>(t) * hd;
        for (int c = 0; c < hd; c += 16) {
          _mm512_store_ps(dst + c, LoadKey16<kElem>(row, c, kv_scales, total, j0 + t));
        }
        kp[t] = dst;
      }
    }
    for (int t = m; t < 16; ++t) kp[t] = kp[0];  // padding, results dropped
    for (int h = 0; h < group; ++h) {
      const float* __restrict__ qh = q + static_cast<size_t>(h) * hd;
      __m512 acc[16];
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int c = 0; c < hd; c += 16) {
        const __m512 qv = _mm512_loadu_ps(qh + c);
        for (int t = 0; t < 16; ++t) acc[t] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kp[t] + c), acc[t]);
      }
      const __m512 sums = _mm512_mul_ps(SumsOf16(acc), vscale);
      float* dst = s + static_cast<size_t>(h) * total + j0;
      if (m == 16) {
        _mm512_storeu_ps(dst, sums);
      } else {
        _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << m) - 1), sums);
      }
    }
  }
}

// The lines of a span's K and V scales: read by WidenScales once the chunk's
// dot products are done, by when they have arrived.
X86_INLINE void PrefetchScales(const KvSpan& sp, int nb) {
  const size_t bytes = static_cast<size_t>(sp.n) * nb * sizeof(uint16_t);
  for (size_t c = 0; c < bytes; c += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(sp.k_scale) + c, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(sp.v_scale) + c, _MM_HINT_T0);
  }
}

// q8_0 keys with AVX-512 VNNI, for head_dim a multiple of 64 up to
// kMaxTileHeadDim: q as int8 codes (qc [group, hd]) against the key codes,
// as exact integer dot products per 32-element block (|dot| <= 32 * 127 *
// 127 < 2^24, so exact in f32 too): dots[h][b][j] for block b of key j.
// The block scales are applied afterwards (ScaleDotsQ8).
//
// Per 16-row tile and 64-element slice, the 16 rows (16 dwords = 4 codes
// each) are transposed in two rounds of in-block unpacks (32 shuffles,
// shared by all heads) into vectors b[4P + g] whose 128-bit block k holds
// rows 4P..4P+3, each its dword 4k + g. Against a q vector holding q's dword
// 4k + g in block k, vpdpbusd then accumulates lane-wise products that
// belong to one row and one 16-element quarter of the slice, so four
// vpdpbusd per P give, per lane, a row's dot product over a quarter; two
// rounds of 128-bit shuffles per head (6 shuffles, 2 adds) add the quarters
// into the 16 rows' block-0 and block-1 sums. vpdpbusd wants one unsigned
// operand: the key codes + 128 (xor 0x80), with -128 * (the quarter's q
// codes' sum) as the starting value to cancel the offset.
//
// A tile within one span is read in place; one that straddles spans is
// first gathered into a buffer. kHd: head_dim when known at compile time
// (then every row offset is a constant), else 0. qv: scratch for the q
// vectors, int32 [group][hd / 64][5][16] (4 dword selections and the
// offset's cancellation).
//
// kHd 64 (two blocks per row) takes the block scales in the same pass: the
// tile's 16 rows' K scales (32 f16, contiguous) are widened and split by
// block in three shuffles, and the scores go straight to s[h][j] = qmul[h] *
// (dot0 * d0 + dot1 * d1), as ScaleDotsQ8 computes them (qmul: per head;
// `dots` is then s).
//
// kQ4: the keys are q4_0 rows (hd / 2 bytes, 32 per 64-element slice): a
// slice's low nibbles and high nibbles side by side are its 64 codes in
// order, + 8, which serves as the unsigned operand as it is (the offset
// cancelled by -8 * the quarter's q sum instead of -128 *).
template <int kHd, bool kQ4>
KVINFER_TARGET_ATTN_VNNI X86_NOINLINE void DotsQ8VnniT(const int8_t* __restrict__ qc, int group,
                                                 int head_dim, std::span<const KvSpan> spans,
                                                 int32_t total, int32_t* __restrict__ qv,
                                                 const float* __restrict__ qmul,
                                                 float* __restrict__ dots) {
  constexpr bool kScaled = kHd == 64;
  alignas(64) uint16_t gathered_scales[32];
  const int hd = kHd != 0 ? kHd : head_dim;
  const int slices = hd / 64;
  const int rs = kQ4 ? hd / 2 : hd;  // bytes per row
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(kQ4 ? 8 : 0x80));
  for (int hc = 0; hc < group * slices; ++hc) {
    const __m512i q = _mm512_loadu_si512(qc + static_cast<size_t>(hc) * 64);
    int32_t* dst = qv + static_cast<size_t>(hc) * 5 * 16;
    _mm512_storeu_si512(dst + 0 * 16, _mm512_shuffle_epi32(q, _MM_PERM_AAAA));
    _mm512_storeu_si512(dst + 1 * 16, _mm512_shuffle_epi32(q, _MM_PERM_BBBB));
    _mm512_storeu_si512(dst + 2 * 16, _mm512_shuffle_epi32(q, _MM_PERM_CCCC));
    _mm512_storeu_si512(dst + 3 * 16, _mm512_shuffle_epi32(q, _MM_PERM_DDDD));
    // 128 (q4_0: 8) * (sum of each 16-code quarter), in all four lanes of
    // its block.
    __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, q);
    sum = _mm512_add_epi32(sum, _mm512_shuffle_epi32(sum, _MM_PERM_BADC));
    sum = _mm512_add_epi32(sum, _mm512_shuffle_epi32(sum, _MM_PERM_CDAB));
    _mm512_storeu_si512(dst + 4 * 16, _mm512_sub_epi32(_mm512_setzero_si512(), sum));
  }
  alignas(64) int8_t gathered[16 * kMaxTileHeadDim];
  size_t si = 0;
  int32_t t_in_span = 0;
  // The tile after next (32 rows ahead): q8_0 rows take so little time that
  // a hint one tile ahead reaches memory too late at long contexts.
  SpanPrefetcher prefetch(spans, 0, static_cast<size_t>(rs), 32);
  for (int32_t j0 = 0; j0 < total; j0 += 16) {
    prefetch.Next(16);
    const int m = std::min<int32_t>(16, total - j0);
    const __mmask16 valid = static_cast<__mmask16>((1u << m) - 1);
    while (t_in_span == spans[si].n) {
      ++si;
      t_in_span = 0;
    }
    const int8_t* base;
    const uint16_t* kscales = nullptr;  // kScaled: the tile's K scales [16][2]
    if (t_in_span == 0) PrefetchScales(spans[si], 2 * slices);
    if (spans[si].n - t_in_span >= 16) {
      // Rows past m (last tile only) are the span's own: read, results dropped.
      base = static_cast<const int8_t*>(spans[si].k) + static_cast<size_t>(t_in_span) * rs;
      if constexpr (kScaled) kscales = spans[si].k_scale + static_cast<size_t>(t_in_span) * 2;
      t_in_span += m;
    } else {
      for (int t = 0; t < m; ++t) {
        while (t_in_span == spans[si].n) {
          ++si;
          t_in_span = 0;
          PrefetchScales(spans[si], 2 * slices);
        }
        if constexpr (kScaled) {
          std::memcpy(gathered_scales + 2 * t,
                      spans[si].k_scale + static_cast<size_t>(t_in_span) * 2, 2 * sizeof(uint16_t));
        }
        std::memcpy(gathered + t * rs,
                    static_cast<const int8_t*>(spans[si].k) + static_cast<size_t>(t_in_span++) * rs,
                    rs);
      }
      // Padding rows (last tile only): results dropped.
      for (int t = m; t < 16; ++t) {
        std::memcpy(gathered + t * rs, gathered, rs);
        if constexpr (kScaled) {
          std::memcpy(gathered_scales + 2 * t, gathered_scales, 2 * sizeof(uint16_t));
        }
      }
      base = gathered;
      kscales = gathered_scales;
    }
    __m512 ks0, ks1;
    if constexpr (kScaled) {
      const __m512i raw = _mm512_loadu_si512(kscales);
      const __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(raw));        // rows 0-7
      const __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(raw, 1));  // rows 8-15
      ks0 = _mm512_permutex2var_ps(
          lo, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), hi);
      ks1 = _mm512_permutex2var_ps(
          lo, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), hi);
    }
    for (int c = 0; c < slices; ++c) {
      __m512i a[16], b[16];
      for (int t = 0; t < 16; ++t) {
        if constexpr (kQ4) {
          // The slice's 32 bytes in both halves (a load, no shuffle), the
          // upper half shifted to its high nibbles, then both masked.
          const __m512i raw = _mm512_broadcast_i64x4(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + t * rs + 32 * c)));
          a[t] = _mm512_and_si512(_mm512_mask_srli_epi16(raw, 0xFFFF0000u, raw, 4),
                                  _mm512_set1_epi8(0x0F));
        } else {
          a[t] = _mm512_xor_si512(_mm512_loadu_si512(base + t * rs + 64 * c), offset);
        }
      }
      // a[2p + s] block k: rows 2p, 2p + 1 interleaved, dwords 4k + 2s + {0, 1}.
      for (int p = 0; p < 8; ++p) {
        const __m512i lo = _mm512_unpacklo_epi32(a[2 * p], a[2 * p + 1]);
        a[2 * p + 1] = _mm512_unpackhi_epi32(a[2 * p], a[2 * p + 1]);
        a[2 * p] = lo;
      }
      // b[4P + 2s + u] block k: rows 4P..4P+3, each its dword 4k + 2s + u.
      for (int P = 0; P < 4; ++P) {
        for (int sh = 0; sh < 2; ++sh) {
          b[4 * P + 2 * sh] = _mm512_unpacklo_epi64(a[4 * P + sh], a[4 * P + 2 + sh]);
          b[4 * P + 2 * sh + 1] = _mm512_unpackhi_epi64(a[4 * P + sh], a[4 * P + 2 + sh]);
        }
      }
      for (int h = 0; h < group; ++h) {
        const int32_t* qh = qv + (static_cast<size_t>(h) * slices + c) * 5 * 16;
        const __m512i init = _mm512_loadu_si512(qh + 4 * 16);
        __m512i acc[4];
        for (int P = 0; P < 4; ++P) acc[P] = init;
        for (int g = 0; g < 4; ++g) {
          const __m512i qg = _mm512_loadu_si512(qh + g * 16);
          for (int P = 0; P < 4; ++P) acc[P] = _mm512_dpbusd_epi32(acc[P], b[4 * P + g], qg);
        }
        // acc[P] block k: rows 4P..4P+3, quarter k. Per pair of P: blocks
        // (rows 0-3 block 0, rows 0-3 block 1, rows 4-7 block 0, rows 4-7 block 1).
        const __m512i u01 = _mm512_add_epi32(_mm512_shuffle_i32x4(acc[0], acc[1], 0x88),
                                             _mm512_shuffle_i32x4(acc[0], acc[1], 0xDD));
        const __m512i u23 = _mm512_add_epi32(_mm512_shuffle_i32x4(acc[2], acc[3], 0x88),
                                             _mm512_shuffle_i32x4(acc[2], acc[3], 0xDD));
        const __m512 d0 = _mm512_cvtepi32_ps(_mm512_shuffle_i32x4(u01, u23, 0x88));
        const __m512 d1 = _mm512_cvtepi32_ps(_mm512_shuffle_i32x4(u01, u23, 0xDD));
        if constexpr (kScaled) {
          const __m512 f = _mm512_fmadd_ps(d1, ks1, _mm512_mul_ps(d0, ks0));
          _mm512_mask_storeu_ps(dots + static_cast<size_t>(h) * total + j0, valid,
                                _mm512_mul_ps(f, _mm512_set1_ps(qmul[h])));
        } else {
          float* dst = dots + (static_cast<size_t>(h) * slices + c) * 2 * total + j0;
          _mm512_mask_storeu_ps(dst, valid, d0);
          _mm512_mask_storeu_ps(dst + total, valid, d1);
        }
      }
    }
  }
}

// s[h][j] = qmul[h] * (dots[h][0][j] * ks[0][j] + ... ks[nb - 1][j]): the
// blocks in order, each after the first by one FMA; ks: widened K scales
// [nb][total].
}  // namespace

KVINFER_TARGET_ATTN_VNNI void ScaleDotsQ8(const float* __restrict__ dots, const float* __restrict__ ks,
                                     const float* __restrict__ qmul, int group, int nb,
                                     int32_t total, float* __restrict__ s) {
  for (int h = 0; h < group; ++h) {
    const float* dh = dots + static_cast<size_t>(h) * nb * total;
    const __m512 mul = _mm512_set1_ps(qmul[h]);
    for (int32_t j = 0; j < total; j += 16) {
      const __mmask16 valid = static_cast<__mmask16>((1u << std::min<int32_t>(16, total - j)) - 1);
      __m512 f =
          _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, dh + j), _mm512_maskz_loadu_ps(valid, ks + j));
      for (int b = 1; b < nb; ++b) {
        const size_t at = static_cast<size_t>(b) * total + j;
        f = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(valid, dh + at),
                            _mm512_maskz_loadu_ps(valid, ks + at), f);
      }
      _mm512_mask_storeu_ps(s + static_cast<size_t>(h) * total + j, valid, _mm512_mul_ps(f, mul));
    }
  }
}

namespace {

// The values of a q8_0 chunk with AVX-512 VNNI, for head_dim a multiple of
// 64 up to kMaxTileHeadDim: o[h, :] = sum_j p[h, j] * v_j as integer dot
// products. Per block b, the weight p[h, j] * d_jb (d_jb: row j's V scale)
// is rounded to a 15-bit fixed-point fraction of the chunk's largest V scale
// of the block, D_b: w = round(p * d_jb / D_b * 32767), 0 <= w <= 32767
// (p <= 1). Then o[h, i] = D_b / 32767 * sum_j w[h, b, j] * code[j, i], the
// sum exact in int32: vpdpwssd takes two positions per lane (their codes
// widened to int16 and interleaved; the weights as an int16 pair), 2 *
// 127 * 32767 per lane per pair, so 256 pairs fit before a flush to f32.
// Per two positions and 64 dims: 4 widenings, 4 interleaves and 4
// vpdpwssd per head, where f32 FMAs took 8 conversions and 8 FMAs per head.
// The rounding of w costs at most 2^-16 D_b per position, far below the
// codes' own (half a step of d_jb).
//
// vs: the V scales widened, [nb][total]; p: exp(s - max) [group][total];
// wq: scratch for the weights, int16 [group][nb][total rounded up to even].
constexpr int32_t kValuePairsPerFlush = 256;
// How far ahead the values pass prefetches, in positions.
constexpr int32_t kValuePrefetchRows = 32;

// acc += the lane-wise int16 pair dot products of a and b, in place: with
// the intrinsic GCC 12 copied every accumulator out and back around it.
KVINFER_TARGET_ATTN_VNNI X86_INLINE void Dpwssd(__m512i& acc, __m512i a, __m512i b) {
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
}

// One head's sums over 64 dims: the first 32 dims interleaved by unpacklo
// (lo0) and unpackhi (hi0), the next 32 (lo1, hi1).
struct ValueSums {
  __m512i lo0, hi0, lo1, hi1;
};

// One head's share of a position pair: its sums += the interleaved codes
// (l0, h0: the first 32 dims, weights w0 of block 2c; l1, h1: the next 32,
// w1 of block 2c + 1), each weight an int16 pair broadcast to every lane.
KVINFER_TARGET_ATTN_VNNI X86_INLINE void AddHeadPair(ValueSums& a, __m512i l0, __m512i h0, __m512i l1,
                                                __m512i h1, const int16_t* wh, size_t padded) {
  int32_t w0, w1;
  std::memcpy(&w0, wh, sizeof(w0));
  std::memcpy(&w1, wh + padded, sizeof(w1));
  const __m512i v0 = _mm512_set1_epi32(w0), v1 = _mm512_set1_epi32(w1);
  Dpwssd(a.lo0, l0, v0);
  Dpwssd(a.hi0, h0, v0);
  Dpwssd(a.lo1, l1, v1);
  Dpwssd(a.hi1, h1, v1);
}

// A q4_0 slice's 32 bytes at p as int16 codes (minus the offset 8): lo
// from the low nibbles (the slice's first 32 codes), hi from the high ones.
KVINFER_TARGET_ATTN_VNNI X86_INLINE void UnpackQ4Codes(const int8_t* p, __m512i& lo, __m512i& hi) {
  const __m256i nib = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  lo = _mm512_cvtepi8_epi16(_mm256_sub_epi8(_mm256_and_si256(raw, nib), eight));
  hi = _mm512_cvtepi8_epi16(
      _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), nib), eight));
}

// 32 int8 codes at p widened to int16.
KVINFER_TARGET_ATTN_VNNI X86_INLINE __m512i WidenCodes(const int8_t* p) {
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The sums of `pairs` position pairs (rows[2k], rows[2k + 1], 64 dims from
// offset `at`) for HB <= 4 heads (head h's weights of block 2c at w + h *
// wstride, block 2c + 1 `padded` further) into sums[HB]. The accumulators
// are named variables in a function of its own: as an array, or inlined
// into the batching loop, GCC 12 stored them to the stack on every pair.
// kQ4: the rows are q4_0 (`at` then a slice's byte offset, 32 per slice):
// the low nibbles are the slice's first 32 codes + 8, the high ones the
// next 32.
template <int HB, bool kQ4>
KVINFER_TARGET_ATTN_VNNI X86_NOINLINE void SumValuePairs(const int8_t* const* rows, int32_t pairs,
                                                    size_t at, const int16_t* w,
                                                    size_t wstride, size_t padded,
                                                    ValueSums* __restrict__ sums) {
  static_assert(HB >= 1 && HB <= 4);
  const __m512i zero = _mm512_setzero_si512();
  ValueSums s0{zero, zero, zero, zero}, s1 = s0, s2 = s0, s3 = s0;
  for (int32_t k = 0; k < pairs; ++k) {
    const int8_t* ra = rows[2 * k] + at;
    const int8_t* rb = rows[2 * k + 1] + at;
    // The rows 32 positions ahead, wherever their blocks are (rows[] runs
    // kValuePrefetchRows past the last pair, repeating the last row).
    const int8_t* const* ahead = rows + 2 * k + kValuePrefetchRows;
    _mm_prefetch(reinterpret_cast<const char*>(ahead[0] + at), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ahead[1] + at), _MM_HINT_T0);
    __m512i a0, a1, b0, b1;
    if constexpr (kQ4) {
      UnpackQ4Codes(ra, a0, a1);
      UnpackQ4Codes(rb, b0, b1);
    } else {
      a0 = WidenCodes(ra), a1 = WidenCodes(ra + 32), b0 = WidenCodes(rb), b1 = WidenCodes(rb + 32);
    }
    const __m512i l0 = _mm512_unpacklo_epi16(a0, b0), h0 = _mm512_unpackhi_epi16(a0, b0);
    const __m512i l1 = _mm512_unpacklo_epi16(a1, b1), h1 = _mm512_unpackhi_epi16(a1, b1);
    const int16_t* wk = w + 2 * static_cast<size_t>(k);
    AddHeadPair(s0, l0, h0, l1, h1, wk, padded);
    if constexpr (HB > 1) AddHeadPair(s1, l0, h0, l1, h1, wk + wstride, padded);
    if constexpr (HB > 2) AddHeadPair(s2, l0, h0, l1, h1, wk + 2 * wstride, padded);
    if constexpr (HB > 3) AddHeadPair(s3, l0, h0, l1, h1, wk + 3 * wstride, padded);
  }
  sums[0] = s0;
  if constexpr (HB > 1) sums[1] = s1;
  if constexpr (HB > 2) sums[2] = s2;
  if constexpr (HB > 3) sums[3] = s3;
}

// o[0, 64) (+)= one head's sums, dims back in order and scaled by vmul[0]
// (the first 32) and vmul[1]: lane 4k + i of an unpacklo / unpackhi vector
// holds dim 8k + i / 8k + 4 + i of its 32 dims. By value: GCC 12 kept
// mirroring the accumulators to memory in the loop when this took a pointer.
KVINFER_TARGET_ATTN_VNNI X86_INLINE void FlushValueSums(ValueSums a, const float* vmul, bool add,
                                                   float* __restrict__ o) {
  const __m512i idx_lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i idx_hi =
      _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int half = 0; half < 2; ++half) {
    const __m512 m = _mm512_set1_ps(vmul[half]);
    const __m512 lo = _mm512_cvtepi32_ps(half == 0 ? a.lo0 : a.lo1);
    const __m512 hi = _mm512_cvtepi32_ps(half == 0 ? a.hi0 : a.hi1);
    __m512 d0 = _mm512_mul_ps(_mm512_permutex2var_ps(lo, idx_lo, hi), m);
    __m512 d1 = _mm512_mul_ps(_mm512_permutex2var_ps(lo, idx_hi, hi), m);
    float* dst = o + 32 * half;
    if (add) {
      d0 = _mm512_add_ps(_mm512_loadu_ps(dst), d0);
      d1 = _mm512_add_ps(_mm512_loadu_ps(dst + 16), d1);
    }
    _mm512_storeu_ps(dst, d0);
    _mm512_storeu_ps(dst + 16, d1);
  }
}

// exp(x) for x <= 0 (a score less its head's maximum): x = n ln 2 + r with
// n = round(x / ln 2) and |r| <= ln 2 / 2 (ln 2 in two parts, so r keeps its
// low bits), e^r by its Taylor polynomial of degree 6 (truncation below 2e-7
// relative), then times 2^n by vscalefps, which goes to 0 below the
// smallest float. x is clamped at -104 (e^-104 is 0 in f32 either way), so
// any input gives a finite r. About half the instructions of hn::Exp, which
// handles every sign and range.
KVINFER_TARGET_ATTN_VNNI X86_INLINE __m512 ExpNonPositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Softmax and values of a q8_0 chunk: per head, m = max_j s[h, j], p = exp(s
// - m), l = sum p, and the weights w[h, b, j] (above) of every block, in one
// pass; then the values. s: the scores [group][total]; vs: the V scales
// widened, [nb][total]; wq: int16 [group][nb][total rounded up to 32].
// kQ4: q4_0 value rows.
template <bool kQ4>
KVINFER_TARGET_ATTN_VNNI X86_NOINLINE void SoftmaxValuesQ8VnniT(
    int group, int hd, std::span<const KvSpan> spans, int32_t total, const float* __restrict__ s,
    float* __restrict__ vs, int16_t* __restrict__ wq, float* m, float* l, float* __restrict__ o) {
  const int nb = hd / kKvQ8Block;
  const int32_t padded = WeightRowPositions(total);
  float vmul[kMaxTileHeadDim / kKvQ8Block];
  // Lanes [0, left) of a 16-lane vector.
  auto mask = [](int32_t left) {
    return static_cast<__mmask16>(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
  };
  // vs[b][j] becomes d_jb / D_b * 32767, shared by the heads. D_b is the
  // largest |d_jb| (q4_0's scales can be negative).
  for (int b = 0; b < nb; ++b) {
    float* vb = vs + static_cast<size_t>(b) * total;
    __m512 vmax = _mm512_setzero_ps();
    for (int32_t j = 0; j < total; j += 16) {
      vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask(total - j), vb + j)));
    }
    const float dmax = _mm512_reduce_max_ps(vmax);
    vmul[b] = dmax / 32767.0f;
    const __m512 inv = _mm512_set1_ps(dmax > 0.0f ? 32767.0f / dmax : 0.0f);
    for (int32_t j = 0; j < total; j += 16) {
      const __mmask16 valid = mask(total - j);
      _mm512_mask_storeu_ps(vb + j, valid,
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, vb + j), inv));
    }
  }
  for (int h = 0; h < group; ++h) {
    const float* sh = s + static_cast<size_t>(h) * total;
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int32_t j = 0; j < total; j += 16) {
      vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(vm, mask(total - j), sh + j));
    }
    const float mx = _mm512_reduce_max_ps(vm);
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int32_t j = 0; j < padded; j += 32) {
      const __mmask16 valid0 = mask(total - j), valid1 = mask(total - j - 16);
      // Lanes past the end: exp of 0 - max, then zeroed.
      const __m512 p0 = _mm512_maskz_mov_ps(
          valid0, ExpNonPositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(valid0, sh + j), vmx)));
      const __m512 p1 = _mm512_maskz_mov_ps(
          valid1, ExpNonPositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(valid1, sh + j + 16), vmx)));
      sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
      for (int b = 0; b < nb; ++b) {
        const float* vb = vs + static_cast<size_t>(b) * total + j;
        // Round to nearest even (MXCSR's default), then saturate to int16:
        // p <= 1, so only a rounding past 32767 saturates.
        const __m512i w0 = _mm512_cvtps_epi32(_mm512_mul_ps(p0, _mm512_maskz_loadu_ps(valid0, vb)));
        const __m512i w1 =
            _mm512_cvtps_epi32(_mm512_mul_ps(p1, _mm512_maskz_loadu_ps(valid1, vb + 16)));
        // vpackssdw takes 4 weights from each operand in turn; vpermq puts
        // its 64-bit quarters back in position order.
        _mm512_storeu_si512(wq + (static_cast<size_t>(h) * nb + b) * padded + j,
                            _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7),
                                                     _mm512_packs_epi32(w0, w1)));
      }
    }
    m[h] = mx;
    l[h] = _mm512_reduce_add_ps(sum);
  }

  // The values, in batches of positions whose int32 sums cannot overflow.
  constexpr int32_t kBatch = 2 * kValuePairsPerFlush;
  const int8_t* rows[kBatch + kValuePrefetchRows + 2];
  const int slices = hd / 64;
  const size_t rs = kQ4 ? static_cast<size_t>(hd) / 2 : static_cast<size_t>(hd);  // row bytes
  const size_t wstride = static_cast<size_t>(nb) * padded;
  size_t si = 0;
  int32_t t_in_span = 0;
  for (int32_t j0 = 0; j0 < total; j0 += kBatch) {
    const int32_t n = std::min(kBatch, total - j0);
    for (int32_t filled = 0; filled < n;) {
      while (t_in_span == spans[si].n) {
        ++si;
        t_in_span = 0;
      }
      const int32_t take = std::min(spans[si].n - t_in_span, n - filled);
      const int8_t* base =
          static_cast<const int8_t*>(spans[si].v) + static_cast<size_t>(t_in_span) * rs;
      for (int32_t t = 0; t < take; ++t) rows[filled + t] = base + static_cast<size_t>(t) * rs;
      filled += take;
      t_in_span += take;
    }
    // An odd count: the padding position (weight 0) reads the last row again.
    // Then the prefetch targets past the end: the last row again.
    std::fill(rows + n, rows + n + 1 + kValuePrefetchRows + 1, rows[n - 1]);
    const int32_t pairs = (n + 1) / 2;
    for (int h0 = 0; h0 < group; h0 += kMaxHeadsPerPass) {
      const int hb = std::min(kMaxHeadsPerPass, group - h0);
      for (int c = 0; c < slices; ++c) {
        const int16_t* w = wq + (static_cast<size_t>(h0) * nb + 2 * c) * padded + j0;
        const size_t at = static_cast<size_t>(kQ4 ? 32 : 64) * c;  // bytes into a row
        ValueSums sums[kMaxHeadsPerPass];
        switch (hb) {
          case 1: SumValuePairs<1, kQ4>(rows, pairs, at, w, wstride, padded, sums); break;
          case 2: SumValuePairs<2, kQ4>(rows, pairs, at, w, wstride, padded, sums); break;
          case 3: SumValuePairs<3, kQ4>(rows, pairs, at, w, wstride, padded, sums); break;
          default: SumValuePairs<4, kQ4>(rows, pairs, at, w, wstride, padded, sums); break;
        }
        for (int h = 0; h < hb; ++h) {
          FlushValueSums(sums[h], vmul + 2 * c, j0 > 0,
                         o + static_cast<size_t>(h0 + h) * hd + static_cast<size_t>(64) * c);
        }
      }
    }
  }
}

}  // namespace

void Scores16(KvElem elem, const float* q, int group, int hd, float scale,
              std::span<const KvSpan> spans, int32_t total, const float* kv_scales, float* s) {
  switch (elem) {
    case KvElem::kF32:
      return Scores16T<KvElem::kF32>(q, group, hd, scale, spans, total, kv_scales, s);
    case KvElem::kF16:
      return Scores16T<KvElem::kF16>(q, group, hd, scale, spans, total, kv_scales, s);
    case KvElem::kQ8:
      return Scores16T<KvElem::kQ8>(q, group, hd, scale, spans, total, kv_scales, s);
  }
}

bool UsesQ8Vnni(int hd) {
  return hd % 64 == 0 && hd <= kMaxTileHeadDim && CpuRuns(Isa::kAvx512Vnni);
}

void DotsQ8Vnni(bool q4, const int8_t* qc, int group, int hd, std::span<const KvSpan> spans,
                int32_t total, int32_t* qv, const float* qmul, float* dots) {
  if (hd == 64) {
    return q4 ? DotsQ8VnniT<64, true>(qc, group, hd, spans, total, qv, qmul, dots)
              : DotsQ8VnniT<64, false>(qc, group, hd, spans, total, qv, qmul, dots);
  }
  if (hd == 128) {
    return q4 ? DotsQ8VnniT<128, true>(qc, group, hd, spans, total, qv, qmul, dots)
              : DotsQ8VnniT<128, false>(qc, group, hd, spans, total, qv, qmul, dots);
  }
  return q4 ? DotsQ8VnniT<0, true>(qc, group, hd, spans, total, qv, qmul, dots)
            : DotsQ8VnniT<0, false>(qc, group, hd, spans, total, qv, qmul, dots);
}

void SoftmaxValuesQ8Vnni(bool q4, int group, int hd, std::span<const KvSpan> spans,
                         int32_t total, const float* s, float* vs, int16_t* wq, float* m, float* l,
                         float* o) {
  return q4 ? SoftmaxValuesQ8VnniT<true>(group, hd, spans, total, s, vs, wq, m, l, o)
            : SoftmaxValuesQ8VnniT<false>(group, hd, spans, total, s, vs, wq, m, l, o);
}

}  // namespace kvinfer::ops::x86

#endif  // defined(__x86_64__) || defined(__i386__)
