#include "model/hf_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "ops/ops.h"

namespace kvinfer {
namespace {

std::string Dims(const std::vector<uint64_t>& shape) { return fmt::format("{}", fmt::join(shape, ", ")); }

class HfBinder {
 public:
  HfBinder(const SafetensorsModel& st, ModelWeights& w) : st_(st), w_(w) {}

  const SafetensorsTensor* Find(const std::string& name) const { return st_.FindTensor(name); }

  // A tensor of exactly `shape`, of a dtype kvinfer computes with.
  const SafetensorsTensor& Get(const std::string& name, const std::vector<uint64_t>& shape) {
    const SafetensorsTensor& t = st_.GetTensor(name);
    if (t.shape != shape) {
      Fail(StatusCode::kDataLoss, "{}: tensor '{}' has shape [{}], expected [{}]", st_.PathOf(name),
           name, Dims(t.shape), Dims(shape));
    }
    if (!t.compute_supported || !t.dtype) {
      Fail(StatusCode::kUnimplemented,
           "{}: tensor '{}' has dtype {}, which kvinfer cannot compute with (F32, F16, BF16)",
           st_.PathOf(name), name, t.dtype_name);
    }
    w_.num_parameters += static_cast<int64_t>(t.num_elements);
    w_.weight_bytes += static_cast<int64_t>(t.num_bytes);
    return t;
  }

  // nn.Linear / embedding: [rows, cols] as stored; zero-copy when aligned.
  WeightView Matrix(const std::string& name, int64_t rows, int64_t cols) {
    const SafetensorsTensor& t = Get(name, {Dim(rows), Dim(cols)});
    WeightView v = AsWeightView(t, st_.PathOf(name));
    if (reinterpret_cast<uintptr_t>(t.data) % t.elem_bytes != 0) {
      uint8_t* dst = Own(t.num_bytes);
      std::memcpy(dst, t.data, t.num_bytes);
      v.data = dst;
    }
    return v;
  }

  // Conv1D weight stored [in, out]: returned as row-major [out, in] (owned).
  WeightView Transposed(const std::string& name, int64_t in, int64_t out) {
    const SafetensorsTensor& t = Get(name, {Dim(in), Dim(out)});
    const size_t eb = t.elem_bytes;
    uint8_t* dst = Own(t.num_bytes);
    // dst[o, i] = src[i, o], in 32 x 32 tiles so both sides stay in cache.
    constexpr int64_t kTile = 32;
    for (int64_t i0 = 0; i0 < in; i0 += kTile) {
      for (int64_t o0 = 0; o0 < out; o0 += kTile) {
        const int64_t i1 = std::min(in, i0 + kTile);
        const int64_t o1 = std::min(out, o0 + kTile);
        for (int64_t o = o0; o < o1; ++o) {
          for (int64_t i = i0; i < i1; ++i) {
            std::memcpy(dst + static_cast<size_t>(o * in + i) * eb,
                        t.data + static_cast<size_t>(i * out + o) * eb, eb);
          }
        }
      }
    }
    return WeightView{*t.dtype, out, in, dst, static_cast<size_t>(in) * eb};
  }

  // Llama q_proj / k_proj [heads * head_dim, cols], HF rotary order: rows
  // reordered into GGML's pairing (owned), see hf_checkpoint.h.
  WeightView RotaryRows(const std::string& name, int heads, int head_dim, int64_t cols) {
    const SafetensorsTensor& t = Get(name, {Dim(int64_t{heads} * head_dim), Dim(cols)});
    const size_t row_bytes = static_cast<size_t>(cols) * t.elem_bytes;
    uint8_t* dst = Own(t.num_bytes);
    const int half = head_dim / 2;
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < half; ++i) {
        for (int j = 0; j < 2; ++j) {
          const size_t to = static_cast<size_t>(h) * head_dim + 2 * i + j;
          const size_t from = static_cast<size_t>(h) * head_dim + static_cast<size_t>(j) * half + i;
          std::memcpy(dst + to * row_bytes, t.data + from * row_bytes, row_bytes);
        }
      }
    }
    return WeightView{*t.dtype, int64_t{heads} * head_dim, cols, dst, row_bytes};
  }

