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

#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/attention.cpp"
// clang-format off
#include "hwy/foreach_target.h"  // IWYU pragma: keep
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

// Scores for head_dim a multiple of 16: keys in tiles of 16, each head's 16
// dot products reduced together by SumsOf16.
HWY_INLINE __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
HWY_INLINE __m512 Load16(const hwy::float16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <typename T>
HWY_INLINE void Scores16(const float* HWY_RESTRICT q, int group, int hd, float scale,
                         std::span<const KvSpan> spans, int32_t total, float* HWY_RESTRICT s) {
  const T* kp[16];
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
      kp[t] = static_cast<const T*>(spans[si].k) + static_cast<size_t>(t_in_span++) * hd;
    }
    for (int t = m; t < 16; ++t) kp[t] = kp[0];  // padding, results dropped
    for (int h = 0; h < group; ++h) {
      const float* HWY_RESTRICT qh = q + static_cast<size_t>(h) * hd;
      __m512 acc[16];
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int c = 0; c < hd; c += 16) {
        const __m512 qv = _mm512_loadu_ps(qh + c);
        for (int t = 0; t < 16; ++t) acc[t] = _mm512_fmadd_ps(qv, Load16(kp[t] + c), acc[t]);
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
#endif  // KVINFER_ATTN_AVX3

// K/V elements as f32 vectors: plain loads, or f16 widened on load.
template <class D>
HWY_INLINE hn::Vec<D> LoadKv(D d, const float* HWY_RESTRICT p) {
  return hn::LoadU(d, p);
}
template <class D>
HWY_INLINE hn::Vec<D> LoadKv(D d, const hwy::float16_t* HWY_RESTRICT p) {
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::LoadU(dh, p));
}

template <typename T, class D>
HWY_INLINE void Scores(D d, const float* HWY_RESTRICT q, int group, int hd, float scale,
                       std::span<const KvSpan> spans, int32_t total, float* HWY_RESTRICT s) {
  const int L = static_cast<int>(hn::Lanes(d));
#if KVINFER_ATTN_AVX3
  if (L == 16) return Scores16<T>(q, group, hd, scale, spans, total, s);
#endif
  int32_t j = 0;
  for (const KvSpan& sp : spans) {
    for (int32_t t = 0; t < sp.n; ++t, ++j) {
      const T* HWY_RESTRICT k = static_cast<const T*>(sp.k) + static_cast<size_t>(t) * hd;
      for (int h = 0; h < group; ++h) {
        const float* HWY_RESTRICT qh = q + static_cast<size_t>(h) * hd;
        auto acc0 = hn::Zero(d);
        auto acc1 = hn::Zero(d);
        int c = 0;
        for (; c + 2 * L <= hd; c += 2 * L) {
          acc0 = hn::MulAdd(hn::LoadU(d, qh + c), LoadKv(d, k + c), acc0);
          acc1 = hn::MulAdd(hn::LoadU(d, qh + c + L), LoadKv(d, k + c + L), acc1);
        }
        if (c < hd) acc0 = hn::MulAdd(hn::LoadU(d, qh + c), LoadKv(d, k + c), acc0);
        s[static_cast<size_t>(h) * total + j] =
            hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1))) * scale;
      }
    }
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
    const auto e = hn::CallExp(df, hn::Sub(hn::LoadU(df, s + i), vmax));
    hn::StoreU(e, df, s + i);
    vsum = hn::Add(vsum, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  if (i < n) {
    // The tail through one padded vector, so every element sees the same exp.
    alignas(64) float buf[16] = {};  // lanes past the tail are discarded
    std::memcpy(buf, s + i, static_cast<size_t>(n - i) * sizeof(float));
    const auto e = hn::CallExp(df, hn::Sub(hn::Load(df, buf), vmax));
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
template <typename T, int HB, int NS, class D>
HWY_INLINE void WeightedValues(D d, int hd, std::span<const KvSpan> spans, int32_t total,
                               const float* HWY_RESTRICT p, float* HWY_RESTRICT o) {
  const int L = static_cast<int>(hn::Lanes(d));
  for (int c = 0; c < hd; c += NS * L) {
    hn::Vec<D> acc[HB][NS];
    for (int h = 0; h < HB; ++h) {
      for (int k = 0; k < NS; ++k) acc[h][k] = hn::Zero(d);
    }
    int32_t j = 0;
    for (const KvSpan& sp : spans) {
      const T* HWY_RESTRICT v = static_cast<const T*>(sp.v) + c;
      for (int32_t t = 0; t < sp.n; ++t, ++j) {
        hn::Vec<D> vv[NS];
        for (int k = 0; k < NS; ++k) vv[k] = LoadKv(d, v + static_cast<size_t>(t) * hd + k * L);
        for (int h = 0; h < HB; ++h) {
          const auto w = hn::Set(d, p[static_cast<size_t>(h) * total + j]);
          for (int k = 0; k < NS; ++k) acc[h][k] = hn::MulAdd(w, vv[k], acc[h][k]);
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
                                    const float* p, float* o) {
  const int slices = hd / static_cast<int>(hn::Lanes(d));
  if (slices % 4 == 0 && HB * 4 <= kMaxAccumulators) {
    WeightedValues<T, HB, 4>(d, hd, spans, total, p, o);
  } else if (slices % 2 == 0 && HB * 2 <= kMaxAccumulators) {
    WeightedValues<T, HB, 2>(d, hd, spans, total, p, o);
  } else {
    WeightedValues<T, HB, 1>(d, hd, spans, total, p, o);
  }
}

template <typename T, class D>
HWY_INLINE void PartialT(D d, const float* q, int group, int hd, float scale,
                         std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                         float* l, float* o) {
  Scores<T>(d, q, group, hd, scale, spans, total, scratch);
  for (int h = 0; h < group; ++h) ExpRow(scratch + static_cast<size_t>(h) * total, total, m + h, l + h);
  for (int h0 = 0; h0 < group; h0 += kMaxHeadsPerPass) {
    const float* p = scratch + static_cast<size_t>(h0) * total;
    float* oh = o + static_cast<size_t>(h0) * hd;
    switch (std::min(kMaxHeadsPerPass, group - h0)) {
      case 1: WeightedValuesHeads<T, 1>(d, hd, spans, total, p, oh); break;
      case 2: WeightedValuesHeads<T, 2>(d, hd, spans, total, p, oh); break;
      case 3: WeightedValuesHeads<T, 3>(d, hd, spans, total, p, oh); break;
      default: WeightedValuesHeads<T, 4>(d, hd, spans, total, p, oh); break;
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

void AttentionPartialImpl(const float* q, int group, int hd, float scale, KvPrecision kv_type,
                          std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                          float* l, float* o) {
  if (kv_type == KvPrecision::kF16) {
    PartialForType<hwy::float16_t>(q, group, hd, scale, spans, total, scratch, m, l, o);
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
