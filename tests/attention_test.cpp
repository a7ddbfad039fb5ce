// The attention kernel (ops/attention.h) against a float64 softmax-attention
// reference, for odd head sizes, GQA group sizes, span layouts (block size
// 1, uneven blocks) and chunk splits, on every SIMD target the CPU runs.
#include "ops/attention.h"

#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/half.h"
#include "hwy/targets.h"

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

// The kernel over [0, len) cut into chunks of `chunk` positions, each chunk
// presented as spans of `span` positions, folded in order. With kF16 the
// K/V are stored as f16 (the caller passes values already rounded to f16,
// so the float64 reference sees exactly what the kernel reads).
std::vector<float> Kernel(const std::vector<float>& q, const std::vector<float>& k,
                          const std::vector<float>& v, int group, int hd, int32_t len, float scale,
                          int32_t chunk, int32_t span, KvPrecision type = KvPrecision::kF32) {
  std::vector<uint16_t> k16(k.size()), v16(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k16[i] = F32ToF16(k[i]);
    v16[i] = F32ToF16(v[i]);
  }
  const bool f16 = type == KvPrecision::kF16;
  auto at = [&](const std::vector<float>& f32, const std::vector<uint16_t>& h, int32_t j) -> const void* {
    return f16 ? static_cast<const void*>(h.data() + static_cast<size_t>(j) * hd)
               : static_cast<const void*>(f32.data() + static_cast<size_t>(j) * hd);
  };
  const size_t part = static_cast<size_t>(group) * (hd + 2);
  std::vector<float> state(part), tmp(part), scratch(static_cast<size_t>(group) * chunk);
  for (int32_t begin = 0; begin < len; begin += chunk) {
    const int32_t end = std::min(len, begin + chunk);
    std::vector<ops::KvSpan> spans;
    for (int32_t j = begin; j < end; j += span) {
      spans.push_back({at(k, k16, j), at(v, v16, j), std::min(span, end - j)});
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

void CheckCase(const Case& cs, uint32_t seed, KvPrecision type) {
  std::mt19937 rng(seed);
  // Scores spread over several units so the softmax is far from uniform.
  std::normal_distribution<float> qd(0.0f, 1.5f), kd(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(cs.group) * cs.hd), k(static_cast<size_t>(cs.len) * cs.hd),
      v(k.size());
  for (float& x : q) x = qd(rng);
  for (float& x : k) x = kd(rng);
  for (float& x : v) x = kd(rng);
  if (type == KvPrecision::kF16) {
    for (float& x : k) x = F16ToF32(F32ToF16(x));
    for (float& x : v) x = F16ToF32(F32ToF16(x));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(cs.hd));
  const std::vector<double> ref = Reference(q, k, v, cs.group, cs.hd, cs.len, scale);
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
      // head offset or fold is off by >1e-2.
      EXPECT_LT(max_err, 2e-5);
      // The span layout (block size) never changes the bits for a fixed chunking.
      if (span == 1) {
        whole = out;
      } else {
        EXPECT_EQ(out, whole);
      }
    }
  }
}

const Case kCases[] = {{1, 64, 1},   {3, 64, 300},  {3, 64, 2049}, {4, 128, 513}, {1, 8, 37},
                       {9, 16, 100}, {5, 12, 77},   {2, 7, 33},    {8, 80, 260},  {16, 64, 65},
                       {12, 32, 1}};

TEST(AttentionKernelTest, MatchesFloat64ReferenceOnEveryTarget) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    uint32_t seed = 1;
    for (const Case& cs : kCases) {
      CheckCase(cs, seed, KvPrecision::kF32);
      CheckCase(cs, seed++, KvPrecision::kF16);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
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
