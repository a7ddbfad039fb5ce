// What the int8 MatMul's kernels share (private to ops): the block layouts
// of the weight types, the quantized activations of one call, the
// zero-padded last row tile, and the packed layout of matmul_int8.h. The
// portable kernel is in matmul_int8.cpp, the x86 ones in
// x86/matmul_int8_{avx2,vnni}.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "ops/weights.h"

namespace kvinfer::ops::int8 {

constexpr size_t kBlock = 32;  // elements per activation / weight block

// Byte layout of one weight block.
template <DType kType>
struct Blk;
template <>
struct Blk<DType::kQ4_0> {
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static constexpr size_t kQs = offsetof(BlockQ4_0, qs);
  static constexpr bool kNibbles = true;
  static constexpr bool kMin = false;
};
template <>
struct Blk<DType::kQ4_1> {
  static constexpr size_t kBytes = sizeof(BlockQ4_1);
  static constexpr size_t kQs = offsetof(BlockQ4_1, qs);
  static constexpr bool kNibbles = true;
  static constexpr bool kMin = true;
};
template <>
struct Blk<DType::kQ8_0> {
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static constexpr size_t kQs = offsetof(BlockQ8_0, qs);
  static constexpr bool kNibbles = false;
  static constexpr bool kMin = false;
};

inline uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline int32_t Load32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The quantized activations of one call. `bias` is what the SIMD kernels
// start each block's integer sum at: their codes are offset (Q4_0 nibbles
// are c + 8, VNNI's Q8_0 codes are c + 128) and bias = -offset * sum.
struct Acts {
  const int8_t* q;      // [n, cols]
  const float* d;       // [n, blocks]
  const float* s;       // [n, blocks]
  const int32_t* bias;  // [n, blocks]
  size_t cols;
  size_t blocks;
};

// Rows [r0, r0 + kRows) of w copied into a zero-padded tile when fewer than
// kRows remain, so that every tile has kRows rows at a uniform stride. Zero
// bytes decode to scale 0; their outputs are never stored.
inline const uint8_t* TileBase(const WeightView& w, int64_t r0, int64_t r_end, int rows_per_tile,
                               std::vector<uint8_t>& pad, int* valid) {
  const int64_t left = r_end - r0;
  if (left >= rows_per_tile) {
    *valid = rows_per_tile;
    return w.row(r0);
  }
  *valid = static_cast<int>(left);
  pad.assign(w.row_bytes * static_cast<size_t>(rows_per_tile), 0);
  for (int64_t r = 0; r < left; ++r) std::memcpy(&pad[r * w.row_bytes], w.row(r0 + r), w.row_bytes);
  return pad.data();
}

// The packed layout (matmul_int8.h): per 16-row tile, every block's codes in
// the order the VNNI kernel's registers hold them, then the blocks' scales.

struct PackedLayout {
  size_t code_bytes;  // per block: 4 (Q4) or 8 (Q8_0) chunks of 64 bytes
  size_t scales;      // offset of the d scales in a tile (blocks x 32 bytes)
  size_t mins;        // offset of the m scales (Q4_1)
  size_t tile_bytes;  // tile stride, a multiple of 64
};

inline PackedLayout LayoutOf(DType type, size_t blocks) {
  PackedLayout l{};
  l.code_bytes = type == DType::kQ8_0 ? 512 : 256;
  l.scales = blocks * l.code_bytes;
  l.mins = l.scales + blocks * 32;
  const size_t end = type == DType::kQ4_1 ? l.mins + blocks * 32 : l.mins;
  l.tile_bytes = (end + 63) / 64 * 64;
  return l;
}

}  // namespace kvinfer::ops::int8
