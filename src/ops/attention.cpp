// The attention kernel (see attention.h), compiled per SIMD target by
// Highway's foreach_target and chosen at run time.
//
// One call does three passes over a chunk of at most a few hundred
// positions, all of it in L1/L2:
//   1. scores: each key row is loaded once and dotted with every query head
//      of the group (GQA heads share their KV head's keys);
//   2. per head: max, exp(s - max), sum;
//   3. values: for each head_dim slice, a register accumulator per head
//      (up to 8 heads at a time) takes one FMA per position with the
//      position's weight broadcast, so each value row is read once per
//      slice and the output is written once.
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

constexpr int kMaxHeadsPerPass = 8;

template <class D>
HWY_INLINE void Scores(D d, const float* HWY_RESTRICT q, int group, int hd, float scale,
                       std::span<const KvSpan> spans, int32_t total, float* HWY_RESTRICT s) {
  const int L = static_cast<int>(hn::Lanes(d));
  int32_t j = 0;
  for (const KvSpan& sp : spans) {
    for (int32_t t = 0; t < sp.n; ++t, ++j) {
      const float* HWY_RESTRICT k = sp.k + static_cast<size_t>(t) * hd;
      for (int h = 0; h < group; ++h) {
        const float* HWY_RESTRICT qh = q + static_cast<size_t>(h) * hd;
        auto acc0 = hn::Zero(d);
        auto acc1 = hn::Zero(d);
        int c = 0;
        for (; c + 2 * L <= hd; c += 2 * L) {
          acc0 = hn::MulAdd(hn::LoadU(d, qh + c), hn::LoadU(d, k + c), acc0);
          acc1 = hn::MulAdd(hn::LoadU(d, qh + c + L), hn::LoadU(d, k + c + L), acc1);
        }
        if (c < hd) acc0 = hn::MulAdd(hn::LoadU(d, qh + c), hn::LoadU(d, k + c), acc0);
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

// o[h, :] = sum_j p[h, j] v_j for HB heads starting at h0.
template <int HB, class D>
HWY_INLINE void WeightedValues(D d, int hd, std::span<const KvSpan> spans, int32_t total,
                               const float* HWY_RESTRICT p, float* HWY_RESTRICT o) {
  const int L = static_cast<int>(hn::Lanes(d));
  for (int c = 0; c < hd; c += L) {
    hn::Vec<D> acc[HB];
    for (int h = 0; h < HB; ++h) acc[h] = hn::Zero(d);
    int32_t j = 0;
    for (const KvSpan& sp : spans) {
      const float* HWY_RESTRICT v = sp.v + c;
      for (int32_t t = 0; t < sp.n; ++t, ++j) {
        const auto vv = hn::LoadU(d, v + static_cast<size_t>(t) * hd);
        for (int h = 0; h < HB; ++h) {
          acc[h] = hn::MulAdd(hn::Set(d, p[static_cast<size_t>(h) * total + j]), vv, acc[h]);
        }
      }
    }
    for (int h = 0; h < HB; ++h) hn::StoreU(acc[h], d, o + static_cast<size_t>(h) * hd + c);
  }
}

template <class D>
HWY_INLINE void PartialT(D d, const float* q, int group, int hd, float scale,
                         std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                         float* l, float* o) {
  Scores(d, q, group, hd, scale, spans, total, scratch);
  for (int h = 0; h < group; ++h) ExpRow(scratch + static_cast<size_t>(h) * total, total, m + h, l + h);
  for (int h0 = 0; h0 < group; h0 += kMaxHeadsPerPass) {
    const float* p = scratch + static_cast<size_t>(h0) * total;
    float* oh = o + static_cast<size_t>(h0) * hd;
    switch (std::min(kMaxHeadsPerPass, group - h0)) {
      case 1: WeightedValues<1>(d, hd, spans, total, p, oh); break;
      case 2: WeightedValues<2>(d, hd, spans, total, p, oh); break;
      case 3: WeightedValues<3>(d, hd, spans, total, p, oh); break;
      case 4: WeightedValues<4>(d, hd, spans, total, p, oh); break;
      case 5: WeightedValues<5>(d, hd, spans, total, p, oh); break;
      case 6: WeightedValues<6>(d, hd, spans, total, p, oh); break;
      case 7: WeightedValues<7>(d, hd, spans, total, p, oh); break;
      default: WeightedValues<8>(d, hd, spans, total, p, oh); break;
    }
  }
}

void AttentionPartialImpl(const float* q, int group, int hd, float scale,
                          std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                          float* l, float* o) {
  const hn::ScalableTag<float> d_full;
  const hn::CappedTag<float, 8> d8;
  const hn::CappedTag<float, 4> d4;
  const hn::CappedTag<float, 1> d1;
  if (hd % static_cast<int>(hn::Lanes(d_full)) == 0) {
    PartialT(d_full, q, group, hd, scale, spans, total, scratch, m, l, o);
  } else if (hd % static_cast<int>(hn::Lanes(d8)) == 0) {
    PartialT(d8, q, group, hd, scale, spans, total, scratch, m, l, o);
  } else if (hd % static_cast<int>(hn::Lanes(d4)) == 0) {
    PartialT(d4, q, group, hd, scale, spans, total, scratch, m, l, o);
  } else {
    PartialT(d1, q, group, hd, scale, spans, total, scratch, m, l, o);
  }
}

}  // namespace kvinfer::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvinfer::ops {

HWY_EXPORT(AttentionPartialImpl);

void AttentionPartial(const float* q, int group, int head_dim, float scale,
                      std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                      float* l, float* o) {
  KVINFER_CHECK(group > 0 && head_dim > 0 && total > 0);
  HWY_DYNAMIC_DISPATCH(AttentionPartialImpl)(q, group, head_dim, scale, spans, total, scratch, m,
                                             l, o);
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
