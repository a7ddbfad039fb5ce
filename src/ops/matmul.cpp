// MatMul and DequantizeRow: weights of any supported type times f32
// activations, with the weights dequantized on the fly in registers.
//
// Compiled once per SIMD target by Highway's foreach_target (this file
// re-includes itself); MatMul picks the best target the CPU supports at run
// time. No -march flag is needed, so the binary runs on any x86-64.
//
// Arithmetic contract (batch invariance). Every output y[t, r] is computed
// the same way whatever n is, whichever tile or thread it falls in: the
// weights are decoded to the same f32 values (Decoder::Group); lane j of one
// accumulator vector sums w[k] * x[k] over k = j mod N in increasing k, one
// FMA each; the lanes are summed by one fixed halving tree (TreeSum); plain
// types then add their cols % 32 tail in order. The engine relies on this:
// a sequence decoded one token at a time and the same tokens recomputed in a
// prefill batch give the same bits (tests: MatMulBatchTest.*).
//
// Kernels (all follow the contract):
// - TileQ<R, T>: R weight rows streamed and decoded in registers once per
//   token tile of T <= 4 tokens. Decode (n = 1, R = kRowTile1) and small
//   batches (n <= kStreamMaxN).
// - TileF32<R, T>: larger batches. Each row tile of kRowTileN rows is
//   dequantized once per token block (kTokBlock tokens, kept in L2) into an
//   f32 scratch that stays in L1, then a kRowTileN x kTokTile register tile
//   runs pure FMAs over it (8 loads per 16 FMAs with AVX-512); with 576
//   columns this runs at the core's measured FMA peak.
// Each kernel reduces its R * T accumulators together (AVX-512: 16 at a time
// by a transposing shuffle network) instead of one horizontal sum each.
//
// F16 and F32 weights with a packed copy (w.packed, made at load by
// PackWeights on AVX-512 CPUs) go to ops/matmul_f16.{h,cpp} for every n:
// weights repacked into 16-row panels, an outer-product register tile (one
// lane per output row, x broadcast; 2 panels x 12 tokens in batches) and
// its own batch-invariant contract: each output is one sequential chain of
// FMAs over k in increasing order. That differs from the contract above by
// f32 rounding only, and a given weight always takes the same path, so
// decode and prefill still agree bit for bit.
//
// Q4_0 / Q4_1 / Q8_0 weights go to the int8-activation path by default
// (ops/matmul_int8.{h,cpp}: activations quantized per 32-block, integer dot
// products, its own batch-invariant formula); this file is their exact f32
// path, used under ActivationPrecision::kF32 (MatMulContext).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "ops/matmul_f16.h"
#include "ops/matmul_int8.h"
#include "ops/matmul_scratch.h"
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

#undef KVINFER_MM_AVX3
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#define KVINFER_MM_AVX3 1
#else
#define KVINFER_MM_AVX3 0
#endif

// Register tiles. Decode (n == 1) streams kRowTile1 weight rows per tile
// against one activation row; small batches (n <= kTokTile) stream kRowTileS
// rows against all n tokens. Larger batches run a kRowTileN x kTokTile tile
// over weights dequantized to f32: each weight vector load feeds kTokTile FMAs
// and each activation load kRowTileN (16 accumulators of the 32 AVX-512
// registers; 4 x 6 and 8 x 3 measured no better). kTokBlock bounds the
// activation rows one pass over the rows touches, so they stay in L2 for long
// prompts.
#if KVINFER_MM_AVX3
constexpr int kRowTile1 = 8;
constexpr int kRowTileS = 4;
constexpr int kRowTileN = 4;
constexpr int kTokTile = 4;
#else
constexpr int kRowTile1 = 4;
constexpr int kRowTileS = 2;
constexpr int kRowTileN = 2;
constexpr int kTokTile = 4;
#endif
constexpr size_t kTokBlock = 64;

// ---------------------------------------------------------------------------
// The canonical lane reduction. Every output is one accumulator vector whose
// lanes are summed by the same halving tree, whatever kernel produced it:
// for h = N/2, N/4, ..., 1: lane[i] += lane[i + h] (i < h); result = lane[0].
// TreeSum is the scalar definition; ReduceStore computes it for many
// accumulators at once (on AVX-512 by a transposing shuffle network whose
// additions are exactly the tree's), so the order of additions per output
// never depends on how outputs are grouped: this is what makes results
// independent of n, of the tile an output falls in and of the thread split.

