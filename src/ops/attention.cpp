// The attention kernel (see attention.h), compiled per SIMD target by
// Highway's foreach_target and chosen at run time.
//
// One call does three passes over a chunk of at most a few hundred
// positions, all of it in L1/L2:
//   1. scores: each key row is loaded once and dotted with every query head
//      of the group (GQA heads share their KV head's keys);
//   2. per head: max, exp(s - max), sum;
//   3. values: register accumulators for up to 4 heads x up to 4 slices of
//      head_dim take one FMA per position each, with the position's weight
//      broadcast; each value row is read once per pass and the output
//      written once.
// The vector width is the widest that divides head_dim (AVX-512: 16 lanes
// for head_dim 64 or 128), down to scalar for odd sizes.
//
// Element types: f32, f16 and q8_0 (int8 codes, an f16 scale per 32),
// widened to f32 on load. With AVX-512 the scores pass widens a tile of 16
// key rows once into an L1 buffer and dots every query head against it,
// rather than widening each row once per head. For q8_0 keys q is rounded
// to int8 (per head) on every target, and with AVX-512 VNNI the scores are
// integer dot products per 32-element block (DotsQ8Vnni), scaled by the
// block scales only afterwards, in one vector pass (ScaleDotsQ8). q8_0
// values: the block scales are folded into the softmax weights once per
// chunk (FoldValueScales: group x blocks x positions products), so the
// values pass only converts the codes to f32 and takes one FMA per head;
// with VNNI the folded weights are rounded to 15 bits and the values are
// integer dot products of two positions at a time (SoftmaxValuesQ8Vnni).
// q4_0 (4-bit codes, the same scales) takes q8_0's integer kernels with the
// nibbles unpacked in registers, or elsewhere a chunk unpacked to q8_0
// codes first (UnpackQ4).
// Long contexts stream K/V from L3 or memory, so the passes prefetch 16 rows
// ahead (q8_0: 32, following the spans: SpanPrefetcher).

#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/attention.cpp"
// clang-format off
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace kvinfer::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int kMaxHeadsPerPass = 4;

#undef KVINFER_ATTN_AVX3
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#define KVINFER_ATTN_AVX3 1
#else
#define KVINFER_ATTN_AVX3 0
#endif

// Tag type of q8_0 K/V (KvPrecision::kQ8_0).
struct Q8 {};
// Bytes per cached element (q8_0: the codes; the scales lie apart).
template <typename T>
constexpr size_t kKvElemBytes = std::is_same_v<T, Q8> ? 1 : sizeof(T);

#if KVINFER_ATTN_AVX3
// WidenScales for two blocks per row (head_dim 33..64) with AVX-512: 16
// rows' scales (32 f16) widened and split by block in three shuffles,
// straight into out[kv][b][j], no transpose buffer.
HWY_INLINE void WidenScalesTwoBlocks(std::span<const KvSpan> spans, int32_t total, int first_kv,
                             float* out) {
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
#endif  // KVINFER_ATTN_AVX3

// f32 copies of the q8_0 scales of a chunk's keys (kv = 0) and values
// (kv = 1), block-major: out[kv][b][j] for block b of chunk row j, so that
// one vector load gives consecutive rows' scales of a block. Converted once
// per chunk rather than once per use; tmp holds nb * total floats (the
// rows' scales widened in place before the transpose). first_kv 1: the
// values' only (their keys' scales already applied).
HWY_INLINE void WidenScales(std::span<const KvSpan> spans, int32_t total, int nb, float* tmp,
                            float* out, int first_kv = 0) {
#if KVINFER_ATTN_AVX3
  if (nb == 2) return WidenScalesTwoBlocks(spans, total, first_kv, out);
#endif
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const int32_t N = static_cast<int32_t>(hn::Lanes(d));
  for (int kv = first_kv; kv < 2; ++kv) {
    float* const blocks = out + static_cast<size_t>(kv) * nb * total;
    // One block per row is already block-major.
    float* dst = nb == 1 ? blocks : tmp;
    for (const KvSpan& sp : spans) {
      const auto* src = reinterpret_cast<const hwy::float16_t*>(kv == 0 ? sp.k_scale : sp.v_scale);
      const size_t n = static_cast<size_t>(sp.n) * nb;
      size_t i = 0;
      for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, src + i)), d, dst + i);
      for (; i < n; ++i) dst[i] = F16ToF32(reinterpret_cast<const uint16_t*>(src)[i]);
      dst += n;
    }
    int32_t j = 0;
    if (nb == 2) {
      for (; j + N <= total; j += N) {
        hn::Vec<decltype(d)> b0, b1;
        hn::LoadInterleaved2(d, tmp + 2 * j, b0, b1);
        hn::StoreU(b0, d, blocks + j);
        hn::StoreU(b1, d, blocks + total + j);
      }
    } else if (nb == 4) {
      for (; j + N <= total; j += N) {
        hn::Vec<decltype(d)> b0, b1, b2, b3;
        hn::LoadInterleaved4(d, tmp + 4 * j, b0, b1, b2, b3);
        hn::StoreU(b0, d, blocks + j);
        hn::StoreU(b1, d, blocks + total + j);
        hn::StoreU(b2, d, blocks + 2 * total + j);
        hn::StoreU(b3, d, blocks + 3 * total + j);
      }
    }
    if (nb > 1) {
      for (; j < total; ++j) {
        for (int b = 0; b < nb; ++b) {
          blocks[static_cast<size_t>(b) * total + j] = tmp[static_cast<size_t>(j) * nb + b];
        }
      }
    }
  }
}

