// MatMul and DequantizeRow: weights of any supported type times f32
// activations, with the weights dequantized on the fly in registers.
//
// Compiled once per SIMD target by Highway's foreach_target (this file
// re-includes itself); MatMul picks the best target the CPU supports at run
// time. No -march flag is needed, so the binary runs on any x86-64.
//
// Layout of the kernel (see Tile below): output rows are processed kRowTile
// at a time and activation rows (tokens) kTokTile at a time. For each 32-element
// group of a weight row, the group's scale is decoded once per row, each
// SIMD-width chunk of weights is decoded once and multiplied into kTokTile
// accumulators, so a weight byte is read from memory once and decoded once per
// token tile. The row tile lets the kTokTile activation loads be shared by
// kRowTile rows. Per (row, token) the accumulation order is the same whatever
// the tiling or the thread split, so results are bitwise independent of the
// number of threads.
//
// Where an int8 (VNNI) path would go: it would quantize x per 32-group once
// per call and replace Decoder::Chunk + MulAdd by an integer dot product per
// group, keeping the same tiling and threading (MatMulRows).

#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "ops/ops.h"

#include "hwy/cache_control.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/matmul.cpp"
// clang-format off
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace kvinfer::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Activation rows per tile; and weight rows per tile, sized so that
// kRowTile * kTokTile accumulators plus the shared activation vectors and the
// per-row scales stay in registers (32 vector registers on AVX-512, 16 else).
constexpr int kTokTile = 4;
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr int kRowTile = 4;
#else
constexpr int kRowTile = 2;
#endif

// Broadcast of the fp16 value stored (little-endian) at p, looked up in
// `f16_table` (F16ToF32 of every bit pattern, 256 KiB). A table lookup is a
// scalar load plus a broadcast load: no ALU work, where converting with F16C
// (broadcast + vcvtph2ps) costs ~4 uops per scale, a third of the work of a
// Q4 block at n = 1. Scales of real weights span few distinct values, so the
// touched table lines stay in L1/L2.
HWY_INLINE VF BroadcastHalf(DF df, const float* HWY_RESTRICT f16_table, const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof(bits));
  return hn::Set(df, f16_table[bits]);
}

// A Decoder turns a weight row into f32 vectors, one 32-element group at a
// time: LoadScale(df, f16_table, row, g) decodes the group's scale(s), and
// Chunk(df, row, g, c, scale) returns elements [g*32 + c*N, g*32 + (c+1)*N)
// (N = Lanes(df) <= 16) fully dequantized.
template <DType kType>
struct Decoder;

template <>
struct Decoder<DType::kF32> {
  static constexpr size_t kGroupBytes = kQK * sizeof(float);
  struct Scale {};
  static HWY_INLINE Scale LoadScale(DF, const float*, const uint8_t*, size_t) { return {}; }
  static HWY_INLINE VF Chunk(DF df, const uint8_t* row, size_t g, size_t c, const Scale&) {
    return hn::LoadU(df, reinterpret_cast<const float*>(row) + g * kQK + c * hn::Lanes(df));
  }
  static float Scalar(const uint8_t* row, size_t i) {
    float v;
    std::memcpy(&v, row + i * 4, 4);
    return v;
  }
};

template <>
struct Decoder<DType::kF16> {
  static constexpr size_t kGroupBytes = kQK * 2;
  struct Scale {};
  static HWY_INLINE Scale LoadScale(DF, const float*, const uint8_t*, size_t) { return {}; }
  static HWY_INLINE VF Chunk(DF df, const uint8_t* row, size_t g, size_t c, const Scale&) {
    const hn::Rebind<hwy::float16_t, DF> dh;
    const auto* p = reinterpret_cast<const hwy::float16_t*>(row) + g * kQK + c * hn::Lanes(df);
    return hn::PromoteTo(df, hn::LoadU(dh, p));
  }
  static float Scalar(const uint8_t* row, size_t i) {
    uint16_t h;
    std::memcpy(&h, row + i * 2, 2);
    return F16ToF32(h);
  }
};

