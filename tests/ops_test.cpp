// Optimized kernels (ops::*) against the scalar references (ops::ref::*),
// dequantization of hand-built blocks with known values, fp16/bf16
// conversions, and per-SIMD-target agreement.

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "hwy/targets.h"
#include "kv/kv_format.h"
#include "ops/matmul_int8.h"
#include "ops/ops.h"
#include "ops/reference.h"
#include "ops/weights.h"

namespace kvinfer {
namespace {

// A weight matrix with its own storage.
struct TestWeight {
  std::vector<uint8_t> bytes;
  WeightView view;
};

uint16_t RandomScale(std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> mag(lo, hi);
  const float v = (rng() & 1u) ? mag(rng) : -mag(rng);
  return F32ToF16(v);
}

// Random weights of `type`: plain types get N(0,1) values rounded to the type;
// quantized types get uniformly random codes and random signed fp16 scales
// (and mins), so every code of every nibble position is exercised.
TestWeight MakeWeight(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const DTypeInfo& info = GetDTypeInfo(type);
  TestWeight w;
  const size_t row_bytes = RowBytes(info, static_cast<uint64_t>(cols));
  w.bytes.resize(row_bytes * static_cast<size_t>(rows));
  uint8_t* p = w.bytes.data();
  const size_t blocks = w.bytes.size() / info.block_bytes;
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* blk = p + b * info.block_bytes;
    switch (type) {
      case DType::kF32: {
        const float v = normal(rng);
        std::memcpy(blk, &v, 4);
        break;
      }
      case DType::kF16:
      case DType::kBF16: {
        const float v = normal(rng);
        const uint16_t h = type == DType::kF16 ? F32ToF16(v) : F32ToBF16(v);
        std::memcpy(blk, &h, 2);
        break;
      }
      case DType::kQ8_0: {
        BlockQ8_0 q;
        q.d = RandomScale(rng, 1e-3f, 2e-2f);
        for (int8_t& c : q.qs) c = static_cast<int8_t>(rng() & 0xFF);
        std::memcpy(blk, &q, sizeof(q));
        break;
      }
      case DType::kQ4_0: {
        BlockQ4_0 q;
        q.d = RandomScale(rng, 1e-2f, 0.3f);
        for (uint8_t& c : q.qs) c = static_cast<uint8_t>(rng() & 0xFF);
        std::memcpy(blk, &q, sizeof(q));
        break;
      }
      case DType::kQ4_1: {
        BlockQ4_1 q;
        q.d = RandomScale(rng, 1e-2f, 0.3f);
        q.m = RandomScale(rng, 0.1f, 2.0f);
        for (uint8_t& c : q.qs) c = static_cast<uint8_t>(rng() & 0xFF);
        std::memcpy(blk, &q, sizeof(q));
        break;
      }
      default:
        ADD_FAILURE() << "no generator for " << DTypeName(type);
    }
  }
  w.view = WeightView{type, rows, cols, w.bytes.data(), row_bytes};
  return w;
}

std::vector<float> RandomVector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = normal(rng);
  return v;
}

// Contexts of each activation precision. The f32-path tests below use
// kF32: with kInt8 (the default) Q4_0/Q4_1/Q8_0 take the int8 path, tested
// by MatMulInt8Test against its own reference.
ops::MatMulContext::Options Precision(ops::ActivationPrecision p) {
  return {.activation_precision = p};
}
const ops::MatMulContext::Options kF32 = Precision(ops::ActivationPrecision::kF32);

// ops::MatMul in a context of `options` on `pool`, made for this call.
void MatMulIn(const ops::MatMulContext::Options& options, const WeightView& w, const float* x,
              int64_t n, float* y, ThreadPool* pool) {
  const ops::MatMulContext ctx(pool, options);
  ops::MatMul(ctx, w, x, n, y);
}

constexpr ops::ActivationPrecision kBothPrecisions[] = {ops::ActivationPrecision::kInt8,
                                                        ops::ActivationPrecision::kF32};

// Tolerance of one output of a matmul. The optimized kernel sums cols
// products in f32 (in some order: per-lane chains then a lane reduction),
// the reference in double; the standard error bound of a length-k f32
// summation is gamma_k * sum|w_i x_i| with gamma_k ~ k * 2^-24. Dequantizing
// may round each weight once more (Q4_1's d*q+m), adding 2^-24 per term.
// So the bound is (cols + 2) * 2^-24 * sum|w_i x_i|. A layout bug (wrong
// nibble, wrong scale) gives errors of order sum|w x| / sqrt(cols), orders of
// magnitude above this.
double MatMulTolerance(const float* wrow, const float* x, int64_t cols) {
  double abs_sum = 0.0;
  for (int64_t i = 0; i < cols; ++i) abs_sum += std::fabs(static_cast<double>(wrow[i]) * x[i]);
  return (static_cast<double>(cols) + 2.0) * 0x1p-24 * abs_sum + 1e-30;
}

void ExpectMatMulMatchesReference(const WeightView& w, const std::vector<float>& x, int64_t n,
                                  const std::vector<float>& y) {
  std::vector<float> y_ref(static_cast<size_t>(n * w.rows));
  ops::ref::MatMul(w, x.data(), n, y_ref.data());
  std::vector<float> wrow(static_cast<size_t>(w.cols));
  int failures = 0;
  for (int64_t r = 0; r < w.rows && failures < 5; ++r) {
    ops::ref::DequantizeRow(w, r, wrow.data());
    for (int64_t t = 0; t < n && failures < 5; ++t) {
      const size_t k = static_cast<size_t>(t * w.rows + r);
      const double tol = MatMulTolerance(wrow.data(), x.data() + t * w.cols, w.cols);
      if (!(std::fabs(static_cast<double>(y[k]) - y_ref[k]) <= tol)) {
        ++failures;
        ADD_FAILURE() << "row " << r << " token " << t << ": got " << y[k] << " want " << y_ref[k]
                      << " tol " << tol;
      }
    }
  }
}

const DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16,
                           DType::kQ8_0, DType::kQ4_0, DType::kQ4_1};
const int64_t kRows[] = {1, 3, 17, 64, 191};
const int64_t kTokens[] = {1, 2, 3, 5, 8, 17};

class MatMulTest : public testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(MatMulTest, MatchesReference) {
  const auto [type, cols] = GetParam();
  for (int64_t rows : kRows) {
    const TestWeight w = MakeWeight(type, rows, cols, static_cast<uint32_t>(rows * 7 + cols));
    for (int64_t n : kTokens) {
      SCOPED_TRACE(testing::Message() << "rows=" << rows << " n=" << n);
      const std::vector<float> x = RandomVector(static_cast<size_t>(n * cols), 99);
      std::vector<float> y(static_cast<size_t>(n * rows), NAN);
      MatMulIn(kF32, w.view, x.data(), n, y.data(), nullptr);
      ExpectMatMulMatchesReference(w.view, x, n, y);
    }
  }
}

