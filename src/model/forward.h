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
#include <optional>
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

// The tensors a forward pass computes, in the order it computes them
// (kAttnNorm through kFfnResidual once per layer). FindNonFinite names the
// first of them that holds a non-finite value.
enum class ForwardTensor {
  kTokenEmbd,     // x = token_embd[token]                                      [n, d_model]
  kPositionEmbd,  // x += position_embd[pos] (GPT-2)                            [n, d_model]
  kAttnNorm,      // xn = norm(x)                                               [n, d_model]
  kQ,             // q = W_q xn (+ b_q), after RoPE                              [n, q_dim]
  kK,             // k = W_k xn (+ b_k), after RoPE: what the cache stores       [n, kv_dim]
  kV,             // v = W_v xn (+ b_v): what the cache stores                   [n, kv_dim]
  kAttnOut,       // softmax(q K^T / sqrt(head_dim)) V over the cached K/V       [n, q_dim]
  kAttnProj,      // W_o attn_out (+ b_o)                                        [n, d_model]
  kAttnResidual,  // x += attention projection                                  [n, d_model]
  kFfnNorm,       // xn = norm(x)                                               [n, d_model]
  kFfnGate,       // W_gate xn (Llama)                                          [n, d_ff]
  kFfnUp,         // W_up xn (+ b_up)                                           [n, d_ff]
  kFfnAct,        // silu(gate) * up (Llama) or gelu_tanh(up) (GPT-2)           [n, d_ff]
  kFfnDown,       // W_down act (+ b_down)                                      [n, d_model]
  kFfnResidual,   // x += FFN output                                            [n, d_model]
  kOutputNorm,    // norm(x) of the logit rows                                  [n_logits, d_model]
  kLogits,        // W_output norm(x)                                           [n_logits, vocab]
};

// "attention output (attn_out)": what the tensor is, and in parentheses the
// name of the GGUF weight that produced it or of the intermediate.
const char* ForwardTensorName(ForwardTensor t);

// Where a forward pass first produced a non-finite value.
struct NonFiniteSite {
  int layer = -1;  // 0-based, as the file's blk.N; -1 for the embeddings, output norm, logits
  ForwardTensor tensor = ForwardTensor::kTokenEmbd;
  int32_t position = 0;  // of the first token whose row of `tensor` is non-finite
  int32_t token = 0;     // that token's id
  bool nan = false;      // the first non-finite value in that row is NaN (else +-Inf)
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

  // Runs `batch` again, checking every tensor of ForwardTensor after the
  // step that computes it, and returns where the first non-finite value
  // appeared: the earliest step (layer by layer, in ForwardTensor order),
  // and within it the earliest token of the batch. nullopt if every tensor,
  // the logits of batch.logit_rows included, is finite.
  //
  // It writes nothing to the cache: attention reads the K/V that an earlier
  // Forward wrote for these positions. Precondition: for every token of the
  // batch, the cache holds its sequence's K/V for positions [0, pos], each
  // computed from that sequence's tokens at those positions — as it does
  // right after Forward ran over any batch containing these tokens, or over
  // earlier chunks of the sequence. Since a token's values do not depend on
  // the batch it is computed in, the K/V this pass computes are the ones in
  // the cache, so other sequences (forks sharing blocks included) cannot be
  // affected. Costs a forward pass; meant for diagnosing a failure.
  std::optional<NonFiniteSite> FindNonFinite(const ForwardBatch& batch, const KvCache& cache);

  const ModelConfig& config() const { return config_; }

 private:
  // Checks rows [0, rows) of y [rows, width] for FindNonFinite; row r is
  // batch token r, or batch.logit_rows[r] when `logit_rows`.
  struct Probe {
    const ForwardBatch* batch = nullptr;
    std::optional<NonFiniteSite> found;
    bool Check(int layer, ForwardTensor t, const float* y, int32_t rows, int64_t width,
               bool logit_rows = false);
  };
  // The forward pass. `writes`: the cache to store K/V and token counts in
  // (null: store nothing, as for FindNonFinite). `probe`: when set, checks
  // every tensor and returns at the first non-finite one.
  void Run(const ForwardBatch& batch, const KvCache& cache, KvCache* writes,
           std::vector<float>* logits, Probe* probe);
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