template <>
struct Decoder<DType::kBF16> {
  static constexpr size_t kGroupBytes = kQK * 2;
  struct Scale {};
  static HWY_INLINE Scale LoadScale(DF, const float*, const uint8_t*, size_t) { return {}; }
  static HWY_INLINE VF Chunk(DF df, const uint8_t* row, size_t g, size_t c, const Scale&) {
    // bf16 is the top half of an f32: widen and shift into place.
    const hn::Rebind<uint16_t, DF> du16;
    const hn::RebindToUnsigned<DF> du32;
    const auto* p = reinterpret_cast<const uint16_t*>(row) + g * kQK + c * hn::Lanes(df);
    return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
  }
  static float Scalar(const uint8_t* row, size_t i) {
    uint16_t h;
    std::memcpy(&h, row + i * 2, 2);
    return BF16ToF32(h);
  }
};

template <>
struct Decoder<DType::kQ8_0> {
  static constexpr size_t kGroupBytes = sizeof(BlockQ8_0);
  struct Scale {
    VF d;
  };
  static HWY_INLINE const uint8_t* Block(const uint8_t* row, size_t g) {
    return row + g * sizeof(BlockQ8_0);
  }
  static HWY_INLINE Scale LoadScale(DF df, const float* HWY_RESTRICT tab, const uint8_t* row,
                                    size_t g) {
    return {BroadcastHalf(df, tab, Block(row, g) + offsetof(BlockQ8_0, d))};
  }
  static HWY_INLINE VF Chunk(DF df, const uint8_t* row, size_t g, size_t c, const Scale& s) {
    const hn::Rebind<int8_t, DF> di8;
    const hn::RebindToSigned<DF> di32;
    const auto* qs = reinterpret_cast<const int8_t*>(Block(row, g) + offsetof(BlockQ8_0, qs)) +
                     c * hn::Lanes(df);
    return hn::Mul(hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, qs))), s.d);
  }
};

// Shared by Q4_0 and Q4_1: the 4-bit codes of elements [c*N, (c+1)*N) of a
// block as int32 lanes. Element j < 16 is the low nibble of qs[j], element
// j >= 16 the high nibble of qs[j - 16]; N <= 16, so a chunk never straddles.
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> Nibbles(DF df, const uint8_t* qs, size_t c) {
  const hn::Rebind<uint8_t, DF> du8;
  const hn::RebindToSigned<DF> di32;
  const size_t e = c * hn::Lanes(df);
  const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, qs + (e % 16)));
  return e < 16 ? hn::And(bytes, hn::Set(di32, 0xF)) : hn::ShiftRight<4>(bytes);
}

template <>
struct Decoder<DType::kQ4_0> {
  static constexpr size_t kGroupBytes = sizeof(BlockQ4_0);
  struct Scale {
    VF d;
    VF offset;  // -8 * d
  };
  static HWY_INLINE const uint8_t* Block(const uint8_t* row, size_t g) {
    return row + g * sizeof(BlockQ4_0);
  }
  static HWY_INLINE Scale LoadScale(DF df, const float* HWY_RESTRICT tab, const uint8_t* row,
                                    size_t g) {
    const VF d = BroadcastHalf(df, tab, Block(row, g) + offsetof(BlockQ4_0, d));
    return {d, hn::Mul(d, hn::Set(df, -8.0f))};
  }
  static HWY_INLINE VF Chunk(DF df, const uint8_t* row, size_t g, size_t c, const Scale& s) {
    const VF q = hn::ConvertTo(df, Nibbles(df, Block(row, g) + offsetof(BlockQ4_0, qs), c));
    return hn::MulAdd(q, s.d, s.offset);  // d * (q - 8)
  }
};

template <>
struct Decoder<DType::kQ4_1> {
  static constexpr size_t kGroupBytes = sizeof(BlockQ4_1);
  struct Scale {
    VF d;
    VF m;
  };
  static HWY_INLINE const uint8_t* Block(const uint8_t* row, size_t g) {
    return row + g * sizeof(BlockQ4_1);
  }
  static HWY_INLINE Scale LoadScale(DF df, const float* HWY_RESTRICT tab, const uint8_t* row,
                                    size_t g) {
    const uint8_t* b = Block(row, g);
    return {BroadcastHalf(df, tab, b + offsetof(BlockQ4_1, d)),
            BroadcastHalf(df, tab, b + offsetof(BlockQ4_1, m))};
  }
  static HWY_INLINE VF Chunk(DF df, const uint8_t* row, size_t g, size_t c, const Scale& s) {
    const VF q = hn::ConvertTo(df, Nibbles(df, Block(row, g) + offsetof(BlockQ4_1, qs), c));
    return hn::MulAdd(q, s.d, s.m);  // d * q + m
  }
};