HWY_INLINE float TreeSum(float* lanes, size_t n_lanes) {
  for (size_t h = n_lanes / 2; h >= 1; h /= 2) {
    for (size_t i = 0; i < h; ++i) lanes[i] += lanes[i + h];
  }
  return lanes[0];
}

#if KVINFER_MM_AVX3
// Sixteen accumulators in, one vector of their sixteen tree sums out. Slot
// s = 4j + i must hold output 4i + j; lane L of the result is output L. Level
// k of the tree adds lanes L and L + 8, 4, 2, 1 respectively.
HWY_INLINE __m512 Reduce16(const __m512* slot) {
  __m512 l1[8], l2[4], l3[2];
  for (int p = 0; p < 8; ++p) {  // quarters [a0+a2, a1+a3, b0+b2, b1+b3]
    const __m512 a = slot[2 * p], b = slot[2 * p + 1];
    l1[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  for (int p = 0; p < 4; ++p) {  // quarter i: lanes of output 4p + i
    const __m512 a = l1[2 * p], b = l1[2 * p + 1];
    l2[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
  }
  for (int p = 0; p < 2; ++p) {  // within each quarter: [e0+e2, e1+e3, f0+f2, f1+f3]
    const __m512 a = l2[2 * p], b = l2[2 * p + 1];
    l3[p] = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
  }
  return _mm512_add_ps(_mm512_shuffle_ps(l3[0], l3[1], 0x88),
                       _mm512_shuffle_ps(l3[0], l3[1], 0xDD));
}
#endif

// out[k] = TreeSum(acc[k]) for k < K. out has room for K rounded up to 16.
template <int K>
HWY_INLINE void ReduceStore(DF df, const VF* acc, float* HWY_RESTRICT out) {
#if KVINFER_MM_AVX3
  (void)df;
  for (int base = 0; base < K; base += 16) {
    __m512 slot[16];
    for (int s = 0; s < 16; ++s) {
      const int o = base + (s % 4) * 4 + s / 4;
      slot[s] = o < K ? acc[o].raw : _mm512_setzero_ps();
    }
    _mm512_storeu_ps(out + base, Reduce16(slot));
  }
#else
  const size_t N = hn::Lanes(df);
  HWY_ALIGN float lanes[hn::MaxLanes(DF())];
  for (int k = 0; k < K; ++k) {
    hn::Store(acc[k], df, lanes);
    out[k] = TreeSum(lanes, N);
  }
#endif
}

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

// ---------------------------------------------------------------------------
// A Decoder turns a weight row into f32 vectors one 32-element group at a
// time: Group(df, f16_table, row, g, w) sets w[c] (c < 32 / N, N = Lanes(df)
// <= 16) to elements [g*32 + c*N, g*32 + (c+1)*N) fully dequantized. The
// values are a function of the weights only (not of the target's tricks), and
// every kernel multiplies exactly these values.
template <DType kType>
struct Decoder;

template <>
struct Decoder<DType::kF32> {
  static constexpr size_t kGroupBytes = kQK * sizeof(float);
  static HWY_INLINE void Group(DF df, const float*, const uint8_t* row, size_t g, VF* w) {
    const size_t N = hn::Lanes(df);
    const float* p = reinterpret_cast<const float*>(row) + g * kQK;
    for (size_t c = 0; c < kQK / N; ++c) w[c] = hn::LoadU(df, p + c * N);
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
  static HWY_INLINE void Group(DF df, const float*, const uint8_t* row, size_t g, VF* w) {
    const size_t N = hn::Lanes(df);
    const hn::Rebind<hwy::float16_t, DF> dh;
    const auto* p = reinterpret_cast<const hwy::float16_t*>(row) + g * kQK;
    for (size_t c = 0; c < kQK / N; ++c) w[c] = hn::PromoteTo(df, hn::LoadU(dh, p + c * N));
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
  static HWY_INLINE void Group(DF df, const float*, const uint8_t* row, size_t g, VF* w) {
    // bf16 is the top half of an f32: widen and shift into place.
    const size_t N = hn::Lanes(df);
    const hn::Rebind<uint16_t, DF> du16;
    const hn::RebindToUnsigned<DF> du32;
    const auto* p = reinterpret_cast<const uint16_t*>(row) + g * kQK;
    for (size_t c = 0; c < kQK / N; ++c) {
      w[c] = hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p + c * N))));
    }
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
  static HWY_INLINE void Group(DF df, const float* HWY_RESTRICT tab, const uint8_t* row, size_t g,
                               VF* w) {
    const size_t N = hn::Lanes(df);
    const hn::Rebind<int8_t, DF> di8;
    const hn::RebindToSigned<DF> di32;
    const uint8_t* b = row + g * sizeof(BlockQ8_0);
    const VF d = BroadcastHalf(df, tab, b + offsetof(BlockQ8_0, d));
    const auto* qs = reinterpret_cast<const int8_t*>(b + offsetof(BlockQ8_0, qs));
    for (size_t c = 0; c < kQK / N; ++c) {
      w[c] = hn::Mul(hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, qs + c * N))), d);
    }
  }
};

