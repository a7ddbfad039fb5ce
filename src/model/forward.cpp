#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "ops/ops.h"

namespace kvinfer {

ModelRunner::ModelRunner(const ModelConfig& config, const ModelWeights& weights, ThreadPool* pool,
                         ActivationPrecision activations)
    : config_(config),
      weights_(weights),
      pool_(pool),
      matmul_(pool, {.activation_precision = activations}) {
  scores_.resize(pool_ != nullptr ? pool_->num_threads() : 1);
}

void ModelRunner::EnsureScratch(int32_t n) {
  const ModelConfig& c = config_;
  auto grow = [](std::vector<float>& v, size_t size) {
    if (v.size() < size) v.resize(size);
  };
  grow(x_, static_cast<size_t>(n) * c.d_model);
  grow(xn_, static_cast<size_t>(n) * c.d_model);
  grow(q_, static_cast<size_t>(n) * c.q_dim());
  grow(k_, static_cast<size_t>(n) * c.kv_dim());
  grow(v_, static_cast<size_t>(n) * c.kv_dim());
  grow(attn_, static_cast<size_t>(n) * c.q_dim());
  grow(gate_, static_cast<size_t>(n) * c.d_ff);
  grow(up_, static_cast<size_t>(n) * c.d_ff);
  grow(out_, static_cast<size_t>(n) * c.d_model);
}

int64_t ModelRunner::TokenGrain(int32_t n, int64_t floats_per_token) const {
  // Below ~16K floats (28 tokens of a 576-wide row) a job's hand-off costs
  // about what the second thread would save.
  constexpr int64_t kMinFloats = 16384;
  if (pool_ == nullptr || pool_->num_threads() == 1 ||
      static_cast<int64_t>(n) * floats_per_token < kMinFloats) {
    return 0;
  }
  return std::max<int64_t>(1, 4096 / std::max<int64_t>(1, floats_per_token));
}

void ModelRunner::Norm(const float* x, const float* weight, const float* bias, int32_t n) {
  const ModelConfig& c = config_;
  const int d = c.d_model;
  ForTokens(n, d, [&](int32_t begin, int32_t end) {
    for (int32_t i = begin; i < end; ++i) {
      const float* xi = x + static_cast<size_t>(i) * d;
      float* out = xn_.data() + static_cast<size_t>(i) * d;
      switch (c.arch) {
        case Arch::kLlama:
          ops::RmsNorm(xi, weight, d, c.norm_eps, out);
          break;
        case Arch::kGpt2:
          ops::LayerNorm(xi, weight, bias, d, c.norm_eps, out);
          break;
      }
    }
  });
}

void ModelRunner::AddBias(float* y, const float* bias, int32_t n, int dim) {
  ForTokens(n, dim, [&](int32_t begin, int32_t end) {
    for (int32_t i = begin; i < end; ++i) ops::Add(y + static_cast<size_t>(i) * dim, bias, dim);
  });
}

void ModelRunner::AddRows(float* x, const float* y, int32_t n, int dim) {
  ForTokens(n, dim, [&](int32_t begin, int32_t end) {
    const size_t at = static_cast<size_t>(begin) * dim;
    ops::Add(x + at, y + at, static_cast<int64_t>(end - begin) * dim);
  });
}

const char* ForwardTensorName(ForwardTensor t) {
  switch (t) {
    case ForwardTensor::kTokenEmbd: return "token embedding (token_embd)";
    case ForwardTensor::kPositionEmbd: return "token + position embedding (position_embd)";
    case ForwardTensor::kAttnNorm: return "attention norm (attn_norm)";
    case ForwardTensor::kQ: return "query projection (attn_q)";
    case ForwardTensor::kK: return "key projection (attn_k)";
    case ForwardTensor::kV: return "value projection (attn_v)";
    case ForwardTensor::kAttnOut: return "attention output (attn_out)";
    case ForwardTensor::kAttnProj: return "attention output projection (attn_output)";
    case ForwardTensor::kAttnResidual: return "residual stream after attention";
    case ForwardTensor::kFfnNorm: return "FFN norm (ffn_norm)";
    case ForwardTensor::kFfnGate: return "FFN gate projection (ffn_gate)";
    case ForwardTensor::kFfnUp: return "FFN up projection (ffn_up)";
    case ForwardTensor::kFfnAct: return "FFN activation (ffn_act)";
    case ForwardTensor::kFfnDown: return "FFN down projection (ffn_down)";
    case ForwardTensor::kFfnResidual: return "residual stream after the FFN";
    case ForwardTensor::kOutputNorm: return "output norm (output_norm)";
    case ForwardTensor::kLogits: return "logits (output)";
  }
  return "?";
}

bool ModelRunner::Probe::Check(int layer, ForwardTensor t, const float* y, int32_t rows,
                               int64_t width, bool logit_rows) {
  for (int32_t r = 0; r < rows; ++r) {
    const float* row = y + static_cast<size_t>(r) * static_cast<size_t>(width);
    const int64_t at = ops::FindNonFinite(row, width);
    if (at < 0) continue;
    const int32_t i = logit_rows ? batch->logit_rows[r] : r;
    found = NonFiniteSite{.layer = layer,
                          .tensor = t,
                          .position = batch->positions[i],
                          .token = batch->tokens[i],
                          .nan = std::isnan(row[at])};
    return true;
  }
  return false;
}

void ModelRunner::Forward(const ForwardBatch& batch, KvCache& cache, std::vector<float>* logits) {
  Run(batch, cache, &cache, logits, nullptr);
}

std::optional<NonFiniteSite> ModelRunner::FindNonFinite(const ForwardBatch& batch,
                                                        const KvCache& cache) {
  Probe probe{.batch = &batch};
  std::vector<float> logits;
  Run(batch, cache, nullptr, &logits, &probe);
  return probe.found;
}

void ModelRunner::Run(const ForwardBatch& batch, const KvCache& cache, KvCache* writes,
                      std::vector<float>* logits, Probe* probe) {
  const ModelConfig& c = config_;
  const int32_t n = batch.size();
  KVINFER_CHECK(n > 0);
  KVINFER_CHECK(batch.positions.size() == static_cast<size_t>(n) &&
                batch.seq_index.size() == static_cast<size_t>(n));

  for (int32_t i = 0; i < n; ++i) {
    const int32_t tok = batch.tokens[i];
    KVINFER_CHECK_MSG(tok >= 0 && tok < c.vocab_size, "token {} outside vocab {}", tok,
                      c.vocab_size);
    const int32_t seq = batch.seq_ids[batch.seq_index[i]];
    KVINFER_CHECK_MSG(batch.positions[i] >= 0 && batch.positions[i] < cache.capacity_tokens(seq),
                      "position {} outside the {} reserved tokens of sequence {}",
                      batch.positions[i], cache.capacity_tokens(seq), seq);
  }
  EnsureScratch(n);
  // Whether the probe (FindNonFinite) found a non-finite value in y; the
  // pass then stops. Free in an ordinary Forward (no probe).
  auto non_finite = [&](int layer, ForwardTensor t, const float* y, int64_t width) {
    return probe != nullptr && probe->Check(layer, t, y, n, width);
  };

  const int d = c.d_model;
  const bool gpt2 = c.arch == Arch::kGpt2;
  float* x = x_.data();
  for (int32_t i = 0; i < n; ++i) {
    ops::DequantizeRow(weights_.token_embd, batch.tokens[i], x + static_cast<size_t>(i) * d);
  }
  if (non_finite(-1, ForwardTensor::kTokenEmbd, x, d)) return;
  if (gpt2) {
    // Learned absolute positions: x += position_embd[pos]. There is no row
    // past the trained context.
    for (int32_t i = 0; i < n; ++i) {
      KVINFER_CHECK_MSG(batch.positions[i] < c.context_length,
                        "position {} past the model's {} learned positions", batch.positions[i],
                        c.context_length);
      ops::DequantizeRow(weights_.position_embd, batch.positions[i], out_.data());
      ops::Add(x + static_cast<size_t>(i) * d, out_.data(), d);
    }
  }
  if (gpt2 && non_finite(-1, ForwardTensor::kPositionEmbd, x, d)) return;

  // Each token's rotary cos/sin, computed once for all layers.
  const size_t pairs = static_cast<size_t>(c.rope_dims / 2);
  if (!gpt2) {
    rope_cs_.resize(static_cast<size_t>(n) * pairs);
    rope_sn_.resize(static_cast<size_t>(n) * pairs);
    for (int32_t i = 0; i < n; ++i) {
      ops::RopeTable(batch.positions[i], c.rope_dims, c.rope_theta,
                     &rope_cs_[static_cast<size_t>(i) * pairs],
                     &rope_sn_[static_cast<size_t>(i) * pairs]);
    }
  }

  const int kv_dim = c.kv_dim();
  const int q_dim = c.q_dim();
  const int bs = cache.block_size();
  // Attention reads (pos + 1) x head_dim keys and values per token and KV
  // head; below ~32K floats in all a second thread costs more than it saves.
  int64_t attention_floats = 0;
  for (int32_t i = 0; i < n; ++i) attention_floats += static_cast<int64_t>(batch.positions[i] + 1);
  attention_floats *= static_cast<int64_t>(c.head_dim) * c.n_kv_heads * 2;
  const bool parallel_attention = attention_floats >= 32768;
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[l];
    Norm(x, L.attn_norm, L.attn_norm_bias, n);
    if (non_finite(l, ForwardTensor::kAttnNorm, xn_.data(), d)) return;
    {
      const WeightView* ws[] = {&L.wq, &L.wk, &L.wv};
      float* ys[] = {q_.data(), k_.data(), v_.data()};
      ops::MatMulMany(matmul_, ws, xn_.data(), n, ys);
    }
    if (gpt2) {
      AddBias(q_.data(), L.bq, n, q_dim);
      AddBias(k_.data(), L.bk, n, kv_dim);
      AddBias(v_.data(), L.bv, n, kv_dim);
    }
    // Each token writes its own cache slot (no two tokens of a batch share
    // a sequence position), so the tokens can be split across threads.
    ForTokens(n, q_dim + 2 * kv_dim, [&](int32_t begin, int32_t end) {
      for (int32_t i = begin; i < end; ++i) {
        const int32_t pos = batch.positions[i];
        float* qi = q_.data() + static_cast<size_t>(i) * q_dim;
        float* ki = k_.data() + static_cast<size_t>(i) * kv_dim;
        if (!gpt2) {
          const float* cs = &rope_cs_[static_cast<size_t>(i) * pairs];
          const float* sn = &rope_sn_[static_cast<size_t>(i) * pairs];
          ops::RopeRotate(qi, c.n_heads, c.head_dim, c.rope_dims, cs, sn);
          ops::RopeRotate(ki, c.n_kv_heads, c.head_dim, c.rope_dims, cs, sn);
        }
        // Store K/V at (sequence, position) through the block table.
        if (writes == nullptr) continue;
        const int32_t seq = batch.seq_ids[batch.seq_index[i]];
        const int32_t block = cache.block_table(seq)[pos / bs];
        const int32_t off = pos % bs;
        writes->WriteToken(l, block, off, ki, v_.data() + static_cast<size_t>(i) * kv_dim);
      }
    });
    if (non_finite(l, ForwardTensor::kQ, q_.data(), q_dim) ||
        non_finite(l, ForwardTensor::kK, k_.data(), kv_dim) ||
        non_finite(l, ForwardTensor::kV, v_.data(), kv_dim)) {
      return;
    }
    Attention(l, batch, cache, parallel_attention);
    if (non_finite(l, ForwardTensor::kAttnOut, attn_.data(), q_dim)) return;
    ops::MatMul(matmul_, L.wo, attn_.data(), n, out_.data());
    if (gpt2) AddBias(out_.data(), L.bo, n, d);
    if (non_finite(l, ForwardTensor::kAttnProj, out_.data(), d)) return;
    AddRows(x, out_.data(), n, d);
    if (non_finite(l, ForwardTensor::kAttnResidual, x, d)) return;

    Norm(x, L.ffn_norm, L.ffn_norm_bias, n);
    if (non_finite(l, ForwardTensor::kFfnNorm, xn_.data(), d)) return;
    if (gpt2) {
      // x += W_down gelu_tanh(W_up xn + b_up) + b_down
      ops::MatMul(matmul_, L.w_up, xn_.data(), n, gate_.data());
      AddBias(gate_.data(), L.b_up, n, c.d_ff);
      if (non_finite(l, ForwardTensor::kFfnUp, gate_.data(), c.d_ff)) return;
      ForTokens(n, c.d_ff, [&](int32_t begin, int32_t end) {
        ops::GeluTanh(gate_.data() + static_cast<size_t>(begin) * c.d_ff,
                      static_cast<int64_t>(end - begin) * c.d_ff);
      });
      if (non_finite(l, ForwardTensor::kFfnAct, gate_.data(), c.d_ff)) return;
      ops::MatMul(matmul_, L.w_down, gate_.data(), n, out_.data());
      AddBias(out_.data(), L.b_down, n, d);
    } else {
      // x += W_down (silu(W_gate xn) * W_up xn)
      const WeightView* ws[] = {&L.w_gate, &L.w_up};
      float* ys[] = {gate_.data(), up_.data()};
      ops::MatMulMany(matmul_, ws, xn_.data(), n, ys);
      if (non_finite(l, ForwardTensor::kFfnGate, gate_.data(), c.d_ff) ||
          non_finite(l, ForwardTensor::kFfnUp, up_.data(), c.d_ff)) {
        return;
      }
      ForTokens(n, c.d_ff, [&](int32_t begin, int32_t end) {
        const size_t at = static_cast<size_t>(begin) * c.d_ff;
        ops::SiluMul(gate_.data() + at, up_.data() + at, static_cast<int64_t>(end - begin) * c.d_ff);
      });
      if (non_finite(l, ForwardTensor::kFfnAct, gate_.data(), c.d_ff)) return;
      ops::MatMul(matmul_, L.w_down, gate_.data(), n, out_.data());
    }
    if (non_finite(l, ForwardTensor::kFfnDown, out_.data(), d)) return;
    AddRows(x, out_.data(), n, d);
    if (non_finite(l, ForwardTensor::kFfnResidual, x, d)) return;
  }

