// The attention kernel: a group of query heads against a run of cached keys
// and values, as one partial result of an online (flash-decoding) softmax.
//
// The caller splits a token's context [0, len) into fixed chunks, computes
// one AttentionPartial per chunk (possibly on different threads) and folds
// the partials together in chunk order with MergePartial; FinishPartial then
// normalizes. Because the chunk boundaries depend only on the position and
// the fold is always sequential, the result is bit-identical whether the
// chunks ran on one thread or many, in a prefill batch or in decode.
#pragma once

#include <cstdint>
#include <span>

#include "kv/kv_format.h"
#include "kvinfer/kvinfer.h"

namespace kvinfer::ops {

// `n` consecutive cached positions: keys k[n, head_dim] and values
// v[n, head_dim], each row contiguous (one block's slice of a KV head), in
// the cache's element type (f32, IEEE f16, q8_0 codes, or q4_0's packed
// rows of head_dim / 2 bytes). q8_0 and q4_0 also need the rows' scales,
// k_scale / v_scale [n, KvQ8Blocks(head_dim)].
struct KvSpan {
  const void* k = nullptr;
  const void* v = nullptr;
  int32_t n = 0;
  const uint16_t* k_scale = nullptr;
  const uint16_t* v_scale = nullptr;
};

// Scratch of AttentionPartial, as offsets in floats from its start: the
// scores [group, total] and, for q8_0, the K/V scales widened to f32 [2,
// KvQ8Blocks(head_dim), total], the value weights with the V scales folded
// in [group, KvQ8Blocks(head_dim), total rounded up to 32] (before that, the
// VNNI dot products; with VNNI, the 15-bit weights as int16), room
// to transpose one set of scales [KvQ8Blocks(head_dim), total], the rounded
// query (f32 [group, head_dim]), a factor per head, the
// query's VNNI operand vectors (int32 [group, head_dim / 64, 5, 16]) and
// its int8 codes [group, head_dim]. q4_0 has q8_0's layout and after it
// (from `unpacked`, 64-byte aligned relative to the start) the chunk's K and
// V unpacked to q8_0 codes [2, total, head_dim] and their scales gathered
// [2, total, KvQ8Blocks(head_dim)]: the q8_0 kernel then runs on those. The
// one definition of the layout: the kernel carves its scratch from it.
// The value weights' rows are padded to whole groups of 32 positions (the
// AVX-512 softmax writes 32 positions' int16 weights per store).
constexpr int32_t WeightRowPositions(int32_t total) { return (total + 31) / 32 * 32; }
struct AttentionScratchLayout {
  size_t kv_scales, weights, widen_tmp, query, query_mul, vnni, codes, unpacked, end;
};
constexpr AttentionScratchLayout AttentionScratch(KvPrecision kv_type, int group, int head_dim,
                                                  int32_t total) {
  AttentionScratchLayout l{};
  l.kv_scales = static_cast<size_t>(total) * group;
  if (kv_type != KvPrecision::kQ8_0 && kv_type != KvPrecision::kQ4_0) {
    l.weights = l.widen_tmp = l.query = l.query_mul = l.vnni = l.codes = l.unpacked = l.end =
        l.kv_scales;
    return l;
  }
  const size_t nb = static_cast<size_t>(KvQ8Blocks(head_dim));
  const size_t g = static_cast<size_t>(group);
  const size_t hd = static_cast<size_t>(head_dim);
  l.weights = l.kv_scales + 2 * nb * total;
  l.widen_tmp = l.weights + g * nb * static_cast<size_t>(WeightRowPositions(total));
  l.query = l.widen_tmp + nb * total;
  l.query_mul = l.query + g * hd;
  l.vnni = l.query_mul + g;
  l.codes = l.vnni + g * (hd / 64) * 5 * 16;
  l.unpacked = l.end = l.codes + (g * hd + 3) / 4;
  if (kv_type == KvPrecision::kQ4_0) {
    l.unpacked = (l.end + 15) / 16 * 16;
    const size_t rows = 2 * static_cast<size_t>(total);
    l.end = l.unpacked + (rows * hd + rows * nb * 2 + 3) / 4;
  }
  return l;
}

constexpr size_t AttentionScratchFloats(KvPrecision kv_type, int group, int head_dim, int32_t total) {
  return AttentionScratch(kv_type, group, head_dim, total).end;
}

// For query heads q[group, head_dim] against the positions in `spans` (in
// order; `total` = sum of their n, > 0), with s[h, j] = scale * q_h . k_j:
//   m[h] = max_j s[h, j]
//   l[h] = sum_j exp(s[h, j] - m[h])
//   o[h, :] = sum_j exp(s[h, j] - m[h]) * v_j           (not yet divided by l)
// scratch holds AttentionScratchFloats(kv_type, group, head_dim, total)
// floats. o is [group, head_dim]. f16 and q8_0 K/V are widened
// (dequantized) to f32 as they are loaded and the arithmetic is f32; q4_0
// K/V are unpacked to q8_0 codes (same scales) and take q8_0's path. With
// q8_0, on every target: q is first rounded to int8 (one scale per head,
// max|q_h| / 127), so that AVX-512 VNNI can compute the scores as integer
// dot products (there: per 32-element block, exact, then times the block's
// scale, the blocks summed in order, then times scale * max|q_h| / 127);
// and a value row enters o as the sum over its blocks b of
// f32(exp(s[h, j] - m[h]) * d_jb) * codes, the weight rounded once with the
// block's scale folded in (l sums the unscaled exp). With AVX-512 VNNI and
// head_dim a multiple of 64 up to 256 that weight is rounded further, to a
// 15-bit fraction of the chunk's largest scale of the block, D_b, and the
// values are exact integer dot products: o gets D_b / 32767 * sum_j
// round(exp(s[h, j] - m[h]) * d_jb / D_b * 32767) * codes, an error of at
// most 2^-16 D_b per position, far below the codes' own half step.
void AttentionPartial(const float* q, int group, int head_dim, float scale, KvPrecision kv_type,
                      std::span<const KvSpan> spans, int32_t total, float* scratch, float* m,
                      float* l, float* o);

// Folds partial (m2, l2, o2) into the running state (m, l, o):
//   M = max(m, m2); l = l e^(m - M) + l2 e^(m2 - M); o = o e^(m - M) + o2 e^(m2 - M).
void MergePartial(int group, int head_dim, const float* m2, const float* l2, const float* o2,
                  float* m, float* l, float* o);

// out[h, :] = o[h, :] / l[h].
void FinishPartial(int group, int head_dim, const float* l, const float* o, float* out);

}  // namespace kvinfer::ops
