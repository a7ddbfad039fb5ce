// A read-only view of a 2-D weight matrix in one of the GGML block layouts.
// Readers of model files (io/) produce these; kernels (ops/) consume them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace kvinfer {

// Row-major [rows, cols]: row r holds the `cols` input weights of output r,
// contiguous, in `type`'s block layout (GGUF's dims are {cols, rows}).
struct WeightView {
  DType type = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  size_t row_bytes = 0;
  // The same weights rearranged at load for the fastest kernel this CPU runs
  // (ops::PackWeights), or nullptr. Kernels that have a packed layout read
  // this instead of `data` and give the same bits; every other path (other
  // kernels, DequantizeRow) reads `data`, which stays valid.
  const void* packed = nullptr;

  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_bytes;
  }
};

}  // namespace kvinfer
