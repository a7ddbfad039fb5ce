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

#include "kvinfer/kvinfer.h"

namespace kvinfer::ops {

// `n` consecutive cached positions: keys k[n, head_dim] and values
// v[n, head_dim], each row contiguous (one block's slice of a KV head), in
// the cache's element type (f32 or IEEE f16).
struct KvSpan {
  const void* k = nullptr;
  const void* v = nullptr;
  int32_t n = 0;
};

// For query heads q[group, head_dim] against the positions in `spans` (in
// order; `total` = sum of their n, > 0), with s[h, j] = scale * q_h . k_j:
//   m[h] = max_j s[h, j]
//   l[h] = sum_j exp(s[h, j] - m[h])
//   o[h, :] = sum_j exp(s[h, j] - m[h]) * v_j           (not yet divided by l)
// scratch holds group * total floats. o is [group, head_dim]. f16 K/V are
// widened to f32 as they are loaded; all arithmetic is f32.
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