// Shared by Q4_0 and Q4_1, whose weights are MulAdd(q, d, bias) for a 4-bit
// code q (bias = -8 d for Q4_0, m for Q4_1). Element j < 16 of a block is the
// low nibble of qs[j], element j >= 16 the high nibble of qs[j - 16].
//
// With 16 lanes the 16 possible values MulAdd(k, d, bias), k = 0..15, are
// computed once per block (one FMA: the same rounding as per element) and
// each chunk is one permute indexed by the codes, which reads only the low 4
// bits of each index lane, so the low nibbles need no mask. Elsewhere the
// codes are converted to f32 and MulAdd'ed per element.
HWY_INLINE void Q4Group(DF df, const uint8_t* qs, VF d, VF bias, VF* w) {
#if KVINFER_MM_AVX3
  const VF lut = hn::MulAdd(hn::Iota(df, 0.0f), d, bias);
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  w[0] = VF{_mm512_permutexvar_ps(bytes, lut.raw)};
  w[1] = VF{_mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), lut.raw)};
#else
  const size_t N = hn::Lanes(df);
  const hn::Rebind<uint8_t, DF> du8;
  const hn::RebindToSigned<DF> di32;
  for (size_t c = 0; c < kQK / N; ++c) {
    const size_t e = c * N;
    const auto bytes = hn::PromoteTo(di32, hn::LoadU(du8, qs + (e % 16)));
    const auto q = e < 16 ? hn::And(bytes, hn::Set(di32, 0xF)) : hn::ShiftRight<4>(bytes);
    w[c] = hn::MulAdd(hn::ConvertTo(df, q), d, bias);
  }
#endif
}

template <>
struct Decoder<DType::kQ4_0> {
  static constexpr size_t kGroupBytes = sizeof(BlockQ4_0);
  static HWY_INLINE void Group(DF df, const float* HWY_RESTRICT tab, const uint8_t* row, size_t g,
                               VF* w) {
    const uint8_t* b = row + g * sizeof(BlockQ4_0);
    const VF d = BroadcastHalf(df, tab, b + offsetof(BlockQ4_0, d));
    Q4Group(df, b + offsetof(BlockQ4_0, qs), d, hn::Mul(d, hn::Set(df, -8.0f)), w);
  }
};