TEST_P(MatMulTest, ThreadCountDoesNotChangeBits) {
  const auto [type, cols] = GetParam();
  ThreadPool pool2(2);
  ThreadPool pool3(3);
  for (int64_t rows : {int64_t{17}, int64_t{64}, int64_t{191}}) {
    const TestWeight w = MakeWeight(type, rows, cols, 5);
    for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{17}}) {
      SCOPED_TRACE(testing::Message() << "rows=" << rows << " n=" << n);
      const std::vector<float> x = RandomVector(static_cast<size_t>(n * cols), 7);
      std::vector<float> y1(static_cast<size_t>(n * rows)), y2(y1.size()), y3(y1.size());
      MatMulIn(kF32, w.view, x.data(), n, y1.data(), nullptr);
      MatMulIn(kF32, w.view, x.data(), n, y2.data(), &pool2);
      MatMulIn(kF32, w.view, x.data(), n, y3.data(), &pool3);
      EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)));
      EXPECT_EQ(0, std::memcmp(y1.data(), y3.data(), y1.size() * sizeof(float)));
    }
  }
}

TEST_P(MatMulTest, DequantizeRowMatchesReference) {
  const auto [type, cols] = GetParam();
  const TestWeight w = MakeWeight(type, 3, cols, 11);
  std::vector<float> got(static_cast<size_t>(cols)), want(got.size());
  for (int64_t r = 0; r < 3; ++r) {
    ops::DequantizeRow(w.view, r, got.data());
    ops::ref::DequantizeRow(w.view, r, want.data());
    for (int64_t i = 0; i < cols; ++i) {
      // d*q+m (Q4_1) may be fused in one rounding by the optimized code: 1 ulp.
      EXPECT_NEAR(got[i], want[i], std::fabs(want[i]) * 0x1p-23) << "r=" << r << " i=" << i;
    }
  }
}

std::string TypeColsName(const testing::TestParamInfo<std::tuple<DType, int64_t>>& info) {
  return std::string(DTypeName(std::get<0>(info.param))) + "_cols" +
         std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Ops, MatMulTest,
                         testing::Combine(testing::ValuesIn(kAllTypes),
                                          testing::Values<int64_t>(32, 64, 96, 576, 1536)),
                         TypeColsName);

// ---------------------------------------------------------------------------
// Batch invariance: the engine recomputes preempted requests in prefill
// batches and batches many sequences' decode tokens into one MatMul, and needs
// the bits to be those of one-token calls. So y for a token must not depend
// on n, on which tile the token or row falls in, or on the thread split.

// y for tokens [0, n) one call per token.
std::vector<float> MatMulOneByOne(const ops::MatMulContext& ctx, const WeightView& w,
                                  const std::vector<float>& x, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n * w.rows));
  for (int64_t t = 0; t < n; ++t) {
    ops::MatMul(ctx, w, x.data() + t * w.cols, 1, y.data() + t * w.rows);
  }
  return y;
}

void ExpectBatchInvariantAt(ops::ActivationPrecision precision, const WeightView& w,
                            const std::vector<int64_t>& ns, ThreadPool* pool, uint32_t seed) {
  const ops::MatMulContext one(nullptr, Precision(precision));
  const ops::MatMulContext ctx(pool, Precision(precision));
  const int64_t max_n = *std::max_element(ns.begin(), ns.end());
  const std::vector<float> x = RandomVector(static_cast<size_t>(max_n * w.cols), seed);
  const std::vector<float> want = MatMulOneByOne(one, w, x, max_n);
  for (int64_t n : ns) {
    std::vector<float> got(static_cast<size_t>(n * w.rows), NAN);
    ops::MatMul(ctx, w, x.data(), n, got.data());
    const size_t count = got.size();
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), count * sizeof(float)))
        << DTypeName(w.type) << " [" << w.rows << ", " << w.cols << "] n=" << n
        << (pool != nullptr ? " (2 threads)" : "")
        << " int8=" << (precision == ops::ActivationPrecision::kInt8);
  }
}

// Both activation precisions (they differ only for Q4_0/Q4_1/Q8_0).
void ExpectBatchInvariant(const WeightView& w, const std::vector<int64_t>& ns, ThreadPool* pool,
                          uint32_t seed) {
  for (ops::ActivationPrecision p : kBothPrecisions) ExpectBatchInvariantAt(p, w, ns, pool, seed);
}

const std::vector<int64_t> kBatchSizes = {2, 3, 4, 5, 8, 16, 17, 64};

TEST(MatMulBatchTest, BatchedEqualsOneByOneBitForBit) {
  // The default model's shapes (SmolLM2-135M) and odd ones.
  const int64_t shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536},
                               {1, 32},    {17, 96},   {33, 64},    {191, 160}};
  for (DType type : kAllTypes) {
    for (const auto& s : shapes) {
      const TestWeight w = MakeWeight(type, s[0], s[1], static_cast<uint32_t>(s[0] + s[1]));
      ExpectBatchInvariant(w.view, kBatchSizes, nullptr, 3);
    }
  }
  // Plain types take any cols: the scalar tail must be invariant too.
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    const TestWeight w = MakeWeight(type, 19, 77, 4);
    ExpectBatchInvariant(w.view, kBatchSizes, nullptr, 5);
  }
}

TEST(MatMulBatchTest, OutputHeadAndLongPromptsBitForBit) {
  // The tied Q8_0 output head, and prompts longer than one token block.
  const TestWeight head = MakeWeight(DType::kQ8_0, 49152, 576, 6);
  ExpectBatchInvariant(head.view, {2, 5, 16, 17}, nullptr, 7);
  ThreadPool pool(2);
  for (DType type : kAllTypes) {
    const TestWeight w = MakeWeight(type, 67, 576, 8);
    ExpectBatchInvariant(w.view, {63, 64, 65, 130, 200}, nullptr, 9);
    ExpectBatchInvariant(w.view, {4, 17, 130}, &pool, 9);
  }
}

TEST(MatMulBatchTest, EveryTargetIsBatchInvariant) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    for (DType type : kAllTypes) {
      const TestWeight w = MakeWeight(type, 37, 96, 10);
      ExpectBatchInvariant(w.view, kBatchSizes, nullptr, 11);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

// Plain types accept any cols; the part past the last multiple of 32 takes a
// scalar path.
TEST(MatMulPlainTest, ColsNotMultipleOf32) {
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t cols : {1, 7, 33, 50, 100}) {
      SCOPED_TRACE(testing::Message() << DTypeName(type) << " cols=" << cols);
      const TestWeight w = MakeWeight(type, 9, cols, 3);
      const int64_t n = 5;
      const std::vector<float> x = RandomVector(static_cast<size_t>(n * cols), 4);
      std::vector<float> y(static_cast<size_t>(n * 9));
      MatMulIn(kF32, w.view, x.data(), n, y.data(), nullptr);
      ExpectMatMulMatchesReference(w.view, x, n, y);
      std::vector<float> got(static_cast<size_t>(cols)), want(got.size());
      ops::DequantizeRow(w.view, 8, got.data());
      ops::ref::DequantizeRow(w.view, 8, want.data());
      EXPECT_EQ(got, want);
    }
  }
}

