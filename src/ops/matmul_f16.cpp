// The packed F16 / F32 MatMul: layout, kernel and arithmetic contract are
// described in matmul_f16.h. The AVX-512 kernel is compiled with target
// attributes and chosen at run time (ops/dispatch.h), so no -march flag is
// needed; elsewhere nothing is packed and ops::MatMul keeps its unpacked
// path.

#include "ops/matmul_f16.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ops/matmul_scratch.h"

#if defined(__x86_64__) || defined(__i386__)
#define KVINFER_F16_X86 1
// GCC 12 reports the AVX-512 intrinsics' own _mm512_undefined_*() operands as
// uninitialized (a false positive in its headers, inlined here).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#else
#define KVINFER_F16_X86 0
#endif

namespace kvinfer::ops::f16 {
namespace {

constexpr size_t kPanelRows = 16;

size_t ElemBytes(DType type) { return type == DType::kF16 ? 2 : 4; }

size_t PanelBytes(DType type, size_t cols) {
  return (cols * kPanelRows * ElemBytes(type) + 63) / 64 * 64;
}


#if KVINFER_F16_X86
#define KVINFER_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f")))

// Tokens per register tile in batches: 2 panels x 12 tokens = 24 of the 32
// zmm registers accumulate, 2 hold weights and one the broadcast x. Per k,
// 2 weight loads (+ 2 conversions for F16) and 12 broadcast loads feed 24
// FMAs.
constexpr int kTokTile = 12;
constexpr int kFullTilePanels = 2;

// Panels per tile for a tile of T tokens: at most 24 accumulators, and at
// least 8 independent FMA chains per k where T is small (the FMA latency is
// 4 cycles at 2 per cycle).
constexpr int MaxPanels(int T) { return std::min(8, 24 / T); }

template <typename W>
KVINFER_TARGET_AVX512 inline __m512 LoadColumn(const W* p) {
  if constexpr (sizeof(W) == 2) {
    return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    return _mm512_load_ps(p);
  }
}

// What a tile needs besides its position.
struct Ctx {
  const uint8_t* panels;
  size_t panel_bytes;
  size_t num_panels;
  uint32_t last_mask;  // valid rows of the last panel, as a lane mask
  const float* x;      // [n, cols]
  size_t cols;
  float* y;  // [n, ldy]
  size_t ldy;
};

constexpr size_t kPrefetchBytes = 1024;

// Panels [p, p + RB) for tokens [t0, t0 + T), the weights of panel p + i
// read from w + i * w_stride (c.panels, or their f32 copy in a scratch).
template <typename W, int RB, int T>
KVINFER_TARGET_AVX512 __attribute__((noinline)) void Tile(const Ctx& c, const uint8_t* w,
                                                          size_t w_stride, size_t p, size_t t0) {
  const W* wp[RB];
  for (int i = 0; i < RB; ++i) wp[i] = reinterpret_cast<const W*>(w + i * w_stride);
  const float* xt[T];
  for (int t = 0; t < T; ++t) xt[t] = c.x + (t0 + t) * c.cols;
  __m512 acc[RB][T];
  for (int i = 0; i < RB; ++i) {
    for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
  }
  for (size_t k = 0; k < c.cols; ++k) {
    __m512 wv[RB];
    if constexpr (T <= 2) {
      // Decode streams the panels from memory, RB of them side by side:
      // ask for each one's line kPrefetchBytes ahead (once per line).
      if (k * kPanelRows * sizeof(W) % 64 == 0) {
        for (int i = 0; i < RB; ++i) {
          _mm_prefetch(reinterpret_cast<const char*>(wp[i] + k * kPanelRows) + kPrefetchBytes,
                       _MM_HINT_T0);
        }
      }
    }
    for (int i = 0; i < RB; ++i) wv[i] = LoadColumn(wp[i] + k * kPanelRows);
    for (int t = 0; t < T; ++t) {
      const __m512 xb = _mm512_set1_ps(xt[t][k]);
      for (int i = 0; i < RB; ++i) acc[i][t] = _mm512_fmadd_ps(wv[i], xb, acc[i][t]);
    }
  }
  const bool partial = p + RB == c.num_panels && c.last_mask != 0xFFFF;
  for (int t = 0; t < T; ++t) {
    float* yt = c.y + (t0 + t) * c.ldy + p * kPanelRows;
    for (int i = 0; i < RB; ++i) {
      if (i == RB - 1 && partial) {
        _mm512_mask_storeu_ps(yt + i * kPanelRows, static_cast<__mmask16>(c.last_mask), acc[i][t]);
      } else {
        _mm512_storeu_ps(yt + i * kPanelRows, acc[i][t]);
      }
    }
  }
}

// Panels [p, p_end) for tokens [t0, t0 + T): tiles of RB panels, then the
// remainder with fewer.
template <typename W, int T, int RB>
KVINFER_TARGET_AVX512 void Panels(const Ctx& c, size_t p, size_t p_end, size_t t0) {
  for (; p + RB <= p_end; p += RB)
    Tile<W, RB, T>(c, c.panels + p * c.panel_bytes, c.panel_bytes, p, t0);
  if constexpr (RB > 1) Panels<W, T, RB - 1>(c, p, p_end, t0);
}

template <typename W, int T>
KVINFER_TARGET_AVX512 void SmallTile(const Ctx& c, size_t p0, size_t p1, size_t t0) {
  Panels<W, T, MaxPanels(T)>(c, p0, p1, t0);
}

// Converts `count` fp16 panels at src (panel_bytes apart) to f32 panels at
// dst (cols * 16 floats apart): the exact values LoadColumn gives.
KVINFER_TARGET_AVX512 void ConvertPanels(const Ctx& c, const uint8_t* src, size_t count,
                                         float* dst) {
  for (size_t i = 0; i < count; ++i) {
    const auto* in = reinterpret_cast<const uint16_t*>(src + i * c.panel_bytes);
    float* out = dst + i * c.cols * kPanelRows;
    for (size_t k = 0; k < c.cols; ++k) {
      _mm512_store_ps(out + k * kPanelRows, LoadColumn(in + k * kPanelRows));
    }
  }
}

// The full 12-token tiles [0, full) over `count` (<= 2) panels from panel
// p, whose weights (of type W) are at w, stride bytes apart.
template <typename W>
KVINFER_TARGET_AVX512 void FullTiles(const Ctx& c, const uint8_t* w, size_t stride, size_t p,
                                     size_t count, size_t full) {
  for (size_t t0 = 0; t0 < full; t0 += kTokTile) {
    if (count == kFullTilePanels) {
      Tile<W, kFullTilePanels, kTokTile>(c, w, stride, p, t0);
    } else {
      Tile<W, 1, kTokTile>(c, w, stride, p, t0);
    }
  }
}

// Panels [p0, p1) for all n tokens: full 12-token tiles two panels at a
// time (every token tile passes over the pair while it is in L1/L2), then the
// n % 12 remaining tokens in one smaller tile over all the panels. With more
// than one full tile, fp16 panels are first converted to f32 into `scratch`
// (once per pair instead of once per token tile: the conversion shares the
// FMA ports).
template <typename W>
KVINFER_TARGET_AVX512 void Rows(const Ctx& c, size_t n, size_t p0, size_t p1, float* scratch) {
  const size_t full = n / kTokTile * kTokTile;
  const bool convert = sizeof(W) == 2 && full > kTokTile;
  for (size_t p = p0; p < p1 && full > 0; p += kFullTilePanels) {
    const size_t count = std::min<size_t>(kFullTilePanels, p1 - p);
    const uint8_t* w = c.panels + p * c.panel_bytes;
    if (convert) {
      ConvertPanels(c, w, count, scratch);
      FullTiles<float>(c, reinterpret_cast<const uint8_t*>(scratch),
                       c.cols * kPanelRows * sizeof(float), p, count, full);
    } else {
      FullTiles<W>(c, w, c.panel_bytes, p, count, full);
    }
  }
  switch (n - full) {
    case 1:
      return SmallTile<W, 1>(c, p0, p1, full);
    case 2:
      return SmallTile<W, 2>(c, p0, p1, full);
    case 3:
      return SmallTile<W, 3>(c, p0, p1, full);
    case 4:
      return SmallTile<W, 4>(c, p0, p1, full);
    case 5:
      return SmallTile<W, 5>(c, p0, p1, full);
    case 6:
      return SmallTile<W, 6>(c, p0, p1, full);
    case 7:
      return SmallTile<W, 7>(c, p0, p1, full);
    case 8:
      return SmallTile<W, 8>(c, p0, p1, full);
    case 9:
      return SmallTile<W, 9>(c, p0, p1, full);
    case 10:
      return SmallTile<W, 10>(c, p0, p1, full);
    case 11:
      return SmallTile<W, 11>(c, p0, p1, full);
    default:
      return;
  }
}
#endif  // KVINFER_F16_X86

// Copies rows [16p, 16p + 16) of w (those that exist) into panel `dst`.
template <typename W>
void PackPanel(const WeightView& w, size_t p, uint8_t* dst) {
  W* out = reinterpret_cast<W*>(dst);
  const size_t cols = static_cast<size_t>(w.cols);
  const size_t rows = std::min<size_t>(kPanelRows, static_cast<size_t>(w.rows) - p * kPanelRows);
  for (size_t i = 0; i < rows; ++i) {
    const W* src = reinterpret_cast<const W*>(w.row(static_cast<int64_t>(p * kPanelRows + i)));
    for (size_t k = 0; k < cols; ++k) out[k * kPanelRows + i] = src[k];
  }
}

}  // namespace

bool PacksWeights(DType type) {
  return (type == DType::kF16 || type == DType::kF32) && CpuRuns(Isa::kAvx512);
}

AlignedBuffer Pack(const WeightView& w) {
  if (!PacksWeights(w.type) || w.rows == 0 || w.cols == 0) return {};
  const size_t cols = static_cast<size_t>(w.cols);
  const size_t panels = (static_cast<size_t>(w.rows) + kPanelRows - 1) / kPanelRows;
  const size_t panel_bytes = PanelBytes(w.type, cols);
  // Zeroed: rows past the end of the last panel are zero weights.
  AlignedBuffer out(panels * panel_bytes, AlignedBuffer::Init::kZero);
  for (size_t p = 0; p < panels; ++p) {
    uint8_t* dst = out.as<uint8_t>() + p * panel_bytes;
    if (w.type == DType::kF16) {
      PackPanel<uint16_t>(w, p, dst);
    } else {
      PackPanel<float>(w, p, dst);
    }
  }
  return out;
}

void MatMul(const MatMulContext& ctx, const WeightView& w, const float* x, int64_t n, float* y) {
  KVINFER_CHECK_MSG(PacksWeights(w.type) && w.packed != nullptr && ctx.isa() >= Isa::kAvx512,
                    "packed MatMul: {} [{}, {}] has no packed copy", DTypeName(w.type), w.rows,
                    w.cols);
#if KVINFER_F16_X86
  if (n <= 0 || w.rows == 0) return;
  const size_t rows = static_cast<size_t>(w.rows);
  const size_t tail_rows = rows % kPanelRows;
  const Ctx c{static_cast<const uint8_t*>(w.packed),
              PanelBytes(w.type, static_cast<size_t>(w.cols)),
              (rows + kPanelRows - 1) / kPanelRows,
              tail_rows == 0 ? 0xFFFFu : (1u << tail_rows) - 1,
              x,
              static_cast<size_t>(w.cols),
              y,
              rows};
  const bool f16 = w.type == DType::kF16;
  ThreadPool* const pool = ctx.pool();
  auto run = [&](size_t p0, size_t p1, int thread) {
    if (f16) {
      // Per thread: the f32 copy of one panel pair, 64-byte aligned.
      float* scratch = AlignedScratch<float>(ctx.scratch(thread).panels,
                                             kFullTilePanels * c.cols * kPanelRows);
      Rows<uint16_t>(c, static_cast<size_t>(n), p0, p1, scratch);
    } else {
      Rows<float>(c, static_cast<size_t>(n), p0, p1, nullptr);
    }
  };
  if (pool == nullptr || pool->num_threads() == 1) {
    run(0, c.num_panels, 0);
    return;
  }
  // Tasks of whole panel pairs (the batched tile's width), with at least
  // ~32K multiply-adds each so that handing one out costs less than it does.
  constexpr int64_t kMinMacsPerChunk = 32768;
  const int64_t grain = RowGrain(static_cast<int64_t>(kFullTilePanels), kMinMacsPerChunk,
                                 w.cols * static_cast<int64_t>(kPanelRows), n);
  pool->ParallelFor(static_cast<int64_t>(c.num_panels), grain,
                    [&](int64_t begin, int64_t end, int thread) {
                      run(static_cast<size_t>(begin), static_cast<size_t>(end), thread);
                    });
#else
  (void)x;
  (void)n;
  (void)y;
#endif
}

}  // namespace kvinfer::ops::f16
