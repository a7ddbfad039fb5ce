#include "io/llama2c.h"

#include <cstring>
#include <utility>

#include "core/error.h"

namespace kvinfer {
namespace {

constexpr uint64_t kHeaderBytes = 7 * sizeof(int32_t);

// Caps on the header fields: far above any llama2.c model (Llama 2 70B has
// dim 8192, hidden 28672, 80 layers), low enough that every size product
// below fits in 64 bits without overflow checks (< 2^53 bytes).
constexpr int64_t kMaxDim = 1 << 17;
constexpr int64_t kMaxHidden = 1 << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxSeqLen = 1 << 24;

void CheckRange(const std::string& path, const char* field, int64_t v, int64_t max) {
  if (v < 1 || v > max) {
    Fail(StatusCode::kDataLoss, "{}: llama2.c header field {} = {} is out of range (expected 1..{})",
         path, field, v, max);
  }
}

WeightView F32View(const uint8_t* data, int64_t rows, int64_t cols) {
  WeightView w;
  w.type = DType::kF32;
  w.rows = rows;
  w.cols = cols;
  w.data = data;
  w.row_bytes = static_cast<size_t>(cols) * sizeof(float);
  return w;
}

}  // namespace

Llama2cCheckpoint Llama2cCheckpoint::Open(const std::string& path) {
  return Parse(MappedFile::Open(path));
}

Llama2cCheckpoint Llama2cCheckpoint::Parse(MappedFile file) {
  Llama2cCheckpoint c;
  c.file_ = std::move(file);
  const std::string& path = c.file_.path();
  const uint64_t size = c.file_.size();
  if (size < kHeaderBytes) {
    Fail(StatusCode::kDataLoss,
         "{}: file of {} bytes is too short for the llama2.c header (7 x int32 = 28 bytes)", path,
         size);
  }
  int32_t h[7];
  std::memcpy(h, c.file_.data(), sizeof(h));  // little-endian, as is every host we run on
  Llama2cHeader& hd = c.header_;
  hd = {h[0], h[1], h[2], h[3], h[4], h[5], h[6]};
  CheckRange(path, "dim", hd.dim, kMaxDim);
  CheckRange(path, "hidden_dim", hd.hidden_dim, kMaxHidden);
  CheckRange(path, "n_layers", hd.n_layers, kMaxLayers);
  CheckRange(path, "n_heads", hd.n_heads, kMaxHeads);
  CheckRange(path, "n_kv_heads", hd.n_kv_heads, kMaxHeads);
  const int64_t vocab = hd.vocab_size < 0 ? -static_cast<int64_t>(hd.vocab_size) : hd.vocab_size;
  CheckRange(path, "|vocab_size|", vocab, kMaxVocab);
  CheckRange(path, "seq_len", hd.seq_len, kMaxSeqLen);
  if (hd.dim % hd.n_heads != 0) {
    Fail(StatusCode::kDataLoss, "{}: llama2.c header: dim {} is not a multiple of n_heads {}", path,
         hd.dim, hd.n_heads);
  }
  if (hd.n_heads % hd.n_kv_heads != 0) {
    Fail(StatusCode::kDataLoss,
         "{}: llama2.c header: n_heads {} is not a multiple of n_kv_heads {}", path, hd.n_heads,
         hd.n_kv_heads);
  }
  const int64_t head_dim = hd.dim / hd.n_heads;
  if (head_dim % 2 != 0) {
    Fail(StatusCode::kDataLoss, "{}: llama2.c header: head size {} (dim / n_heads) must be even",
         path, head_dim);
  }
  const bool shared = hd.vocab_size > 0;
  const int64_t dim = hd.dim, hidden = hd.hidden_dim, layers = hd.n_layers;
  const int64_t kv_dim = head_dim * hd.n_kv_heads;

  // Expected size, in floats, before mapping anything.
  const uint64_t per_layer = static_cast<uint64_t>(2 * dim + 2 * dim * dim + 2 * kv_dim * dim +
                                                   3 * hidden * dim);
  const uint64_t floats = static_cast<uint64_t>(vocab * dim) + layers * per_layer +
                          static_cast<uint64_t>(dim) +
                          2 * static_cast<uint64_t>(hd.seq_len) * static_cast<uint64_t>(head_dim / 2) +
                          (shared ? 0 : static_cast<uint64_t>(vocab * dim));
  const uint64_t expected = kHeaderBytes + floats * sizeof(float);
  if (size != expected) {
    Fail(StatusCode::kDataLoss,
         "{}: llama2.c checkpoint is {} bytes but its header (dim {}, hidden_dim {}, n_layers {}, "
         "n_heads {}, n_kv_heads {}, vocab_size {}, seq_len {}) needs exactly {} bytes ({})",
         path, size, hd.dim, hd.hidden_dim, hd.n_layers, hd.n_heads, hd.n_kv_heads, hd.vocab_size,
         hd.seq_len, expected, size < expected ? "truncated" : "trailing bytes");
  }

  // Walks the tensors in file order; `n` tensors of [rows, cols] each.
  const uint8_t* p = c.file_.data() + kHeaderBytes;
  const auto take = [&p](int64_t n, int64_t rows, int64_t cols) {
    std::vector<WeightView> v;
    for (int64_t i = 0; i < n; ++i) {
      v.push_back(F32View(p, rows, cols));
      p += static_cast<size_t>(rows * cols) * sizeof(float);
    }
    return v;
  };
  c.token_embedding_ = take(1, vocab, dim)[0];
  c.layers_.resize(static_cast<size_t>(layers));
  const auto fill = [&](WeightView Layer::*field, int64_t rows, int64_t cols) {
    const std::vector<WeightView> v = take(layers, rows, cols);
    for (size_t l = 0; l < v.size(); ++l) c.layers_[l].*field = v[l];
  };
  fill(&Layer::attn_norm, 1, dim);
  fill(&Layer::wq, dim, dim);
  fill(&Layer::wk, kv_dim, dim);
  fill(&Layer::wv, kv_dim, dim);
  fill(&Layer::wo, dim, dim);
  fill(&Layer::ffn_norm, 1, dim);
  fill(&Layer::w1, hidden, dim);
  fill(&Layer::w2, dim, hidden);
  fill(&Layer::w3, hidden, dim);
  c.output_norm_ = take(1, 1, dim)[0];
  take(2, hd.seq_len, head_dim / 2);  // legacy freq_cis_real / freq_cis_imag
  c.output_ = shared ? c.token_embedding_ : take(1, vocab, dim)[0];
  KVINFER_CHECK(p == c.file_.data() + size);
  return c;
}

std::vector<std::pair<std::string, WeightView>> Llama2cCheckpoint::NamedTensors() const {
  std::vector<std::pair<std::string, WeightView>> out;
  out.emplace_back("token_embd.weight", token_embedding_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    const std::string b = fmt::format("blk.{}.", l);
    out.emplace_back(b + "attn_norm.weight", L.attn_norm);
    out.emplace_back(b + "attn_q.weight", L.wq);
    out.emplace_back(b + "attn_k.weight", L.wk);
    out.emplace_back(b + "attn_v.weight", L.wv);
    out.emplace_back(b + "attn_output.weight", L.wo);
    out.emplace_back(b + "ffn_norm.weight", L.ffn_norm);
    out.emplace_back(b + "ffn_gate.weight", L.w1);
    out.emplace_back(b + "ffn_down.weight", L.w2);
    out.emplace_back(b + "ffn_up.weight", L.w3);
  }
  out.emplace_back("output_norm.weight", output_norm_);
  if (!shared_classifier()) out.emplace_back("output.weight", output_);
  return out;
}

}  // namespace kvinfer
