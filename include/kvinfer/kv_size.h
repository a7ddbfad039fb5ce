// kvinfer's KV-cache memory calculator, public: how many bytes a model's
// K/V cache needs for a given sequence length, batch, cache element type and
// paging granularity. The `kvinfer kv-size` command is built on this header.
//
// Nothing here allocates a cache or loads weights; it is arithmetic over the
// attention shape, which comes from a named preset (published configs), a
// Hugging Face config.json, or a model file's metadata (GGUF, a Hugging Face
// checkpoint directory, a llama2.c checkpoint's header).
//
// Per layer and per token the cache stores (elements):
//   MHA/GQA/MQA  n_kv_heads * (head_dim + v_head_dim)    K and V of each KV head
//   MLA          kv_lora_rank + qk_rope_head_dim        one compressed latent
//                                                       shared by all heads (K and
//                                                       V are both projected up
//                                                       from it) + the decoupled
//                                                       RoPE key, also shared
// Sliding-window layers keep only the last `sliding_window` tokens.
//
// Nothing here throws; failures come back as Status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvinfer/status.h"

namespace kvinfer {

// The element type of the cache, with the storage cost of each:
//   f32 4 B; f16, bf16 2 B; fp8 1 B (one per-tensor scale, negligible, not counted);
//   int8 1 B + one f16 scale per stored vector (per KV head per token per
//        layer for K and for V; per token per layer for the MLA latent and for
//        the RoPE key);
//   q8_0 GGML blocks of 32 elements = 32 int8 + one f16 scale = 34 B / 32 elements;
//   q4_0 GGML blocks of 32 elements = 16 B of nibbles + one f16 scale = 18 B / 32.
// Block types quantize each stored vector on its own (a head's K row), with
// one scale per started block of 32 and the codes not padded (as kvinfer's
// own q8_0 / q4_0 caches store them).
enum class KvDtype { kF32, kF16, kBF16, kFP8, kInt8, kQ8_0, kQ4_0 };

std::string_view KvDtypeName(KvDtype t);
// "f32, f16, bf16, fp8, int8, q8_0, q4_0"
std::string KvDtypeNames();
// "f16", "FP16", "bf16", "fp8", "int8", "q8_0", ... (case-insensitive);
// kInvalidArgument listing the known names.
StatusOr<KvDtype> KvDtypeFromName(std::string_view name);

enum class KvAttention { kMHA, kGQA, kMQA, kMLA };
std::string_view KvAttentionName(KvAttention a);

// The attention shape of a model, as far as the KV cache is concerned.
struct KvSizeSpec {
  std::string name;
  int n_layers = 0;
  int n_heads = 0;           // query heads
  int n_kv_heads = 0;        // K/V heads (ignored for MLA, which caches one latent)
  int head_dim = 0;          // K head size
  int v_head_dim = 0;        // V head size (= head_dim for nearly every model)
  bool mla = false;          // multi-head latent attention (DeepSeek-V2/V3)
  int kv_lora_rank = 0;      // MLA: compressed latent size
  int qk_rope_head_dim = 0;  // MLA: decoupled RoPE key size
  int sliding_window = 0;    // tokens kept by windowed layers; 0 = no window
  // How many layers use the window (all layers have the same per-token size,
  // so only the count matters). Mistral: all; Gemma-2: every other layer.
  int n_window_layers = 0;
  int context_length = 0;  // trained context; 0 = unknown

  // MHA when every query head has its own KV head, MQA with one, GQA between.
  KvAttention attention() const;
};

// Presets from published configs; names are case-insensitive.
std::vector<std::string> KvSizePresetNames();
// kNotFound listing the known presets.
StatusOr<KvSizeSpec> KvSizeSpecForPreset(std::string_view name);
// A Hugging Face config.json, or a directory holding one; the spec is named
// after the checkpoint directory. kNotFound for a missing file,
// kInvalidArgument for malformed JSON or a missing/invalid key, naming the
// file and the key.
StatusOr<KvSizeSpec> KvSizeSpecForConfigFile(const std::string& path);
// A model as Model::Load takes it, metadata only (no weights are read): a
// GGUF file, a Hugging Face checkpoint directory (its config.json) or a
// llama2.c checkpoint (.bin, its header). Errors name the file and the
// problem.
StatusOr<KvSizeSpec> KvSizeSpecForModel(const std::string& path);

struct KvSizeOptions {
  int64_t seq_len = 4096;  // tokens per sequence (prompt + generated)
  int64_t batch = 1;       // sequences
  KvDtype dtype = KvDtype::kF16;
  // Paged caches allocate whole blocks of this many tokens; 1 = contiguous,
  // no rounding.
  int64_t block_size = 1;
};

// Bytes, summed over all layers and the whole batch. Payload (K, V, latent)
// and scales are counted apart: total = k + v + latent + scale.
struct KvSizeBreakdown {
  uint64_t k_bytes = 0;       // K heads (MLA: the decoupled RoPE key)
  uint64_t v_bytes = 0;       // V heads (MLA: 0, V is projected from the latent)
  uint64_t latent_bytes = 0;  // MLA compressed latent
  uint64_t scale_bytes = 0;   // quantization scales (int8, q8_0, q4_0)
};

struct KvSizeResult {
  uint64_t bytes_per_token = 0;  // one token, all layers, as if no window
  uint64_t bytes_per_token_per_layer = 0;
  int64_t tokens_per_sequence = 0;         // cache slots per sequence in full-attention
                                           // layers (seq_len rounded up to blocks)
  int64_t window_tokens_per_sequence = 0;  // same for windowed layers (0 if none)
  uint64_t total_bytes = 0;                // whole batch, all layers
  KvSizeBreakdown breakdown;
  bool exceeds_context = false;  // seq_len > context_length (when known)
};

// kInvalidArgument for non-positive options or an inconsistent spec (naming
// the first bad field), kOutOfRange when the total does not fit in 64 bits.
StatusOr<KvSizeResult> KvSizeFor(const KvSizeSpec& spec, const KvSizeOptions& options);

// "512.0 KiB", "1.00 GiB", "900 B" (binary units).
std::string FormatBytes(uint64_t bytes);

}  // namespace kvinfer