TEST(MatMulDeathTest, RejectsBadShapes) {
  std::vector<uint8_t> bytes(1024);
  const float x[64] = {};
  float y[4];
  WeightView q50{DType::kQ5_0, 1, 32, bytes.data(), 22};
  EXPECT_DEATH(ops::MatMul(q50, x, 1, y, nullptr), "unsupported weight type");
  WeightView odd{DType::kQ8_0, 1, 40, bytes.data(), 34};
  EXPECT_DEATH(ops::MatMul(odd, x, 1, y, nullptr), "bad weight shape");
  WeightView short_rows{DType::kQ8_0, 2, 64, bytes.data(), 34};
  EXPECT_DEATH(ops::MatMul(short_rows, x, 1, y, nullptr), "row_bytes");
  WeightView ok{DType::kF32, 2, 4, bytes.data(), 16};
  EXPECT_DEATH(ops::DequantizeRow(ok, 2, y), "out of");
}

// ---------------------------------------------------------------------------
// The int8-activation path (ops/matmul_int8.h). Its formula is exact integer
// block sums chained by f32 FMAs in block order, so every kernel (scalar,
// AVX2, AVX-512 VNNI: each one this CPU runs), every n, row tile and thread
// split must give the bits of ops::ref::MatMulInt8.

const DType kInt8Types[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1};

TEST(MatMulInt8Test, RunnableKernels) {
  const std::vector<ops::Isa> isas = ops::RunnableIsas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), ops::Isa::kScalar);
  EXPECT_EQ(ops::BestIsa(), isas.back());
  EXPECT_EQ(ops::ChooseIsa(std::nullopt), isas.back());
  for (ops::Isa isa : isas) {
    std::printf("x86 kernels runnable: %s\n", ops::IsaName(isa));
    EXPECT_EQ(ops::ChooseIsa(isa), isa);
  }
  // A context takes the best set unless one is forced, and the int8 path by
  // default only where a SIMD kernel runs.
  const ops::MatMulContext ctx(nullptr);
  EXPECT_EQ(ctx.activation_precision(), ops::ActivationPrecision::kInt8);  // the default
  EXPECT_EQ(ctx.isa(), isas.back());
  EXPECT_EQ(ops::int8::TakesInt8Path(ctx), isas.back() != ops::Isa::kScalar);
  const ops::MatMulContext scalar(nullptr, {.isa = ops::Isa::kScalar});
  EXPECT_TRUE(ops::int8::TakesInt8Path(scalar));  // forced: the scalar int8 kernel
  EXPECT_FALSE(ops::int8::TakesInt8Path(ops::MatMulContext(nullptr, kF32)));
  EXPECT_EQ(EngineOptions{}.activation_precision, ActivationPrecision::kInt8);
}

TEST(MatMulInt8Test, QuantizerMatchesReference) {
  // Random blocks of several magnitudes, a zero block, hand-made ties.
  const int64_t cols = 32 * 6;
  std::vector<float> x = RandomVector(static_cast<size_t>(cols), 31, 3.0f);
  for (int j = 0; j < 32; ++j) x[32 + j] *= 1e-30f;
  for (int j = 0; j < 32; ++j) x[64 + j] = 0.0f;
  // amax 127 -> d = 1, id = 1: x.5 values are exact ties (to even).
  const float ties[] = {127.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 126.5f, -127.0f, 1.49f};
  for (int j = 0; j < 32; ++j) x[96 + j] = ties[j % 10];
  for (int j = 0; j < 32; ++j) x[128 + j] = static_cast<float>(j - 16) * 1e6f;
  const int8_t want_ties[] = {127, 2, 4, -2, -4, 0, 0, 126, -127, 1};
  std::vector<int8_t> q_ref(static_cast<size_t>(cols));
  std::vector<float> d_ref(6), s_ref(6);
  ops::ref::QuantizeActivationsQ8(x.data(), cols, q_ref.data(), d_ref.data(), s_ref.data());
  for (int j = 0; j < 10; ++j) EXPECT_EQ(q_ref[96 + j], want_ties[j]) << j;
  EXPECT_EQ(d_ref[2], 0.0f);
  EXPECT_EQ(d_ref[3], 1.0f);
  for (ops::Isa isa : ops::RunnableIsas()) {
    SCOPED_TRACE(ops::IsaName(isa));
    std::vector<int8_t> q(q_ref.size());
    std::vector<float> d(6), s(6);
    std::vector<int32_t> sum(6);
    ops::int8::QuantizeActivations(isa, x.data(), 1, cols, q.data(), d.data(), s.data(),
                                   sum.data());
    EXPECT_EQ(q, q_ref);
    for (int b = 0; b < 6; ++b) {
      EXPECT_EQ(std::bit_cast<uint32_t>(d[b]), std::bit_cast<uint32_t>(d_ref[b])) << b;
      EXPECT_EQ(std::bit_cast<uint32_t>(s[b]), std::bit_cast<uint32_t>(s_ref[b])) << b;
      int32_t want_sum = 0;
      for (int j = 0; j < 32; ++j) want_sum += q_ref[b * 32 + j];
      EXPECT_EQ(sum[b], want_sum) << b;
    }
  }
}

// Extreme codes: all-max weights times all-max activations in every block
// (the int16 / int32 headroom of the SIMD kernels).
TestWeight MakeExtremeWeight(DType type, int64_t rows, int64_t cols, uint8_t byte) {
  TestWeight w = MakeWeight(type, rows, cols, 1);
  const DTypeInfo& info = GetDTypeInfo(type);
  const size_t header = type == DType::kQ4_1 ? 4 : 2;
  for (size_t b = 0; b < w.bytes.size() / info.block_bytes; ++b) {
    std::memset(&w.bytes[b * info.block_bytes + header], byte, info.block_bytes - header);
  }
  return w;
}

