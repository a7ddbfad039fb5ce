// Hugging Face checkpoint directories (Llama and GPT-2 families):
// config.json -> ModelConfig (ConfigFromHfJson, model/config.h), safetensors
// tensors -> ModelWeights.
//
// A directory holds config.json, model.safetensors or a sharded
// model.safetensors.index.json (io/safetensors.h), and the tokenizer files
// (tokenizer/hf_tokenizer.h). Weights may be F32, F16 or BF16.
//
// Binding, by family:
//   llama  model.embed_tokens, model.layers.N.{input_layernorm,
//          self_attn.{q,k,v,o}_proj, post_attention_layernorm,
//          mlp.{gate,up,down}_proj}, model.norm, lm_head (absent when tied).
//          nn.Linear weights are [out, in] = WeightView's row-major layout:
//          zero-copy views into the mapping. Except q_proj and k_proj: HF
//          applies rotary to the pairs (i, i + head_dim/2) of each head
//          ("rotate half", NeoX pairing), while kvinfer's RopeNorm rotates
//          (2i, 2i+1) as GGUF files store them. Their rows are reordered once
//          at load into owned buffers, row 2i + j of a head <- HF row
//          j * head_dim/2 + i — the inverse of llama.cpp's conversion
//          permute — after which q.k products, and so the logits, equal
//          HF's.
//   gpt2   wte, wpe, h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
//          mlp.c_proj}, ln_f (optionally prefixed "transformer."); the LM
//          head is tied to wte. Conv1D weights are stored [in, out]
//          (y = x W + b), the transpose of nn.Linear: each is transposed once
//          at load into an owned buffer in its own dtype. c_attn's rows are
//          then q, k, v, bound as three row ranges.
// Vectors (norms, biases) are used in place when F32 and 4-byte aligned,
// converted to owned f32 otherwise; matrices whose data is not aligned to
// their element size are copied (writers pad the header, so this is rare).
//
// Errors (kvinfer::Error) name the file and the key or tensor: kDataLoss
// (malformed config.json, missing key or tensor, wrong shape), kUnimplemented
// (a model_type or config option kvinfer does not implement, a dtype it
// cannot compute with).
#pragma once

#include <string>
#include <string_view>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"

namespace kvinfer {

// Checks every tensor against `config` (shape, dtype) and binds it.
ModelWeights BindHfWeights(const SafetensorsModel& checkpoint, const ModelConfig& config);

}  // namespace kvinfer
