// Scalar reference kernels: the plainest correct code, used only by tests
// (and as the portable definition of what the optimized kernels compute).
#pragma once

#include <cstdint>

#include "ops/weights.h"

namespace kvinfer::ops::ref {

void DequantizeRow(const WeightView& w, int64_t r, float* dst);
// y[n, w.rows] = x[n, w.cols] * W^T, accumulating in double.
void MatMul(const WeightView& w, const float* x, int64_t n, float* y);
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);
void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps,
               float* out);
void SiluMul(float* gate, const float* up, int64_t n);
void GeluTanh(float* x, int64_t n);
void RopeNorm(float* x, int num_heads, int head_dim, int rope_dims, int32_t pos,
              float theta_base);
void Softmax(float* x, int64_t n);
float Dot(const float* a, const float* b, int64_t n);
void Add(float* y, const float* x, int64_t n);
void Axpy(float a, const float* x, float* y, int64_t n);
int64_t FindNonFinite(const float* x, int64_t n);

}  // namespace kvinfer::ops::ref

namespace kvinfer::ops::ref {

// The int8-activation path's formula (ops/matmul_int8.h) written out
// plainly: x quantized per token and 32-block, then per output the exact
// integer block sums chained by f32 fused multiply-adds in block order.
// Every int8 kernel must match it bit for bit. w: Q4_0, Q4_1 or Q8_0.
void QuantizeActivationsQ8(const float* x, int64_t cols, int8_t* q, float* d, float* s);
void MatMulInt8(const WeightView& w, const float* x, int64_t n, float* y);

}  // namespace kvinfer::ops::ref
