// The x86 AVX-512 parts of the attention kernel (private to ops): the
// kernel's AVX-512 Highway targets (attention.cpp, KVINFER_ATTN_AVX3) call
// them in place of their portable code, for the same results. Compiled with
// target attributes, so call them only from code that runs where
// CpuRuns(Isa::kAvx512) (those targets), and the VNNI ones only where
// UsesQ8Vnni.
//
// AVX-512: the scores of f32 / f16 / q8_0 keys in tiles of 16 rows (a tile
// widened to f32 once, every query head dotted against it, 16 sums reduced
// together), and q8_0 scales of two blocks per row widened and split by
// block. AVX-512 VNNI, for q8_0 and q4_0 K/V: scores as integer dot
// products per 32-element block, the softmax with the value weights rounded
// to 15 bits, and the values as integer dot products (the formulas:
// attention.h).
#pragma once

#include <cstdint>
#include <span>

#include "ops/attention.h"

#if defined(__x86_64__) || defined(__i386__)
// The instruction sets of Highway's AVX-512 target (from which these are
// called), and VNNI.
#define KVINFER_TARGET_AVX512 \
  __attribute__((target("avx2,bmi,bmi2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define KVINFER_TARGET_ATTN_VNNI \
  __attribute__((target("avx2,bmi,bmi2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

namespace kvinfer::ops::x86 {

// Widest head_dim whose 16-row key tile Scores16 widens into a stack
// buffer (16 KiB); f32 keys need no buffer.
constexpr int kMaxTileHeadDim = 256;

// Element type of cached keys for Scores16.
enum class KvElem { kF32, kF16, kQ8 };

// s[h, j] = scale * q_h . k_j for the chunk's keys in `spans` (total rows),
// head_dim hd a multiple of 16 (and at most kMaxTileHeadDim unless f32);
// kv_scales: q8_0's widened scales [2][nb][total] (keys first).
KVINFER_TARGET_AVX512 void Scores16(KvElem elem, const float* q, int group, int hd, float scale,
                                    std::span<const KvSpan> spans, int32_t total,
                                    const float* kv_scales, float* s);

// The q8_0 scales of a chunk's keys (kv = 0) and values (kv = 1) with two
// blocks per row, widened to f32 block-major: out[kv][b][j]; from
// first_kv on.
KVINFER_TARGET_AVX512 void WidenScalesTwoBlocks(std::span<const KvSpan> spans, int32_t total,
                                                int first_kv, float* out);

// Whether q8_0 / q4_0 K/V of head_dim hd take the integer kernels below:
// hd a multiple of 64 up to kMaxTileHeadDim, and the CPU runs AVX-512 VNNI.
bool UsesQ8Vnni(int hd);

// The query codes qc [group, hd] against the keys' codes (q4: q4_0 rows):
// hd 64: the scores s[h][j] = qmul[h] * (dot0 * d0 + dot1 * d1) (K scales
// read from the spans) into `dots`; other hd: the integer dot products
// dots[h][b][j] per block, for ScaleDotsQ8. qv: scratch, int32
// [group][hd / 64][5][16].
void DotsQ8Vnni(bool q4, const int8_t* qc, int group, int hd, std::span<const KvSpan> spans,
                int32_t total, int32_t* qv, const float* qmul, float* dots);

// s[h][j] = qmul[h] * (dots[h][0][j] * ks[0][j] + ... ks[nb - 1][j]): the
// blocks in order, each after the first by one FMA; ks: widened K scales
// [nb][total].
KVINFER_TARGET_ATTN_VNNI void ScaleDotsQ8(const float* dots, const float* ks, const float* qmul,
                                     int group, int nb, int32_t total, float* s);

// The softmax of the scores s [group][total] and the values of the chunk
// (q4: q4_0 rows): m, l and o of attention.h's AttentionPartial. vs: the V
// scales widened [nb][total] (overwritten); wq: scratch, int16
// [group][nb][WeightRowPositions(total)].
void SoftmaxValuesQ8Vnni(bool q4, int group, int hd, std::span<const KvSpan> spans,
                         int32_t total, const float* s, float* vs, int16_t* wq, float* m, float* l,
                         float* o);

}  // namespace kvinfer::ops::x86

#endif  // defined(__x86_64__) || defined(__i386__)