// Row t of a span's keys (kv = 0) or values (kv = 1), loadable as f32
// vectors of lanes [c, c + Lanes(d)); c is a multiple of Lanes(d), which
// divides 32, so one vector never straddles two q8_0 blocks.
template <typename T>
struct KvRow {
  const T* p;
  template <class D>
  HWY_INLINE hn::Vec<D> Load(D d, int c) const {
    if constexpr (std::is_same_v<T, float>) {
      return hn::LoadU(d, p + c);
    } else {
      const hn::Rebind<hwy::float16_t, D> dh;
      return hn::PromoteTo(d, hn::LoadU(dh, p + c));
    }
  }
};
template <>
struct KvRow<Q8> {
  const int8_t* p;
  const float* scale;  // the row's widened scale of block 0; block b at b * stride
  int32_t stride;
  // The codes as f32, not scaled.
  template <class D>
  HWY_INLINE hn::Vec<D> LoadCodes(D d, int c) const {
    const hn::Rebind<int8_t, D> d8;
    const hn::Rebind<int32_t, D> di;
    return hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(d8, p + c)));
  }
  template <class D>
  HWY_INLINE hn::Vec<D> Load(D d, int c) const {
    return hn::Mul(LoadCodes(d, c),
                   hn::Set(d, scale[static_cast<size_t>(c / kKvQ8Block) * stride]));
  }
};

// Row t of span sp, which is row j of the chunk; scales: WidenScales' output
// (q8_0 only).
template <typename T>
HWY_INLINE KvRow<T> RowOf(const KvSpan& sp, int kv, int32_t t, int hd, const float* scales,
                          int32_t total, int32_t j) {
  if constexpr (std::is_same_v<T, Q8>) {
    const int nb = KvQ8Blocks(hd);
    return {static_cast<const int8_t*>(kv == 0 ? sp.k : sp.v) + static_cast<size_t>(t) * hd,
            scales + static_cast<size_t>(kv) * nb * total + j, total};
  } else {
    (void)scales;
    (void)total;
    (void)j;
    return {static_cast<const T*>(kv == 0 ? sp.k : sp.v) + static_cast<size_t>(t) * hd};
  }
}

// Prefetches K (kv = 0) or V (kv = 1) rows a fixed number of positions
// ahead of a pass over the spans, following the spans rather than the
// memory after the current row: a paged cache's next block lies anywhere in
// the pool, where "the row 32 ahead in memory" misses. Used for q8_0 only:
// for f32 and f16 (4 and 2 cache lines per row) the bursts of hints cost
// more with blocks in order and at short contexts than they gain on
// scattered blocks (bench/attention_bench.cpp, BM_AttentionDecode, compares
// the layouts).
class SpanPrefetcher {
 public:
  SpanPrefetcher(std::span<const KvSpan> spans, int kv, size_t row_bytes, int32_t ahead)
      : spans_(spans), kv_(kv), row_bytes_(row_bytes) {
    Next(ahead, false);
  }
  // Asks for the next `rows` rows (whole rows) and moves past them.
  HWY_INLINE void Next(int32_t rows, bool prefetch = true) {
    while (rows > 0 && si_ < spans_.size()) {
      const KvSpan& sp = spans_[si_];
      const int32_t take = std::min(rows, sp.n - t_);
      if (prefetch) {
        const char* p = static_cast<const char*>(kv_ == 0 ? sp.k : sp.v) +
                        static_cast<size_t>(t_) * row_bytes_;
        const size_t bytes = static_cast<size_t>(take) * row_bytes_;
        for (size_t c = 0; c < bytes; c += 64) hwy::Prefetch(p + c);
      }
      rows -= take;
      t_ += take;
      if (t_ == sp.n) {
        ++si_;
        t_ = 0;
      }
    }
  }

 private:
  std::span<const KvSpan> spans_;
  int kv_;
  size_t row_bytes_;
  size_t si_ = 0;
  int32_t t_ = 0;
};

