// Microbenchmark of the attention kernel (ops/attention.h): one decode
// token of one layer at the default model's shape (3 KV heads, 3 query heads
// each, head_dim 64) against `len` cached positions in 16-token blocks,
// chunked by 256 positions as the engine does, one thread; f32 (arg 0) or
// f16 (arg 1) K/V.
// Each iteration visits the next of 30 layers' K/V (as a decode step does),
// so contexts past a few hundred tokens stream from memory, not cache.
// Counter kv_bytes_per_second: K and V bytes read per second (the roofline
// for long contexts is the machine's memory bandwidth).
//
//   kvinfer_bench --benchmark_filter=Attention
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/half.h"
#include "ops/attention.h"

namespace kvinfer {
namespace {

void BM_AttentionDecode(benchmark::State& state) {
  const int32_t len = static_cast<int32_t>(state.range(0));
  const bool f16 = state.range(1) != 0;
  constexpr int kKvHeads = 3, kGroup = 3, kHd = 64, kBlock = 16, kChunk = 256;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  constexpr int kLayers = 30;
  const size_t layer_elems = static_cast<size_t>(kKvHeads) * len * kHd;
  std::vector<float> q(kKvHeads * kGroup * kHd), k(layer_elems * kLayers), v(k.size());
  for (float& x : q) x = nd(rng);
  for (float& x : k) x = nd(rng);
  for (float& x : v) x = nd(rng);
  std::vector<uint16_t> k16(k.size()), v16(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k16[i] = F32ToF16(k[i]);
    v16[i] = F32ToF16(v[i]);
  }
  const size_t elem = f16 ? 2 : 4;
  const std::byte* kbase = f16 ? reinterpret_cast<const std::byte*>(k16.data())
                               : reinterpret_cast<const std::byte*>(k.data());
  const std::byte* vbase = f16 ? reinterpret_cast<const std::byte*>(v16.data())
                               : reinterpret_cast<const std::byte*>(v.data());
  const size_t part = kGroup * (kHd + 2);
  std::vector<float> st(part), tmp(part), scratch(kGroup * kChunk), out(kGroup * kHd);
  std::vector<ops::KvSpan> spans;
  int layer = 0;
  for (auto _ : state) {
    const size_t lo = layer_elems * static_cast<size_t>(layer) * elem;
    layer = (layer + 1) % kLayers;
    for (int g = 0; g < kKvHeads; ++g) {
      const std::byte* kg = kbase + lo + static_cast<size_t>(g) * len * kHd * elem;
      const std::byte* vg = vbase + lo + static_cast<size_t>(g) * len * kHd * elem;
      for (int32_t b = 0; b < len; b += kChunk) {
        const int32_t e = std::min(len, b + kChunk);
        spans.clear();
        for (int32_t j = b; j < e; j += kBlock) {
          spans.push_back({kg + static_cast<size_t>(j) * kHd * elem,
                           vg + static_cast<size_t>(j) * kHd * elem, std::min(kBlock, e - j)});
        }
        float* dst = b == 0 ? st.data() : tmp.data();
        ops::AttentionPartial(q.data() + g * kGroup * kHd, kGroup, kHd, 0.125f,
                              f16 ? KvPrecision::kF16 : KvPrecision::kF32, spans, e - b,
                              scratch.data(), dst, dst + kGroup, dst + 2 * kGroup);
        if (b > 0) {
          ops::MergePartial(kGroup, kHd, tmp.data(), tmp.data() + kGroup, tmp.data() + 2 * kGroup,
                            st.data(), st.data() + kGroup, st.data() + 2 * kGroup);
        }
      }
      ops::FinishPartial(kGroup, kHd, st.data() + kGroup, st.data() + 2 * kGroup, out.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["kv_bytes_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(layer_elems) * elem,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttentionDecode)
    ->ArgsProduct({{128, 512, 2048, 8192}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvinfer
