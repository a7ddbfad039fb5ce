// The AVX-512 VNNI kernel of the int8 MatMul (private to ops; matmul_int8.cpp
// dispatches).
//
// AVX-512 VNNI: 16 weight rows per tile, lane i = row i, vpdpbusd on 4
// codes x 4 broadcast activation bytes per lane; reads w.packed (the packed
// layout of matmul_int8.h) when set, else the GGML rows, transposed in
// registers. Up to 8 tokens share a transposed tile; for more, a row tile is
// decoded once into the thread's scratch and every token tile reads it.
// Compiled with target attributes: call these only where
// CpuRuns(Isa::kAvx512Vnni) (ops/dispatch.h). The formula, and so every result bit,
// is matmul_int8.h's.
#pragma once

#include <cstdint>

#include "ops/matmul_int8_blocks.h"
#include "ops/matmul_scratch.h"
#include "ops/weights.h"

#if defined(__x86_64__) || defined(__i386__)
#define KVINFER_TARGET_VNNI \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

namespace kvinfer::ops::int8::x86 {

// One 32-element block of activations quantized (matmul_int8.h's formula).
KVINFER_TARGET_VNNI void QuantizeBlockAvx512(const float* x, int8_t* q, float* d_out,
                                            float* s_out, int32_t* sum_out);

// Rows [r_begin, r_end) of y[n, w.rows] = x W^T from the quantized
// activations `a`, for w of an int8 type; `scratch`: the calling thread's.
void MatMulRowsVnni(const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
                    int64_t r_end, MatMulScratch& scratch);

}  // namespace kvinfer::ops::int8::x86

#endif  // defined(__x86_64__) || defined(__i386__)
