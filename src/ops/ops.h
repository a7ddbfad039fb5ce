// Compute kernels. Every optimized kernel here has a scalar reference in
// ops/reference.h and a test comparing the two (tests/ops_test.cpp).
//
// Shapes are given in comments as [dim0, dim1] row-major; all float buffers
// are caller-owned and may be unaligned unless stated.
#pragma once

#include <cstdint>
#include <span>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "ops/weights.h"

namespace kvinfer::ops {

// The SIMD target chosen at run time ("AVX3", "AVX2", "SSE4", "EMU128"...).
const char* SimdTargetName();

// y[n, w.rows] = x[n, w.cols] * W^T, for every IsSupportedWeight type.
// w.cols must be a multiple of the type's block size. Work is split over
// `pool` by output rows. x and y must not alias.
void MatMul(const WeightView& w, const float* x, int64_t n, float* y, ThreadPool* pool);

// Products of the same activations with several weights of one type and
// width (q/k/v, gate/up): ys[i][n, ws[i]->rows] = x[n, cols] * ws[i]^T.
// The same bits as one MatMul per weight, in one hand-out of work to the
// threads (and, on the int8 path, one quantization of x) instead of one per
// weight: at decode, where each product takes microseconds, the threads'
// wait at every job's end is a large part of the step.
void MatMulMany(std::span<const WeightView* const> ws, const float* x, int64_t n,
                std::span<float* const> ys, ThreadPool* pool);

// A copy of w rearranged into the layout of the fastest MatMul kernel this
// CPU runs, when that kernel has one (AVX-512 VNNI for Q4_0 / Q4_1 / Q8_0:
// 16-row tiles in register order, the same result bits; AVX-512 for F16 /
// F32: 16-row column panels for an outer-product kernel whose results differ
// from the unpacked path by f32 rounding only); an empty buffer otherwise.
// Point w.packed at it (and keep it alive) and MatMul reads it instead of
// w.data.
AlignedBuffer PackWeights(const WeightView& w);

// dst[n] = row `r` of w, dequantized to f32 (embedding lookup).
void DequantizeRow(const WeightView& w, int64_t r, float* dst);

// out[n] = x[n] / sqrt(mean(x^2) + eps) * weight[n]. out may alias x.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[n] = (x - mean) / sqrt(var + eps) * weight + bias. out may alias x.
void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps,
               float* out);

// gate[n] = silu(gate) * up (SwiGLU). In place on gate.
void SiluMul(float* gate, const float* up, int64_t n);

// x[n] = gelu_tanh(x). In place.
void GeluTanh(float* x, int64_t n);

// y[n] += x[n].
void Add(float* y, const float* x, int64_t n);

// Rotary embedding, GGML "normal" mode (the Llama layout after GGUF's Q/K
// permutation): for each head, pairs (x[2i], x[2i+1]) for 2i < rope_dims are
// rotated by pos * theta_base^(-2i / rope_dims). x is [num_heads, head_dim].
void RopeNorm(float* x, int num_heads, int head_dim, int rope_dims, int32_t pos, float theta_base);

// RopeNorm in its two steps, for callers that rotate many vectors at one
// position (every layer's q and k of a token): the cos and sin of each
// pair's angle (cs, sn: [rope_dims / 2]; two transcendentals in double per
// pair), then the rotation. RopeNorm(x, ..., pos, theta) is exactly
// RopeTable(pos, rope_dims, theta, cs, sn) + RopeRotate(x, ..., cs, sn).
void RopeTable(int32_t pos, int rope_dims, float theta_base, float* cs, float* sn);
void RopeRotate(float* x, int num_heads, int head_dim, int rope_dims, const float* cs,
                const float* sn);

// Numerically stable in-place softmax over x[n].
void Softmax(float* x, int64_t n);

// Dot product of two f32 vectors.
float Dot(const float* a, const float* b, int64_t n);

// y[n] += a * x[n].
void Axpy(float a, const float* x, float* y, int64_t n);

}  // namespace kvinfer::ops

namespace kvinfer::ops {

// What MatMul does with the activations multiplying Q4_0 / Q4_1 / Q8_0
// weights: kInt8 (the default) quantizes them per token and per 32-element
// block to int8 and uses integer dot products (formula in ops/matmul_int8.h;
// ~the precision of llama.cpp's Q8_0 / Q8_1 activations); kF32 keeps them f32
// (the exact f32 path). Process-wide; set it before running a model, not
// while MatMuls run. Other weight types always use f32 activations, and so
// does kInt8 on CPUs without AVX2 (only a slow scalar int8 kernel there).
enum class ActivationPrecision { kInt8, kF32 };
void SetActivationPrecision(ActivationPrecision p);
ActivationPrecision GetActivationPrecision();

}  // namespace kvinfer::ops
