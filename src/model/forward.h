// The forward pass over a ragged batch.
//
// A batch is a flat list of tokens from any number of sequences; each token
// carries its sequence (an index into `seq_ids`) and its position. The pass
// writes every token's K/V into the cache at its position (through the
// sequence's block table, which must already cover it), then lets each
// token attend to positions [0, pos] of its own sequence — nothing else, so
// one sequence can never read another's K/V. Prefill, decode, chunked
// prefill and mixed batches are all this one call; every weight matrix is
// read once per call however many tokens it carries.
//
// Two architectures share the pass (ModelConfig::arch): Llama (RmsNorm,
// RoPE on q/k, SwiGLU, no biases) and GPT-2 (learned position embeddings
// added to the token embedding, LayerNorm with bias, biases on every
// projection, GELU-tanh MLP, no RoPE). Attention is the same code for both.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "kv/kv_cache.h"
#include "model/config.h"
#include "model/weights.h"
#include "ops/attention.h"
#include "ops/ops.h"

namespace kvinfer {

struct ForwardBatch {
  std::vector<int32_t> tokens;       // [n]
  std::vector<int32_t> positions;    // [n]
  std::vector<int32_t> seq_index;    // [n] index into seq_ids
  std::vector<int32_t> seq_ids;      // KvCache sequence ids in this batch
  std::vector<int32_t> logit_rows;   // token indices whose logits are wanted

  void Clear() {
    tokens.clear();
    positions.clear();
    seq_index.clear();
    seq_ids.clear();
    logit_rows.clear();
  }
  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
};

class ModelRunner {
 public:
  // The matrix products run on `pool` with `activations` precision, in a
  // MatMulContext of this runner's own.
  ModelRunner(const ModelConfig& config, const ModelWeights& weights, ThreadPool* pool,
              ActivationPrecision activations = ActivationPrecision::kInt8);

  // logits: resized to [logit_rows.size(), vocab]. Preconditions (checked):
  // tokens in [0, vocab); positions in [0, capacity of the sequence).
  // Updates each sequence's token count to cover its highest position + 1.
  void Forward(const ForwardBatch& batch, KvCache& cache, std::vector<float>* logits);

  const ModelConfig& config() const { return config_; }

 private:
  void EnsureScratch(int32_t n_tokens);
  // fn(begin, end) over token ranges covering [0, n): split across the pool
  // when the n tokens hold enough work (floats_per_token each) to pay for a
  // job, else in one call. Every token's result is the same either way.
  template <class F>
  void ForTokens(int32_t n, int64_t floats_per_token, F&& fn) {
    const int64_t grain = TokenGrain(n, floats_per_token);
    if (grain == 0) {
      fn(int32_t{0}, n);
      return;
    }
    pool_->ParallelFor(n, grain, [&](int64_t begin, int64_t end, int) {
      fn(static_cast<int32_t>(begin), static_cast<int32_t>(end));
    });
  }
  // ForTokens' tokens per task, or 0 to run in the calling thread.
  int64_t TokenGrain(int32_t n, int64_t floats_per_token) const;
  // xn_[i] = the architecture's norm of x[i] (RmsNorm for Llama, LayerNorm
  // with `bias` for GPT-2), for the n rows of x [n, d_model].
  void Norm(const float* x, const float* weight, const float* bias, int32_t n);
  // y[i] += bias for each of the n rows of y [n, dim].
  void AddBias(float* y, const float* bias, int32_t n, int dim);
  // x[i] += y[i] for the n rows of x and y [n, dim] (the residual adds).
  void AddRows(float* x, const float* y, int32_t n, int dim);
  // `parallel`: whether the batch's attention is worth a second thread.
  void Attention(int layer, const ForwardBatch& batch, const KvCache& cache, bool parallel);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  ThreadPool* pool_;
  ops::MatMulContext matmul_;

  // Scratch, grown on demand and reused (no allocation per step once warm).
  std::vector<float> x_;       // [n, d_model] residual stream
  std::vector<float> xn_;      // [n, d_model] normalized
  std::vector<float> q_;       // [n, q_dim]
  std::vector<float> k_;       // [n, kv_dim]
  std::vector<float> v_;       // [n, kv_dim]
  std::vector<float> attn_;    // [n, q_dim]
  std::vector<float> gate_;    // [n, d_ff]
  std::vector<float> up_;      // [n, d_ff]
  std::vector<float> out_;     // [n, d_model]
  std::vector<float> last_;    // [n_logits, d_model]
  std::vector<float> rope_cs_, rope_sn_;  // [n, rope_dims / 2]: each token's rotation
  std::vector<std::vector<float>> scores_;  // per thread: one chunk's scores and partials (attention.cpp)
  // Attention split across threads (attention.cpp): per-chunk partial
  // results, each (token, KV head)'s first chunk, per-thread span lists.
  std::vector<float> attn_partials_;
  std::vector<int32_t> attn_first_chunk_;
  std::vector<int32_t> attn_chunks_left_;  // split-KV: per pair, chunks not yet computed
  std::vector<std::vector<ops::KvSpan>> attn_spans_;
};

}  // namespace kvinfer
