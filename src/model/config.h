// ModelConfig: the hyperparameters of a transformer, read from a model
// file's metadata (never hard-coded per model).
//
// This is the one reader of model metadata: the loader (model_impl) reads a
// config to run the model, and the KV-cache calculator (model/kv_size.h)
// reads the attention shape of any architecture through the same functions
// with ConfigUse::kShape.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "kv/kv_format.h"

namespace kvinfer {

class GgufFile;
struct Llama2cHeader;

enum class Arch { kLlama, kGpt2 };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string arch_name;       // as the file spells it: "llama", "gpt2"
  std::string name;            // general.name, may be empty
  int n_layers = 0;
  int d_model = 0;             // embedding length
  int n_heads = 0;             // query heads
  int n_kv_heads = 0;          // n_heads = MHA, 1 = MQA, otherwise GQA
  int head_dim = 0;            // K (and Q) head size: d_model / n_heads unless given
  int d_ff = 0;                // feed-forward hidden size
  int vocab_size = 0;
  int context_length = 0;      // trained context, the cap on sequence length (0: unknown)
  int rope_dims = 0;           // leading dims of each head that RoPE rotates
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool tied_output = false;    // LM head reuses token_embd

  // Attention variants the KV-cache calculator sizes; a runnable config
  // (ConfigUse::kRun) has v_head_dim = head_dim, no MLA and no window.
  int v_head_dim = 0;          // V head size
  bool mla = false;            // multi-head latent attention (DeepSeek-V2/V3)
  int kv_lora_rank = 0;        // MLA: compressed latent size
  int qk_rope_head_dim = 0;    // MLA: decoupled RoPE key size
  int sliding_window = 0;      // tokens kept by windowed layers; 0 = no window
  int n_window_layers = 0;     // layers that use the window

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  KvShape kv_shape() const { return {n_layers, n_kv_heads, head_dim}; }
};

// What the caller needs from a config.
enum class ConfigUse {
  // Everything the forward pass needs, validated for running: the
  // architecture must be one kvinfer implements (llama, gpt2) and options
  // it does not implement are refused (kUnimplemented).
  kRun,
  // The attention shape only (layers, heads, head sizes, context, MLA,
  // sliding windows) of any architecture; keys the shape does not need may
  // be absent. Consistency (e.g. heads divisible by KV heads) is the
  // caller's to check.
  kShape,
};

// GGUF metadata (no tensor data is read; kRun also needs the tensor table
// for the vocabulary size). Throws Error kDataLoss / kUnimplemented naming
// the file and the key or the architecture.
ModelConfig ConfigFromGguf(const GgufFile& file, ConfigUse use = ConfigUse::kRun);

// A Hugging Face config.json: `text` is its contents, `path` names it in
// messages. Throws Error kDataLoss (malformed JSON, a missing or invalid
// key) / kUnimplemented, naming the file and the key.
ModelConfig ConfigFromHfJson(std::string_view text, const std::string& path,
                             ConfigUse use = ConfigUse::kRun);

// A llama2.c checkpoint's header (already validated by io/llama2c.h): arch
// llama, rope_dims = head_dim, rope_theta 10000, eps 1e-5, context_length =
// seq_len, tied_output = shared classifier.
ModelConfig ConfigFromLlama2c(const Llama2cHeader& header);

}  // namespace kvinfer
