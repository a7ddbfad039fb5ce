// Attention over the paged KV cache: each token of a ragged batch attends to
// positions [0, pos] of its own sequence, reading K/V through the sequence's
// block table. Kept apart from the rest of the forward pass because it is
// the one kernel whose cost grows with context.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/forward.h"
#include "ops/ops.h"

namespace kvinfer {

void ModelRunner::Attention(int layer, const ForwardBatch& batch, const KvCache& cache,
                            bool parallel) {
  const ModelConfig& c = config_;
  const int32_t n = batch.size();
  const int group = c.n_heads / c.n_kv_heads;
  const int hd = c.head_dim;
  const int bs = cache.block_size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t tasks = static_cast<int64_t>(n) * c.n_kv_heads;

  auto run = [&](int64_t begin, int64_t end, int thread) {
    float* scores = scores_[thread].data();  // [group, len]
    for (int64_t task = begin; task < end; ++task) {
      const int32_t i = static_cast<int32_t>(task / c.n_kv_heads);
      const int g = static_cast<int>(task % c.n_kv_heads);
      const int32_t len = batch.positions[i] + 1;
      const int32_t seq = batch.seq_ids[batch.seq_index[i]];
      const std::span<const int32_t> table = cache.block_table(seq);
      const float* q = q_.data() + static_cast<size_t>(i) * c.q_dim() + static_cast<size_t>(g) * group * hd;
      float* out = attn_.data() + static_cast<size_t>(i) * c.q_dim() + static_cast<size_t>(g) * group * hd;

      // Scores: q_h . k_j * scale for every position j < len, reading each
      // key once for all `group` query heads that share it.
      for (int32_t j0 = 0; j0 < len; j0 += bs) {
        const float* kb = cache.Keys(layer, table[j0 / bs], g);
        const int32_t m = std::min(bs, len - j0);
        for (int32_t t = 0; t < m; ++t) {
          const float* kj = kb + static_cast<size_t>(t) * hd;
          for (int h = 0; h < group; ++h) {
            scores[static_cast<size_t>(h) * len + j0 + t] = ops::Dot(q + h * hd, kj, hd) * scale;
          }
        }
      }
      for (int h = 0; h < group; ++h) ops::Softmax(scores + static_cast<size_t>(h) * len, len);
      std::memset(out, 0, sizeof(float) * group * hd);
      for (int32_t j0 = 0; j0 < len; j0 += bs) {
        const float* vb = cache.Values(layer, table[j0 / bs], g);
        const int32_t m = std::min(bs, len - j0);
        for (int32_t t = 0; t < m; ++t) {
          const float* vj = vb + static_cast<size_t>(t) * hd;
          for (int h = 0; h < group; ++h) {
            ops::Axpy(scores[static_cast<size_t>(h) * len + j0 + t], vj, out + h * hd, hd);
          }
        }
      }
    }
  };
  if (pool_ != nullptr && parallel) {
    pool_->ParallelFor(tasks, 1, run);
  } else {
    run(0, tasks, 0);
  }
}

}  // namespace kvinfer
