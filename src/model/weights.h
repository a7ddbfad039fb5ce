// Named weight views of a transformer, bound to a model file's tensors
// (zero-copy: quantized and f32 matrices point into the mapping). Every
// tensor's presence, type and shape is checked against the ModelConfig.
//
// One struct serves both architectures; the fields an architecture does not
// use stay empty (Llama: no biases, no position_embd; GPT-2: no w_gate).
// GPT-2's fused QKV projection is bound as three row ranges of the one
// matrix (wq, wk, wv point into it), so the forward pass is the same.
#pragma once

#include <vector>

#include "core/aligned_buffer.h"
#include "model/config.h"
#include "ops/weights.h"

namespace kvinfer {

class GgufFile;

struct LayerWeights {
  const float* attn_norm = nullptr;  // [d_model]
  WeightView wq;                     // [q_dim, d_model]
  WeightView wk;                     // [kv_dim, d_model]
  WeightView wv;                     // [kv_dim, d_model]
  WeightView wo;                     // [d_model, q_dim]
  const float* ffn_norm = nullptr;   // [d_model]
  WeightView w_gate;                 // [d_ff, d_model] (Llama only)
  WeightView w_up;                   // [d_ff, d_model]
  WeightView w_down;                 // [d_model, d_ff]
  // GPT-2 only (nullptr for Llama): LayerNorm shifts and projection biases.
  const float* attn_norm_bias = nullptr;  // [d_model]
  const float* bq = nullptr;              // [q_dim]
  const float* bk = nullptr;              // [kv_dim]
  const float* bv = nullptr;              // [kv_dim]
  const float* bo = nullptr;              // [d_model]
  const float* ffn_norm_bias = nullptr;   // [d_model]
  const float* b_up = nullptr;            // [d_ff]
  const float* b_down = nullptr;          // [d_model]
};

struct ModelWeights {
  WeightView token_embd;             // [vocab, d_model]
  WeightView output;                 // [vocab, d_model]; = token_embd when tied
  const float* output_norm = nullptr;  // [d_model]
  // GPT-2 only: learned positions and the final LayerNorm's shift.
  WeightView position_embd;          // [context_length, d_model]
  const float* output_norm_bias = nullptr;  // [d_model]
  std::vector<LayerWeights> layers;  // [n_layers]
  int64_t num_parameters = 0;
  int64_t weight_bytes = 0;
  // Every view points into the model file's read-only mapping or into one
  // of these buffers. Buffers the views may point into instead of the mapping: f32 copies of
  // vectors stored in another type (norm weights in f16...), and matrices
  // rearranged at load (Hugging Face GPT-2's transposed Conv1D weights,
  // Llama q/k rows put back into GGML's rotary pairing).
  std::vector<AlignedBuffer> owned;
};

// Gives every matrix the forward pass multiplies (not the token embedding
// lookups) a packed copy when the CPU's kernel has a layout of its own
// (ops::PackWeights), kept in w.owned. The file pages that packing read are
// then dropped from the resident set (MappedFile::DropPages), so the packed
// matrices are resident once, not twice; lookups that still read the file
// (the token embedding, tied to the output) fault their rows back in.
void PackWeights(ModelWeights& w);

// Throws Error naming the tensor: kDataLoss (missing, wrong shape),
// kUnimplemented (a type without kernels).
ModelWeights BindLlamaWeights(const GgufFile& file, const ModelConfig& config);
// llama.cpp's gpt2 tensor names: token_embd, position_embd,
// blk.N.{attn_norm,attn_qkv,attn_output,ffn_norm,ffn_up,ffn_down}.{weight,bias},
// output_norm.{weight,bias}, optional output.weight.
ModelWeights BindGpt2Weights(const GgufFile& file, const ModelConfig& config);

// GPT-2's fused attention projection as L's q, k, v (no copy): rows
// [0, d) of `qkv` [3d, d] produce q, [d, 2d) k, [2d, 3d) v, and so do the
// thirds of `bias` [3d].
void SplitFusedQkv(const WeightView& qkv, const float* bias, int d, LayerWeights& L);

}  // namespace kvinfer
