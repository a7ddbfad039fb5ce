// A read-only view of a 2-D weight matrix in one of the GGML block layouts.
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

// Output rows per task when y = x W^T (x: [n, cols]) is split over threads:
// a multiple of the kernel's `tile_rows`, with at least `min_macs`
// multiply-adds so a task costs more than handing it out.
inline int64_t RowGrain(int64_t tile_rows, int64_t min_macs, int64_t cols, int64_t n) {
  const int64_t macs_per_row = cols * n > 1 ? cols * n : 1;
  const int64_t rows = (min_macs / macs_per_row + tile_rows - 1) / tile_rows * tile_rows;
  return rows > tile_rows ? rows : tile_rows;
}

}  // namespace kvinfer
