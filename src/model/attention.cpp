// Attention over the paged KV cache: each token of a ragged batch attends to
// positions [0, pos] of its own sequence, reading K/V through the sequence's
// block table. Kept apart from the rest of the forward pass because it is
// the one step whose cost grows with context.
//
// Work unit: (token, KV head, chunk). A token's context is cut into chunks
// of kChunk positions at fixed boundaries (0, kChunk, 2 kChunk, ...); each
// chunk gives one partial softmax result (ops::AttentionPartial) for the
// `group` query heads sharing the KV head, and the partials are folded in
// chunk order. How the work is spread never changes the arithmetic:
// - many (token, KV head) pairs (prefill, batched decode): one task per
//   pair, folding its chunks as it goes;
// - few pairs (decode of one or two sequences, where 3 KV heads would leave
//   a core idle a third of the time): one task per chunk, partials stored,
//   then folded in the same order — flash-decoding's split-KV — by
//   whichever thread computes a pair's last chunk, so the folds of
//   different pairs run side by side and alongside other chunks.
// So a token's attention output has the same bits in decode and in a
// prefill batch, on one thread or many.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "model/forward.h"
#include "ops/attention.h"

namespace kvinfer {
namespace {

// Positions per partial. Large enough that a chunk's per-call overhead is
// small next to its K/V traffic (256 x head_dim 64 x 8 B = 128 KiB), small
// enough that a 2048-token context gives 8 chunks per KV head to spread.
constexpr int32_t kChunk = 256;

int32_t NumChunks(int32_t len) { return (len + kChunk - 1) / kChunk; }

}  // namespace

void ModelRunner::Attention(int layer, const ForwardBatch& batch, const KvCache& cache,
                            bool parallel) {
  const ModelConfig& c = config_;
  const int32_t n = batch.size();
  const int group = c.n_heads / c.n_kv_heads;
  const int hd = c.head_dim;
  const int n_kv = c.n_kv_heads;
  const int bs = cache.block_size();
  const KvPrecision kv_type = cache.precision();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int threads = pool_ != nullptr ? pool_->num_threads() : 1;
  const bool use_pool = pool_ != nullptr && parallel && threads > 1;
  const int64_t pairs = static_cast<int64_t>(n) * n_kv;

  // One partial: m[group], l[group], o[group, hd].
  const size_t part_floats = static_cast<size_t>(group) * (hd + 2);
  // Per-thread scratch: the kernel's (scores [group, kChunk], ...), a partial
  // and a running state.
  const size_t kernel_floats = ops::AttentionScratchFloats(kv_type, group, hd, kChunk);
  const size_t scratch_floats = kernel_floats + 2 * part_floats;
  for (std::vector<float>& s : scores_) {
    if (s.size() < scratch_floats) s.resize(scratch_floats);
  }
  attn_spans_.resize(static_cast<size_t>(threads));

  auto q_of = [&](int32_t i, int g) {
    return q_.data() + static_cast<size_t>(i) * c.q_dim() + static_cast<size_t>(g) * group * hd;
  };
  // The partial of token i, KV head g, chunk ch into part[part_floats].
  auto compute_chunk = [&](int32_t i, int g, int32_t ch, int thread, float* part) {
    const int32_t len = batch.positions[i] + 1;
    const int32_t begin = ch * kChunk;
    const int32_t end = std::min(len, begin + kChunk);
    const std::span<const int32_t> table = cache.block_table(batch.seq_ids[batch.seq_index[i]]);
    std::vector<ops::KvSpan>& spans = attn_spans_[static_cast<size_t>(thread)];
    spans.clear();
    for (int32_t j = begin; j < end;) {
      const int32_t block = table[j / bs];
      const int32_t off = j % bs;
      const int32_t m = std::min(bs - off, end - j);
      ops::KvSpan& sp =
          spans.emplace_back(cache.Keys(layer, block, g, off), cache.Values(layer, block, g, off), m);
      if (kv_type == KvPrecision::kQ8_0 || kv_type == KvPrecision::kQ4_0) {
        sp.k_scale = cache.KeyScales(layer, block, g, off);
        sp.v_scale = cache.ValueScales(layer, block, g, off);
      }
      j += m;
    }
    float* scores = scores_[static_cast<size_t>(thread)].data();
    ops::AttentionPartial(q_of(i, g), group, hd, scale, kv_type, spans, end - begin, scores, part,
                          part + group, part + 2 * group);
  };
  auto fold = [&](const float* part, float* state) {
    ops::MergePartial(group, hd, part, part + group, part + 2 * group, state, state + group,
                      state + 2 * group);
  };
  auto finish = [&](int32_t i, int g, const float* state) {
    float* out = attn_.data() + static_cast<size_t>(i) * c.q_dim() + static_cast<size_t>(g) * group * hd;
    ops::FinishPartial(group, hd, state + group, state + 2 * group, out);
  };

  const bool split = use_pool && pairs < 2 * threads;
  if (!split) {
    auto run = [&](int64_t begin, int64_t end, int thread) {
      float* scratch = scores_[static_cast<size_t>(thread)].data() + kernel_floats;
      float* part = scratch;
      float* state = scratch + part_floats;
      for (int64_t task = begin; task < end; ++task) {
        // Last pairs first: in a prefill the later tokens attend to more
        // positions, and handing out the long tasks first lets the short
        // ones even out the threads at the end.
        const int64_t pair = pairs - 1 - task;
        const int32_t i = static_cast<int32_t>(pair / n_kv);
        const int g = static_cast<int>(pair % n_kv);
        const int32_t chunks = NumChunks(batch.positions[i] + 1);
        compute_chunk(i, g, 0, thread, state);
        for (int32_t ch = 1; ch < chunks; ++ch) {
          compute_chunk(i, g, ch, thread, part);
          fold(part, state);
        }
        finish(i, g, state);
      }
    };
    if (use_pool) {
      pool_->ParallelFor(pairs, 1, run);
    } else {
      run(0, pairs, 0);
    }
    return;
  }

  // Split-KV: one task per chunk; a pair's folds, in chunk order, by the
  // thread that finishes its last chunk.
  attn_first_chunk_.resize(static_cast<size_t>(pairs) + 1);
  attn_chunks_left_.resize(static_cast<size_t>(pairs));
  int32_t total_chunks = 0;
  for (int64_t p = 0; p < pairs; ++p) {
    const int32_t chunks = NumChunks(batch.positions[p / n_kv] + 1);
    attn_first_chunk_[static_cast<size_t>(p)] = total_chunks;
    attn_chunks_left_[static_cast<size_t>(p)] = chunks;
    total_chunks += chunks;
  }
  attn_first_chunk_[static_cast<size_t>(pairs)] = total_chunks;
  const size_t need = static_cast<size_t>(total_chunks) * part_floats;
  if (attn_partials_.size() < need) attn_partials_.resize(need);
  auto fold_pair = [&](int64_t p) {
    const int32_t first = attn_first_chunk_[static_cast<size_t>(p)];
    float* state = attn_partials_.data() + static_cast<size_t>(first) * part_floats;
    for (int32_t t = first + 1; t < attn_first_chunk_[static_cast<size_t>(p) + 1]; ++t) {
      fold(attn_partials_.data() + static_cast<size_t>(t) * part_floats, state);
    }
    finish(static_cast<int32_t>(p / n_kv), static_cast<int>(p % n_kv), state);
  };
  pool_->ParallelFor(total_chunks, 1, [&](int64_t begin, int64_t end, int thread) {
    for (int64_t t = begin; t < end; ++t) {
      // The pair owning chunk t (pairs is small: a linear scan).
      int64_t p = 0;
      while (attn_first_chunk_[static_cast<size_t>(p) + 1] <= t) ++p;
      const int32_t ch = static_cast<int32_t>(t) - attn_first_chunk_[static_cast<size_t>(p)];
      compute_chunk(static_cast<int32_t>(p / n_kv), static_cast<int>(p % n_kv), ch, thread,
                    attn_partials_.data() + static_cast<size_t>(t) * part_floats);
      // The release half publishes this chunk's partial; the acquire half
      // of the last decrement sees every other chunk's.
      std::atomic_ref<int32_t> left(attn_chunks_left_[static_cast<size_t>(p)]);
      if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) fold_pair(p);
    }
  });
}

}  // namespace kvinfer