#if KVINFER_ATTN_AVX3
// One vector holding the lane sums of 16 vectors: lane i = sum of a[i]'s
// lanes. 45 shuffles and adds for 16 sums, where 16 separate horizontal
// reductions would cost ~4x that: (1) within each 128-bit quarter, pairs of
// vectors are interleaved and added, then (2) pairs of those as 64-bit
// halves, leaving per quarter the quarter-sums of four vectors; (3, 4) the
// four quarters are added across by two rounds of 128-bit shuffles.
HWY_INLINE __m512 SumsOf16(const __m512* a) {
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

// Widest head_dim whose 16-row key tile Scores16 widens into a stack
// buffer (16 KiB); f32 keys need no buffer.
constexpr int kMaxTileHeadDim = 256;

// Scores for head_dim a multiple of 16: keys in tiles of 16, each head's 16
// dot products reduced together by SumsOf16. f16 / q8_0 tiles are widened
// to f32 once, then read by every head of the group.
template <typename T>
HWY_INLINE void Scores16(const float* HWY_RESTRICT q, int group, int hd, float scale,
                         std::span<const KvSpan> spans, int32_t total, const float* kv_scales,
                         float* HWY_RESTRICT s) {
  const hn::ScalableTag<float> d;
  alignas(64) float tile[std::is_same_v<T, float> ? 1 : 16 * kMaxTileHeadDim];
  const float* kp[16];
  const __m512 vscale = _mm512_set1_ps(scale);
  size_t si = 0;
  int32_t t_in_span = 0;
  for (int32_t j0 = 0; j0 < total; j0 += 16) {
    const int m = std::min<int32_t>(16, total - j0);
    for (int t = 0; t < m; ++t) {
      while (t_in_span == spans[si].n) {
        ++si;
        t_in_span = 0;
      }
      const KvRow<T> row = RowOf<T>(spans[si], 0, t_in_span++, hd, kv_scales, total, j0 + t);
      // The row 16 ahead in memory (f32 / f16: a SpanPrefetcher's bursts
      // cost more here than they gain on a paged layout, see there).
      for (int c = 0; c < hd * static_cast<int>(sizeof(*row.p)); c += 64) {
        hwy::Prefetch(reinterpret_cast<const char*>(row.p + 16 * hd) + c);
      }
      if constexpr (std::is_same_v<T, float>) {
        kp[t] = row.p;
      } else {
        float* dst = tile + static_cast<size_t>(t) * hd;
        for (int c = 0; c < hd; c += 16) hn::Store(row.Load(d, c), d, dst + c);
        kp[t] = dst;
      }
    }
    for (int t = m; t < 16; ++t) kp[t] = kp[0];  // padding, results dropped
    for (int h = 0; h < group; ++h) {
      const float* HWY_RESTRICT qh = q + static_cast<size_t>(h) * hd;
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
HWY_INLINE void PrefetchScales(const KvSpan& sp, int nb) {
  const size_t bytes = static_cast<size_t>(sp.n) * nb * sizeof(uint16_t);
  for (size_t c = 0; c < bytes; c += 64) {
    hwy::Prefetch(reinterpret_cast<const char*>(sp.k_scale) + c);
    hwy::Prefetch(reinterpret_cast<const char*>(sp.v_scale) + c);
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
#define KVINFER_TARGET_VNNI \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

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
KVINFER_TARGET_VNNI HWY_NOINLINE void DotsQ8Vnni(const int8_t* HWY_RESTRICT qc, int group,
                                                 int head_dim, std::span<const KvSpan> spans,
                                                 int32_t total, int32_t* HWY_RESTRICT qv,
                                                 const float* HWY_RESTRICT qmul,
                                                 float* HWY_RESTRICT dots) {
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
KVINFER_TARGET_VNNI HWY_NOINLINE void ScaleDotsQ8(const float* HWY_RESTRICT dots,
                                                  const float* HWY_RESTRICT ks,
                                                  const float* HWY_RESTRICT qmul, int group, int nb,
                                                  int32_t total, float* HWY_RESTRICT s) {
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
KVINFER_TARGET_VNNI HWY_INLINE void Dpwssd(__m512i& acc, __m512i a, __m512i b) {
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
KVINFER_TARGET_VNNI HWY_INLINE void AddHeadPair(ValueSums& a, __m512i l0, __m512i h0, __m512i l1,
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

// The sums of `pairs` position pairs (rows[2k], rows[2k + 1], 64 dims from
// offset `at`) for HB <= 4 heads (head h's weights of block 2c at w + h *
// wstride, block 2c + 1 `padded` further) into sums[HB]. The accumulators
// are named variables in a function of its own: as an array, or inlined
// into the batching loop, GCC 12 stored them to the stack on every pair.
// kQ4: the rows are q4_0 (`at` then a slice's byte offset, 32 per slice):
// the low nibbles are the slice's first 32 codes + 8, the high ones the
// next 32.
template <int HB, bool kQ4>
KVINFER_TARGET_VNNI HWY_NOINLINE void SumValuePairs(const int8_t* const* rows, int32_t pairs,
                                                    size_t at, const int16_t* w,
                                                    size_t wstride, size_t padded,
                                                    ValueSums* HWY_RESTRICT sums) {
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
      const __m256i nib = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
      auto unpack = [&](const int8_t* p, __m512i& lo, __m512i& hi) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        lo = _mm512_cvtepi8_epi16(_mm256_sub_epi8(_mm256_and_si256(raw, nib), eight));
        hi = _mm512_cvtepi8_epi16(
            _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), nib), eight));
      };
      unpack(ra, a0, a1);
      unpack(rb, b0, b1);
    } else {
      auto widen = [](const int8_t* p) {
        return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      };
      a0 = widen(ra), a1 = widen(ra + 32), b0 = widen(rb), b1 = widen(rb + 32);
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
KVINFER_TARGET_VNNI HWY_INLINE void FlushValueSums(ValueSums a, const float* vmul, bool add,
                                                   float* HWY_RESTRICT o) {
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
KVINFER_TARGET_VNNI HWY_INLINE __m512 ExpNonPositive(__m512 x) {
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
KVINFER_TARGET_VNNI HWY_NOINLINE void SoftmaxValuesQ8Vnni(
    int group, int hd, std::span<const KvSpan> spans, int32_t total, const float* HWY_RESTRICT s,
    float* HWY_RESTRICT vs, int16_t* HWY_RESTRICT wq, float* m, float* l, float* HWY_RESTRICT o) {
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

bool CpuHasVnni() {
  static const bool has = __builtin_cpu_supports("avx512vnni");
  return has;
}
#endif  // KVINFER_ATTN_AVX3

template <typename T, class D>
HWY_INLINE void Scores(D d, const float* HWY_RESTRICT q, int group, int hd, float scale,
                       std::span<const KvSpan> spans, int32_t total, const float* kv_scales,
                       float* HWY_RESTRICT s) {
  const int L = static_cast<int>(hn::Lanes(d));
#if KVINFER_ATTN_AVX3
  if (L == 16 && (std::is_same_v<T, float> || hd <= kMaxTileHeadDim)) {
    return Scores16<T>(q, group, hd, scale, spans, total, kv_scales, s);
  }
#endif
  int32_t j = 0;
  for (const KvSpan& sp : spans) {
    for (int32_t t = 0; t < sp.n; ++t, ++j) {
      const KvRow<T> k = RowOf<T>(sp, 0, t, hd, kv_scales, total, j);
      for (int h = 0; h < group; ++h) {
        const float* HWY_RESTRICT qh = q + static_cast<size_t>(h) * hd;
        auto acc0 = hn::Zero(d);
        auto acc1 = hn::Zero(d);
        int c = 0;
        for (; c + 2 * L <= hd; c += 2 * L) {
          acc0 = hn::MulAdd(hn::LoadU(d, qh + c), k.Load(d, c), acc0);
          acc1 = hn::MulAdd(hn::LoadU(d, qh + c + L), k.Load(d, c + L), acc1);
        }
        if (c < hd) acc0 = hn::MulAdd(hn::LoadU(d, qh + c), k.Load(d, c), acc0);
        s[static_cast<size_t>(h) * total + j] =
            hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1))) * scale;
      }
    }
  }
}

// With q8_0 K, q too is rounded to int8, one scale per head (dq = max|q_h| /
// 127), so that AVX-512 VNNI can take integer dot products; every target
// uses the same rounded q (qr = dq * codes), so they all compute the same
// scores up to f32 summation order. mul[h] = scale * dq.
HWY_INLINE void QuantizeQuery(const float* q, int group, int hd, float scale, int8_t* codes,
                              float* mul, float* qr) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<int32_t, decltype(d)> di;
  const hn::Rebind<int8_t, decltype(d)> d8;
  const int N = static_cast<int>(hn::Lanes(d));
  for (int h = 0; h < group; ++h) {
    const float* x = q + static_cast<size_t>(h) * hd;
    int8_t* c = codes + static_cast<size_t>(h) * hd;
    float* r = qr + static_cast<size_t>(h) * hd;
    int i = 0;
    auto vmax = hn::Zero(d);
    for (; i + N <= hd; i += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(d, x + i)));
    float amax = hn::GetLane(hn::MaxOfLanes(d, vmax));
    for (; i < hd; ++i) amax = std::max(amax, std::abs(x[i]));
    const float dq = amax / 127.0f;
    if (dq == 0.0f) {
      std::fill(c, c + hd, int8_t{0});
      std::fill(r, r + hd, 0.0f);
    } else {
      // Round(x / dq) is nearbyint's round-half-to-even; |x / dq| <= 127.
      const auto vdq = hn::Set(d, dq);
      for (i = 0; i + N <= hd; i += N) {
        const auto code = hn::Round(hn::Div(hn::LoadU(d, x + i), vdq));
        hn::StoreU(hn::Mul(code, vdq), d, r + i);
        hn::StoreU(hn::DemoteTo(d8, hn::ConvertTo(di, code)), d8, c + i);
      }
      for (; i < hd; ++i) {
        c[i] = static_cast<int8_t>(std::nearbyint(x[i] / dq));
        r[i] = dq * static_cast<float>(c[i]);
      }
    }
    mul[h] = scale * dq;
  }
}

// s[0, n) = exp(s - max); returns (max, sum).
HWY_INLINE void ExpRow(float* HWY_RESTRICT s, int32_t n, float* m_out, float* l_out) {
  const hn::ScalableTag<float> df;
  const int32_t N = static_cast<int32_t>(hn::Lanes(df));
  float mx = -INFINITY;
  int32_t i = 0;
  {
    auto vm = hn::Set(df, -INFINITY);
    for (; i + N <= n; i += N) vm = hn::Max(vm, hn::LoadU(df, s + i));
    mx = hn::GetLane(hn::MaxOfLanes(df, vm));
    for (; i < n; ++i) mx = std::max(mx, s[i]);
  }
  const auto vmax = hn::Set(df, mx);
  auto vsum = hn::Zero(df);
  i = 0;
  for (; i + N <= n; i += N) {
    const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, s + i), vmax));
    hn::StoreU(e, df, s + i);
    vsum = hn::Add(vsum, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  if (i < n) {
    // The tail through one padded vector, so every element sees the same exp.
    alignas(64) float buf[16] = {};  // lanes past the tail are discarded
    std::memcpy(buf, s + i, static_cast<size_t>(n - i) * sizeof(float));
    const auto e = hn::Exp(df, hn::Sub(hn::Load(df, buf), vmax));
    hn::Store(e, df, buf);
    for (int32_t t = 0; t < n - i; ++t) {
      s[i + t] = buf[t];
      sum += buf[t];
    }
  }
  *m_out = mx;
  *l_out = sum;
}

// o[h, :] = sum_j p[h, j] v_j for HB heads, NS vector slices of head_dim at
// a time: HB x NS independent accumulators, so consecutive FMAs never wait
// on each other (one chain per head would be bound by the FMA latency).
// q8_0: p holds the weights with the block scales folded in (FoldValueScales:
// [nb][total][HB]), and each slice's codes take the weight of their block;
// a row's HB weights of a block are adjacent, so its FMAs take their
// broadcasts from one or two pointers at fixed offsets.
template <typename T, int HB, int NS, class D>
HWY_INLINE void WeightedValues(D d, int hd, std::span<const KvSpan> spans, int32_t total,
                               const float* kv_scales, const float* HWY_RESTRICT p,
                               float* HWY_RESTRICT o) {
  const int L = static_cast<int>(hn::Lanes(d));
  for (int c = 0; c < hd; c += NS * L) {
    hn::Vec<D> acc[HB][NS];
    for (int h = 0; h < HB; ++h) {
      for (int k = 0; k < NS; ++k) acc[h][k] = hn::Zero(d);
    }
    int32_t j = 0;
    // K/V stream from L3 or memory. q8_0: the rows 32 positions ahead (as
    // DotsQ8Vnni), 16 at a time, in the first slice's pass (the later ones
    // find them in L2); f32 / f16: the row 16 ahead in memory, one line.
    SpanPrefetcher prefetch(spans, 1, static_cast<size_t>(hd) * kKvElemBytes<T>,
                            std::is_same_v<T, Q8> ? 32 : 0);
    for (const KvSpan& sp : spans) {
      for (int32_t t = 0; t < sp.n; ++t, ++j) {
        const KvRow<T> v = RowOf<T>(sp, 1, t, hd, kv_scales, total, j);
        if constexpr (std::is_same_v<T, Q8>) {
          if (c == 0 && j % 16 == 0) prefetch.Next(16);
        } else {
          hwy::Prefetch(v.p + 16 * hd + c);
        }
        hn::Vec<D> vv[NS];
        if constexpr (std::is_same_v<T, Q8>) {
          // Row j's weights in the block of slice 0 (of this group of slices).
          const size_t block_stride = static_cast<size_t>(total) * HB;
          const float* wj =
              p + static_cast<size_t>(c / kKvQ8Block) * block_stride + static_cast<size_t>(j) * HB;
          for (int k = 0; k < NS; ++k) vv[k] = v.LoadCodes(d, c + k * L);
          for (int h = 0; h < HB; ++h) {
            for (int k = 0; k < NS; ++k) {
              // Slice k lies in block (k * L) / 32 of the group (L divides 32).
              const float w = wj[static_cast<size_t>(k * L / kKvQ8Block) * block_stride + h];
              acc[h][k] = hn::MulAdd(hn::Set(d, w), vv[k], acc[h][k]);
            }
          }
        } else {
          for (int k = 0; k < NS; ++k) vv[k] = v.Load(d, c + k * L);
          for (int h = 0; h < HB; ++h) {
            const auto w = hn::Set(d, p[static_cast<size_t>(h) * total + j]);
            for (int k = 0; k < NS; ++k) acc[h][k] = hn::MulAdd(w, vv[k], acc[h][k]);
          }
        }
      }
    }
    for (int h = 0; h < HB; ++h) {
      for (int k = 0; k < NS; ++k) {
        hn::StoreU(acc[h][k], d, o + static_cast<size_t>(h) * hd + c + k * L);
      }
    }
  }
}

// Accumulators the register file holds next to the loaded slices: 32 vector
// registers with AVX-512, 16 elsewhere.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr int kMaxAccumulators = 12;
#else
constexpr int kMaxAccumulators = 6;
#endif

template <typename T, int HB, class D>
HWY_INLINE void WeightedValuesHeads(D d, int hd, std::span<const KvSpan> spans, int32_t total,
                                    const float* kv_scales, const float* p, float* o) {
  const int slices = hd / static_cast<int>(hn::Lanes(d));
  if (slices % 4 == 0 && HB * 4 <= kMaxAccumulators) {
    WeightedValues<T, HB, 4>(d, hd, spans, total, kv_scales, p, o);
  } else if (slices % 2 == 0 && HB * 2 <= kMaxAccumulators) {
    WeightedValues<T, HB, 2>(d, hd, spans, total, kv_scales, p, o);
  } else {
    WeightedValues<T, HB, 1>(d, hd, spans, total, kv_scales, p, o);
  }
}

// q8_0 value weights of heads h0..h0+HB-1 (p: their exp rows, stride
// total) with the V scales vs [nb][total] folded in: pw[b][j][h] =
// p[h][j] * vs[b][j], the same product on every target.
template <int HB>
HWY_INLINE void FoldValueScales(const float* HWY_RESTRICT p, const float* HWY_RESTRICT vs, int nb,
                                int32_t total, float* HWY_RESTRICT pw) {
  const hn::ScalableTag<float> d;
  const int32_t N = static_cast<int32_t>(hn::Lanes(d));
  for (int b = 0; b < nb; ++b) {
    const float* sb = vs + static_cast<size_t>(b) * total;
    float* dst = pw + static_cast<size_t>(b) * total * HB;
    int32_t j = 0;
    for (; j + N <= total; j += N) {
      const auto scale = hn::LoadU(d, sb + j);
      hn::Vec<decltype(d)> w[HB];
      for (int h = 0; h < HB; ++h) {
        w[h] = hn::Mul(hn::LoadU(d, p + static_cast<size_t>(h) * total + j), scale);
      }
      float* at = dst + static_cast<size_t>(j) * HB;
      if constexpr (HB == 1) {
        hn::StoreU(w[0], d, at);
      } else if constexpr (HB == 2) {
        hn::StoreInterleaved2(w[0], w[1], d, at);
      } else if constexpr (HB == 3) {
        hn::StoreInterleaved3(w[0], w[1], w[2], d, at);
      } else {
        hn::StoreInterleaved4(w[0], w[1], w[2], w[3], d, at);
      }
    }
    for (; j < total; ++j) {
      for (int h = 0; h < HB; ++h) {
        dst[static_cast<size_t>(j) * HB + h] = p[static_cast<size_t>(h) * total + j] * sb[j];
      }
    }
  }
}

// One pass of WeightedValues over heads h0..h0+HB-1 (p: their exp rows);
// q8_0 first folds the V scales into the weights (into pw).
template <typename T, int HB, class D>
HWY_INLINE void ValuesPass(D d, int hd, std::span<const KvSpan> spans, int32_t total,
                           const float* kv_scales, const float* p, float* pw, float* o) {
  if constexpr (std::is_same_v<T, Q8>) {
    const int nb = KvQ8Blocks(hd);
    FoldValueScales<HB>(p, kv_scales + static_cast<size_t>(nb) * total, nb, total, pw);
    p = pw;
  } else {
    (void)pw;
  }
  WeightedValuesHeads<T, HB>(d, hd, spans, total, kv_scales, p, o);
}

#if KVINFER_ATTN_AVX3
// Whether q8_0 / q4_0 K/V take the integer (VNNI) kernels.
HWY_INLINE bool UsesQ8Vnni(int hd) {
  return hd % 64 == 0 && hd <= kMaxTileHeadDim && CpuHasVnni();
}

// A q8_0 (kQ4: q4_0) chunk with AVX-512 VNNI (UsesQ8Vnni): the query
// rounded to int8, the scores as integer dot products, the softmax and the
// values as integer dot products (SoftmaxValuesQ8Vnni).
template <bool kQ4>
HWY_INLINE void PartialQ8Vnni(const float* q, int group, int hd, float scale,
                              std::span<const KvSpan> spans, int32_t total, float* scratch,
                              float* m, float* l, float* o) {
  const int nb = KvQ8Blocks(hd);
  const AttentionScratchLayout at = AttentionScratch(KvPrecision::kQ8_0, group, hd, total);
  float* kv_scales = scratch + at.kv_scales;
  float* pw = scratch + at.weights;
  float* widen_tmp = scratch + at.widen_tmp;
  int8_t* codes = reinterpret_cast<int8_t*>(scratch + at.codes);
  QuantizeQuery(q, group, hd, scale, codes, scratch + at.query_mul, scratch + at.query);
  const float* mul = scratch + at.query_mul;
  // The integer dots first: they prefetch the chunk's scales (a few dozen
  // lines, often from memory), which WidenScales then finds in cache rather
  // than waiting on them.
  int32_t* vnni = reinterpret_cast<int32_t*>(scratch + at.vnni);
  if (hd == 64) {
    // Scores scaled in the same pass; only the V scales left to widen.
    DotsQ8Vnni<64, kQ4>(codes, group, hd, spans, total, vnni, mul, scratch);
    WidenScales(spans, total, nb, widen_tmp, kv_scales, /*first_kv=*/1);
  } else {
    if (hd == 128) {
      DotsQ8Vnni<128, kQ4>(codes, group, hd, spans, total, vnni, mul, pw);
    } else {
      DotsQ8Vnni<0, kQ4>(codes, group, hd, spans, total, vnni, mul, pw);
    }
    WidenScales(spans, total, nb, widen_tmp, kv_scales);
    ScaleDotsQ8(pw, kv_scales, mul, group, nb, total, scratch);
  }
  SoftmaxValuesQ8Vnni<kQ4>(group, hd, spans, total, scratch,
                           kv_scales + static_cast<size_t>(nb) * total,
                           reinterpret_cast<int16_t*>(pw), m, l, o);
}
#endif  // KVINFER_ATTN_AVX3

template <typename T, class D>
HWY_INLINE void PartialT(D d, const float* q, int group, int hd, float scale,
                         std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                         float* l, float* o) {
  // Scratch: attention.h's AttentionScratch layout. The value weights are
  // one pass's [nb][total][HB] of their [group][nb][total] room.
  const int nb = KvQ8Blocks(hd);
  const AttentionScratchLayout at =
      AttentionScratch(std::is_same_v<T, Q8> ? KvPrecision::kQ8_0 : KvPrecision::kF32, group, hd,
                       total);
  float* kv_scales = scratch + at.kv_scales;
  float* pw = nullptr;
  if constexpr (std::is_same_v<T, Q8>) {
    pw = scratch + at.weights;
    float* widen_tmp = scratch + at.widen_tmp;
#if KVINFER_ATTN_AVX3
    if (UsesQ8Vnni(hd)) {  // then hd % 16 == 0: d is the full 16 lanes
      PartialQ8Vnni<false>(q, group, hd, scale, spans, total, scratch, m, l, o);
      return;
    }
#endif
    float* qr = scratch + at.query;
    QuantizeQuery(q, group, hd, scale, reinterpret_cast<int8_t*>(scratch + at.codes),
                  scratch + at.query_mul, qr);
    WidenScales(spans, total, nb, widen_tmp, kv_scales);
    Scores<T>(d, qr, group, hd, scale, spans, total, kv_scales, scratch);
  } else {
    Scores<T>(d, q, group, hd, scale, spans, total, kv_scales, scratch);
  }
  for (int h = 0; h < group; ++h) ExpRow(scratch + static_cast<size_t>(h) * total, total, m + h, l + h);
  for (int h0 = 0; h0 < group; h0 += kMaxHeadsPerPass) {
    const float* p = scratch + static_cast<size_t>(h0) * total;
    float* oh = o + static_cast<size_t>(h0) * hd;
    switch (std::min(kMaxHeadsPerPass, group - h0)) {
      case 1: ValuesPass<T, 1>(d, hd, spans, total, kv_scales, p, pw, oh); break;
      case 2: ValuesPass<T, 2>(d, hd, spans, total, kv_scales, p, pw, oh); break;
      case 3: ValuesPass<T, 3>(d, hd, spans, total, kv_scales, p, pw, oh); break;
      default: ValuesPass<T, 4>(d, hd, spans, total, kv_scales, p, pw, oh); break;
    }
  }
}

template <typename T>
HWY_INLINE void PartialForType(const float* q, int group, int hd, float scale,
                               std::span<const KvSpan> spans, int32_t total, float* scratch,
                               float* m, float* l, float* o) {
  const hn::ScalableTag<float> d_full;
  const hn::CappedTag<float, 8> d8;
  const hn::CappedTag<float, 4> d4;
  const hn::CappedTag<float, 1> d1;
  if (hd % static_cast<int>(hn::Lanes(d_full)) == 0) {
    PartialT<T>(d_full, q, group, hd, scale, spans, total, scratch, m, l, o);
  } else if (hd % static_cast<int>(hn::Lanes(d8)) == 0) {
    PartialT<T>(d8, q, group, hd, scale, spans, total, scratch, m, l, o);
  } else if (hd % static_cast<int>(hn::Lanes(d4)) == 0) {
    PartialT<T>(d4, q, group, hd, scale, spans, total, scratch, m, l, o);
  } else {
    PartialT<T>(d1, q, group, hd, scale, spans, total, scratch, m, l, o);
  }
}

// q4_0 rows of `spans` as q8_0 codes: K into kc [total, hd], V into vc, and
// their scales gathered into ks / vs [total, nb]. Byte j of a packed slice
// holds its codes j and j + half (attention.h), so each half of the slice
// is a mask or a shift of the same bytes, minus the offset 8.
HWY_INLINE void UnpackQ4(std::span<const KvSpan> spans, int hd, int nb, int8_t* HWY_RESTRICT kc,
                         int8_t* HWY_RESTRICT vc, uint16_t* HWY_RESTRICT ks,
                         uint16_t* HWY_RESTRICT vs) {
  const hn::CappedTag<uint8_t, 32> du;
  const size_t N = hn::Lanes(du);
  const size_t row_bytes = static_cast<size_t>(hd) / 2;
  const auto low = hn::Set(du, 0x0F);
  const auto offset = hn::Set(du, 8);
  auto unpack_row = [&](const uint8_t* HWY_RESTRICT src, uint8_t* HWY_RESTRICT dst) {
    for (int s = 0; s < hd; s += kKvQ4Slice) {
      const size_t half = static_cast<size_t>(std::min(kKvQ4Slice, hd - s)) / 2;
      const uint8_t* in = src + s / 2;
      uint8_t* out = dst + s;
      size_t i = 0;
      for (; i + N <= half; i += N) {
        const auto b = hn::LoadU(du, in + i);
        hn::StoreU(hn::Sub(hn::And(b, low), offset), du, out + i);
        hn::StoreU(hn::Sub(hn::ShiftRight<4>(b), offset), du, out + half + i);
      }
      for (; i < half; ++i) {
        out[i] = static_cast<uint8_t>((in[i] & 0x0F) - 8);
        out[half + i] = static_cast<uint8_t>((in[i] >> 4) - 8);
      }
    }
  };
  size_t row = 0;
  for (const KvSpan& sp : spans) {
    const auto* k = static_cast<const uint8_t*>(sp.k);
    const auto* v = static_cast<const uint8_t*>(sp.v);
    for (int32_t t = 0; t < sp.n; ++t, ++row) {
      unpack_row(k + t * row_bytes, reinterpret_cast<uint8_t*>(kc) + row * hd);
      unpack_row(v + t * row_bytes, reinterpret_cast<uint8_t*>(vc) + row * hd);
    }
    const size_t scales = static_cast<size_t>(sp.n) * nb;
    std::memcpy(ks + (row - sp.n) * nb, sp.k_scale, scales * sizeof(uint16_t));
    std::memcpy(vs + (row - sp.n) * nb, sp.v_scale, scales * sizeof(uint16_t));
  }
}

void AttentionPartialImpl(const float* q, int group, int hd, float scale, KvPrecision kv_type,
                          std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                          float* l, float* o) {
  if (kv_type == KvPrecision::kF16) {
    PartialForType<hwy::float16_t>(q, group, hd, scale, spans, total, scratch, m, l, o);
  } else if (kv_type == KvPrecision::kQ8_0) {
    PartialForType<Q8>(q, group, hd, scale, spans, total, scratch, m, l, o);
  } else if (kv_type == KvPrecision::kQ4_0) {
#if KVINFER_ATTN_AVX3
    if (UsesQ8Vnni(hd)) {
      // The integer kernels unpack the nibbles in registers.
      PartialQ8Vnni<true>(q, group, hd, scale, spans, total, scratch, m, l, o);
      return;
    }
#endif
    // Elsewhere: q8_0's kernel on one contiguous span of the codes unpacked
    // (in cache: 2 * total * hd bytes).
    const AttentionScratchLayout at = AttentionScratch(KvPrecision::kQ4_0, group, hd, total);
    const int nb = KvQ8Blocks(hd);
    const size_t rows = static_cast<size_t>(total);
    auto* kc = reinterpret_cast<int8_t*>(scratch + at.unpacked);
    int8_t* vc = kc + rows * hd;
    auto* ks = reinterpret_cast<uint16_t*>(vc + rows * hd);
    uint16_t* vs = ks + rows * nb;
    UnpackQ4(spans, hd, nb, kc, vc, ks, vs);
    const KvSpan one{kc, vc, total, ks, vs};
    PartialForType<Q8>(q, group, hd, scale, std::span<const KvSpan>(&one, 1), total, scratch, m,
                       l, o);
  } else {
    PartialForType<float>(q, group, hd, scale, spans, total, scratch, m, l, o);
  }
}

}  // namespace kvinfer::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvinfer::ops {

HWY_EXPORT(AttentionPartialImpl);

void AttentionPartial(const float* q, int group, int head_dim, float scale, KvPrecision kv_type,
                      std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                      float* l, float* o) {
  KVINFER_CHECK(group > 0 && head_dim > 0 && total > 0);
  HWY_DYNAMIC_DISPATCH(AttentionPartialImpl)(q, group, head_dim, scale, kv_type, spans, total,
                                             scratch, m, l, o);
}

void MergePartial(int group, int head_dim, const float* m2, const float* l2, const float* o2,
                  float* m, float* l, float* o) {
  for (int h = 0; h < group; ++h) {
    const float mx = std::max(m[h], m2[h]);
    const float a = std::exp(m[h] - mx);
    const float b = std::exp(m2[h] - mx);
    m[h] = mx;
    l[h] = l[h] * a + l2[h] * b;
    float* oh = o + static_cast<size_t>(h) * head_dim;
    const float* o2h = o2 + static_cast<size_t>(h) * head_dim;
    for (int c = 0; c < head_dim; ++c) oh[c] = oh[c] * a + o2h[c] * b;
  }
}

void FinishPartial(int group, int head_dim, const float* l, const float* o, float* out) {
  for (int h = 0; h < group; ++h) {
    const float inv = 1.0f / l[h];
    for (int c = 0; c < head_dim; ++c) {
      out[static_cast<size_t>(h) * head_dim + c] = o[static_cast<size_t>(h) * head_dim + c] * inv;
    }
  }
}

}  // namespace kvinfer::ops
#endif  // HWY_ONCE
