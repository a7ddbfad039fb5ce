#include "model/hf_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "ops/ops.h"

namespace kvinfer {
namespace {

using Json = nlohmann::json;

// config.json keys, each read with its file named in every message.
class ConfigReader {
 public:
  ConfigReader(const Json& j, const std::string& path) : j_(j), path_(path) {}

  bool Has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  int Int(const char* key, int64_t limit) const {
    if (!Has(key)) Fail(StatusCode::kDataLoss, "{}: missing key '{}'", path_, key);
    return IntValue(key, limit);
  }
  int IntOr(const char* key, int64_t limit, int fallback) const {
    return Has(key) ? IntValue(key, limit) : fallback;
  }
  double Number(const char* key, double fallback) const {
    if (!Has(key)) return fallback;
    if (!j_[key].is_number()) {
      Fail(StatusCode::kDataLoss, "{}: '{}' is a {}, expected a number", path_, key,
           j_[key].type_name());
    }
    return j_[key].get<double>();
  }
  bool Bool(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    if (!j_[key].is_boolean()) {
      Fail(StatusCode::kDataLoss, "{}: '{}' is a {}, expected true or false", path_, key,
           j_[key].type_name());
    }
    return j_[key].get<bool>();
  }
  std::string String(const char* key, const std::string& fallback) const {
    if (!Has(key)) return fallback;
    if (!j_[key].is_string()) {
      Fail(StatusCode::kDataLoss, "{}: '{}' is a {}, expected a string", path_, key,
           j_[key].type_name());
    }
    return j_[key].get<std::string>();
  }

 private:
  int IntValue(const char* key, int64_t limit) const {
    const Json& v = j_[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > limit) {
      Fail(StatusCode::kDataLoss, "{}: '{}' = {} is not an integer in 1..{}", path_, key,
           v.dump().substr(0, 40), limit);
    }
    return static_cast<int>(v.get<int64_t>());
  }

  const Json& j_;
  const std::string& path_;
};

void CheckEps(const ModelConfig& c, const std::string& path, const char* key) {
  if (!(c.norm_eps > 0.0f && c.norm_eps < 1.0f)) {
    Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected 0 < eps < 1)", path, key,
         c.norm_eps);
  }
}

void LlamaConfig(const ConfigReader& r, const std::string& path, ModelConfig& c) {
  c.d_model = r.Int("hidden_size", 1 << 17);
  c.d_ff = r.Int("intermediate_size", 1 << 20);
  c.n_layers = r.Int("num_hidden_layers", 4096);
  c.n_heads = r.Int("num_attention_heads", 4096);
  c.n_kv_heads = r.IntOr("num_key_value_heads", 4096, c.n_heads);
  c.vocab_size = r.Int("vocab_size", 1 << 22);
  c.context_length = r.Int("max_position_embeddings", 1 << 24);
  c.norm_eps = static_cast<float>(r.Number("rms_norm_eps", 1e-6));
  CheckEps(c, path, "rms_norm_eps");
  c.rope_theta = static_cast<float>(r.Number("rope_theta", 10000.0));
  if (!(c.rope_theta > 0.0f)) {
    Fail(StatusCode::kDataLoss, "{}: 'rope_theta' = {} must be positive", path, c.rope_theta);
  }
  c.tied_output = r.Bool("tie_word_embeddings", false);
  if (c.d_model % c.n_heads != 0) {
    Fail(StatusCode::kDataLoss, "{}: hidden_size {} is not a multiple of num_attention_heads {}",
         path, c.d_model, c.n_heads);
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    Fail(StatusCode::kDataLoss,
         "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", path,
         c.n_heads, c.n_kv_heads);
  }
  c.head_dim = c.d_model / c.n_heads;
  c.rope_dims = c.head_dim;
  if (c.head_dim % 2 != 0) {
    Fail(StatusCode::kDataLoss, "{}: head size {} must be even for rotary embeddings", path,
         c.head_dim);
  }
  if (r.Has("head_dim") && r.Int("head_dim", 1 << 16) != c.head_dim) {
    Fail(StatusCode::kUnimplemented,
         "{}: 'head_dim' = {} differs from hidden_size / num_attention_heads = {} (not supported)",
         path, r.Int("head_dim", 1 << 16), c.head_dim);
  }
  // Options that change the computation and that kvinfer does not implement:
  // refuse rather than compute something else.
  const std::string act = r.String("hidden_act", "silu");
  if (act != "silu") {
    Fail(StatusCode::kUnimplemented, "{}: 'hidden_act' = '{}' is not supported (llama: silu)",
         path, act);
  }
  if (r.Has("rope_scaling")) {
    Fail(StatusCode::kUnimplemented, "{}: 'rope_scaling' is not supported (only plain RoPE)", path);
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (r.Bool(key, false)) {
      Fail(StatusCode::kUnimplemented, "{}: '{}' = true is not supported (llama without biases)",
           path, key);
    }
  }
}

void Gpt2Config(const ConfigReader& r, const std::string& path, ModelConfig& c) {
  c.d_model = r.Int("n_embd", 1 << 17);
  c.n_layers = r.Int("n_layer", 4096);
  c.n_heads = r.Int("n_head", 4096);
  c.n_kv_heads = c.n_heads;
  c.vocab_size = r.Int("vocab_size", 1 << 22);
  c.context_length = r.Has("n_positions") ? r.Int("n_positions", 1 << 24) : r.Int("n_ctx", 1 << 24);
  c.d_ff = r.IntOr("n_inner", 1 << 20, 4 * c.d_model);
  c.norm_eps = static_cast<float>(r.Number("layer_norm_epsilon", 1e-5));
  CheckEps(c, path, "layer_norm_epsilon");
  c.tied_output = true;  // GPT2LMHeadModel always ties lm_head to wte
  if (c.d_model % c.n_heads != 0) {
    Fail(StatusCode::kDataLoss, "{}: n_embd {} is not a multiple of n_head {}", path, c.d_model,
         c.n_heads);
  }
  c.head_dim = c.d_model / c.n_heads;
  const std::string act = r.String("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
    Fail(StatusCode::kUnimplemented,
         "{}: 'activation_function' = '{}' is not supported (gpt2: gelu_new or gelu_pytorch_tanh, "
         "the tanh approximation)",
         path, act);
  }
  if (!r.Bool("scale_attn_weights", true) || r.Bool("scale_attn_by_inverse_layer_idx", false)) {
    Fail(StatusCode::kUnimplemented,
         "{}: attention scaling other than 1/sqrt(head_dim) is not supported "
         "(scale_attn_weights / scale_attn_by_inverse_layer_idx)",
         path);
  }
}

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

ModelConfig ConfigFromHfJson(std::string_view text, const std::string& path) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) Fail(StatusCode::kDataLoss, "{}: not valid JSON", path);
  if (!j.is_object()) Fail(StatusCode::kDataLoss, "{}: expected a JSON object", path);
  const ConfigReader r(j, path);
  if (!r.Has("model_type")) {
    Fail(StatusCode::kDataLoss, "{}: missing key 'model_type' (expected \"llama\" or \"gpt2\")",
         path);
  }
  ModelConfig c;
  c.arch_name = r.String("model_type", "");
  if (c.arch_name == "llama") {
    c.arch = Arch::kLlama;
    LlamaConfig(r, path, c);
  } else if (c.arch_name == "gpt2") {
    c.arch = Arch::kGpt2;
    Gpt2Config(r, path, c);
  } else {
    Fail(StatusCode::kUnimplemented,
         "{}: model_type '{}' is not supported (supported: llama, gpt2)", path, c.arch_name);
  }
  return c;
}

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