template <DType kType>
constexpr bool kIsPlain = kType == DType::kF32 || kType == DType::kF16 || kType == DType::kBF16;

// Operands of one tile: R weight rows (`row_bytes` apart, starting at `w`)
// times T activation rows of x (from token t0), into y[t0 + t, y_col + r].
struct TileArgs {
  const uint8_t* w;
  size_t row_bytes;
  size_t cols;
  const float* f16_table;
  const float* x;  // [n, cols]
  size_t t0;
  float* y;  // [n, ldy]
  size_t ldy;
  size_t y_col;
};

// The R x T dot products of a tile, each accumulated lane-wise in f32 over the
// 32-groups in order, then reduced (plus a scalar tail for plain types).
template <DType kType, int R, int T>
HWY_NOINLINE void Tile(const TileArgs& a) {
  using Dec = Decoder<kType>;
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t cols = a.cols;
  const size_t groups = cols / kQK;
  const size_t chunks = kQK / N;

  const uint8_t* row[R];
  for (int r = 0; r < R; ++r) row[r] = a.w + static_cast<size_t>(r) * a.row_bytes;
  const float* xt[T];
  for (int t = 0; t < T; ++t) xt[t] = a.x + (a.t0 + t) * cols;

  VF acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = hn::Zero(df);
  }

  // Decode (T == 1) streams the weights from memory once: prefetch the same
  // group of the next row tile (R * row_bytes ahead; rows are contiguous),
  // which keeps R * row_bytes of requests in flight ahead of the FMAs. A
  // prefetch past the end of the matrix is harmless (a hint, never a fault).
  const uintptr_t prefetch_ahead = static_cast<uintptr_t>(R) * a.row_bytes;
  for (size_t g = 0; g < groups; ++g) {
    if constexpr (T == 1) {
      for (int r = 0; r < R; ++r) {
        hwy::Prefetch(reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(row[r]) +
                                                       prefetch_ahead + g * Dec::kGroupBytes));
      }
    }
    typename Dec::Scale scale[R];
    for (int r = 0; r < R; ++r) scale[r] = Dec::LoadScale(df, a.f16_table, row[r], g);
    for (size_t c = 0; c < chunks; ++c) {
      const size_t off = g * kQK + c * N;
      VF xv[T];
      for (int t = 0; t < T; ++t) xv[t] = hn::LoadU(df, xt[t] + off);
      for (int r = 0; r < R; ++r) {
        const VF wv = Dec::Chunk(df, row[r], g, c, scale[r]);
        for (int t = 0; t < T; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
      }
    }
  }

  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
      if constexpr (kIsPlain<kType>) {
        // Plain types allow any cols; the last cols % 32 elements are scalar.
        for (size_t i = groups * kQK; i < cols; ++i) sum += Dec::Scalar(row[r], i) * xt[t][i];
      }
      a.y[(a.t0 + t) * a.ldy + a.y_col + r] = sum;
    }
  }
}

// Dequantizes `count` rows starting at `w` (row_bytes apart) to dst
// [count, cols], with the same Chunk values the streaming Tile uses.
template <DType kType>
void DequantizeRows(const uint8_t* w, size_t row_bytes, size_t count, size_t cols,
                    const float* f16_table, float* HWY_RESTRICT dst) {
  using Dec = Decoder<kType>;
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t groups = cols / kQK;
  for (size_t r = 0; r < count; ++r) {
    const uint8_t* row = w + r * row_bytes;
    float* out = dst + r * cols;
    for (size_t g = 0; g < groups; ++g) {
      const typename Dec::Scale s = Dec::LoadScale(df, f16_table, row, g);
      for (size_t c = 0; c < kQK / N; ++c)
        hn::StoreU(Dec::Chunk(df, row, g, c, s), df, out + g * kQK + c * N);
    }
    if constexpr (kIsPlain<kType>) {
      for (size_t i = groups * kQK; i < cols; ++i) out[i] = Dec::Scalar(row, i);
    }
  }
}