void ExpectInt8MatchesReference(ops::Isa isa, const WeightView& w, const std::vector<float>& x,
                                int64_t n, ThreadPool* pool, const std::string& what) {
  std::vector<float> want(static_cast<size_t>(n * w.rows));
  ops::ref::MatMulInt8(w, x.data(), n, want.data());
  std::vector<float> got(want.size(), NAN);
  MatMulIn({.isa = isa}, w, x.data(), n, got.data(), pool);
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 3; ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i])) {
      ++failures;
      ADD_FAILURE() << what << " " << DTypeName(w.type) << " [" << w.rows << ", " << w.cols
                    << "] n=" << n << " token " << i / w.rows << " row " << i % w.rows << ": got "
                    << got[i] << " want " << want[i];
    }
  }
}

TEST(MatMulInt8Test, EveryKernelMatchesReferenceBitForBit) {
  ThreadPool pool2(2);
  ThreadPool pool3(3);
  const int64_t rows_list[] = {1, 7, 17, 33, 50};  // not multiples of the 8 / 16 row tiles
  const int64_t n_list[] = {1, 2, 3, 5, 7, 16, 17, 64, 65};
  for (ops::Isa k : ops::RunnableIsas()) {
    const std::string name = ops::IsaName(k);
    for (DType type : kInt8Types) {
      for (int64_t blocks : {1, 3, 17, 18}) {
        const int64_t cols = 32 * blocks;
        for (int64_t rows : rows_list) {
          const TestWeight w =
              MakeWeight(type, rows, cols, static_cast<uint32_t>(rows * 131 + cols));
          for (int64_t n : n_list) {
            const std::vector<float> x =
                RandomVector(static_cast<size_t>(n * cols), static_cast<uint32_t>(n + cols));
            ExpectInt8MatchesReference(k, w.view, x, n, nullptr, name);
            if (rows >= 33 && (n == 1 || n == 17 || n == 65)) {
              ExpectInt8MatchesReference(k, w.view, x, n, &pool2, name + " 2 threads");
              ExpectInt8MatchesReference(k, w.view, x, n, &pool3, name + " 3 threads");
            }
          }
        }
      }
      // The SmolLM2 shapes, and codes at their extremes.
      for (const auto& shape : {std::pair<int64_t, int64_t>{576, 576}, {97, 1536}}) {
        const TestWeight w = MakeWeight(type, shape.first, shape.second, 77);
        for (int64_t n : {1, 9}) {
          const auto x = RandomVector(static_cast<size_t>(n * shape.second), 78);
          ExpectInt8MatchesReference(k, w.view, x, n, &pool2, name + " smollm shape");
        }
      }
      for (uint8_t byte : {uint8_t{0xFF}, uint8_t{0x80}, uint8_t{0x00}, uint8_t{0x7F}}) {
        const TestWeight w = MakeExtremeWeight(type, 19, 64, byte);
        for (float v : {1.0f, -1.0f}) {
          const std::vector<float> x(static_cast<size_t>(5 * 64), v);
          ExpectInt8MatchesReference(k, w.view, x, 5, nullptr, name + " extreme codes");
          ExpectInt8MatchesReference(k, w.view, x, 1, nullptr, name + " extreme codes");
        }
      }
    }
  }
}

// Against the f32 path: the int8 result differs from sum_j w_j x_j by the
// activation quantization error, |sum_j w_j (x_j - q_j d)| <= sum_j |w_j| d/2
// per block, plus f32 rounding (both paths, a few ulp of sum |w_j x_j|
// times the number of terms; cols * 2^-23 of it is generous).
TEST(MatMulInt8Test, CloseToF32Path) {
  for (DType type : kInt8Types) {
    for (int64_t cols : {32, 576, 1536}) {
      const int64_t rows = 37, n = 6;
      const TestWeight w = MakeWeight(type, rows, cols, 41);
      const std::vector<float> x = RandomVector(static_cast<size_t>(n * cols), 42);
      std::vector<float> y8(static_cast<size_t>(n * rows)), y32(y8.size());
      ops::MatMul(w.view, x.data(), n, y8.data(), nullptr);
      MatMulIn(kF32, w.view, x.data(), n, y32.data(), nullptr);
      std::vector<float> wrow(static_cast<size_t>(cols));
      double worst_ratio = 0.0;
      for (int64_t r = 0; r < rows; ++r) {
        ops::ref::DequantizeRow(w.view, r, wrow.data());
        for (int64_t t = 0; t < n; ++t) {
          const float* xt = x.data() + t * cols;
          double quant_bound = 0.0, abs_sum = 0.0;
          for (int64_t b = 0; b < cols / 32; ++b) {
            double amax = 0.0, wabs = 0.0;
            for (int j = 0; j < 32; ++j) {
              amax = std::max(amax, std::fabs(static_cast<double>(xt[b * 32 + j])));
              wabs += std::fabs(static_cast<double>(wrow[b * 32 + j]));
              abs_sum += std::fabs(static_cast<double>(wrow[b * 32 + j]) * xt[b * 32 + j]);
            }
            quant_bound += wabs * (amax / 127.0) / 2.0 * (1.0 + 1e-6);
          }
          const double tol = quant_bound + static_cast<double>(cols + 8) * 0x1p-23 * abs_sum;
          const size_t k = static_cast<size_t>(t * rows + r);
          const double err = std::fabs(static_cast<double>(y8[k]) - y32[k]);
          EXPECT_LE(err, tol) << DTypeName(type) << " cols " << cols << " row " << r << " t " << t;
          worst_ratio = std::max(worst_ratio, err / tol);
        }
      }
      // The bound is not vacuous: the int8 path does differ from f32.
      EXPECT_GT(worst_ratio, 1e-3) << DTypeName(type) << " cols " << cols;
    }
  }
}

TEST(MatMulInt8Test, F32SettingRestoresTheF32Path) {
  const TestWeight w = MakeWeight(DType::kQ4_1, 40, 96, 3);
  const std::vector<float> x = RandomVector(96 * 3, 4);
  std::vector<float> y(40 * 3);
  MatMulIn(kF32, w.view, x.data(), 3, y.data(), nullptr);
  ExpectMatMulMatchesReference(w.view, x, 3, y);  // f32 tolerance: int8 would fail it
}