template <>
struct Decoder<DType::kQ4_1> {
  static constexpr size_t kGroupBytes = sizeof(BlockQ4_1);
  static HWY_INLINE void Group(DF df, const float* HWY_RESTRICT tab, const uint8_t* row, size_t g,
                               VF* w) {
    const uint8_t* b = row + g * sizeof(BlockQ4_1);
    Q4Group(df, b + offsetof(BlockQ4_1, qs), BroadcastHalf(df, tab, b + offsetof(BlockQ4_1, d)),
            BroadcastHalf(df, tab, b + offsetof(BlockQ4_1, m)), w);
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

// Writes the R x T tree sums out[t * R + r] (plus the scalar tail of plain
// types, which the vector loop leaves out) to y.
template <DType kType, int R, int T>
HWY_INLINE void FinishTile(const TileArgs& a, const uint8_t* const* row, const float* const* xt,
                           float* out) {
  const size_t full = a.cols / kQK * kQK;
  for (int t = 0; t < T; ++t) {
    float* yt = a.y + (a.t0 + t) * a.ldy + a.y_col;
    for (int r = 0; r < R; ++r) {
      float sum = out[t * R + r];
      if constexpr (kIsPlain<kType>) {
        // Plain types allow any cols; the last cols % 32 elements are scalar.
        for (size_t i = full; i < a.cols; ++i) sum += Decoder<kType>::Scalar(row[r], i) * xt[t][i];
      }
      yt[r] = sum;
    }
  }
}

// Streaming: R weight rows of type kType, decoded in registers, against T
// activation rows (decode, and small batches where a dequantized copy would
// cost more than it saves). Per output, lane j accumulates w[k] * x[k] over
// the k = j mod N in increasing k (one FMA each), then TreeSum.
template <DType kType, int R, int T>
HWY_NOINLINE void TileQ(const TileArgs& a) {
  using Dec = Decoder<kType>;
  const DF df;
  constexpr size_t kChunks = kQK / hn::MaxLanes(DF());
  const size_t N = hn::Lanes(df);
  const size_t groups = a.cols / kQK;

  const uint8_t* row[R];
  for (int r = 0; r < R; ++r) row[r] = a.w + static_cast<size_t>(r) * a.row_bytes;
  const float* xt[T];
  for (int t = 0; t < T; ++t) xt[t] = a.x + (a.t0 + t) * a.cols;

  VF acc[T * R];
  for (int k = 0; k < T * R; ++k) acc[k] = hn::Zero(df);

  // Prefetch the same group of the next row tile (R * row_bytes ahead; rows
  // are contiguous), which keeps R * row_bytes of requests in flight ahead of
  // the FMAs. A prefetch past the end of the matrix is harmless (a hint).
  const uintptr_t prefetch_ahead = static_cast<uintptr_t>(R) * a.row_bytes;
  // The group's activations are loaded once for all R rows where they fit in
  // registers, else each FMA reads them from L1.
  constexpr bool kHoistX = T * kChunks <= 8;
  for (size_t g = 0; g < groups; ++g) {
    VF xv[kHoistX ? T * kChunks : 1];
    if constexpr (kHoistX) {
      for (int t = 0; t < T; ++t) {
        for (size_t c = 0; c < kQK / N; ++c) {
          xv[t * kChunks + c] = hn::LoadU(df, xt[t] + g * kQK + c * N);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      hwy::Prefetch(reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(row[r]) +
                                                     prefetch_ahead + g * Dec::kGroupBytes));
      VF wv[kChunks];
      Dec::Group(df, a.f16_table, row[r], g, wv);
      for (size_t c = 0; c < kQK / N; ++c) {
        for (int t = 0; t < T; ++t) {
          const VF x = kHoistX ? xv[t * kChunks + c] : hn::LoadU(df, xt[t] + g * kQK + c * N);
          acc[t * R + r] = hn::MulAdd(wv[c], x, acc[t * R + r]);
        }
      }
    }
  }
  HWY_ALIGN float out[(T * R + 15) / 16 * 16];
  ReduceStore<T * R>(df, acc, out);
  FinishTile<kType, R, T>(a, row, xt, out);
}

// Batches: R rows of f32 weights (already dequantized, `a.w` is f32 with
// a.row_bytes = cols * 4) against T activation rows; per output the same
// per-lane FMA sequence and TreeSum as Tile1, so the same bits. kType only
// selects the scalar tail's decoder (the scratch holds the Scalar values too).
// (Splitting the columns into L1-sized slabs, with the accumulators stored
// between slabs, was measured: no gain at cols = 1536.)
template <DType kType, int R, int T>
HWY_NOINLINE void TileF32(const TileArgs& a, const uint8_t* const* src_row) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t len = a.cols / kQK * kQK;

  const float* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const float*>(a.w + r * a.row_bytes);
  const float* xt[T];
  for (int t = 0; t < T; ++t) xt[t] = a.x + (a.t0 + t) * a.cols;

  VF acc[T * R];
  for (int k = 0; k < T * R; ++k) acc[k] = hn::Zero(df);
  for (size_t off = 0; off < len; off += N) {
    VF xv[T];
    for (int t = 0; t < T; ++t) xv[t] = hn::LoadU(df, xt[t] + off);
    for (int r = 0; r < R; ++r) {
      const VF wv = hn::LoadU(df, wr[r] + off);
      for (int t = 0; t < T; ++t) acc[t * R + r] = hn::MulAdd(wv, xv[t], acc[t * R + r]);
    }
  }
  HWY_ALIGN float out[(T * R + 15) / 16 * 16];
  ReduceStore<T * R>(df, acc, out);
  FinishTile<kType, R, T>(a, src_row, xt, out);
}

// Dequantizes `count` rows starting at `w` (row_bytes apart) to dst
// [count, cols], with the same values the streaming Tile1 multiplies.
template <DType kType>
void DequantizeRows(const uint8_t* w, size_t row_bytes, size_t count, size_t cols,
                    const float* f16_table, float* HWY_RESTRICT dst) {
  using Dec = Decoder<kType>;
  const DF df;
  constexpr size_t kChunks = kQK / hn::MaxLanes(DF());
  const size_t N = hn::Lanes(df);
  const size_t groups = cols / kQK;
  for (size_t r = 0; r < count; ++r) {
    const uint8_t* row = w + r * row_bytes;
    float* out = dst + r * cols;
    for (size_t g = 0; g < groups; ++g) {
      VF wv[kChunks];
      Dec::Group(df, f16_table, row, g, wv);
      for (size_t c = 0; c < kQK / N; ++c) hn::StoreU(wv[c], df, out + g * kQK + c * N);
    }
    if constexpr (kIsPlain<kType>) {
      for (size_t i = groups * kQK; i < cols; ++i) out[i] = Dec::Scalar(row, i);
    }
  }
}

// Tokens [t_begin, t_end) against the R rows in f32 `a.w`.
template <DType kType, int R>
HWY_INLINE void TokenLoop(TileArgs a, const uint8_t* const* src_row, size_t t_begin,
                          size_t t_end) {
  size_t t = t_begin;
  for (; t + kTokTile <= t_end; t += kTokTile) {
    a.t0 = t;
    TileF32<kType, R, kTokTile>(a, src_row);
  }
  a.t0 = t;
  switch (t_end - t) {
    case 3:
      return TileF32<kType, R, 3>(a, src_row);
    case 2:
      return TileF32<kType, R, 2>(a, src_row);
    case 1:
      return TileF32<kType, R, 1>(a, src_row);
    default:
      return;
  }
}

// Rows [r0, r0 + R) for tokens [t_begin, t_end) (n > 1): the rows are
// dequantized into `scratch` ([R, cols] f32, stays in L1/L2) once, then every
// token tile runs the f32 tile over it, so each weight is decoded once per
// token block instead of once per token tile and the inner loop is pure FMA.
template <DType kType, int R>
HWY_INLINE void RowTileN(const WeightView& w, const float* f16_table, const float* x, float* y,
                         int64_t r0, size_t t_begin, size_t t_end, float* scratch) {
  const uint8_t* src_row[R];
  for (int r = 0; r < R; ++r) src_row[r] = w.row(r0 + r);
  TileArgs a{w.row(r0),
             w.row_bytes,
             static_cast<size_t>(w.cols),
             f16_table,
             x,
             0,
             y,
             static_cast<size_t>(w.rows),
             static_cast<size_t>(r0)};
  if constexpr (kType != DType::kF32) {
    DequantizeRows<kType>(a.w, a.row_bytes, R, a.cols, f16_table, scratch);
    a.w = reinterpret_cast<const uint8_t*>(scratch);
    a.row_bytes = a.cols * sizeof(float);
  } else {
    (void)scratch;
  }
  TokenLoop<kType, R>(a, src_row, t_begin, t_end);
}

// The largest n that streams the weights (TileQ: decoded in registers once
// per token tile) instead of dequantizing each row tile to f32 once per token
// block (TileF32). With AVX-512, streaming is faster while there is one
// token tile (n <= 4: no scratch round trip); from n = 5 decoding once is
// faster for every type but Q4_1 at 1536 columns (bench/ops_bench.cpp
// compares them). Either way the bits are the same.
constexpr size_t kStreamMaxN = kTokTile;

// Rows [r_begin, r_end) for tokens [a.t0, a.t0 + T), streaming the weights.
template <DType kType, int R, int T>
HWY_INLINE void StreamRows(const WeightView& w, TileArgs a, int64_t r_begin, int64_t r_end) {
  int64_t r = r_begin;
  for (; r + R <= r_end; r += R) {
    a.w = w.row(r);
    a.y_col = static_cast<size_t>(r);
    TileQ<kType, R, T>(a);
  }
  for (; r < r_end; ++r) {
    a.w = w.row(r);
    a.y_col = static_cast<size_t>(r);
    TileQ<kType, 1, T>(a);
  }
}

// Rows [r_begin, r_end) of y for all n tokens. For n > 1 the outer loop is
// over blocks of kTokBlock tokens (kept in L2), then row tiles, so a row
// tile's weights are decoded once per token block while all its token tiles
// pass over them.
template <DType kType>
void MatMulRowsT(const WeightView& w, const float* f16_table, const float* x, int64_t n64, float* y,
                 int64_t r_begin, int64_t r_end) {
  const size_t n = static_cast<size_t>(n64);
  // f32 weights need no decoding: TileF32 runs on them directly for n > 1.
  if (n == 1 || (n <= kStreamMaxN && kType != DType::kF32)) {
    TileArgs a{nullptr,
               w.row_bytes,
               static_cast<size_t>(w.cols),
               f16_table,
               x,
               0,
               y,
               static_cast<size_t>(w.rows),
               0};
    for (size_t t = 0; t < n; t += kTokTile) {  // one pass unless kStreamMaxN grows
      a.t0 = t;
      switch (std::min<size_t>(n - t, kTokTile)) {
        case 1:
          StreamRows<kType, kRowTile1, 1>(w, a, r_begin, r_end);
          break;
        case 2:
          StreamRows<kType, kRowTileS, 2>(w, a, r_begin, r_end);
          break;
        case 3:
          StreamRows<kType, kRowTileS, 3>(w, a, r_begin, r_end);
          break;
        default:
          StreamRows<kType, kRowTileS, 4>(w, a, r_begin, r_end);
          break;
      }
    }
    return;
  }
  // [kRowTileN, cols] dequantized weights, 64-byte aligned so that no vector
  // load of it straddles two cache lines.
  std::vector<float> buf;
  if (kType != DType::kF32) buf.resize(kRowTileN * static_cast<size_t>(w.cols) + 16);
  float* scratch = buf.data();
  scratch += (64 - reinterpret_cast<uintptr_t>(scratch) % 64) % 64 / sizeof(float);
  for (size_t t0 = 0, t1 = 0; t0 < n; t0 = t1) {
    // Even blocks: 130 tokens run as 44 + 43 + 43, not 64 + 64 + 2.
    const size_t blocks_left = (n - t0 + kTokBlock - 1) / kTokBlock;
    t1 = t0 + (n - t0 + blocks_left - 1) / blocks_left;
    int64_t r = r_begin;
    for (; r + kRowTileN <= r_end; r += kRowTileN) {
      RowTileN<kType, kRowTileN>(w, f16_table, x, y, r, t0, t1, scratch);
    }
    for (; r < r_end; ++r) RowTileN<kType, 1>(w, f16_table, x, y, r, t0, t1, scratch);
  }
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

// Rows per ParallelFor grain: a multiple of every target's row tiles
// (kRowTile1, kRowTileS, kRowTileN, all <= 8), and large enough that a
// thread's share is a few KiB of weights at least.
constexpr int64_t kRowGrain = 16;

}  // namespace

MatMulContext::MatMulContext(ThreadPool* pool, Options options)
    : pool_(pool),
      options_(options),
      isa_(ChooseIsa(options.isa)),
      scratch_(std::make_unique<MatMulScratch[]>(static_cast<size_t>(num_threads()))) {}

MatMulContext::~MatMulContext() = default;

MatMulScratch& MatMulContext::scratch(int thread) const {
  KVINFER_CHECK(thread >= 0 && thread < num_threads());
  return scratch_[static_cast<size_t>(thread)];
}

void MatMul(const MatMulContext& ctx, const WeightView& w, const float* x, int64_t n, float* y) {
  CheckWeight(w);
  KVINFER_CHECK(n >= 0);
  if (n == 0 || w.rows == 0) return;
  KVINFER_CHECK(x != nullptr && y != nullptr);
  if (w.packed != nullptr && f16::PacksWeights(w.type) && ctx.isa() >= Isa::kAvx512) {
    f16::MatMul(ctx, w, x, n, y);
    return;
  }
  if (int8::IsInt8Type(w.type) && int8::TakesInt8Path(ctx)) {
    int8::MatMul(ctx, w, x, n, y);
    return;
  }
  const float* f16_table = F16Table();
  const auto fn = HWY_DYNAMIC_DISPATCH(MatMulRows);
  // Batches re-read x once per row tile: give them a 64-byte aligned copy
  // (rows stay aligned when cols % 16 == 0) so that no vector load straddles
  // two cache lines. Same values, same bits. The buffer is the caller's
  // scratch (it grows to the largest n * cols seen), so that long prompts do
  // not page-fault a fresh copy every call.
  if (n > 4 && w.cols % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 64 != 0) {
    const size_t count = static_cast<size_t>(n * w.cols);
    float* p = AlignedScratch<float>(ctx.scratch(0).x_aligned, count);
    std::memcpy(p, x, count * sizeof(float));
    x = p;
  }
  ThreadPool* const pool = ctx.pool();
  if (pool == nullptr || pool->num_threads() == 1) {
    fn(w, f16_table, x, n, y, 0, w.rows);
    return;
  }
  // Waking a thread costs microseconds: give each at least ~32K multiply-adds
  // (a small model's matrices then run on one thread).
  constexpr int64_t kMinMacsPerChunk = 32768;
  const int64_t grain = RowGrain(kRowGrain, kMinMacsPerChunk, w.cols, n);
  pool->ParallelFor(w.rows, grain, [&](int64_t begin, int64_t end, int) {
    fn(w, f16_table, x, n, y, begin, end);
  });
}

void MatMulMany(const MatMulContext& ctx, std::span<const WeightView* const> ws, const float* x,
                int64_t n, std::span<float* const> ys) {
  KVINFER_CHECK(ws.size() == ys.size());
  if (ws.empty()) return;
  bool one_job = ws.size() > 1 && int8::IsInt8Type(ws[0]->type) && int8::TakesInt8Path(ctx) &&
                 n > 0;
  for (const WeightView* w : ws) {
    CheckWeight(*w);
    one_job = one_job && w->type == ws[0]->type && w->cols == ws[0]->cols && w->rows > 0;
  }
  if (one_job) {
    KVINFER_CHECK(x != nullptr);
    int8::MatMulMany(ctx, ws, x, n, ys);
    return;
  }
  for (size_t i = 0; i < ws.size(); ++i) MatMul(ctx, *ws[i], x, n, ys[i]);
}

void MatMul(const WeightView& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
  const MatMulContext ctx(pool);
  MatMul(ctx, w, x, n, y);
}

void MatMulMany(std::span<const WeightView* const> ws, const float* x, int64_t n,
                std::span<float* const> ys, ThreadPool* pool) {
  const MatMulContext ctx(pool);
  MatMulMany(ctx, ws, x, n, ys);
}

AlignedBuffer PackWeights(const WeightView& w) {
  CheckWeight(w);
  if (int8::PacksWeights(w.type)) return int8::Pack(w);
  if (f16::PacksWeights(w.type)) return f16::Pack(w);
  return {};
}

void DequantizeRow(const WeightView& w, int64_t r, float* dst) {
  CheckWeight(w);
  KVINFER_CHECK_MSG(r >= 0 && r < w.rows, "DequantizeRow: row {} out of [0, {})", r, w.rows);
  HWY_DYNAMIC_DISPATCH(DequantizeRowImpl)(w, F16Table(), r, dst);
}

}  // namespace kvinfer::ops
#endif  // HWY_ONCE