// All n tokens against the R rows of `a` (a.t0 is set here).
template <DType kType, int R>
HWY_INLINE void TokenLoop(TileArgs a, size_t n) {
  size_t t = 0;
  for (; t + kTokTile <= n; t += kTokTile) {
    a.t0 = t;
    Tile<kType, R, kTokTile>(a);
  }
  a.t0 = t;
  switch (n - t) {
    case 3:
      return Tile<kType, R, 3>(a);
    case 2:
      return Tile<kType, R, 2>(a);
    case 1:
      return Tile<kType, R, 1>(a);
    default:
      return;
  }
}

// R rows starting at r0, all tokens. Decode (n == 1) streams the weights
// through the type's Tile. Otherwise the R rows are first dequantized into
// `scratch` ([R, cols] f32, stays in L1/L2) and the token tiles run the f32
// Tile over it: each weight is decoded once per call instead of once per
// token tile, and the inner loop is pure FMA. Both paths feed the same f32
// weight values in the same order, so results do not depend on n's path.
template <DType kType, int R>
HWY_INLINE void RowTile(const WeightView& w, const float* f16_table, const float* x, size_t n,
                        float* y, int64_t r0, float* scratch) {
  TileArgs a{w.row(r0),
             w.row_bytes,
             static_cast<size_t>(w.cols),
             f16_table,
             x,
             0,
             y,
             static_cast<size_t>(w.rows),
             static_cast<size_t>(r0)};
  if (n == 1 || kType == DType::kF32) return TokenLoop<kType, R>(a, n);
  DequantizeRows<kType>(a.w, a.row_bytes, R, a.cols, f16_table, scratch);
  a.w = reinterpret_cast<const uint8_t*>(scratch);
  a.row_bytes = a.cols * sizeof(float);
  TokenLoop<DType::kF32, R>(a, n);
}

// Rows [r_begin, r_end) of y for all n tokens. The outer loop is over rows so
// a row tile's weights are read from memory once while all token tiles pass
// over them; x (far smaller than the weights) is re-read from cache instead.
template <DType kType>
void MatMulRowsT(const WeightView& w, const float* f16_table, const float* x, int64_t n64, float* y,
                 int64_t r_begin, int64_t r_end) {
  const size_t n = static_cast<size_t>(n64);
  std::vector<float> scratch;
  if (n > 1 && kType != DType::kF32) scratch.resize(kRowTile * static_cast<size_t>(w.cols));
  int64_t r = r_begin;
  for (; r + kRowTile <= r_end; r += kRowTile) {
    RowTile<kType, kRowTile>(w, f16_table, x, n, y, r, scratch.data());
  }
  for (; r < r_end; ++r) RowTile<kType, 1>(w, f16_table, x, n, y, r, scratch.data());
}

void MatMulRows(const WeightView& w, const float* f16_table, const float* x, int64_t n, float* y,
                int64_t r_begin, int64_t r_end) {
  switch (w.type) {
    case DType::kF32:
      return MatMulRowsT<DType::kF32>(w, f16_table, x, n, y, r_begin, r_end);
    case DType::kF16:
      return MatMulRowsT<DType::kF16>(w, f16_table, x, n, y, r_begin, r_end);
    case DType::kBF16:
      return MatMulRowsT<DType::kBF16>(w, f16_table, x, n, y, r_begin, r_end);
    case DType::kQ8_0:
      return MatMulRowsT<DType::kQ8_0>(w, f16_table, x, n, y, r_begin, r_end);
    case DType::kQ4_0:
      return MatMulRowsT<DType::kQ4_0>(w, f16_table, x, n, y, r_begin, r_end);
    case DType::kQ4_1:
      return MatMulRowsT<DType::kQ4_1>(w, f16_table, x, n, y, r_begin, r_end);
    default:
      KVINFER_CHECK_MSG(false, "MatMul: unsupported weight type {}", DTypeName(w.type));
  }
}

