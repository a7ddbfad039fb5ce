// Weight matrices as the kernels see them (WeightView) and how a product
// with one is split over threads.
#pragma once

#include <cstdint>

#include "core/weight_view.h"

namespace kvinfer {

// Output rows per task when y = x W^T (x: [n, cols]) is split over threads:
// a multiple of the kernel's `tile_rows`, with at least `min_macs`
// multiply-adds so a task costs more than handing it out.
inline int64_t RowGrain(int64_t tile_rows, int64_t min_macs, int64_t cols, int64_t n) {
  const int64_t macs_per_row = cols * n > 1 ? cols * n : 1;
  const int64_t rows = (min_macs / macs_per_row + tile_rows - 1) / tile_rows * tile_rows;
  return rows > tile_rows ? rows : tile_rows;
}

}  // namespace kvinfer
