// The scratch of the MatMul kernels, one per thread of a MatMulContext
// (ops.h): buffers grown to the largest call and reused. A kernel task uses
// the one of its thread only; the caller's (thread 0) also holds what one
// call shares with its tasks (the quantized activations, read by all).
#pragma once

#include <cstdint>
#include <vector>

namespace kvinfer::ops {

struct MatMulScratch {
  // int8 path, per thread: a last row tile zero-padded to the full tile,
  // and a row tile decoded once for every token tile (x86 kernels).
  std::vector<uint8_t> tile_pad;
  std::vector<uint8_t> tile_decoded;
  // Packed F16 path, per thread: one panel pair widened to f32.
  std::vector<uint8_t> panels;
  // The caller's, per call: the int8-quantized activations (q [n, cols];
  // per block d, s, sum and the kernels' bias [n, cols / 32]).
  std::vector<int8_t> act_q;
  std::vector<float> act_d, act_s;
  std::vector<int32_t> act_sum, act_bias;
  // The caller's: a 64-byte aligned copy of a batch's activations (f32 path).
  std::vector<uint8_t> x_aligned;
};

}  // namespace kvinfer::ops