template <DType kType>
void DequantizeRowT(const WeightView& w, const float* f16_table, int64_t r, float* dst) {
  DequantizeRows<kType>(w.row(r), w.row_bytes, 1, static_cast<size_t>(w.cols), f16_table, dst);
}

void DequantizeRowImpl(const WeightView& w, const float* f16_table, int64_t r, float* dst) {
  switch (w.type) {
    case DType::kF32:
      return DequantizeRowT<DType::kF32>(w, f16_table, r, dst);
    case DType::kF16:
      return DequantizeRowT<DType::kF16>(w, f16_table, r, dst);
    case DType::kBF16:
      return DequantizeRowT<DType::kBF16>(w, f16_table, r, dst);
    case DType::kQ8_0:
      return DequantizeRowT<DType::kQ8_0>(w, f16_table, r, dst);
    case DType::kQ4_0:
      return DequantizeRowT<DType::kQ4_0>(w, f16_table, r, dst);
    case DType::kQ4_1:
      return DequantizeRowT<DType::kQ4_1>(w, f16_table, r, dst);
    default:
      KVINFER_CHECK_MSG(false, "DequantizeRow: unsupported weight type {}", DTypeName(w.type));
  }
}

}  // namespace kvinfer::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvinfer::ops {

HWY_EXPORT(MatMulRows);
HWY_EXPORT(DequantizeRowImpl);

namespace {

void CheckWeight(const WeightView& w) {
  KVINFER_CHECK_MSG(IsSupportedWeight(w.type), "unsupported weight type {}", DTypeName(w.type));
  const DTypeInfo& info = GetDTypeInfo(w.type);
  KVINFER_CHECK_MSG(w.rows >= 0 && w.cols >= 0 && w.cols % info.block_elems == 0,
                    "bad weight shape [{}, {}] for {}", w.rows, w.cols, info.name);
  KVINFER_CHECK_MSG(w.row_bytes >= RowBytes(info, static_cast<uint64_t>(w.cols)),
                    "weight row_bytes {} < {} needed for {} x {}", w.row_bytes,
                    RowBytes(info, static_cast<uint64_t>(w.cols)), w.cols, info.name);
  KVINFER_CHECK(w.data != nullptr || w.rows == 0);
}

// F16ToF32 of every fp16 bit pattern, built on first use (thread-safe).
const float* F16Table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = F16ToF32(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

// Rows per ParallelFor grain: a multiple of every target's kRowTile, and
// large enough that a thread's share is a few KiB of weights at least.
constexpr int64_t kRowGrain = 16;

}  // namespace

void MatMul(const WeightView& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
  CheckWeight(w);
  KVINFER_CHECK(n >= 0);
  if (n == 0 || w.rows == 0) return;
  KVINFER_CHECK(x != nullptr && y != nullptr);
  const float* f16_table = F16Table();
  const auto fn = HWY_DYNAMIC_DISPATCH(MatMulRows);
  if (pool == nullptr || pool->num_threads() == 1) {
    fn(w, f16_table, x, n, y, 0, w.rows);
    return;
  }
  // Waking a thread costs microseconds: give each at least ~32K multiply-adds
  // (a small model's matrices then run on one thread).
  constexpr int64_t kMinMacsPerChunk = 32768;
  const int64_t macs_per_row = std::max<int64_t>(1, w.cols * n);
  const int64_t grain =
      std::max(kRowGrain, (kMinMacsPerChunk / macs_per_row + kRowGrain - 1) / kRowGrain * kRowGrain);
  pool->ParallelFor(w.rows, grain, [&](int64_t begin, int64_t end, int) {
    fn(w, f16_table, x, n, y, begin, end);
  });
}

void DequantizeRow(const WeightView& w, int64_t r, float* dst) {
  CheckWeight(w);
  KVINFER_CHECK_MSG(r >= 0 && r < w.rows, "DequantizeRow: row {} out of [0, {})", r, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantizeRowImpl)(w, F16Table(), r, dst);
}

}  // namespace kvinfer::ops
#endif  // HWY_ONCE
