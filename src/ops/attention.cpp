// The attention kernel (see attention.h), compiled per SIMD target by
// Highway's foreach_target and chosen at run time. Its AVX-512 targets call
// the x86-specific parts in x86/attention_avx512.{h,cpp} (KVINFER_ATTN_AVX3
// below): the 16-row score tiles, and with AVX-512 VNNI (x86::UsesQ8Vnni)
// the integer kernels of q8_0 and q4_0 K/V.
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
#include "ops/kv_span_prefetcher.h"
#if defined(__x86_64__) || defined(__i386__)
#include "ops/x86/attention_avx512.h"
#endif

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


// f32 copies of the q8_0 scales of a chunk's keys (kv = 0) and values
// (kv = 1), block-major: out[kv][b][j] for block b of chunk row j, so that
// one vector load gives consecutive rows' scales of a block. Converted once
// per chunk rather than once per use; tmp holds nb * total floats (the
// rows' scales widened in place before the transpose). first_kv 1: the
// values' only (their keys' scales already applied).
HWY_INLINE void WidenScales(std::span<const KvSpan> spans, int32_t total, int nb, float* tmp,
                            float* out, int first_kv = 0) {
#if KVINFER_ATTN_AVX3
  if (nb == 2) return x86::WidenScalesTwoBlocks(spans, total, first_kv, out);
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

// SpanPrefetcher: ops/kv_span_prefetcher.h.

template <typename T, class D>
HWY_INLINE void Scores(D d, const float* HWY_RESTRICT q, int group, int hd, float scale,
                       std::span<const KvSpan> spans, int32_t total, const float* kv_scales,
                       float* HWY_RESTRICT s) {
  const int L = static_cast<int>(hn::Lanes(d));
#if KVINFER_ATTN_AVX3
  if (L == 16 && (std::is_same_v<T, float> || hd <= x86::kMaxTileHeadDim)) {
    constexpr x86::KvElem kElem = std::is_same_v<T, float> ? x86::KvElem::kF32
                                  : std::is_same_v<T, Q8>  ? x86::KvElem::kQ8
                                                           : x86::KvElem::kF16;
    return x86::Scores16(kElem, q, group, hd, scale, spans, total, kv_scales, s);
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

// A q8_0 (kQ4: q4_0) chunk with AVX-512 VNNI (x86::UsesQ8Vnni): the query
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
    x86::DotsQ8Vnni(kQ4, codes, group, hd, spans, total, vnni, mul, scratch);
    WidenScales(spans, total, nb, widen_tmp, kv_scales, /*first_kv=*/1);
  } else {
    x86::DotsQ8Vnni(kQ4, codes, group, hd, spans, total, vnni, mul, pw);
    WidenScales(spans, total, nb, widen_tmp, kv_scales);
    x86::ScaleDotsQ8(pw, kv_scales, mul, group, nb, total, scratch);
  }
  x86::SoftmaxValuesQ8Vnni(kQ4, group, hd, spans, total, scratch,
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
    if (x86::UsesQ8Vnni(hd)) {  // then hd % 16 == 0: d is the full 16 lanes
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
    if (x86::UsesQ8Vnni(hd)) {
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