  // Record how far each sequence's K/V now reaches.
  for (int32_t i = 0; writes != nullptr && i < n; ++i) {
    const int32_t seq = batch.seq_ids[batch.seq_index[i]];
    if (batch.positions[i] + 1 > writes->num_tokens(seq))
      writes->SetNumTokens(seq, batch.positions[i] + 1);
  }

  const int32_t n_logits = static_cast<int32_t>(batch.logit_rows.size());
  if (n_logits == 0) return;
  if (last_.size() < static_cast<size_t>(n_logits) * d)
    last_.resize(static_cast<size_t>(n_logits) * d);
  for (int32_t r = 0; r < n_logits; ++r) {
    const int32_t row = batch.logit_rows[r];
    KVINFER_CHECK(row >= 0 && row < n);
    float* dst = last_.data() + static_cast<size_t>(r) * d;
    if (gpt2) {
      ops::LayerNorm(x + static_cast<size_t>(row) * d, weights_.output_norm,
                     weights_.output_norm_bias, d, c.norm_eps, dst);
    } else {
      ops::RmsNorm(x + static_cast<size_t>(row) * d, weights_.output_norm, d, c.norm_eps, dst);
    }
  }
  if (probe != nullptr && probe->Check(-1, ForwardTensor::kOutputNorm, last_.data(), n_logits, d,
                                       /*logit_rows=*/true)) {
    return;
  }
  logits->resize(static_cast<size_t>(n_logits) * c.vocab_size);
  ops::MatMul(matmul_, weights_.output, last_.data(), n_logits, logits->data());
  if (probe != nullptr) {
    probe->Check(-1, ForwardTensor::kLogits, logits->data(), n_logits, c.vocab_size,
                 /*logit_rows=*/true);
  }
}

}  // namespace kvinfer
