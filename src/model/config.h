// ModelConfig: the hyperparameters of a transformer, read from a model
// file's metadata (never hard-coded per model).
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace kvinfer {

class GgufFile;

enum class Arch { kLlama, kGpt2 };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string arch_name;       // as the file spells it: "llama", "gpt2"
  std::string name;            // general.name, may be empty
  int n_layers = 0;
  int d_model = 0;             // embedding length
  int n_heads = 0;             // query heads
  int n_kv_heads = 0;          // n_heads = MHA, 1 = MQA, otherwise GQA
  int head_dim = 0;            // d_model / n_heads
  int d_ff = 0;                // feed-forward hidden size
  int vocab_size = 0;
  int context_length = 0;      // trained context, the cap on sequence length
  int rope_dims = 0;           // leading dims of each head that RoPE rotates
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool tied_output = false;    // LM head reuses token_embd

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Reads and validates the config (Error kDataLoss / kUnimplemented naming
// the key or the architecture on failure).
ModelConfig ConfigFromGguf(const GgufFile& file);

}  // namespace kvinfer
