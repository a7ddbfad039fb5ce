// The int8-activation MatMul for Q4_0 / Q4_1 / Q8_0 weights (private to ops;
// ops::MatMul routes here when the context's ActivationPrecision is kInt8).
//
// Activations are quantized once per call, per token and per 32-element
// block b (like GGML's Q8_0 / Q8_1), in f32 with IEEE rounding:
//   amax = max_j |x_j|          d = amax / 127.0f
//   id   = d != 0 ? 1.0f / d : 0.0f
//   q_j  = round-half-to-even(x_j * id)     (in [-127, 127] for finite x)
//   sum  = sum_j q_j (int32)    s = d * (float)sum
// Every step is one correctly rounded f32 operation, so any implementation
// (the SIMD quantizers here, NumPy's float32 in tools/reference) gets the
// same q, d and s bits.
//
// Output y[t, r], for weight blocks with fp16 scale dw (and min mw for Q4_1)
// and integer codes c_j (Q8_0: int8; Q4_0: nibble - 8; Q4_1: nibble):
//   acc = 0.0f
//   for b = 0, 1, ..., cols/32 - 1 (in this order):
//     isum = sum_j c_j * q_j                      exact int32 (|isum| < 2^20)
//     acc  = fma(dw * dx, (float)isum, acc)       dw * dx rounded to f32 first
//     acc  = fma(mw, s, acc)                      Q4_1 only
//   y = acc
// (float)isum is exact, so the only roundings are the product of scales and
// the fused multiply-adds of one sequential chain. The result is therefore
// the same bits for every kernel, every ISA, every n, tile and thread split
// (tests: MatMulInt8Test.*, MatMulBatchTest.*). Compared with the f32 path,
// the error is dominated by quantizing x: |q_j d - x_j| <= d / 2 per element.
//
// Kernels put one output per SIMD lane so that the chain above is one
// vector FMA per block: 16 (AVX-512) or 8 (AVX2) weight rows are transposed
// in registers so that lane i holds 4 consecutive codes of row i, and each
// 4-code chunk is multiplied by 4 broadcast activation bytes (AVX-512 VNNI
// vpdpbusd; AVX2 vpmaddubsw + vpmaddwd). Up to kTokTile tokens share each
// transposed weight tile; for larger batches a row tile is decoded once into
// an L1-resident scratch and every token tile reads it from there.
#pragma once

#include <cstdint>
#include <span>

#include "core/aligned_buffer.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/weights.h"

namespace kvinfer::ops::int8 {

// Types this path handles: Q4_0, Q4_1, Q8_0.
bool IsInt8Type(DType t);

// Whether ops::MatMul takes this path for the int8 types: under
// ActivationPrecision::kInt8, where a SIMD kernel runs (or an instruction
// set is forced for a test); with only the scalar kernel (no AVX2,
// non-x86) the f32 path is much faster, so it is used instead. The kernel
// is ctx.isa()'s: scalar, AVX2 (also for AVX-512 without VNNI) or AVX-512
// VNNI.
bool TakesInt8Path(const MatMulContext& ctx);

// Quantizes x[n, cols] (cols % 32 == 0) as above: q[n, cols], and per block
// (blocks = cols / 32) d[n, blocks], s[n, blocks], sum[n, blocks].
// `isa` picks the quantizer (every one gives the same bits).
void QuantizeActivations(Isa isa, const float* x, int64_t n, int64_t cols, int8_t* q, float* d,
                         float* s, int32_t* sum);

// y[n, w.rows] = x[n, w.cols] * W^T by the formula above. w must be one of
// the IsInt8Type types with a valid shape (ops::MatMul checks).
void MatMul(const MatMulContext& ctx, const WeightView& w, const float* x, int64_t n, float* y);

// ops::MatMulMany for weights of one int8 type and width (at most 8): x is
// quantized once, and the weights' row tiles are one ParallelFor.
void MatMulMany(const MatMulContext& ctx, std::span<const WeightView* const> ws, const float* x,
                int64_t n, std::span<float* const> ys);

// Packed weights. The AVX-512 VNNI kernel spends most of a decode step
// gathering 16 rows' block headers and transposing their codes into lanes;
// Pack does that once at load. Layout: tiles of 16 rows (tile t = rows
// [16t, 16t + 16), zero rows past the end), tile_bytes apart (a multiple of
// 64); in a tile, per 32-element block b:
//   codes  at b * C:  C / 64 chunks of 64 bytes; chunk k holds, for row
//          i = 0..15, bytes 4k..4k+3 of the row's codes (Q4: the 16 qs
//          bytes, C = 256; Q8_0: the 32 codes + 128 as u8, C = 512)
//   d      at blocks * C + b * 32:        the 16 rows' fp16 scales
//   m      at blocks * (C + 32) + b * 32: the 16 rows' fp16 mins (Q4_1)
// so a block of 16 rows is 4 (8) aligned vector loads and one fp16 vector.
// The kernel computes the same formula from it: the same bits.
//
// Whether Pack has a layout for `type` on this CPU (an int8 type, and the
// CPU runs AVX-512 VNNI). Kernels of other sets read the unpacked rows.
bool PacksWeights(DType type);
// The packed copy of w, or an empty buffer when !PacksWeights(w.type).
AlignedBuffer Pack(const WeightView& w);

}  // namespace kvinfer::ops::int8
