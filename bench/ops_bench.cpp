// Microbenchmarks of the compute kernels.
//
// MatMul/<type>/<rows>/<cols>/<n>/<threads>: one y = x W^T at the default
// model's shapes (SmolLM2-135M: hidden 576, kv 192, ffn 1536, vocab 49152).
// Counters: weight_bytes_per_second (weights streamed once per call; the
// decode roofline), flops_per_second (2 * rows * cols * n).
// (Q4_0 / Q4_1 / Q8_0 run the default int8-activation path there.)
// MatMulAct/<type>/<rows>/<cols>/<n>/<threads>/<int8>: the quantized types
// with int8 activations (int8=1, the default) or f32 activations (int8=0,
// a MatMulContext of ActivationPrecision::kF32), side by side for A/B
// comparisons.
// DecodeStepMatMuls/<type>/<threads>/<int8>: all matmuls of one decode token
// of the 30-layer model, each layer its own weights, plus the Q8_0 output head.
//
// MemoryRead/<threads>: the machine's streaming read bandwidth (a 256 MiB
// buffer summed by the pool's threads), the ceiling of every
// memory-bound decode figure; scripts/speed.sh records it with its table.
//
//   kvinfer_bench --benchmark_filter='MatMul|Decode' --benchmark_min_time=0.2
//   kvinfer_bench --benchmark_filter='MatMulAct/.*/threads:2' --benchmark_min_time=0.2

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/dtype.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "ops/matmul_int8.h"
#include "ops/ops.h"

namespace kvinfer {
namespace {

struct BenchWeight {
  AlignedBuffer bytes;
  WeightView view;
};

// Random weights: plain types N(0,1)-ish values, quantized types random codes
// with sane fp16 scales (no NaN/inf/subnormal that could skew timings).
BenchWeight MakeWeight(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  const DTypeInfo& info = GetDTypeInfo(type);
  const size_t row_bytes = RowBytes(info, static_cast<uint64_t>(cols));
  BenchWeight w{AlignedBuffer(row_bytes * static_cast<size_t>(rows)), {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  uint8_t* p = w.bytes.as<uint8_t>();
  const size_t blocks = w.bytes.size() / info.block_bytes;
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* blk = p + b * info.block_bytes;
    for (size_t i = 0; i < info.block_bytes; ++i) blk[i] = static_cast<uint8_t>(rng());
    uint16_t h;
    switch (type) {
      case DType::kF32: {
        const float v = uni(rng);
        std::memcpy(blk, &v, 4);
        break;
      }
      case DType::kF16:
        h = F32ToF16(uni(rng));
        std::memcpy(blk, &h, 2);
        break;
      case DType::kBF16:
        h = F32ToBF16(uni(rng));
        std::memcpy(blk, &h, 2);
        break;
      case DType::kQ4_1:
        h = F32ToF16(uni(rng) * 0.1f);
        std::memcpy(blk + 2, &h, 2);
        [[fallthrough]];
      case DType::kQ8_0:
      case DType::kQ4_0:
        h = F32ToF16(uni(rng) * 0.01f);
        std::memcpy(blk, &h, 2);
        break;
      default:
        break;
    }
  }
  w.view = WeightView{type, rows, cols, w.bytes.data(), row_bytes};
  return w;
}

std::vector<float> RandomVector(size_t n) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = uni(rng);
  return v;
}

ThreadPool* Pool(int threads) {
  static ThreadPool* pools[9] = {};
  if (threads <= 1) return nullptr;
  if (pools[threads] == nullptr) pools[threads] = new ThreadPool(threads);
  return pools[threads];
}

// The body of BM_MatMul; `pack` gives the weights their ops::PackWeights copy
// (as the model loader does) when this CPU has a packed kernel for the type.
// The products run in a context of `options` (its scratch reused across
// iterations, as an engine's is across steps).
void RunMatMul(benchmark::State& state, bool pack, ops::MatMulContext::Options options = {}) {
  const auto type = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n = state.range(3);
  const int threads = static_cast<int>(state.range(4));
  BenchWeight w = MakeWeight(type, rows, cols, 1);
  AlignedBuffer packed;
  if (pack) {
    packed = ops::PackWeights(w.view);
    w.view.packed = packed.size() != 0 ? packed.data() : nullptr;
  }
  const std::vector<float> x = RandomVector(static_cast<size_t>(n * cols));
  std::vector<float> y(static_cast<size_t>(n * rows));
  const ops::MatMulContext ctx(Pool(threads), options);
  for (auto _ : state) {
    ops::MatMul(ctx, w.view, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double weight_bytes = static_cast<double>(w.view.row_bytes) * static_cast<double>(rows);
  state.counters["weight_bytes_per_second"] =
      benchmark::Counter(weight_bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops_per_second"] = benchmark::Counter(
      2.0 * static_cast<double>(rows * cols * n), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(DTypeName(type)) + " " + ops::SimdTargetName() +
                 (w.view.packed != nullptr ? " packed" : ""));
}

void BM_MatMul(benchmark::State& state) { RunMatMul(state, false); }

void MatMulArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "rows", "cols", "n", "threads"});
  const DType types[] = {DType::kF32,  DType::kF16,  DType::kBF16,
                         DType::kQ8_0, DType::kQ4_0, DType::kQ4_1};
  const int64_t shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}};
  for (DType t : types) {
    for (const auto& s : shapes) {
      for (int64_t n : {1, 4, 16, 64, 512}) {
        for (int64_t threads : {1, 2}) {
          b->Args({static_cast<int64_t>(t), s[0], s[1], n, threads});
        }
      }
    }
  }
  // The tied output head.
  for (int64_t n : {1, 16, 64}) {
    for (int64_t threads : {1, 2}) {
      b->Args({static_cast<int64_t>(DType::kQ8_0), 49152, 576, n, threads});
    }
  }
}
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// F16 / F32 weights with and without their packed copy (packed = 1 / 0),
// side by side for A/B comparisons of the packed outer-product kernel
// (ops/matmul_f16.h) and the unpacked path:
//   kvinfer_bench --benchmark_filter='MatMulPacked/type:1/.*/n:512' --benchmark_min_time=0.2
void BM_MatMulPacked(benchmark::State& state) { RunMatMul(state, state.range(5) != 0); }

void MatMulPackedArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "rows", "cols", "n", "threads", "packed"});
  const int64_t shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}};
  for (DType t : {DType::kF16, DType::kF32}) {
    for (const auto& s : shapes) {
      for (int64_t n : {1, 4, 16, 64, 512}) {
        for (int64_t threads : {1, 2}) {
          for (int64_t packed : {0, 1}) {
            b->Args({static_cast<int64_t>(t), s[0], s[1], n, threads, packed});
          }
        }
      }
    }
  }
}
BENCHMARK(BM_MatMulPacked)->Apply(MatMulPackedArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// A context of int8 (true) or f32 activations.
ops::MatMulContext::Options Activations(bool int8) {
  return {.activation_precision =
              int8 ? ops::ActivationPrecision::kInt8 : ops::ActivationPrecision::kF32};
}

void BM_MatMulAct(benchmark::State& state) {
  RunMatMul(state, false, Activations(state.range(5) != 0));
  state.SetLabel(std::string(DTypeName(static_cast<DType>(state.range(0)))) +
                 (state.range(5) != 0 ? " int8 activations" : " f32 activations"));
}

void MatMulActArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "rows", "cols", "n", "threads", "int8"});
  const int64_t shapes[][2] = {{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
  for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    for (const auto& s : shapes) {
      for (int64_t n : {1, 16, 64, 512}) {
        if (s[0] == 49152 && n == 512) continue;  // the head never sees a prompt's every token
        for (int64_t threads : {1, 2}) {
          for (int64_t int8 : {1, 0}) {
            b->Args({static_cast<int64_t>(t), s[0], s[1], n, threads, int8});
          }
        }
      }
    }
  }
}
BENCHMARK(BM_MatMulAct)->Apply(MatMulActArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// One int8 kernel forced (kernel: the ops::Isa, 0 scalar, 1 avx2, 3
// avx512vnni; skipped where the CPU cannot run it), 1 thread: how the
// fallbacks compare.
void BM_MatMulInt8Kernel(benchmark::State& state) {
  const auto isa = static_cast<ops::Isa>(state.range(5));
  if (!ops::CpuRuns(isa)) {
    state.SkipWithError("kernel not runnable on this CPU");
    return;
  }
  RunMatMul(state, false, {.isa = isa});
  state.SetLabel(std::string(DTypeName(static_cast<DType>(state.range(0)))) + " int8 " +
                 ops::IsaName(isa));
}
BENCHMARK(BM_MatMulInt8Kernel)
    ->ArgNames({"type", "rows", "cols", "n", "threads", "kernel"})
    ->ArgsProduct({{static_cast<int64_t>(DType::kQ4_0), static_cast<int64_t>(DType::kQ4_1),
                    static_cast<int64_t>(DType::kQ8_0)},
                   {1536},
                   {576},
                   {1, 16, 64},
                   {1},
                   {static_cast<int64_t>(ops::Isa::kScalar), static_cast<int64_t>(ops::Isa::kAvx2),
                    static_cast<int64_t>(ops::Isa::kAvx512Vnni)}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Every matmul of one decode token of SmolLM2-135M with layer weights of
// `type` (30 layers of q, k, v, o, gate, up, down) and the Q8_0 head;
// packed = 1 gives every weight its ops::PackWeights copy, as the model
// loader does.
void BM_DecodeStepMatMuls(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  const bool pack = state.range(3) != 0;
  constexpr int kLayers = 30;
  constexpr int64_t kHidden = 576, kKv = 192, kFfn = 1536, kVocab = 49152;
  std::vector<BenchWeight> weights;
  for (int l = 0; l < kLayers; ++l) {
    const uint32_t s = static_cast<uint32_t>(l * 8);
    weights.push_back(MakeWeight(type, kHidden, kHidden, s + 0));
    weights.push_back(MakeWeight(type, kKv, kHidden, s + 1));
    weights.push_back(MakeWeight(type, kKv, kHidden, s + 2));
    weights.push_back(MakeWeight(type, kHidden, kHidden, s + 3));
    weights.push_back(MakeWeight(type, kFfn, kHidden, s + 4));
    weights.push_back(MakeWeight(type, kFfn, kHidden, s + 5));
    weights.push_back(MakeWeight(type, kHidden, kFfn, s + 6));
  }
  weights.push_back(MakeWeight(DType::kQ8_0, kVocab, kHidden, 999));
  std::vector<AlignedBuffer> packed;
  if (pack) {
    for (BenchWeight& w : weights) {
      AlignedBuffer& buf = packed.emplace_back(ops::PackWeights(w.view));
      w.view.packed = buf.size() != 0 ? buf.data() : nullptr;
    }
  }
  const std::vector<float> x = RandomVector(kFfn);
  std::vector<float> y(kVocab);
  const ops::MatMulContext ctx(Pool(threads), Activations(state.range(2) != 0));
  double bytes = 0;
  for (const BenchWeight& w : weights) {
    bytes += static_cast<double>(w.view.row_bytes) * static_cast<double>(w.view.rows);
  }
  for (auto _ : state) {
    for (const BenchWeight& w : weights) ops::MatMul(ctx, w.view, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["weight_bytes_per_second"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(DTypeName(type)) + " layers + q8_0 head" +
                 (state.range(2) != 0 ? ", int8 activations" : ", f32 activations") +
                 (pack ? ", packed" : ""));
}
BENCHMARK(BM_DecodeStepMatMuls)
    ->ArgNames({"type", "threads", "int8", "packed"})
    ->ArgsProduct({{static_cast<int64_t>(DType::kQ4_1), static_cast<int64_t>(DType::kQ4_0),
                    static_cast<int64_t>(DType::kQ8_0)},
                   {1, 2},
                   {1, 0},
                   {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeStepMatMuls)
    ->ArgNames({"type", "threads", "int8", "packed"})
    ->ArgsProduct({{static_cast<int64_t>(DType::kF16)}, {1, 2}, {0}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_RmsNorm(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = RandomVector(static_cast<size_t>(n));
  const std::vector<float> w = RandomVector(static_cast<size_t>(n));
  std::vector<float> out(x.size());
  for (auto _ : state) {
    ops::RmsNorm(x.data(), w.data(), n, 1e-5f, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_RmsNorm)->Arg(576)->Arg(1536);

void BM_Softmax(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x0 = RandomVector(static_cast<size_t>(n));
  std::vector<float> x = x0;
  for (auto _ : state) {
    std::memcpy(x.data(), x0.data(), x.size() * sizeof(float));
    ops::Softmax(x.data(), n);
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Softmax)->Arg(64)->Arg(1024)->Arg(49152);

void BM_SiluMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> up = RandomVector(static_cast<size_t>(n));
  const std::vector<float> g0 = RandomVector(static_cast<size_t>(n));
  std::vector<float> g = g0;
  for (auto _ : state) {
    std::memcpy(g.data(), g0.data(), g.size() * sizeof(float));  // no drift to denormals
    ops::SiluMul(g.data(), up.data(), n);
    benchmark::DoNotOptimize(g.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SiluMul)->Arg(1536);

// The engine's check of one logits row before sampling (49152: SmolLM2's
// vocabulary), all finite as in every healthy step.
void BM_FindNonFinite(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = RandomVector(static_cast<size_t>(n));
  for (auto _ : state) benchmark::DoNotOptimize(ops::FindNonFinite(x.data(), n));
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_FindNonFinite)->Arg(49152);

void BM_MemoryRead(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr size_t kBytes = size_t{256} << 20;
  AlignedBuffer buf(kBytes, AlignedBuffer::Init::kZero);  // written: every page is resident
  const float* floats = buf.as<float>();
  constexpr int64_t kTasks = 64;
  constexpr int64_t kFloatsPerTask = static_cast<int64_t>(kBytes / sizeof(float) / kTasks);
  ThreadPool* pool = Pool(threads);
  std::vector<float> sums(kTasks);
  // ops::Dot of a slice with itself: SIMD loads, several accumulators.
  auto sum_tasks = [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      const float* p = floats + t * kFloatsPerTask;
      sums[static_cast<size_t>(t)] = ops::Dot(p, p, kFloatsPerTask);
    }
  };
  for (auto _ : state) {
    if (pool != nullptr) {
      pool->ParallelFor(kTasks, 1, sum_tasks);
    } else {
      sum_tasks(0, kTasks, 0);
    }
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kBytes));
}
BENCHMARK(BM_MemoryRead)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Dot64(benchmark::State& state) {
  const std::vector<float> a = RandomVector(64), b = RandomVector(64);
  for (auto _ : state) benchmark::DoNotOptimize(ops::Dot(a.data(), b.data(), 64));
}
BENCHMARK(BM_Dot64);

}  // namespace
}  // namespace kvinfer