// Packed weights (ops::PackWeights): the VNNI kernel reading the packed copy
// must give the reference's bits for every type, odd row counts (partial last
// tile), odd block counts, token counts around the 8-token tile and thread
// splits. The view's `data` points at DIFFERENT weights of the same shape, so
// a kernel that read `data` instead of `packed` would fail.
TEST(MatMulInt8Test, PackedWeightsMatchReferenceBitForBit) {
  if (!ops::int8::PacksWeights(DType::kQ4_0)) {
    for (DType type : kInt8Types) {
      const TestWeight w = MakeWeight(type, 17, 64, 5);
      EXPECT_EQ(ops::PackWeights(w.view).size(), 0u) << DTypeName(type);
    }
    GTEST_SKIP() << "no packed layout on this CPU (the AVX-512 VNNI kernel does not run here)";
  }
  ThreadPool pool2(2);
  ThreadPool pool3(3);
  for (DType type : kInt8Types) {
    for (int64_t blocks : {1, 3, 18, 48}) {
      const int64_t cols = 32 * blocks;
      for (int64_t rows : {1, 7, 16, 17, 50, 192}) {
        const TestWeight w = MakeWeight(type, rows, cols, static_cast<uint32_t>(rows * 7 + cols));
        const TestWeight decoy = MakeWeight(type, rows, cols, static_cast<uint32_t>(rows + 99));
        const AlignedBuffer packed = ops::PackWeights(w.view);
        ASSERT_GT(packed.size(), 0u);
        ASSERT_EQ(reinterpret_cast<uintptr_t>(packed.data()) % 64, 0u);
        WeightView v = decoy.view;
        v.packed = packed.data();
        for (int64_t n : {1, 2, 3, 8, 9, 17, 64}) {
          const std::vector<float> x =
              RandomVector(static_cast<size_t>(n * cols), static_cast<uint32_t>(n * 3 + cols));
          std::vector<float> want(static_cast<size_t>(n * rows));
          ops::ref::MatMulInt8(w.view, x.data(), n, want.data());
          for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
            std::vector<float> got(want.size(), NAN);
            ops::MatMul(v, x.data(), n, got.data(), pool);
            int failures = 0;
            for (size_t i = 0; i < got.size() && failures < 3; ++i) {
              if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i])) {
                ++failures;
                ADD_FAILURE() << "packed " << DTypeName(type) << " [" << rows << ", " << cols
                              << "] n=" << n << " threads "
                              << (pool != nullptr ? pool->num_threads() : 1) << " token "
                              << i / rows << " row " << i % rows << ": got " << got[i]
                              << " want " << want[i];
              }
            }
          }
        }
      }
    }
  }
}

// MatMulMany: several weights sharing one input give exactly the separate
// products, on the int8 path (one quantization, one job) packed or not, and
// on the fallback (f32 activations; mixed types).
TEST(MatMulManyTest, EqualsSeparateMatMulsBitForBit) {
  ThreadPool pool2(2);
  const int64_t cols = 96;
  const int64_t n_list[] = {1, 3, 17};
  for (DType type : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kF16}) {
    const TestWeight a = MakeWeight(type, 50, cols, 1);
    const TestWeight b = MakeWeight(type, 17, cols, 2);
    const TestWeight c = MakeWeight(type, 16, cols, 3);
    std::vector<AlignedBuffer> packs;
    WeightView views[3] = {a.view, b.view, c.view};
    for (bool packed : {false, true}) {
      if (packed) {
        for (WeightView& v : views) {
          packs.push_back(ops::PackWeights(v));
          v.packed = packs.back().size() > 0 ? packs.back().data() : nullptr;
        }
      }
      for (auto precision : {ops::ActivationPrecision::kInt8, ops::ActivationPrecision::kF32}) {
        const ops::MatMulContext one(nullptr, Precision(precision));
        const ops::MatMulContext two(&pool2, Precision(precision));
        for (int64_t n : n_list) {
          const std::vector<float> x = RandomVector(static_cast<size_t>(n * cols), 9);
          std::vector<std::vector<float>> want(3), got(3);
          for (int i = 0; i < 3; ++i) {
            want[i].assign(static_cast<size_t>(n * views[i].rows), NAN);
            got[i].assign(want[i].size(), NAN);
            ops::MatMul(one, views[i], x.data(), n, want[i].data());
          }
          const WeightView* ws[] = {&views[0], &views[1], &views[2]};
          float* ys[] = {got[0].data(), got[1].data(), got[2].data()};
          ops::MatMulMany(two, ws, x.data(), n, ys);
          for (int i = 0; i < 3; ++i) {
            for (size_t k = 0; k < want[i].size(); ++k) {
              ASSERT_EQ(std::bit_cast<uint32_t>(got[i][k]), std::bit_cast<uint32_t>(want[i][k]))
                  << DTypeName(type) << " packed " << packed << " n " << n << " weight " << i
                  << " element " << k;
            }
          }
        }
      }
    }
  }
  // Weights of different types fall back to one MatMul each.
  const TestWeight q = MakeWeight(DType::kQ4_0, 20, cols, 4);
  const TestWeight f = MakeWeight(DType::kF32, 21, cols, 5);
  const std::vector<float> x = RandomVector(static_cast<size_t>(2 * cols), 6);
  std::vector<float> yq(40), yf(42), wq(40), wf(42);
  ops::MatMul(q.view, x.data(), 2, wq.data(), nullptr);
  ops::MatMul(f.view, x.data(), 2, wf.data(), nullptr);
  const WeightView* ws[] = {&q.view, &f.view};
  float* ys[] = {yq.data(), yf.data()};
  ops::MatMulMany(ws, x.data(), 2, ys, &pool2);
  EXPECT_EQ(yq, wq);
  EXPECT_EQ(yf, wf);
}

// ---------------------------------------------------------------------------
// Dequantization of hand-built blocks.

void ExpectDequantize(const WeightView& w, const std::vector<float>& want) {
  std::vector<float> got(want.size()), got_ref(want.size());
  ops::DequantizeRow(w, 0, got.data());
  ops::ref::DequantizeRow(w, 0, got_ref.data());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << "optimized, element " << i;
    EXPECT_EQ(got_ref[i], want[i]) << "reference, element " << i;
  }
}

