// Compute kernels. Every optimized kernel here has a scalar reference in
// ops/reference.h and a test comparing the two (tests/ops_test.cpp).
//
// Shapes are given in comments as [dim0, dim1] row-major; all float buffers
// are caller-owned and may be unaligned unless stated.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "kvinfer/kvinfer.h"
#include "ops/dispatch.h"
#include "ops/weights.h"

namespace kvinfer::ops {

// The SIMD target chosen at run time ("AVX3", "AVX2", "SSE4", "EMU128"...).
const char* SimdTargetName();

// The activation precision of the products with Q4_0 / Q4_1 / Q8_0 weights
// (the public enum; what each value computes is described there and, for
// kInt8, in ops/matmul_int8.h).
using kvinfer::ActivationPrecision;

struct MatMulScratch;  // per-thread kernel scratch (ops/matmul_scratch.h)

// What a MatMulContext computes with (below).
struct MatMulOptions {
  ActivationPrecision activation_precision = ActivationPrecision::kInt8;
  // Forces the x86-specific kernels' instruction set (tests and benchmarks;
  // it must be one the CPU runs); nullopt: the best it runs.
  std::optional<Isa> isa;
};

// Everything a matrix product needs besides its operands, owned by the one
// caller that runs it (an engine's model runner): the thread pool, the
// activation precision, the instruction set of the x86-specific kernels, and
// the kernels' scratch, one per thread of the pool (a task takes the one of
// ParallelFor's thread_index), grown to the largest call and reused, so a
// step allocates nothing once warm. Contexts share nothing: two engines in
// one process, each with its own, cannot disturb each other. One context
// serves one MatMul at a time.
class MatMulContext {
 public:
  using Options = MatMulOptions;
  // pool may be null (one thread).
  explicit MatMulContext(ThreadPool* pool, Options options = {});
  ~MatMulContext();
  MatMulContext(const MatMulContext&) = delete;
  MatMulContext& operator=(const MatMulContext&) = delete;

  ThreadPool* pool() const { return pool_; }
  int num_threads() const { return pool_ != nullptr ? pool_->num_threads() : 1; }
  ActivationPrecision activation_precision() const { return options_.activation_precision; }
  Isa isa() const { return isa_; }
  // Whether the instruction set was forced (Options::isa).
  bool isa_forced() const { return options_.isa.has_value(); }
  // The scratch of thread `thread` in [0, num_threads()); thread 0 is the
  // caller's.
  MatMulScratch& scratch(int thread) const;

 private:
  ThreadPool* pool_;
  Options options_;
  Isa isa_;
  std::unique_ptr<MatMulScratch[]> scratch_;
};

// y[n, w.rows] = x[n, w.cols] * W^T, for every IsSupportedWeight type.
// w.cols must be a multiple of the type's block size. Work is split over
// ctx's pool by output rows. x and y must not alias.
void MatMul(const MatMulContext& ctx, const WeightView& w, const float* x, int64_t n, float* y);

// Products of the same activations with several weights of one type and
// width (q/k/v, gate/up): ys[i][n, ws[i]->rows] = x[n, cols] * ws[i]^T.
// The same bits as one MatMul per weight, in one hand-out of work to the
// threads (and, on the int8 path, one quantization of x) instead of one per
// weight: at decode, where each product takes microseconds, the threads'
// wait at every job's end is a large part of the step.
void MatMulMany(const MatMulContext& ctx, std::span<const WeightView* const> ws, const float* x,
                int64_t n, std::span<float* const> ys);

// The same with a context of default options made for this one call (its
// scratch allocated and freed each time): for tests and one-off products.
void MatMul(const WeightView& w, const float* x, int64_t n, float* y, ThreadPool* pool);
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

// Index of the first NaN or +-Inf in x[n], or -1 when every value is
// finite. One streaming pass (the engine runs it on every logits row it
// samples); the scan for the index runs only in a 256-element block that
// holds a non-finite value.
int64_t FindNonFinite(const float* x, int64_t n);

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
