// llama2.c checkpoints (Karpathy's run.c format, "version 0"). Its
// tokenizer.bin is read by tokenizer/llama2c_tokenizer.h, and the header
// becomes a ModelConfig in model/config.h (ConfigFromLlama2c).
//
// Checkpoint: 7 x int32 header (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; a negative vocab_size means the
// classifier wcls is stored separately, positive means it is the token
// embedding), then float32 tensors back to back:
//   token_embedding [vocab, dim]
//   rms_att [layers, dim]
//   wq [layers, dim, dim]  wk [layers, kv_dim, dim]  wv [layers, kv_dim, dim]
//   wo [layers, dim, dim]
//   rms_ffn [layers, dim]
//   w1 [layers, hidden, dim]  w2 [layers, dim, hidden]  w3 [layers, hidden, dim]
//   rms_final [dim]
//   freq_cis_real [seq_len, head_size/2]  freq_cis_imag [...]   (legacy, skipped)
//   wcls [vocab, dim]                                          (only if not shared)
// run.c computes out = W (d, n) @ x (n): every matrix is row-major
// [out, in], exactly kvinfer's WeightView. RoPE there rotates adjacent pairs
// (x[2i], x[2i+1]), GGML's "normal" mode, so no permutation is needed (and
// llama.cpp's converter applies none: the tensors are bit-identical to
// stories260K.gguf's).
//
// The file size must match the header exactly; anything else throws
// Error(kDataLoss) naming the expected and actual sizes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/mapped_file.h"
#include "core/weight_view.h"

namespace kvinfer {

struct Llama2cHeader {
  int32_t dim = 0;
  int32_t hidden_dim = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t vocab_size = 0;  // as stored: negative = separate classifier
  int32_t seq_len = 0;
};

class Llama2cCheckpoint {
 public:
  struct Layer {
    WeightView attn_norm;  // rms_att [1, dim]
    WeightView wq;         // [dim, dim]
    WeightView wk;         // [kv_dim, dim]
    WeightView wv;         // [kv_dim, dim]
    WeightView wo;         // [dim, dim]
    WeightView ffn_norm;   // rms_ffn [1, dim]
    WeightView w1;         // gate [hidden, dim]
    WeightView w2;         // down [dim, hidden]
    WeightView w3;         // up [hidden, dim]
  };

  // Throws Error: kNotFound (cannot open), kDataLoss (malformed).
  static Llama2cCheckpoint Open(const std::string& path);
  static Llama2cCheckpoint Parse(MappedFile file);

  Llama2cCheckpoint(Llama2cCheckpoint&&) noexcept = default;
  Llama2cCheckpoint& operator=(Llama2cCheckpoint&&) noexcept = default;

  const std::string& path() const { return file_.path(); }
  const Llama2cHeader& header() const { return header_; }
  // The classifier is the token embedding (vocab_size > 0 in the header).
  bool shared_classifier() const { return header_.vocab_size > 0; }

  const WeightView& token_embedding() const { return token_embedding_; }  // [vocab, dim]
  const std::vector<Layer>& layers() const { return layers_; }
  const WeightView& output_norm() const { return output_norm_; }          // [1, dim]
  // wcls [vocab, dim], or token_embedding when shared.
  const WeightView& output() const { return output_; }

  // Every tensor under llama.cpp's GGUF names (token_embd.weight,
  // blk.N.attn_q.weight, ..., output_norm.weight; output.weight only when
  // the classifier is separate), in file order.
  std::vector<std::pair<std::string, WeightView>> NamedTensors() const;

 private:
  Llama2cCheckpoint() = default;

  MappedFile file_;
  Llama2cHeader header_;
  WeightView token_embedding_;
  std::vector<Layer> layers_;
  WeightView output_norm_;
  WeightView output_;
};

}  // namespace kvinfer
