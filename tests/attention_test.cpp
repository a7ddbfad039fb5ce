// The attention kernel (ops/attention.h) against a float64 softmax-attention
// reference, for odd head sizes, GQA group sizes, span layouts (block size
// 1, uneven blocks) and chunk splits, on every SIMD target the CPU runs.
#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/half.h"
#include "hwy/targets.h"
#include "ops/dispatch.h"

namespace kvinfer {
namespace {

struct Case {
  int group;
  int hd;
  int32_t len;
};

// out[h, :] = softmax_j(scale q_h . k_j) @ V, in float64.
std::vector<double> Reference(const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, int group, int hd, int32_t len,
                              float scale) {
  std::vector<double> out(static_cast<size_t>(group) * hd, 0.0);
  for (int h = 0; h < group; ++h) {
    std::vector<double> s(static_cast<size_t>(len));
    double mx = -INFINITY;
    for (int32_t j = 0; j < len; ++j) {
      double dot = 0;
      for (int c = 0; c < hd; ++c) {
        dot += static_cast<double>(q[static_cast<size_t>(h) * hd + c]) * k[static_cast<size_t>(j) * hd + c];
      }
      s[static_cast<size_t>(j)] = dot * scale;
      mx = std::max(mx, s[static_cast<size_t>(j)]);
    }
    double sum = 0;
    for (double& x : s) sum += (x = std::exp(x - mx));
    for (int32_t j = 0; j < len; ++j) {
      for (int c = 0; c < hd; ++c) {
        out[static_cast<size_t>(h) * hd + c] += s[static_cast<size_t>(j)] / sum * v[static_cast<size_t>(j) * hd + c];
      }
    }
  }
  return out;
}

// K/V rows [len, hd] in the kernel's storage for `type`: f16 bits, q8_0
// codes [len, hd] or q4_0 packed rows [len, hd / 2], and scales [len,
// KvQ8Blocks(hd)].
struct Stored {
  std::vector<uint16_t> f16;
  std::vector<int8_t> codes;
  std::vector<uint8_t> packed;
  std::vector<uint16_t> scales;
};
Stored Store(const std::vector<float>& x, int hd, KvPrecision type) {
  Stored st;
  const size_t rows = x.size() / static_cast<size_t>(hd);
  if (type == KvPrecision::kF16) {
    for (float f : x) st.f16.push_back(F32ToF16(f));
  } else if (type == KvPrecision::kQ8_0) {
    const int nb = KvQ8Blocks(hd);
    st.codes.resize(x.size());
    st.scales.resize(rows * static_cast<size_t>(nb));
    for (size_t r = 0; r < rows; ++r) {
      QuantizeKvQ8(x.data() + r * hd, hd, st.codes.data() + r * hd, st.scales.data() + r * nb);
    }
  } else if (type == KvPrecision::kQ4_0) {
    const int nb = KvQ8Blocks(hd);
    st.packed.resize(x.size() / 2);
    st.scales.resize(rows * static_cast<size_t>(nb));
    for (size_t r = 0; r < rows; ++r) {
      QuantizeKvQ4(x.data() + r * hd, hd, st.packed.data() + r * hd / 2,
                        st.scales.data() + r * nb);
    }
  }
  return st;
}

// What the kernel reads back from Store: f16 rounding or d_b * code.
std::vector<float> Dequantized(const std::vector<float>& x, int hd, KvPrecision type) {
  const Stored st = Store(x, hd, type);
  std::vector<float> out(x);
  const int nb = KvQ8Blocks(hd);
  for (size_t i = 0; i < x.size(); ++i) {
    if (type == KvPrecision::kF16) out[i] = F16ToF32(st.f16[i]);
    if (type == KvPrecision::kQ8_0) {
      const size_t r = i / static_cast<size_t>(hd);
      const int c = static_cast<int>(i % static_cast<size_t>(hd));
      out[i] = F16ToF32(st.scales[r * nb + c / kKvQ8Block]) * st.codes[i];
    }
    if (type == KvPrecision::kQ4_0) {
      const size_t r = i / static_cast<size_t>(hd);
      const int c = static_cast<int>(i % static_cast<size_t>(hd));
      out[i] = F16ToF32(st.scales[r * nb + c / kKvQ8Block]) *
               static_cast<float>(KvQ4Code(st.packed.data() + r * hd / 2, hd, c));
    }
  }
  return out;
}

// The kernel over [0, len) cut into chunks of `chunk` positions, each chunk
// presented as spans of `span` positions, folded in order. With kF16 /
// kQ8_0 / kQ4_0 the K/V are stored in that format (the caller passes values already
// through Dequantized, so the float64 reference sees exactly what the kernel
// reads).
std::vector<float> Kernel(const std::vector<float>& q, const std::vector<float>& k,
                          const std::vector<float>& v, int group, int hd, int32_t len, float scale,
                          int32_t chunk, int32_t span, KvPrecision type = KvPrecision::kF32) {
  const Stored ks = Store(k, hd, type), vs = Store(v, hd, type);
  const size_t nb = static_cast<size_t>(KvQ8Blocks(hd));
  auto at = [&](const std::vector<float>& f32, const Stored& st, int32_t j) -> const void* {
    const size_t off = static_cast<size_t>(j) * hd;
    switch (type) {
      case KvPrecision::kF16: return st.f16.data() + off;
      case KvPrecision::kQ8_0: return st.codes.data() + off;
      case KvPrecision::kQ4_0: return st.packed.data() + off / 2;
      case KvPrecision::kF32: break;
    }
    return f32.data() + off;
  };
  const size_t part = static_cast<size_t>(group) * (hd + 2);
  std::vector<float> state(part), tmp(part),
      scratch(ops::AttentionScratchFloats(type, group, hd, chunk));
  for (int32_t begin = 0; begin < len; begin += chunk) {
    const int32_t end = std::min(len, begin + chunk);
    std::vector<ops::KvSpan> spans;
    for (int32_t j = begin; j < end; j += span) {
      ops::KvSpan& sp = spans.emplace_back(at(k, ks, j), at(v, vs, j), std::min(span, end - j));
      if (type == KvPrecision::kQ8_0 || type == KvPrecision::kQ4_0) {
        sp.k_scale = ks.scales.data() + static_cast<size_t>(j) * nb;
        sp.v_scale = vs.scales.data() + static_cast<size_t>(j) * nb;
      }
    }
    float* dst = begin == 0 ? state.data() : tmp.data();
    ops::AttentionPartial(q.data(), group, hd, scale, type, spans, end - begin, scratch.data(), dst,
                          dst + group, dst + 2 * group);
    if (begin > 0) {
      ops::MergePartial(group, hd, tmp.data(), tmp.data() + group, tmp.data() + 2 * group,
                        state.data(), state.data() + group, state.data() + 2 * group);
    }
  }
  std::vector<float> out(static_cast<size_t>(group) * hd);
  ops::FinishPartial(group, hd, state.data() + group, state.data() + 2 * group, out.data());
  return out;
}

// Whether `target` takes q8_0 (and so q4_0) values as integer dot products
// with the softmax weights rounded to 15 bits (AVX-512 VNNI, head_dim a
// multiple of 64 up to 256; ops/x86/attention_avx512.cpp's
// SoftmaxValuesQ8Vnni, called from the AVX-512 targets).
bool IntegerQ8Values(int64_t target, int hd, KvPrecision type) {
  const bool avx3 = (target & (HWY_AVX3 | HWY_AVX3_DL)) != 0;
  return (type == KvPrecision::kQ8_0 || type == KvPrecision::kQ4_0) && avx3 &&
         ops::CpuRuns(ops::Isa::kAvx512Vnni) && hd % 64 == 0 && hd <= 256;
}

// With q8_0 or q4_0 K the kernel rounds q to int8, one scale per head.
std::vector<float> QueryAsRead(std::vector<float> q, int group, int hd, KvPrecision type) {
  if (type == KvPrecision::kQ8_0 || type == KvPrecision::kQ4_0) {
    for (int h = 0; h < group; ++h) {
      float* x = q.data() + static_cast<size_t>(h) * hd;
      float amax = 0;
      for (int i = 0; i < hd; ++i) amax = std::max(amax, std::abs(x[i]));
      const float dq = amax / 127.0f;
      for (int i = 0; i < hd; ++i) x[i] = dq * std::nearbyint(x[i] / dq);
    }
  }
  return q;
}

void CheckCase(const Case& cs, uint32_t seed, KvPrecision type, int64_t target) {
  std::mt19937 rng(seed);
  // Scores spread over several units so the softmax is far from uniform.
  std::normal_distribution<float> qd(0.0f, 1.5f), kd(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(cs.group) * cs.hd), k(static_cast<size_t>(cs.len) * cs.hd),
      v(k.size());
  for (float& x : q) x = qd(rng);
  for (float& x : k) x = kd(rng);
  for (float& x : v) x = kd(rng);
  k = Dequantized(k, cs.hd, type);
  v = Dequantized(v, cs.hd, type);
  const std::vector<float> q_read = QueryAsRead(q, cs.group, cs.hd, type);
  const float scale = 1.0f / std::sqrt(static_cast<float>(cs.hd));
  const std::vector<double> ref = Reference(q_read, k, v, cs.group, cs.hd, cs.len, scale);
  std::vector<float> whole;
  for (int32_t chunk : {cs.len, 7, 64, 256}) {
    for (int32_t span : {1, 5, 16, cs.len}) {
      SCOPED_TRACE(testing::Message() << KvPrecisionName(type) << " group " << cs.group << " hd " << cs.hd << " len "
                                      << cs.len << " chunk " << chunk << " span " << span);
      const std::vector<float> out = Kernel(q, k, v, cs.group, cs.hd, cs.len, scale, chunk, span, type);
      double max_err = 0;
      for (size_t i = 0; i < out.size(); ++i) max_err = std::max(max_err, std::abs(out[i] - ref[i]));
      // Outputs are convex combinations of N(0,1) values (|out| <~ 3): f32
      // with hwy's few-ulp exp stays far below 1e-5; a wrong max, scale,
      // head offset or fold is off by >1e-2. The 15-bit weights of the
      // integer q8_0 values are each off by up to 2^-16 of the block's
      // largest V scale (measured: up to 2.3e-4 here), still far below the
      // codes' own error, half a step, ~1e-2 (not counted: the reference
      // reads the dequantized K/V). q4_0 takes the same path: its scales are
      // ~16x q8_0's for the same data and its codes ~16x smaller, so the
      // bound is the same (measured: up to 1.7e-4).
      EXPECT_LT(max_err, IntegerQ8Values(target, cs.hd, type) ? 1e-3 : 2e-5);
      // The span layout (block size) never changes the bits for a fixed chunking.
      if (span == 1) {
        whole = out;
      } else {
        EXPECT_EQ(out, whole);
      }
    }
  }
}

// head_dim 80 and 100: a q8_0 row ends in a short block (16 / 4 elements);
// 192 and 256: q8_0 VNNI dot products for a head_dim not known at compile
// time (3 and 4 64-element slices); 320: past Scores16's widening tile
// (kMaxTileHeadDim 256). Groups 5, 6, 9 and 16 split the value pass into
// passes of 4, 2 and 1 heads.
const Case kCases[] = {{1, 64, 1},   {3, 64, 300}, {3, 64, 2049}, {4, 128, 513},
                       {1, 8, 37},   {9, 16, 100}, {5, 12, 77},   {2, 7, 33},
                       {8, 80, 260}, {16, 64, 65}, {12, 32, 1},   {3, 100, 45},
                       {2, 320, 33}, {6, 64, 300}, {2, 192, 50},  {3, 256, 40}};

TEST(AttentionKernelTest, MatchesFloat64ReferenceOnEveryTarget) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    uint32_t seed = 1;
    for (const Case& cs : kCases) {
      CheckCase(cs, seed, KvPrecision::kF32, target);
      CheckCase(cs, seed, KvPrecision::kF16, target);
      CheckCase(cs, seed, KvPrecision::kQ8_0, target);
      if (cs.hd % 2 == 0) CheckCase(cs, seed, KvPrecision::kQ4_0, target);
      ++seed;
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

// The partial's m (the largest score) and l (the sum of exp(s - m)) against
// float64: with scores within ~+-8, where a few-ulp exp keeps l within 2e-6
// (measured: up to 9.5e-7) and a polynomial coefficient off by 1/600 (1/25
// for 1/24) shows (4.2e-6 and more);
// and spread over ~+-120, so that the exponentials run from 1 down past
// f32's smallest values (measured: up to 1.3e-6, the scores' own rounding).
TEST(AttentionKernelTest, SoftmaxMaxAndSumMatchFloat64OnEveryTarget) {
  constexpr int kGroup = 3, kHd = 64;
  constexpr int32_t kLen = 700;
  const std::pair<KvPrecision, float> kRegimes[] = {
      {KvPrecision::kF32, 1.5f},   {KvPrecision::kF16, 1.5f},  {KvPrecision::kQ8_0, 1.5f},
      {KvPrecision::kQ4_0, 1.5f},  {KvPrecision::kF32, 18.0f}, {KvPrecision::kF16, 18.0f},
      {KvPrecision::kQ8_0, 18.0f}, {KvPrecision::kQ4_0, 18.0f}};
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    for (const auto& [type, q_sigma] : kRegimes) {
      SCOPED_TRACE(testing::Message() << KvPrecisionName(type) << " q sigma " << q_sigma);
      std::mt19937 rng(7);
      std::normal_distribution<float> qd(0.0f, q_sigma), kd(0.0f, 1.0f);
      std::vector<float> q(kGroup * kHd), k(static_cast<size_t>(kLen) * kHd), v(k.size());
      for (float& x : q) x = qd(rng);
      for (float& x : k) x = kd(rng);
      for (float& x : v) x = kd(rng);
      const Stored ks = Store(k, kHd, type), vs = Store(v, kHd, type);
      k = Dequantized(k, kHd, type);
      const std::vector<float> q_read = QueryAsRead(q, kGroup, kHd, type);
      ops::KvSpan span{k.data(), v.data(), kLen};
      if (type == KvPrecision::kF16) {
        span.k = ks.f16.data();
        span.v = vs.f16.data();
      } else if (type == KvPrecision::kQ8_0) {
        span.k = ks.codes.data();
        span.v = vs.codes.data();
      } else if (type == KvPrecision::kQ4_0) {
        span.k = ks.packed.data();
        span.v = vs.packed.data();
      }
      span.k_scale = ks.scales.data();
      span.v_scale = vs.scales.data();
      const float scale = 1.0f / std::sqrt(static_cast<float>(kHd));
      std::vector<float> scratch(ops::AttentionScratchFloats(type, kGroup, kHd, kLen)),
          m(kGroup), l(kGroup), o(kGroup * kHd);
      ops::AttentionPartial(q.data(), kGroup, kHd, scale, type, std::span(&span, 1), kLen,
                            scratch.data(), m.data(), l.data(), o.data());
      double lowest = INFINITY;
      for (int h = 0; h < kGroup; ++h) {
        std::vector<double> s(kLen);
        double mx = -INFINITY;
        for (int32_t j = 0; j < kLen; ++j) {
          double dot = 0;
          for (int c = 0; c < kHd; ++c) {
            dot += static_cast<double>(q_read[h * kHd + c]) * k[static_cast<size_t>(j) * kHd + c];
          }
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double x : s) {
          sum += std::exp(x - mx);
          lowest = std::min(lowest, x - mx);
        }
        EXPECT_NEAR(m[h], mx, 1e-5 * std::max(1.0, std::abs(mx))) << "head " << h;
        // Scores rounded to f32 move each exp by |s| * 2^-24 relative.
        EXPECT_NEAR(l[h], sum, (q_sigma < 5 ? 2e-6 : 1e-5) * sum) << "head " << h;
      }
      if (q_sigma > 5) {
        EXPECT_LT(lowest, -104.0);  // the scores reach the underflow
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

// q8_0 round trip: each element within half a step of its block's stored
// scale (plus, where f16 rounded the scale down, the clamp at code 127: at
// most 2^-11 of the block's max), codes in [-127, 127], the max element at
// code +-127 or +-126, an all-zero block all zeros.
TEST(AttentionKernelTest, Q8RoundTripStaysWithinHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int n : {1, 7, 31, 32, 33, 64, 80, 100, 128}) {
    for (float spread : {1e-3f, 1.0f, 300.0f}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& f : x) f = spread * nd(rng);
      x[static_cast<size_t>(n) / 2] *= 20.0f;  // an outlier, as K has in a few channels
      if (n >= 64) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // block 1 all zero
      std::vector<int8_t> codes(x.size());
      std::vector<uint16_t> scales(static_cast<size_t>(KvQ8Blocks(n)));
      QuantizeKvQ8(x.data(), n, codes.data(), scales.data());
      for (int b0 = 0; b0 < n; b0 += kKvQ8Block) {
        const int end = std::min(n, b0 + kKvQ8Block);
        float amax = 0;
        int cmax = 0;
        for (int i = b0; i < end; ++i) {
          amax = std::max(amax, std::abs(x[static_cast<size_t>(i)]));
          cmax = std::max(cmax, std::abs(static_cast<int>(codes[static_cast<size_t>(i)])));
        }
        const uint16_t d16 = scales[static_cast<size_t>(b0 / kKvQ8Block)];
        EXPECT_EQ(d16, F32ToF16(amax / 127.0f)) << n << " block " << b0;
        const float d = F16ToF32(d16);
        if (amax == 0) {
          EXPECT_EQ(cmax, 0);
          continue;
        }
        EXPECT_GE(cmax, 126) << n << " block " << b0;
        const double bound = 0.5 * d + std::max(0.0, amax - 127.0 * d) + 1e-6 * amax;
        for (int i = b0; i < end; ++i) {
          const int c = codes[static_cast<size_t>(i)];
          ASSERT_LE(std::abs(c), 127);
          EXPECT_LE(std::abs(static_cast<double>(d) * c - x[static_cast<size_t>(i)]), bound)
              << "n " << n << " spread " << spread << " i " << i;
        }
      }
    }
  }
}

// q4_0 round trip: the block's element of largest magnitude x_m exact at
// code -8 (scale x_m / -8 as f16, so within f16 rounding), every element
// within half a step plus that rounding, except at code 7 where an element
// of x_m's opposite sign beyond 7.5 steps is clamped (within a step), codes
// in [-8, 7], byte j of a 64-element slice holding its codes j and j + 32
// (+8; a last slice of r elements: j and j + r/2) in its low and high
// nibbles, an all-zero block all zeros.
TEST(AttentionKernelTest, Q4RoundTripStaysWithinHalfAStep) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int n : {2, 8, 30, 32, 34, 64, 80, 100, 128, 144, 192}) {
    for (float spread : {1e-3f, 1.0f, 300.0f}) {
      for (float outlier : {20.0f, -20.0f}) {  // x_m positive (scale < 0) and negative
        std::vector<float> x(static_cast<size_t>(n));
        for (float& f : x) f = spread * nd(rng);
        x[static_cast<size_t>(n) / 2] = outlier * spread;
        if (n >= 64) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // block 1 all zero
        std::vector<uint8_t> packed(static_cast<size_t>(n) / 2);
        std::vector<uint16_t> scales(static_cast<size_t>(KvQ8Blocks(n)));
        QuantizeKvQ4(x.data(), n, packed.data(), scales.data());
        for (int s = 0; s < n; s += 64) {
          const int half = std::min(64, n - s) / 2;
          for (int j = 0; j < half; ++j) {
            const uint8_t byte = packed[static_cast<size_t>(s / 2 + j)];
            ASSERT_EQ(byte & 0x0F, KvQ4Code(packed.data(), n, s + j) + 8);
            ASSERT_EQ(byte >> 4, KvQ4Code(packed.data(), n, s + j + half) + 8);
          }
        }
        for (int b0 = 0; b0 < n; b0 += kKvQ8Block) {
          const int end = std::min(n, b0 + kKvQ8Block);
          int im = b0;
          for (int i = b0; i < end; ++i) {
            if (std::abs(x[static_cast<size_t>(i)]) > std::abs(x[static_cast<size_t>(im)])) im = i;
          }
          const float xm = x[static_cast<size_t>(im)];
          const uint16_t d16 = scales[static_cast<size_t>(b0 / kKvQ8Block)];
          EXPECT_EQ(d16, F32ToF16(xm / -8.0f)) << n << " block " << b0;
          const float d = F16ToF32(d16);
          if (xm == 0) {
            for (int i = b0; i < end; ++i) EXPECT_EQ(KvQ4Code(packed.data(), n, i), 0);
            continue;
          }
          EXPECT_EQ(KvQ4Code(packed.data(), n, im), -8) << n << " block " << b0;
          for (int i = b0; i < end; ++i) {
            const int c = KvQ4Code(packed.data(), n, i);
            ASSERT_GE(c, -8);
            ASSERT_LE(c, 7);
            const double steps = c == 7 ? 1.0 : 0.5;
            const double bound =
                steps * std::abs(d) + std::abs(xm + 8.0 * d) + 1e-6 * std::abs(xm);
            EXPECT_LE(std::abs(static_cast<double>(d) * c - x[static_cast<size_t>(i)]), bound)
                << "n " << n << " spread " << spread << " i " << i;
          }
        }
      }
    }
  }
}

TEST(AttentionKernelTest, MergeOfSplitPartialsEqualsOneChunkWithinRounding) {
  // Folding partials is exact in real arithmetic; in f32 it may differ from
  // one whole-context partial only by rounding.
  const Case cs{3, 64, 1000};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> q(3 * 64), k(1000 * 64), v(1000 * 64);
  for (float& x : q) x = nd(rng);
  for (float& x : k) x = nd(rng);
  for (float& x : v) x = nd(rng);
  const std::vector<float> one = Kernel(q, k, v, cs.group, cs.hd, cs.len, 0.125f, 1000, 1000);
  const std::vector<float> split = Kernel(q, k, v, cs.group, cs.hd, cs.len, 0.125f, 100, 16);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(one[i], split[i], 1e-5f * 8) << i;
}

}  // namespace
}  // namespace kvinfer