  // A 1-D tensor [n] as f32: in place when F32 and aligned, else converted.
  const float* Vector(const std::string& name, int64_t n) {
    const SafetensorsTensor& t = Get(name, {Dim(n)});
    if (*t.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {
      return reinterpret_cast<const float*>(t.data);
    }
    float* dst = reinterpret_cast<float*>(Own(static_cast<size_t>(n) * sizeof(float)));
    ops::DequantizeRow(AsWeightView(t, st_.PathOf(name)), 0, dst);
    return dst;
  }

 private:
  static uint64_t Dim(int64_t v) { return static_cast<uint64_t>(v); }

  uint8_t* Own(size_t bytes) { return w_.owned.emplace_back(bytes).as<uint8_t>(); }

  const SafetensorsModel& st_;
  ModelWeights& w_;
};

ModelWeights BindLlama(const SafetensorsModel& st, const ModelConfig& c) {
  ModelWeights w;
  HfBinder b(st, w);
  const int d = c.d_model;
  w.token_embd = b.Matrix("model.embed_tokens.weight", c.vocab_size, d);
  w.output = c.tied_output ? w.token_embd : b.Matrix("lm_head.weight", c.vocab_size, d);
  w.output_norm = b.Vector("model.norm.weight", d);
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    const std::string p = fmt::format("model.layers.{}.", l);
    L.attn_norm = b.Vector(p + "input_layernorm.weight", d);
    L.wq = b.RotaryRows(p + "self_attn.q_proj.weight", c.n_heads, c.head_dim, d);
    L.wk = b.RotaryRows(p + "self_attn.k_proj.weight", c.n_kv_heads, c.head_dim, d);
    L.wv = b.Matrix(p + "self_attn.v_proj.weight", c.kv_dim(), d);
    L.wo = b.Matrix(p + "self_attn.o_proj.weight", d, c.q_dim());
    L.ffn_norm = b.Vector(p + "post_attention_layernorm.weight", d);
    L.w_gate = b.Matrix(p + "mlp.gate_proj.weight", c.d_ff, d);
    L.w_up = b.Matrix(p + "mlp.up_proj.weight", c.d_ff, d);
    L.w_down = b.Matrix(p + "mlp.down_proj.weight", d, c.d_ff);
  }
  return w;
}

ModelWeights BindGpt2(const SafetensorsModel& st, const ModelConfig& c) {
  ModelWeights w;
  HfBinder b(st, w);
  // GPT2LMHeadModel saves its body under "transformer."; GPT2Model does not.
  const std::string root = b.Find("transformer.wte.weight") != nullptr ? "transformer." : "";
  const int d = c.d_model;
  w.token_embd = b.Matrix(root + "wte.weight", c.vocab_size, d);
  w.output = w.token_embd;
  w.position_embd = b.Matrix(root + "wpe.weight", c.context_length, d);
  w.output_norm = b.Vector(root + "ln_f.weight", d);
  w.output_norm_bias = b.Vector(root + "ln_f.bias", d);
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    const std::string p = fmt::format("{}h.{}.", root, l);
    L.attn_norm = b.Vector(p + "ln_1.weight", d);
    L.attn_norm_bias = b.Vector(p + "ln_1.bias", d);
    SplitFusedQkv(b.Transposed(p + "attn.c_attn.weight", d, 3 * d),
                  b.Vector(p + "attn.c_attn.bias", 3 * d), d, L);
    L.wo = b.Transposed(p + "attn.c_proj.weight", d, d);
    L.bo = b.Vector(p + "attn.c_proj.bias", d);
    L.ffn_norm = b.Vector(p + "ln_2.weight", d);
    L.ffn_norm_bias = b.Vector(p + "ln_2.bias", d);
    L.w_up = b.Transposed(p + "mlp.c_fc.weight", d, c.d_ff);
    L.b_up = b.Vector(p + "mlp.c_fc.bias", c.d_ff);
    L.w_down = b.Transposed(p + "mlp.c_proj.weight", c.d_ff, d);
    L.b_down = b.Vector(p + "mlp.c_proj.bias", d);
  }
  return w;
}

}  // namespace

ModelWeights BindHfWeights(const SafetensorsModel& checkpoint, const ModelConfig& config) {
  switch (config.arch) {
    case Arch::kLlama:
      return BindLlama(checkpoint, config);
    case Arch::kGpt2:
      return BindGpt2(checkpoint, config);
  }
  Fail(StatusCode::kInternal, "unknown architecture");
}

}  // namespace kvinfer
