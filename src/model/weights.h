// Named weight views of a transformer, bound to a model file's tensors
// (zero-copy: quantized and f32 matrices point into the mapping). Every
// tensor's presence, type and shape is checked against the ModelConfig.
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
  WeightView w_gate;                 // [d_ff, d_model]
  WeightView w_up;                   // [d_ff, d_model]
  WeightView w_down;                 // [d_model, d_ff]
};

struct ModelWeights {
  WeightView token_embd;             // [vocab, d_model]
  WeightView output;                 // [vocab, d_model]; = token_embd when tied
  const float* output_norm = nullptr;  // [d_model]
  std::vector<LayerWeights> layers;  // [n_layers]
  int64_t num_parameters = 0;
  int64_t weight_bytes = 0;
  // f32 copies of vectors stored in another type (norm weights in f16...).
  std::vector<AlignedBuffer> owned;
};

// Throws Error naming the tensor: kDataLoss (missing, wrong shape),
// kUnimplemented (a type without kernels).
ModelWeights BindLlamaWeights(const GgufFile& file, const ModelConfig& config);

}  // namespace kvinfer