TEST(DequantizeTest, Q4_0NibbleOrder) {
  // Element j (< 16) is the low nibble of qs[j], element j + 16 the high one.
  BlockQ4_0 b;
  b.d = F32ToF16(1.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<float> want(32);
  for (int j = 0; j < 16; ++j) {
    want[j] = static_cast<float>(j - 8);
    want[j + 16] = static_cast<float>(7 - j);
  }
  ExpectDequantize(WeightView{DType::kQ4_0, 1, 32, &b, sizeof(b)}, want);
}

TEST(DequantizeTest, Q4_0NegativeScaleTwoBlocks) {
  BlockQ4_0 b[2];
  b[0].d = F32ToF16(-0.25f);
  b[1].d = F32ToF16(3.0f);
  for (int j = 0; j < 16; ++j) {
    b[0].qs[j] = static_cast<uint8_t>(0x0F | (0 << 4));  // low 15, high 0
    b[1].qs[j] = static_cast<uint8_t>(8 | (9 << 4));     // low 8, high 9
  }
  std::vector<float> want(64);
  for (int j = 0; j < 16; ++j) {
    want[j] = -0.25f * 7;
    want[j + 16] = -0.25f * -8;
    want[32 + j] = 0.0f;
    want[48 + j] = 3.0f;
  }
  ExpectDequantize(WeightView{DType::kQ4_0, 1, 64, b, sizeof(b)}, want);
}

TEST(DequantizeTest, Q4_1Min) {
  BlockQ4_1 b;
  b.d = F32ToF16(0.5f);
  b.m = F32ToF16(-2.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<float> want(32);
  for (int j = 0; j < 16; ++j) {
    want[j] = 0.5f * j - 2.0f;
    want[j + 16] = 0.5f * (15 - j) - 2.0f;
  }
  ExpectDequantize(WeightView{DType::kQ4_1, 1, 32, &b, sizeof(b)}, want);
}

TEST(DequantizeTest, Q8_0NegativeScale) {
  BlockQ8_0 b;
  b.d = F32ToF16(-2.0f);
  std::vector<float> want(32);
  for (int j = 0; j < 32; ++j) {
    b.qs[j] = static_cast<int8_t>(j * 8 - 128);  // -128 .. 120
    want[j] = -2.0f * static_cast<float>(j * 8 - 128);
  }
  ExpectDequantize(WeightView{DType::kQ8_0, 1, 32, &b, sizeof(b)}, want);
}

TEST(DequantizeTest, SubnormalFp16Scales) {
  // d = smallest fp16 subnormal (2^-24), m = largest subnormal (1023 * 2^-24).
  BlockQ8_0 b8;
  b8.d = 0x0001;
  for (int j = 0; j < 32; ++j) b8.qs[j] = static_cast<int8_t>(127 - j * 8);
  std::vector<float> want8(32);
  for (int j = 0; j < 32; ++j) want8[j] = std::ldexp(static_cast<float>(127 - j * 8), -24);
  ExpectDequantize(WeightView{DType::kQ8_0, 1, 32, &b8, sizeof(b8)}, want8);

  BlockQ4_1 b41;
  b41.d = 0x8001;  // -2^-24
  b41.m = 0x03FF;
  for (int j = 0; j < 16; ++j) b41.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<float> want41(32);
  for (int j = 0; j < 16; ++j) {
    want41[j] = std::ldexp(static_cast<float>(1023 - j), -24);
    want41[j + 16] = std::ldexp(static_cast<float>(1023 - (15 - j)), -24);
  }
  ExpectDequantize(WeightView{DType::kQ4_1, 1, 32, &b41, sizeof(b41)}, want41);
}

TEST(DequantizeTest, PlainTypes) {
  const uint16_t f16[3] = {0x3C00, 0xC000, 0x0001};  // 1, -2, 2^-24
  ExpectDequantize(WeightView{DType::kF16, 1, 3, f16, sizeof(f16)},
                   {1.0f, -2.0f, std::ldexp(1.0f, -24)});
  const uint16_t bf16[2] = {0x3F80, 0xC040};  // 1, -3
  ExpectDequantize(WeightView{DType::kBF16, 1, 2, bf16, sizeof(bf16)}, {1.0f, -3.0f});
}

// ---------------------------------------------------------------------------
// fp16 / bf16 conversions (src/core/half.h).

// Independent definition of an fp16 value.
double HalfValue(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(mant), -24);
  if (exp == 31) return mant == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(1.0 + mant / 1024.0, exp - 15);
}

TEST(HalfTest, F16ExhaustiveRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    const double want = HalfValue(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << h;
      const uint16_t back = F32ToF16(f);
      ASSERT_EQ(back & 0x7C00, 0x7C00) << h;
      ASSERT_NE(back & 0x03FF, 0) << h;
      ASSERT_EQ(back & 0x8000, h & 0x8000) << h;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), want) << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << h;
    ASSERT_EQ(F32ToF16(f), h) << h;
  }
}

TEST(HalfTest, F16RoundsToNearestEven) {
  // Every pair of adjacent finite positive halves (subnormals included): the
  // exact midpoint goes to the even one, anything off the midpoint to the
  // nearer one. Midpoints have at most 12 significant bits: exact in f32.
  for (uint32_t h = 0; h < 0x7BFF; ++h) {
    const float lo = F16ToF32(static_cast<uint16_t>(h));
    const float hi = F16ToF32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (static_cast<double>(lo) + hi) / 2);
    const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    ASSERT_EQ(F32ToF16(mid), even) << h;
    ASSERT_EQ(F32ToF16(-mid), even | 0x8000) << h;
    ASSERT_EQ(F32ToF16(std::nextafter(mid, 0.0f)), h) << h;
    ASSERT_EQ(F32ToF16(std::nextafter(mid, INFINITY)), h + 1) << h;
  }
  // Overflow: 65504 is the largest half; the midpoint to 65536 rounds (to
  // even) to infinity, just below it to 65504.
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);
  EXPECT_EQ(F32ToF16(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  EXPECT_EQ(F32ToF16(1e10f), 0x7C00);
  EXPECT_EQ(F32ToF16(-INFINITY), 0xFC00);
  // Underflow: half the smallest subnormal rounds to even (zero); above it, up.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(F32ToF16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);
  EXPECT_EQ(F32ToF16(-1e-30f), 0x8000);
}

TEST(HalfTest, BF16ExhaustiveRoundTripAndRounding) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = BF16ToF32(static_cast<uint16_t>(b));
    ASSERT_EQ(std::bit_cast<uint32_t>(f), b << 16) << b;
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(BF16ToF32(F32ToBF16(f)))) << b;
      continue;
    }
    ASSERT_EQ(F32ToBF16(f), b) << b;
    if ((b & 0x7F80) == 0x7F80) continue;      // inf: no midpoint above it
    if (b == 0x7F7F || b == 0xFF7F) continue;  // largest finite: midpoint rounds to inf
    // Midpoint to the next bf16 (larger magnitude) rounds to even.
    const float mid = std::bit_cast<float>((b << 16) | 0x8000u);
    const uint32_t even = (b & 1) ? b + 1 : b;
    ASSERT_EQ(F32ToBF16(mid), even) << b;
    ASSERT_EQ(F32ToBF16(std::bit_cast<float>((b << 16) | 0x7FFFu)), b) << b;
    ASSERT_EQ(F32ToBF16(std::bit_cast<float>((b << 16) | 0x8001u)), b + 1) << b;
  }
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x7F7F8000u)), 0x7F80);  // to even: inf
}

// ---------------------------------------------------------------------------
// Element-wise kernels vs reference.

const int64_t kSizes[] = {1, 3, 15, 16, 17, 64, 100, 576, 1536};

// |got - want| <= rel * |want| + abs.
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, double rel,
                 double abs, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    const double tol = rel * std::fabs(want[i]) + abs;
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= tol)) {
      ++failures;
      ADD_FAILURE() << what << "[" << i << "] of " << got.size() << ": got " << got[i] << " want "
                    << want[i];
    }
  }
}

