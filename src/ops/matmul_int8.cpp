// The int8-activation MatMul: formula, layout and kernels are described in
// matmul_int8.h. Three kernels compute that same formula: portable scalar
// code here, and x86/matmul_int8_avx2.cpp (8 rows per tile, vpmaddubsw) and
// x86/matmul_int8_vnni.cpp (16 rows per tile, vpdpbusd), compiled with
// target attributes. The context's Isa (ops/dispatch.h) picks one at run
// time, so no -march flag is needed.

#include "ops/matmul_int8.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/matmul_int8_blocks.h"
#include "ops/matmul_scratch.h"
#include "ops/ops.h"

#if defined(__x86_64__) || defined(__i386__)
#define KVINFER_INT8_X86 1
#include "ops/x86/matmul_int8_avx2.h"
#include "ops/x86/matmul_int8_vnni.h"
#else
#define KVINFER_INT8_X86 0
#endif

namespace kvinfer::ops {

namespace int8 {
namespace {

// kBlock, Blk, Acts, TileBase and the packed layout: matmul_int8_blocks.h.


// ---------------------------------------------------------------------------
// Quantizers (the formula of matmul_int8.h; all give the same bits).

int8_t RoundToInt8(float v) {
  const float r = std::nearbyint(v);  // default rounding mode: half to even
  if (r >= 127.0f) return 127;
  if (r >= -128.0f) return static_cast<int8_t>(r);
  return -128;  // also NaN (as cvtps + saturating packs give)
}

void QuantizeBlockScalar(const float* x, int8_t* q, float* d_out, float* s_out, int32_t* sum_out) {
  float amax = 0.0f;
  for (size_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int32_t sum = 0;
  for (size_t j = 0; j < kBlock; ++j) {
    q[j] = RoundToInt8(x[j] * id);
    sum += q[j];
  }
  *d_out = d;
  *s_out = d * static_cast<float>(sum);
  *sum_out = sum;
}


using QuantizeBlockFn = void (*)(const float*, int8_t*, float*, float*, int32_t*);

QuantizeBlockFn QuantizerFor(Isa isa) {
#if KVINFER_INT8_X86
  switch (isa) {
    case Isa::kScalar:
      return QuantizeBlockScalar;
    case Isa::kAvx2:
    case Isa::kAvx512:
      return x86::QuantizeBlockAvx2;
    case Isa::kAvx512Vnni:
      return x86::QuantizeBlockAvx512;
  }
#else
  (void)isa;
#endif
  return QuantizeBlockScalar;
}

// Tokens [t0, t1) of x[*, cols].
void QuantizeTokens(QuantizeBlockFn fn, const float* x, int64_t t0, int64_t t1, size_t cols,
                    int8_t* q, float* d, float* s, int32_t* sum) {
  const size_t blocks = cols / kBlock;
  for (size_t t = static_cast<size_t>(t0); t < static_cast<size_t>(t1); ++t) {
    for (size_t b = 0; b < blocks; ++b) {
      const size_t k = t * blocks + b;
      fn(x + t * cols + b * kBlock, q + t * cols + b * kBlock, d + k, s + k, sum + k);
    }
  }
}

// ---------------------------------------------------------------------------
// Scalar kernel: the formula written out, one output at a time.

template <DType kType>
int32_t Code(const uint8_t* blk, size_t j) {
  const uint8_t* qs = blk + Blk<kType>::kQs;
  if constexpr (kType == DType::kQ8_0) {
    return static_cast<int8_t>(qs[j]);
  } else {
    const int32_t nib = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    return kType == DType::kQ4_0 ? nib - 8 : nib;
  }
}

template <DType kType>
void RowsScalar(const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
                int64_t r_end) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const uint8_t* row = w.row(r);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.q + static_cast<size_t>(t) * a.cols;
      const size_t tb = static_cast<size_t>(t) * a.blocks;
      float acc = 0.0f;
      for (size_t b = 0; b < a.blocks; ++b) {
        const uint8_t* blk = row + b * Blk<kType>::kBytes;
        int32_t isum = 0;
        for (size_t j = 0; j < kBlock; ++j) isum += Code<kType>(blk, j) * xq[b * kBlock + j];
        const float scale = F16ToF32(Load16(blk)) * a.d[tb + b];
        acc = std::fma(scale, static_cast<float>(isum), acc);
        if constexpr (Blk<kType>::kMin) acc = std::fma(F16ToF32(Load16(blk + 2)), a.s[tb + b], acc);
      }
      y[static_cast<size_t>(t * w.rows + r)] = acc;
    }
  }
}


// The packed layout: LayoutOf (matmul_int8_blocks.h); PackTile fills it.


template <DType kType>
void PackTile(const WeightView& w, int64_t r0, const PackedLayout& l, uint8_t* tile) {
  using L = Blk<kType>;
  const size_t blocks = static_cast<size_t>(w.cols) / kBlock;
  const int valid = static_cast<int>(std::min<int64_t>(16, w.rows - r0));
  for (int i = 0; i < valid; ++i) {
    const uint8_t* row = w.row(r0 + i);
    for (size_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = row + b * L::kBytes;
      uint8_t* codes = tile + b * l.code_bytes;
      for (size_t c = 0; c < l.code_bytes / 64; ++c) {
        for (int j = 0; j < 4; ++j) {
          uint8_t v = blk[L::kQs + 4 * c + j];
          if constexpr (!L::kNibbles) v ^= 0x80;  // c + 128: vpdpbusd's unsigned operand
          codes[c * 64 + static_cast<size_t>(i) * 4 + j] = v;
        }
      }
      std::memcpy(tile + l.scales + b * 32 + i * 2, blk, 2);
      if constexpr (L::kMin) std::memcpy(tile + l.mins + b * 32 + i * 2, blk + 2, 2);
    }
  }
}


// ---------------------------------------------------------------------------
// Dispatch.

// The kernel of instruction set `isa` (AVX-512 without VNNI: AVX2's).
template <DType kType>
void RowsFor(Isa isa, const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
             int64_t r_end, MatMulScratch& scratch) {
#if KVINFER_INT8_X86
  switch (isa) {
    case Isa::kScalar:
      break;
    case Isa::kAvx2:
    case Isa::kAvx512:
      return x86::MatMulRowsAvx2(w, a, n, y, r_begin, r_end, scratch);
    case Isa::kAvx512Vnni:
      return x86::MatMulRowsVnni(w, a, n, y, r_begin, r_end, scratch);
  }
#else
  (void)isa;
  (void)scratch;
#endif
  RowsScalar<kType>(w, a, n, y, r_begin, r_end);
}

void Rows(Isa isa, const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
          int64_t r_end, MatMulScratch& scratch) {
  switch (w.type) {
    case DType::kQ4_0:
      return RowsFor<DType::kQ4_0>(isa, w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ4_1:
      return RowsFor<DType::kQ4_1>(isa, w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ8_0:
      return RowsFor<DType::kQ8_0>(isa, w, a, n, y, r_begin, r_end, scratch);
    default:
      KVINFER_CHECK_MSG(false, "int8 MatMul: unsupported weight type {}", DTypeName(w.type));
  }
}

}  // namespace

bool TakesInt8Path(const MatMulContext& ctx) {
  return ctx.activation_precision() == ActivationPrecision::kInt8 &&
         (ctx.isa_forced() || ctx.isa() != Isa::kScalar);
}

bool IsInt8Type(DType t) { return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ8_0; }

void QuantizeActivations(Isa isa, const float* x, int64_t n, int64_t cols, int8_t* q, float* d,
                         float* s, int32_t* sum) {
  KVINFER_CHECK_MSG(n >= 0 && cols >= 0 && cols % kBlock == 0,
                    "QuantizeActivations: bad shape [{}, {}]", n, cols);
  QuantizeTokens(QuantizerFor(isa), x, 0, n, static_cast<size_t>(cols), q, d, s, sum);
}

bool PacksWeights(DType type) { return IsInt8Type(type) && BestIsa() == Isa::kAvx512Vnni; }

AlignedBuffer Pack(const WeightView& w) {
  if (!PacksWeights(w.type) || w.rows == 0 || w.cols % kBlock != 0) return {};
  const PackedLayout l = LayoutOf(w.type, static_cast<size_t>(w.cols) / kBlock);
  const size_t tiles = static_cast<size_t>((w.rows + 15) / 16);
  // Zeroed: rows past the end of the last tile have zero codes and scales.
  AlignedBuffer out(tiles * l.tile_bytes, AlignedBuffer::Init::kZero);
  uint8_t* p = out.as<uint8_t>();
  for (size_t t = 0; t < tiles; ++t) {
    const int64_t r0 = static_cast<int64_t>(t) * 16;
    uint8_t* tile = p + t * l.tile_bytes;
    switch (w.type) {
      case DType::kQ4_0:
        PackTile<DType::kQ4_0>(w, r0, l, tile);
        break;
      case DType::kQ4_1:
        PackTile<DType::kQ4_1>(w, r0, l, tile);
        break;
      default:
        PackTile<DType::kQ8_0>(w, r0, l, tile);
        break;
    }
  }
  return out;
}

void MatMulMany(const MatMulContext& ctx, std::span<const WeightView* const> ws, const float* x,
                int64_t n, std::span<float* const> ys) {
  KVINFER_CHECK(!ws.empty() && ws.size() == ys.size());
  const WeightView& w0 = *ws[0];
  for (const WeightView* w : ws) {
    KVINFER_CHECK_MSG(IsInt8Type(w->type) && w->cols % kBlock == 0 && w->type == w0.type &&
                          w->cols == w0.cols,
                      "int8 MatMul: bad weight {} [{}, {}]", DTypeName(w->type), w->rows, w->cols);
  }
  const Isa isa = ctx.isa();
  ThreadPool* const pool = ctx.pool();
  const size_t cols = static_cast<size_t>(w0.cols);
  const size_t blocks = cols / kBlock;
  // The caller's scratch holds the activations; the tasks read them there.
  MatMulScratch& caller = ctx.scratch(0);
  {
    const size_t elems = static_cast<size_t>(n) * cols;
    const size_t nblocks = static_cast<size_t>(n) * blocks;
    if (caller.act_q.size() < elems) caller.act_q.resize(elems);
    if (caller.act_d.size() < nblocks) {
      caller.act_d.resize(nblocks);
      caller.act_s.resize(nblocks);
      caller.act_sum.resize(nblocks);
      caller.act_bias.resize(nblocks);
    }
  }
  int8_t* const q = caller.act_q.data();
  float* const d = caller.act_d.data();
  float* const s = caller.act_s.data();
  int32_t* const sum = caller.act_sum.data();
  int32_t* const bias = caller.act_bias.data();
  // What the kernel's offset codes need (see Acts).
  const int32_t bias_mult = w0.type == DType::kQ4_0                                 ? -8
                            : w0.type == DType::kQ8_0 && isa == Isa::kAvx512Vnni ? -128
                                                                                    : 0;
  const QuantizeBlockFn quantize = QuantizerFor(isa);
  const bool threaded = pool != nullptr && pool->num_threads() > 1;
  auto quantize_tokens = [&](int64_t t0, int64_t t1, int) {
    QuantizeTokens(quantize, x, t0, t1, cols, q, d, s, sum);
    for (size_t k = static_cast<size_t>(t0) * blocks; k < static_cast<size_t>(t1) * blocks; ++k) {
      bias[k] = bias_mult * sum[k];
    }
  };
  // ~64K activations per task: a few microseconds, worth a thread's wake-up.
  const int64_t quant_grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, w0.cols));
  if (threaded && n > quant_grain) {
    pool->ParallelFor(n, quant_grain, quantize_tokens);
  } else {
    quantize_tokens(0, n, 0);
  }
  const Acts acts{q, d, s, bias, cols, blocks};
  if (!threaded) {
    for (size_t i = 0; i < ws.size(); ++i) {
      Rows(isa, *ws[i], acts, n, ys[i], 0, ws[i]->rows, caller);
    }
    return;
  }
  // Row tiles are 16 (VNNI) or 8 (AVX2) rows: grains are multiples of 16.
  // Tasks are claimed dynamically, so small ones balance 2 threads well (k/v
  // at 192 rows: 6 tasks, not 2 uneven ones); each still gets ~16K
  // multiply-adds, ~1 us, well above the cost of claiming it. The weights'
  // row ranges are laid end to end as one task space.
  constexpr int64_t kRowGrain = 16;
  constexpr int64_t kMinMacsPerChunk = 16384;
  const int64_t grain = RowGrain(kRowGrain, kMinMacsPerChunk, w0.cols, n);
  if (ws.size() == 1) {
    pool->ParallelFor(w0.rows, grain, [&](int64_t begin, int64_t end, int thread) {
      Rows(isa, w0, acts, n, ys[0], begin, end, ctx.scratch(thread));
    });
    return;
  }
  std::array<int64_t, 9> first_task{};  // task index where weight i starts
  KVINFER_CHECK_MSG(ws.size() < first_task.size(), "MatMulMany: at most {} weights",
                    first_task.size() - 1);
  for (size_t i = 0; i < ws.size(); ++i) {
    first_task[i + 1] = first_task[i] + (ws[i]->rows + grain - 1) / grain;
  }
  pool->ParallelFor(first_task[ws.size()], 1, [&](int64_t begin, int64_t end, int thread) {
    MatMulScratch& scratch = ctx.scratch(thread);
    for (int64_t task = begin; task < end; ++task) {
      size_t i = 0;
      while (task >= first_task[i + 1]) ++i;
      const int64_t r0 = (task - first_task[i]) * grain;
      Rows(isa, *ws[i], acts, n, ys[i], r0, std::min(ws[i]->rows, r0 + grain), scratch);
    }
  });
}

void MatMul(const MatMulContext& ctx, const WeightView& w, const float* x, int64_t n, float* y) {
  const WeightView* ws[] = {&w};
  float* ys[] = {y};
  int8::MatMulMany(ctx, ws, x, n, ys);
}

}  // namespace int8
}  // namespace kvinfer::ops
