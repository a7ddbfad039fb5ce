// Scalar reference kernels: straightforward loops, double accumulation where
// a sum is involved, no SIMD. Tests compare the optimized kernels to these.

#include "ops/reference.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"

namespace kvinfer::ops::ref {

void DequantizeRow(const WeightView& w, int64_t r, float* dst) {
  KVINFER_CHECK(IsSupportedWeight(w.type));
  KVINFER_CHECK(r >= 0 && r < w.rows);
  const uint8_t* row = w.row(r);
  const int64_t cols = w.cols;
  switch (w.type) {
    case DType::kF32:
      std::memcpy(dst, row, static_cast<size_t>(cols) * sizeof(float));
      return;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        dst[i] = w.type == DType::kF16 ? F16ToF32(h) : BF16ToF32(h);
      }
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < cols / kQK; ++b) {
        BlockQ8_0 blk;
        std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
        const float d = F16ToF32(blk.d);
        for (int j = 0; j < kQK; ++j) dst[b * kQK + j] = d * static_cast<float>(blk.qs[j]);
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < cols / kQK; ++b) {
        BlockQ4_0 blk;
        std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
        const float d = F16ToF32(blk.d);
        for (int j = 0; j < kQK / 2; ++j) {
          dst[b * kQK + j] = d * static_cast<float>((blk.qs[j] & 0xF) - 8);
          dst[b * kQK + j + kQK / 2] = d * static_cast<float>((blk.qs[j] >> 4) - 8);
        }
      }
      return;
    case DType::kQ4_1:
      for (int64_t b = 0; b < cols / kQK; ++b) {
        BlockQ4_1 blk;
        std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
        const float d = F16ToF32(blk.d);
        const float m = F16ToF32(blk.m);
        for (int j = 0; j < kQK / 2; ++j) {
          dst[b * kQK + j] = d * static_cast<float>(blk.qs[j] & 0xF) + m;
          dst[b * kQK + j + kQK / 2] = d * static_cast<float>(blk.qs[j] >> 4) + m;
        }
      }
      return;
    default:
      KVINFER_CHECK_MSG(false, "unsupported weight type {}", DTypeName(w.type));
  }
}

void MatMul(const WeightView& w, const float* x, int64_t n, float* y) {
  std::vector<float> wrow(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRow(w, r, wrow.data());
    for (int64_t t = 0; t < n; ++t) {
      double sum = 0.0;
      for (int64_t i = 0; i < w.cols; ++i) {
        sum += static_cast<double>(wrow[i]) * static_cast<double>(x[t * w.cols + i]);
      }
      y[t * w.rows + r] = static_cast<float>(sum);
    }
  }
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const double scale = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] * scale * weight[i]);
}

void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps,
               float* out) {
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  const double scale = 1.0 / std::sqrt(var + eps);
  for (int64_t i = 0; i < n; ++i) {
    const double v = (x[i] - mean) * scale * weight[i] + (bias != nullptr ? bias[i] : 0.0f);
    out[i] = static_cast<float>(v);
  }
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    gate[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void GeluTanh(float* x, int64_t n) {
  const double k = std::sqrt(2.0 / M_PI);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    x[i] = static_cast<float>(0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v))));
  }
}

void RopeNorm(float* x, int num_heads, int head_dim, int rope_dims, int32_t pos, float theta_base) {
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < rope_dims / 2; ++i) {
      const double angle =
          static_cast<double>(pos) *
          std::pow(static_cast<double>(theta_base), -2.0 * i / static_cast<double>(rope_dims));
      const float c = static_cast<float>(std::cos(angle));
      const float s = static_cast<float>(std::sin(angle));
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * c - b * s;
      v[2 * i + 1] = a * s + b * c;
    }
  }
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - max);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(std::exp(static_cast<double>(x[i]) - max) / sum);
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(sum);
}

void Add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void Axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

int64_t FindNonFinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

}  // namespace kvinfer::ops::ref

namespace kvinfer::ops::ref {

void QuantizeActivationsQ8(const float* x, int64_t cols, int8_t* q, float* d, float* s) {
  KVINFER_CHECK(cols % kQK == 0);
  for (int64_t b = 0; b < cols / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float db = amax / 127.0f;
    const float id = db == 0.0f ? 0.0f : 1.0f / db;
    int32_t sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const float r = std::nearbyint(xb[j] * id);  // ties to even
      q[b * kQK + j] = static_cast<int8_t>(r > 127.0f ? 127.0f : (r >= -128.0f ? r : -128.0f));
      sum += q[b * kQK + j];
    }
    d[b] = db;
    s[b] = db * static_cast<float>(sum);
  }
}

void MatMulInt8(const WeightView& w, const float* x, int64_t n, float* y) {
  KVINFER_CHECK(w.type == DType::kQ4_0 || w.type == DType::kQ4_1 || w.type == DType::kQ8_0);
  KVINFER_CHECK(w.cols % kQK == 0);
  const int64_t blocks = w.cols / kQK;
  std::vector<int8_t> q(static_cast<size_t>(w.cols));
  std::vector<float> d(static_cast<size_t>(blocks)), s(static_cast<size_t>(blocks));
  for (int64_t t = 0; t < n; ++t) {
    QuantizeActivationsQ8(x + t * w.cols, w.cols, q.data(), d.data(), s.data());
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* row = w.row(r);
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        int32_t codes[kQK];
        uint16_t dw_bits = 0, mw_bits = 0;
        if (w.type == DType::kQ8_0) {
          BlockQ8_0 blk;
          std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
          dw_bits = blk.d;
          for (int j = 0; j < kQK; ++j) codes[j] = blk.qs[j];
        } else if (w.type == DType::kQ4_0) {
          BlockQ4_0 blk;
          std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
          dw_bits = blk.d;
          for (int j = 0; j < kQK / 2; ++j) {
            codes[j] = (blk.qs[j] & 0xF) - 8;
            codes[j + kQK / 2] = (blk.qs[j] >> 4) - 8;
          }
        } else {
          BlockQ4_1 blk;
          std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
          dw_bits = blk.d;
          mw_bits = blk.m;
          for (int j = 0; j < kQK / 2; ++j) {
            codes[j] = blk.qs[j] & 0xF;
            codes[j + kQK / 2] = blk.qs[j] >> 4;
          }
        }
        int32_t isum = 0;
        for (int j = 0; j < kQK; ++j) isum += codes[j] * q[b * kQK + j];
        const float scale = F16ToF32(dw_bits) * d[b];
        acc = std::fma(scale, static_cast<float>(isum), acc);
        if (w.type == DType::kQ4_1) acc = std::fma(F16ToF32(mw_bits), s[b], acc);
      }
      y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace kvinfer::ops::ref