TEST(ElementwiseTest, RmsNorm) {
  for (int64_t n : kSizes) {
    const auto x = RandomVector(static_cast<size_t>(n), 1, 3.0f);
    const auto w = RandomVector(static_cast<size_t>(n), 2);
    std::vector<float> got(x.size()), want(x.size());
    ops::RmsNorm(x.data(), w.data(), n, 1e-5f, got.data());
    ops::ref::RmsNorm(x.data(), w.data(), n, 1e-5f, want.data());
    // f32 sum of squares over n terms: relative error <= n * 2^-24 (all terms
    // positive), halved by the sqrt; plus a few roundings per element.
    ExpectClose(got, want, (static_cast<double>(n) + 8) * 0x1p-24, 0.0, "RmsNorm");
    std::vector<float> inplace = x;
    ops::RmsNorm(inplace.data(), w.data(), n, 1e-5f, inplace.data());
    EXPECT_EQ(inplace, got);
  }
}

TEST(ElementwiseTest, LayerNorm) {
  for (int64_t n : kSizes) {
    if (n == 1) continue;  // variance 0: output is bias only, tested below
    auto x = RandomVector(static_cast<size_t>(n), 1, 2.0f);
    for (float& v : x) v += 5.0f;  // a mean far from zero
    const auto w = RandomVector(static_cast<size_t>(n), 2);
    const auto b = RandomVector(static_cast<size_t>(n), 3);
    std::vector<float> got(x.size()), want(x.size());
    ops::LayerNorm(x.data(), w.data(), b.data(), n, 1e-5f, got.data());
    ops::ref::LayerNorm(x.data(), w.data(), b.data(), n, 1e-5f, want.data());
    // Error relative to |(x-mean)*scale*w| + |b| ~ a few units; the mean is
    // ~5 and summing it in f32 loses ~n * 2^-24 * 5 absolute.
    ExpectClose(got, want, 1e-5, (static_cast<double>(n) + 16) * 0x1p-24 * 16, "LayerNorm");
  }
  const float one = 3.0f, w = 2.0f, b = 0.5f;
  float out;
  ops::LayerNorm(&one, &w, &b, 1, 1e-5f, &out);
  EXPECT_EQ(out, 0.5f);
}

TEST(ElementwiseTest, SiluMul) {
  for (int64_t n : kSizes) {
    auto g = RandomVector(static_cast<size_t>(n), 1, 4.0f);
    if (n > 3) {
      g[0] = 100.0f;
      g[1] = -100.0f;
      g[2] = -1000.0f;
    }
    const auto u = RandomVector(static_cast<size_t>(n), 2);
    std::vector<float> got = g, want = g;
    ops::SiluMul(got.data(), u.data(), n);
    ops::ref::SiluMul(want.data(), u.data(), n);
    // hwy's Exp is within a few ulp; division and multiply add a few more.
    // For g < -88 the kernel clamps exp(-g) to e^88 (hwy's Exp is undefined
    // past +104), so it returns ~g * e^-88 * u instead of ~0: an absolute
    // error below 1e-35 for these inputs.
    ExpectClose(got, want, 8 * 0x1p-23, 1e-35, "SiluMul");
  }
}

TEST(ElementwiseTest, GeluTanh) {
  for (int64_t n : kSizes) {
    auto x = RandomVector(static_cast<size_t>(n), 1, 3.0f);
    if (n > 3) {
      x[0] = 50.0f;
      x[1] = -50.0f;
      x[2] = 1e-6f;
    }
    std::vector<float> got = x, want = x;
    ops::GeluTanh(got.data(), n);
    ops::ref::GeluTanh(want.data(), n);
    // Near x ~ -3 the result is a small difference (0.5x(1+tanh) with tanh ~
    // -1): the absolute error is a few ulp of |x|, not of the result.
    int failures = 0;
    for (size_t i = 0; i < x.size() && failures < 5; ++i) {
      const double tol = 16 * 0x1p-24 * (std::fabs(x[i]) + std::fabs(want[i]));
      if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= tol)) {
        ++failures;
        ADD_FAILURE() << "GeluTanh(" << x[i] << "): got " << got[i] << " want " << want[i];
      }
    }
  }
}

TEST(ElementwiseTest, Softmax) {
  for (int64_t n : kSizes) {
    auto x = RandomVector(static_cast<size_t>(n), 1, 5.0f);
    if (n > 3) {
      x[1] = -INFINITY;  // a masked position
      x[2] = 1000.0f;    // stability: would overflow exp without the max shift
      x[3] = 990.0f;
    }
    std::vector<float> got = x, want = x;
    ops::Softmax(got.data(), n);
    ops::ref::Softmax(want.data(), n);
    // Probabilities: each within a few ulp-of-exp relative error, plus the
    // f32 sum's n * 2^-24 relative error through the normalization.
    ExpectClose(got, want, (static_cast<double>(n) + 16) * 0x1p-24, 1e-38, "Softmax");
    if (n > 3) {
      EXPECT_EQ(got[1], 0.0f);
    }
  }
}

