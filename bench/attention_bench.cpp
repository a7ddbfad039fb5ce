// Microbenchmark of the attention kernel (ops/attention.h): one decode
// token of one layer at the default model's shape (3 KV heads, 3 query heads
// each, head_dim 64) against `len` cached positions in 16-token blocks,
// chunked by 256 positions as the engine does, one thread; f32 (arg 0),
// f16 (arg 1), q8_0 (arg 2) or q4_0 (arg 3) K/V (KvPrecision's values),
// laid out as the cache lays them out (q8_0, q4_0: a block's codes, then
// its scales); arg 3: 0 each head's blocks in order, 1 scattered as a paged
// pool leaves them (2048 positions, f16, q8_0 and q4_0).
// Each iteration visits the next layer's K/V (as a decode step does), of
// arg 4 layers: 30 (the default model's), which on a host with a large L3
// (260 MiB here) mostly stays there, or 240 (q8_0 and q4_0 at 2048
// positions: 200 / 108 MiB), which streams from memory as a decode step's
// K/V do once ~100 MiB of weights have passed through the cache between
// one layer's attention and the next token's.
// Counter kv_bytes_per_second: K and V bytes read per second (the roofline
// for long contexts is the machine's memory bandwidth).
//
//   kvinfer_bench --benchmark_filter=Attention
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "kv/kv_cache.h"
#include "ops/attention.h"

namespace kvinfer {
namespace {

void BM_AttentionDecode(benchmark::State& state) {
  const int32_t len = static_cast<int32_t>(state.range(0));
  const KvPrecision type = static_cast<KvPrecision>(state.range(1));
  constexpr int kKvHeads = 3, kGroup = 3, kHd = 64, kBlock = 16, kChunk = 256;
  constexpr int kNb = KvQ8Blocks(kHd);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const int layers = static_cast<int>(state.range(3));
  // One head's K (or V) rows of one block, as the cache stores them.
  const size_t block_bytes = kBlock * KvRowBytes(type, kHd);
  const int32_t blocks = (len + kBlock - 1) / kBlock;
  // [layer][k|v][head][block] -> block_bytes
  auto slot = [&](int layer, int kv, int g, int32_t b) {
    return ((static_cast<size_t>(layer) * 2 + kv) * kKvHeads + g) * blocks + b;
  };
  // scattered = 1: the blocks in a random order, as a paged pool hands them
  // out to a sequence that grew alongside others (each block still 16 rows
  // of one head); 0: each head's blocks one after another.
  const bool scattered = state.range(2) != 0;
  std::vector<size_t> order(slot(layers, 0, 0, 0));
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (scattered) std::shuffle(order.begin(), order.end(), rng);
  auto at = [&](int layer, int kv, int g, int32_t b) { return order[slot(layer, kv, g, b)]; };
  std::vector<std::byte> kv(order.size() * block_bytes);
  std::vector<float> row(kHd), q(kKvHeads * kGroup * kHd);
  for (float& x : q) x = nd(rng);
  for (size_t blk = 0; blk < order.size(); ++blk) {
    std::byte* base = kv.data() + blk * block_bytes;
    for (int t = 0; t < kBlock; ++t) {
      for (float& x : row) x = nd(rng);
      if (type == KvPrecision::kF32) {
        std::memcpy(base + t * kHd * sizeof(float), row.data(), kHd * sizeof(float));
      } else if (type == KvPrecision::kF16) {
        for (int i = 0; i < kHd; ++i) {
          const uint16_t h = F32ToF16(row[i]);
          std::memcpy(base + (t * kHd + i) * 2, &h, 2);
        }
      } else {
        const size_t codes = KvCodeRowBytes(type, kHd);
        auto* scales = reinterpret_cast<uint16_t*>(base + kBlock * codes) + t * kNb;
        if (type == KvPrecision::kQ8_0) {
          QuantizeKvQ8(row.data(), kHd, reinterpret_cast<int8_t*>(base + t * codes), scales);
        } else {
          QuantizeKvQ4(row.data(), kHd, reinterpret_cast<uint8_t*>(base + t * codes), scales);
        }
      }
    }
  }
  const size_t part = kGroup * (kHd + 2);
  std::vector<float> st(part), tmp(part), scratch(ops::AttentionScratchFloats(type, kGroup, kHd, kChunk)), out(kGroup * kHd);
  std::vector<ops::KvSpan> spans;
  int layer = 0;
  for (auto _ : state) {
    for (int g = 0; g < kKvHeads; ++g) {
      for (int32_t b = 0; b < len; b += kChunk) {
        const int32_t e = std::min(len, b + kChunk);
        spans.clear();
        for (int32_t j = b; j < e; j += kBlock) {
          const std::byte* kb = kv.data() + at(layer, 0, g, j / kBlock) * block_bytes;
          const std::byte* vb = kv.data() + at(layer, 1, g, j / kBlock) * block_bytes;
          ops::KvSpan& sp = spans.emplace_back(kb, vb, std::min(kBlock, e - j));
          if (type == KvPrecision::kQ8_0 || type == KvPrecision::kQ4_0) {
            const size_t codes = kBlock * KvCodeRowBytes(type, kHd);
            sp.k_scale = reinterpret_cast<const uint16_t*>(kb + codes);
            sp.v_scale = reinterpret_cast<const uint16_t*>(vb + codes);
          }
        }
        float* dst = b == 0 ? st.data() : tmp.data();
        ops::AttentionPartial(q.data() + g * kGroup * kHd, kGroup, kHd, 0.125f, type, spans, e - b,
                              scratch.data(), dst, dst + kGroup, dst + 2 * kGroup);
        if (b > 0) {
          ops::MergePartial(kGroup, kHd, tmp.data(), tmp.data() + kGroup, tmp.data() + 2 * kGroup,
                            st.data(), st.data() + kGroup, st.data() + 2 * kGroup);
        }
      }
      ops::FinishPartial(kGroup, kHd, st.data() + kGroup, st.data() + 2 * kGroup, out.data());
    }
    layer = (layer + 1) % layers;
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["kv_bytes_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * kKvHeads * blocks * static_cast<double>(block_bytes),
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttentionDecode)
    ->ArgsProduct({{128, 512, 2048, 8192}, {0, 1, 2, 3}, {0}, {30}})
    ->ArgsProduct({{2048}, {1, 2, 3}, {1}, {30}})
    ->ArgsProduct({{2048}, {2, 3}, {0, 1}, {240}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvinfer
