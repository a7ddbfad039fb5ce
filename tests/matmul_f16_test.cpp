// The packed F16 / F32 MatMul (ops/matmul_f16.h): bit for bit against the
// scalar statement of its contract (one std::fma chain per output over k in
// increasing order), within f32 rounding of the unpacked path, and
// batch-invariant (a token alone gives the bits it gets in any batch, on any
// thread split). Skipped on CPUs where nothing is packed.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/dtype.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "ops/matmul_f16.h"
#include "ops/ops.h"
#include "ops/weights.h"

namespace kvinfer {
namespace {

// Row-major weights of `type` (F16 or F32) with their packed copy.
struct PackedWeight {
  std::vector<uint8_t> bytes;
  AlignedBuffer packed;
  WeightView view;      // view.packed set
  WeightView unpacked;  // the same weights, view.packed == nullptr
};

// N(0,1) values rounded to the type, with fp16 edge values sprinkled in
// (subnormals, the largest finite, signed zero) so that the conversion in
// the kernel is checked to be exact.
PackedWeight MakePacked(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const uint16_t edges[] = {0x0001, 0x83FF, 0x7BFF, 0xFBFF, 0x8000, 0x0400, 0x3C00};
  PackedWeight w;
  const size_t elem = type == DType::kF16 ? 2 : 4;
  const size_t count = static_cast<size_t>(rows * cols);
  w.bytes.resize(count * elem);
  for (size_t i = 0; i < count; ++i) {
    uint16_t h = F32ToF16(normal(rng));
    if (rng() % 16 == 0) h = edges[rng() % std::size(edges)];
    if (type == DType::kF16) {
      std::memcpy(w.bytes.data() + i * 2, &h, 2);
    } else {
      const float v = (rng() % 2 == 0) ? F16ToF32(h) : normal(rng);
      std::memcpy(w.bytes.data() + i * 4, &v, 4);
    }
  }
  w.unpacked = WeightView{type, rows, cols, w.bytes.data(), static_cast<size_t>(cols) * elem};
  w.packed = ops::PackWeights(w.unpacked);
  w.view = w.unpacked;
  w.view.packed = w.packed.data();
  return w;
}

float WeightAt(const WeightView& w, int64_t r, int64_t k) {
  if (w.type == DType::kF16) {
    uint16_t h;
    std::memcpy(&h, w.row(r) + k * 2, 2);
    return F16ToF32(h);
  }
  float v;
  std::memcpy(&v, w.row(r) + k * 4, 4);
  return v;
}

// The contract in scalar form: y[t, r] = fma chain over k = 0, 1, ...
std::vector<float> Reference(const WeightView& w, const std::vector<float>& x, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n * w.rows));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      float acc = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k)
        acc = std::fma(WeightAt(w, r, k), x[t * w.cols + k], acc);
      y[static_cast<size_t>(t * w.rows + r)] = acc;
    }
  }
  return y;
}

std::vector<float> RandomVector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = uni(rng);
  return v;
}

std::vector<float> MatMulOf(const WeightView& w, const std::vector<float>& x, int64_t n,
                            ThreadPool* pool) {
  std::vector<float> y(static_cast<size_t>(n * w.rows), NAN);
  ops::MatMul(w, x.data(), n, y.data(), pool);
  return y;
}

class MatMulF16Test : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!ops::f16::PacksWeights(GetParam())) GTEST_SKIP() << "no packed kernel on this CPU";
  }
};

TEST_P(MatMulF16Test, PackedEqualsSequentialFmaBitForBit) {
  // Rows around the 16-row panel and the 2-panel tile; any cols; token
  // counts around the 12-token tile.
  const int64_t shapes[][2] = {{1, 1},   {15, 7},   {16, 64},  {17, 77},
                               {33, 96}, {47, 160}, {100, 33}, {191, 576}};
  ThreadPool pool(2);
  for (const auto& s : shapes) {
    const PackedWeight w = MakePacked(GetParam(), s[0], s[1], static_cast<uint32_t>(s[0] + s[1]));
    ASSERT_NE(w.view.packed, nullptr);
    for (int64_t n : {1, 2, 3, 5, 11, 12, 13, 17, 24, 25, 64}) {
      SCOPED_TRACE(testing::Message() << "[" << s[0] << ", " << s[1] << "] n=" << n);
      const std::vector<float> x = RandomVector(static_cast<size_t>(n * s[1]), 3);
      const std::vector<float> want = Reference(w.unpacked, x, n);
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        const std::vector<float> got = MatMulOf(w.view, x, n, p);
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << (p != nullptr ? "2 threads" : "1 thread");
      }
    }
  }
}