// The vectorized fp16 rounding of f16 KV rows against the scalar F32ToF16
// (round to nearest even) on every target: normals, ties, subnormals (the
// smallest, halfway below it, the largest), overflow to infinity, zeros,
// infinities and NaN (NaN only as "still NaN": payloads may differ), and
// lengths with a partial last vector.
TEST(ElementwiseTest, F32ToF16RowMatchesScalarOnEveryTarget) {
  std::vector<float> x = {0.0f,      -0.0f,        1.0f,           -2.5f,         65504.0f,
                          65520.0f,  -65520.0f,    65519.99f,      1e30f,         -1e-30f,
                          0x1p-24f,  0x1p-25f,     0x1.8p-24f,     0x1.ff8p-15f,  0x1p-14f,
                          1.0009765625f + 0x1p-12f, 1.00146484375f, INFINITY,     -INFINITY};
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> bits;
  while (x.size() < 1000) {
    const float f = std::bit_cast<float>(bits(rng));
    if (!std::isnan(f)) x.push_back(f);
    x.push_back(std::ldexp(static_cast<float>(bits(rng) % 4096) + 0.5f, -34));  // fp16 subnormal range
  }
  x.push_back(NAN);
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    for (size_t n : {x.size(), size_t{1}, size_t{15}, size_t{17}, size_t{33}}) {
      std::vector<uint16_t> got(n + 1, 0xABCD);
      F32ToF16Row(x.data() + x.size() - n, static_cast<int64_t>(n), got.data());
      for (size_t i = 0; i < n; ++i) {
        const float xi = x[x.size() - n + i];
        if (std::isnan(xi)) {
          EXPECT_TRUE(std::isnan(F16ToF32(got[i])));
        } else {
          ASSERT_EQ(got[i], F32ToF16(xi)) << "x = " << xi << " n = " << n;
        }
      }
      EXPECT_EQ(got[n], 0xABCD) << "wrote past the end, n = " << n;
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

TEST(ElementwiseTest, DotAxpyAdd) {
  for (int64_t n : kSizes) {
    const auto a = RandomVector(static_cast<size_t>(n), 1);
    const auto b = RandomVector(static_cast<size_t>(n), 2);
    double abs_sum = 0.0;
    for (int64_t i = 0; i < n; ++i) abs_sum += std::fabs(static_cast<double>(a[i]) * b[i]);
    // Same summation bound as MatMul.
    EXPECT_NEAR(ops::Dot(a.data(), b.data(), n), ops::ref::Dot(a.data(), b.data(), n),
                (static_cast<double>(n) + 1) * 0x1p-24 * abs_sum)
        << n;

    std::vector<float> got = b, want = b;
    ops::Axpy(0.37f, a.data(), got.data(), n);
    ops::ref::Axpy(0.37f, a.data(), want.data(), n);
    // FMA vs multiply-then-add: one rounding of |a*x| apart.
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(got[i], want[i], 0x1p-23 * (std::fabs(want[i]) + std::fabs(0.37f * a[i])));
    }
    got = b;
    want = b;
    ops::Add(got.data(), a.data(), n);
    ops::ref::Add(want.data(), a.data(), n);
    EXPECT_EQ(got, want);  // one rounding either way: exact match
  }
}

// Every position, each kind of non-finite value, on every compiled SIMD
// target: the index of the first one, and -1 for rows of finite values
// including the extremes (FLT_MAX, subnormals, -0).
TEST(ElementwiseTest, FindNonFinite) {
  const float kInf = std::numeric_limits<float>::infinity();
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{16}, int64_t{33}, int64_t{255},
                      int64_t{256}, int64_t{257}, int64_t{600}}) {
      std::vector<float> x = RandomVector(static_cast<size_t>(n), 3);
      x[0] = std::numeric_limits<float>::max();
      x[static_cast<size_t>(n / 2)] = -std::numeric_limits<float>::denorm_min();
      x[static_cast<size_t>(n - 1)] = -0.0f;
      ASSERT_EQ(ops::FindNonFinite(x.data(), n), -1) << n;
      ASSERT_EQ(ops::ref::FindNonFinite(x.data(), n), -1) << n;
      for (float bad : {std::numeric_limits<float>::quiet_NaN(), kInf, -kInf}) {
        for (int64_t at = 0; at < n; ++at) {
          std::vector<float> y = x;
          y[static_cast<size_t>(at)] = bad;
          if (at + 1 < n) y[static_cast<size_t>(n - 1)] = bad;  // a later one too
          ASSERT_EQ(ops::FindNonFinite(y.data(), n), at) << "n " << n << " value " << bad;
          ASSERT_EQ(ops::ref::FindNonFinite(y.data(), n), at);
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

TEST(ElementwiseTest, RopeNorm) {
  const int heads = 3, head_dim = 64;
  for (int rope_dims : {64, 32}) {
    for (int32_t pos : {0, 1, 17, 4095, 100000}) {
      const auto x = RandomVector(static_cast<size_t>(heads * head_dim), 1);
      std::vector<float> got = x, want = x;
      ops::RopeNorm(got.data(), heads, head_dim, rope_dims, pos, 10000.0f);
      ops::ref::RopeNorm(want.data(), heads, head_dim, rope_dims, pos, 10000.0f);
      ExpectClose(got, want, 1e-6, 1e-6, "RopeNorm");
      if (pos == 0) {
        EXPECT_EQ(got, x);
      }
      // Dimensions past rope_dims are untouched.
      for (int h = 0; h < heads; ++h) {
        for (int i = rope_dims; i < head_dim; ++i)
          EXPECT_EQ(got[h * head_dim + i], x[h * head_dim + i]);
      }
    }
  }
  // A known value: pos 1, pair 0 rotates by exactly 1 radian.
  float v[2] = {1.0f, 0.0f};
  ops::RopeNorm(v, 1, 2, 2, 1, 10000.0f);
  EXPECT_NEAR(v[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(v[1], std::sin(1.0), 1e-7);
}

// ---------------------------------------------------------------------------
// Every compiled SIMD target the CPU supports gives reference results.

TEST(SimdTargetsTest, EveryTargetMatchesReference) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    SCOPED_TRACE(hwy::TargetName(target));
    std::printf("checking SIMD target %s\n", hwy::TargetName(target));
    EXPECT_STREQ(ops::SimdTargetName(), hwy::TargetName(target));
    for (DType type : kAllTypes) {
      SCOPED_TRACE(DTypeName(type));
      const int64_t rows = 17, cols = 96, n = 5;
      const TestWeight w = MakeWeight(type, rows, cols, 21);
      const std::vector<float> x = RandomVector(static_cast<size_t>(n * cols), 22);
      std::vector<float> y(static_cast<size_t>(n * rows));
      MatMulIn(kF32, w.view, x.data(), n, y.data(), nullptr);
      ExpectMatMulMatchesReference(w.view, x, n, y);
      std::vector<float> got(static_cast<size_t>(cols)), want(got.size());
      ops::DequantizeRow(w.view, 4, got.data());
      ops::ref::DequantizeRow(w.view, 4, want.data());
      for (int64_t i = 0; i < cols; ++i) EXPECT_NEAR(got[i], want[i], std::fabs(want[i]) * 0x1p-23);
    }
    const auto a = RandomVector(37, 1, 3.0f);
    const auto b = RandomVector(37, 2);
    std::vector<float> got = a, want = a;
    ops::SiluMul(got.data(), b.data(), 37);
    ops::ref::SiluMul(want.data(), b.data(), 37);
    ExpectClose(got, want, 8 * 0x1p-23, 1e-35, "SiluMul");
    got = a;
    want = a;
    ops::Softmax(got.data(), 37);
    ops::ref::Softmax(want.data(), 37);
    ExpectClose(got, want, 64 * 0x1p-24, 1e-38, "Softmax");
    got.assign(37, 0.0f);
    want.assign(37, 0.0f);
    ops::RmsNorm(a.data(), b.data(), 37, 1e-6f, got.data());
    ops::ref::RmsNorm(a.data(), b.data(), 37, 1e-6f, want.data());
    ExpectClose(got, want, 64 * 0x1p-24, 0.0, "RmsNorm");
  }
  hwy::SetSupportedTargetsForTest(0);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

TEST(SimdTargetsTest, ReportsTarget) {
  const std::string name = ops::SimdTargetName();
  EXPECT_FALSE(name.empty());
  RecordProperty("simd_target", name);
  std::printf("SIMD target: %s\n", name.c_str());
}

}  // namespace
}  // namespace kvinfer
