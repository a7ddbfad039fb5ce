// The packed MatMul for F16 and F32 weights (private to ops; ops::MatMul
// routes here when w.packed was made by ops::PackWeights for these types).
//
// Layout. Weights are repacked at load into panels of 16 rows (panel p =
// rows [16p, 16p + 16), zero rows past the end), panel_bytes apart (a
// multiple of 64): in a panel, column k holds the 16 rows' weights k,
// contiguous (F16: 32 bytes, F32: 64 bytes). One aligned vector load is then
// one weight column of 16 outputs.
//
// Kernel (outer product). One SIMD lane per output row: for each k, a panel
// column (converted exactly fp16 -> f32, vcvtph2ps) is multiplied by x[t, k]
// broadcast, for RB panels x T tokens (prefill: 2 x 12 = 24 accumulators,
// 2 weight loads and 12 broadcasts per 24 FMAs; decode: up to 8 panels for
// 1 token). No lane reduction is needed.
//
// Arithmetic contract (batch invariance): every output is one sequential
// chain of fused multiply-adds over k in increasing order,
//   acc = 0.0f;  for k = 0 .. cols - 1:  acc = fma(w[r, k], x[t, k], acc);
//   y[t, r] = acc
// whatever n, the tile, panel group or thread the output falls in. So the
// result is the same bits as std::fma in a scalar loop (the tests compare
// bit for bit), and a token decoded alone gets the bits it gets in a batch.
// It differs from the unpacked f32 path (per-lane partial sums + a halving
// tree) only by f32 rounding; a model uses one of the two for every n.
#pragma once

#include <cstdint>

#include "core/aligned_buffer.h"
#include "core/dtype.h"
#include "ops/ops.h"
#include "ops/weights.h"

namespace kvinfer::ops::f16 {

// Whether Pack has a layout for `type` on this CPU: F16 or F32, and the CPU
// runs Isa::kAvx512.
bool PacksWeights(DType type);

// The packed copy of w, or an empty buffer when !PacksWeights(w.type).
AlignedBuffer Pack(const WeightView& w);

// y[n, w.rows] = x[n, w.cols] * W^T by the contract above, reading w.packed
// (made by Pack; PacksWeights(w.type) must hold). x and y must not alias.
// Runs where ctx.isa() >= Isa::kAvx512 (ops::MatMul checks).
void MatMul(const MatMulContext& ctx, const WeightView& w, const float* x, int64_t n, float* y);

}  // namespace kvinfer::ops::f16