TEST_P(MatMulF16Test, PackedWithinRoundingOfUnpacked) {
  // Both paths sum the same exact products in f32 in different orders:
  // each is within cols * 2^-24 * sum |w x| of the exact sum (to first
  // order), so they are within twice that of each other.
  const int64_t shapes[][2] = {{576, 576}, {192, 576}, {576, 1536}, {37, 100}};
  for (const auto& s : shapes) {
    const PackedWeight w = MakePacked(GetParam(), s[0], s[1], 7);
    for (int64_t n : {1, 3, 17, 64}) {
      SCOPED_TRACE(testing::Message() << "[" << s[0] << ", " << s[1] << "] n=" << n);
      const std::vector<float> x = RandomVector(static_cast<size_t>(n * s[1]), 5);
      const std::vector<float> packed = MatMulOf(w.view, x, n, nullptr);
      const std::vector<float> unpacked = MatMulOf(w.unpacked, x, n, nullptr);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t r = 0; r < s[0]; ++r) {
          double abs_sum = 0.0;
          for (int64_t k = 0; k < s[1]; ++k) {
            abs_sum += std::fabs(static_cast<double>(WeightAt(w.unpacked, r, k)) *
                                 x[static_cast<size_t>(t * s[1] + k)]);
          }
          const double bound = 2.0 * static_cast<double>(s[1]) * std::ldexp(1.0, -24) * abs_sum;
          const size_t i = static_cast<size_t>(t * s[0] + r);
          ASSERT_LE(std::fabs(static_cast<double>(packed[i]) - unpacked[i]), bound)
              << "t=" << t << " r=" << r;
        }
      }
    }
  }
}

TEST_P(MatMulF16Test, DecodeEqualsBatchBitForBit) {
  // SmolLM2-135M's shapes and odd ones; batches that split into full tiles,
  // a remainder tile, several tasks of the thread pool.
  const int64_t shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {83, 45}};
  ThreadPool pool(2);
  for (const auto& s : shapes) {
    const PackedWeight w = MakePacked(GetParam(), s[0], s[1], 9);
    const int64_t max_n = 130;
    const std::vector<float> x = RandomVector(static_cast<size_t>(max_n * s[1]), 11);
    std::vector<float> one_by_one(static_cast<size_t>(max_n * s[0]));
    for (int64_t t = 0; t < max_n; ++t) {
      ops::MatMul(w.view, x.data() + t * s[1], 1, one_by_one.data() + t * s[0], nullptr);
    }
    for (int64_t n : {2, 3, 4, 5, 8, 12, 13, 16, 17, 24, 64, 130}) {
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        const std::vector<float> got = MatMulOf(w.view, x, n, p);
        EXPECT_EQ(0, std::memcmp(got.data(), one_by_one.data(), got.size() * sizeof(float)))
            << "[" << s[0] << ", " << s[1] << "] n=" << n << (p != nullptr ? " (2 threads)" : "");
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, MatMulF16Test, ::testing::Values(DType::kF16, DType::kF32),
                         [](const testing::TestParamInfo<DType>& p) {
                           return std::string(DTypeName(p.param));
                         });

TEST(MatMulF16PackTest, OtherTypesAreNotPackedHere) {
  EXPECT_FALSE(ops::f16::PacksWeights(DType::kBF16));
  EXPECT_FALSE(ops::f16::PacksWeights(DType::kQ8_0));
  std::vector<uint16_t> bf16(64, 0x3F80);
  const WeightView w{DType::kBF16, 2, 32, bf16.data(), 64};
  EXPECT_EQ(0u, ops::f16::Pack(w).size());
}

}  // namespace
}  // namespace kvinfer
