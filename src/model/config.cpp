#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "io/llama2c.h"

namespace kvinfer {
namespace {

// Bounds on what is read. kRun's are what the forward pass supports; kShape
// accepts any published model (far beyond all of them) while every
// per-token product of the KV-cache calculator stays inside 64 bits.
struct Limits {
  int64_t layers, heads, d_model, head_dim, d_ff, vocab, context;
};
constexpr Limits kRunLimits = {4096, 4096, 1 << 17, 1 << 16, 1 << 20, 1 << 22, 1 << 24};
constexpr Limits kShapeLimits = {1 << 16, 1 << 16, 1 << 30,         1 << 20,
                                 1 << 30, 1 << 30, int64_t{1} << 40};

const Limits& LimitsFor(ConfigUse use) {
  return use == ConfigUse::kRun ? kRunLimits : kShapeLimits;
}

// Context lengths and windows beyond int are kept as the int maximum (a cap
// no sequence reaches).
int ClampToInt(int64_t v) {
  return static_cast<int>(std::min<int64_t>(v, std::numeric_limits<int>::max()));
}

// Layers a window of `arch` applies to when the file does not list them:
// Gemma-2 alternates local and global layers, Gemma-3 has one global layer
// in six, others window every layer.
int WindowLayersOf(const std::string& arch, int n_layers) {
  if (arch == "gemma2") return (n_layers + 1) / 2;
  if (arch == "gemma3") return n_layers - n_layers / 6;
  return n_layers;
}

void CheckEps(float eps, const std::string& path, const std::string& key) {
  if (!(eps > 0.0f && eps < 1.0f)) {
    Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected 0 < eps < 1)", path, key,
         eps);
  }
}

void CheckRopeTheta(float theta, const std::string& path, const std::string& key) {
  if (!(theta > 0.0f)) {
    Fail(StatusCode::kDataLoss, "{}: '{}' = {} must be positive", path, key, theta);
  }
}

// ---------------------------------------------------------------------------
// GGUF

class GgufKeys {
 public:
  explicit GgufKeys(const GgufFile& f) : f_(f) {}

  std::optional<int64_t> Opt(const std::string& key, int64_t lo, int64_t hi) const {
    std::optional<uint64_t> v = f_.GetUint(key);
    if (!v) return std::nullopt;
    if (*v < static_cast<uint64_t>(lo) || *v > static_cast<uint64_t>(hi)) {
      Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected {}..{})", f_.path(), key,
           *v, lo, hi);
    }
    return static_cast<int64_t>(*v);
  }
  int64_t Req(const std::string& key, int64_t lo, int64_t hi) const {
    std::optional<int64_t> v = Opt(key, lo, hi);
    if (!v) Fail(StatusCode::kDataLoss, "{}: missing metadata key '{}'", f_.path(), key);
    return *v;
  }

 private:
  const GgufFile& f_;
};

// ---------------------------------------------------------------------------
// Hugging Face config.json

using Json = nlohmann::json;

// An integer read from the first present key of a list of spellings.
struct IntKey {
  int64_t value;
  const char* key;
};

// config.json keys, each read with its file named in every message. Keys
// that architectures spell differently (num_hidden_layers / n_layer) are
// read as lists of spellings, first present wins.
class HfKeys {
 public:
  HfKeys(const Json& j, const std::string& path) : j_(j), path_(path) {}

  bool Has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  // The first of `keys` present (non-null), an integer in [lo, hi]; nullopt
  // when none is present. A present key with a bad value is an error.
  // Integral floats (4096.0, written by some exporters) count as integers.
  std::optional<IntKey> OptInt(std::initializer_list<const char*> keys, int64_t lo,
                               int64_t hi) const {
    for (const char* key : keys) {
      if (!Has(key)) continue;
      const Json& v = j_.at(key);
      int64_t n = 0;
      if (v.is_number_integer()) {
        // number_unsigned beyond int64 would wrap; compare as unsigned first.
        if (v.is_number_unsigned() &&
            v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected {}..{})", path_, key,
               v.dump(), lo, hi);
        }
        n = v.get<int64_t>();
      } else if (v.is_number_float() && std::abs(v.get<double>()) < 0x1p62 &&
                 v.get<double>() == std::floor(v.get<double>())) {
        n = static_cast<int64_t>(v.get<double>());
      } else {
        Fail(StatusCode::kDataLoss, "{}: '{}' must be an integer, got {}", path_, key,
             v.dump().substr(0, 40));
      }
      if (n < lo || n > hi) {
        Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected {}..{})", path_, key,
             n, lo, hi);
      }
      return IntKey{n, key};
    }
    return std::nullopt;
  }

  IntKey ReqInt(std::initializer_list<const char*> keys, int64_t lo, int64_t hi) const {
    std::optional<IntKey> v = OptInt(keys, lo, hi);
    if (!v) {
      std::string names;
      for (const char* k : keys) names += fmt::format("{}'{}'", names.empty() ? "" : " or ", k);
      Fail(StatusCode::kDataLoss, "{}: missing key {}", path_, names);
    }
    return *v;
  }

  double Number(const char* key, double fallback) const {
    if (!Has(key)) return fallback;
    if (!j_.at(key).is_number()) {
      Fail(StatusCode::kDataLoss, "{}: '{}' is a {}, expected a number", path_, key,
           j_.at(key).type_name());
    }
    return j_.at(key).get<double>();
  }
  bool Bool(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    if (!j_.at(key).is_boolean()) {
      Fail(StatusCode::kDataLoss, "{}: '{}' is a {}, expected true or false", path_, key,
           j_.at(key).type_name());
    }
    return j_.at(key).get<bool>();
  }
  std::string String(const char* key, const std::string& fallback) const {
    if (!Has(key)) return fallback;
    if (!j_.at(key).is_string()) {
      Fail(StatusCode::kDataLoss, "{}: '{}' is a {}, expected a string", path_, key,
           j_.at(key).type_name());
    }
    return j_.at(key).get<std::string>();
  }
  const Json& json() const { return j_; }

 private:
  const Json& j_;
  const std::string& path_;
};

// The options of a llama config that change the computation and that
// kvinfer does not implement: refused rather than computed as something else.
void CheckLlamaRunnable(const HfKeys& r, const std::string& path) {
  const std::string act = r.String("hidden_act", "silu");
  if (act != "silu") {
    Fail(StatusCode::kUnimplemented, "{}: 'hidden_act' = '{}' is not supported (llama: silu)", path,
         act);
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

void CheckGpt2Runnable(const HfKeys& r, const std::string& path) {
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

}  // namespace

ModelConfig ConfigFromGguf(const GgufFile& f, ConfigUse use) {
  const bool run = use == ConfigUse::kRun;
  const Limits& lim = LimitsFor(use);
  const GgufKeys keys(f);
  ModelConfig c;
  std::optional<std::string_view> arch = f.GetString("general.architecture");
  if (!arch) {
    Fail(StatusCode::kDataLoss, "{}: missing metadata key 'general.architecture'", f.path());
  }
  c.arch_name = std::string(*arch);
  if (c.arch_name == "gpt2") {
    c.arch = Arch::kGpt2;
  } else if (c.arch_name != "llama" && run) {
    Fail(StatusCode::kUnimplemented,
         "{}: architecture '{}' is not supported (supported: llama, gpt2)", f.path(), c.arch_name);
  }
  if (std::optional<std::string_view> name = f.GetString("general.name")) c.name = *name;

  const std::string& a = c.arch_name;
  c.n_layers = static_cast<int>(keys.Req(a + ".block_count", 1, lim.layers));
  if (run) c.d_model = static_cast<int>(keys.Req(a + ".embedding_length", 1, lim.d_model));
  c.n_heads = static_cast<int>(keys.Req(a + ".attention.head_count", 1, lim.heads));
  c.n_kv_heads =
      static_cast<int>(keys.Opt(a + ".attention.head_count_kv", 1, lim.heads).value_or(c.n_heads));
  if (run) {
    c.d_ff = static_cast<int>(keys.Req(a + ".feed_forward_length", 1, lim.d_ff));
    c.context_length = static_cast<int>(keys.Req(a + ".context_length", 1, lim.context));
  } else if (std::optional<int64_t> ctx = keys.Opt(a + ".context_length", 1, lim.context)) {
    c.context_length = ClampToInt(*ctx);
  }

  // Head sizes: key_length / value_length when given, else d_model / heads.
  std::optional<int64_t> k_len = keys.Opt(a + ".attention.key_length", 1, lim.head_dim);
  std::optional<int64_t> v_len = keys.Opt(a + ".attention.value_length", 1, lim.head_dim);
  if (run || !k_len || !v_len) {
    if (!run) c.d_model = static_cast<int>(keys.Req(a + ".embedding_length", 1, lim.d_model));
    if (c.d_model % c.n_heads != 0) {
      Fail(StatusCode::kDataLoss, "{}: embedding_length {} is not a multiple of head_count {}",
           f.path(), c.d_model, c.n_heads);
    }
  }
  const int64_t derived = c.d_model > 0 ? c.d_model / c.n_heads : 0;
  c.head_dim = static_cast<int>(k_len.value_or(derived));
  c.v_head_dim = static_cast<int>(v_len.value_or(derived));

  if (a == "deepseek2" || f.Find(a + ".attention.kv_lora_rank") != nullptr) {
    c.mla = true;
    c.kv_lora_rank = static_cast<int>(keys.Req(a + ".attention.kv_lora_rank", 1, lim.head_dim));
    c.qk_rope_head_dim = static_cast<int>(keys.Req(a + ".rope.dimension_count", 1, lim.head_dim));
  }
  if (std::optional<int64_t> w = keys.Opt(a + ".attention.sliding_window", 0, lim.context);
      w && *w > 0) {
    c.sliding_window = ClampToInt(*w);
    c.n_window_layers = WindowLayersOf(a, c.n_layers);
  }
  if (!run) return c;

  if (c.head_dim != derived || c.v_head_dim != derived) {
    Fail(StatusCode::kUnimplemented,
         "{}: key_length {} / value_length {} differ from embedding_length / head_count = {} "
         "(not supported)",
         f.path(), c.head_dim, c.v_head_dim, derived);
  }
  if (c.mla) {
    Fail(StatusCode::kUnimplemented, "{}: multi-head latent attention ('{}') is not supported",
         f.path(), a + ".attention.kv_lora_rank");
  }
  if (c.sliding_window > 0) {
    Fail(StatusCode::kUnimplemented, "{}: sliding-window attention ('{}' = {}) is not supported",
         f.path(), a + ".attention.sliding_window", c.sliding_window);
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    Fail(StatusCode::kDataLoss, "{}: head_count {} is not a multiple of head_count_kv {}", f.path(),
         c.n_heads, c.n_kv_heads);
  }

  const std::string eps_key = c.arch == Arch::kLlama ? a + ".attention.layer_norm_rms_epsilon"
                                                     : a + ".attention.layer_norm_epsilon";
  if (std::optional<double> eps = f.GetFloat(eps_key)) c.norm_eps = static_cast<float>(*eps);
  CheckEps(c.norm_eps, f.path(), eps_key);

  if (c.arch == Arch::kLlama) {
    c.rope_dims = f.Find(a + ".rope.dimension_count")
                      ? static_cast<int>(keys.Req(a + ".rope.dimension_count", 1, c.head_dim))
                      : c.head_dim;
    if (c.rope_dims % 2 != 0) {
      Fail(StatusCode::kDataLoss, "{}: rope.dimension_count {} must be even", f.path(),
           c.rope_dims);
    }
    if (std::optional<double> theta = f.GetFloat(a + ".rope.freq_base")) {
      c.rope_theta = static_cast<float>(*theta);
    }
    CheckRopeTheta(c.rope_theta, f.path(), a + ".rope.freq_base");
  }

  // The vocabulary size comes from the embedding matrix (the metadata key is
  // optional and sometimes absent).
  const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr)
    Fail(StatusCode::kDataLoss, "{}: missing tensor 'token_embd.weight'", f.path());
  if (embd->dims.size() != 2 || embd->dims[0] != static_cast<uint64_t>(c.d_model) ||
      embd->dims[1] == 0 || embd->dims[1] > static_cast<uint64_t>(lim.vocab)) {
    Fail(StatusCode::kDataLoss,
         "{}: tensor 'token_embd.weight' has a bad shape (expected [{}, vocab])", f.path(),
         c.d_model);
  }
  c.vocab_size = static_cast<int>(embd->dims[1]);
  c.tied_output = f.FindTensor("output.weight") == nullptr;
  return c;
}

ModelConfig ConfigFromHfJson(std::string_view text, const std::string& path, ConfigUse use) {
  const bool run = use == ConfigUse::kRun;
  const Limits& lim = LimitsFor(use);
  Json root;
  try {
    root = Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // Syntax errors, and numbers no double holds (1e400).
    Fail(StatusCode::kDataLoss, "{}: not valid JSON: {}", path, e.what());
  }
  if (!root.is_object()) {
    Fail(StatusCode::kDataLoss, "{}: expected a JSON object at the top level", path);
  }
  // Multimodal checkpoints (Llava, Gemma-3, ...) nest the language model's
  // config under text_config.
  const HfKeys top(root, path);
  const bool nested = !top.Has("num_hidden_layers") && !top.Has("n_layer") &&
                      top.Has("text_config") && root.at("text_config").is_object();
  const HfKeys r(nested ? root.at("text_config") : root, path);

  ModelConfig c;
  for (const HfKeys* k : {&r, &top}) {
    if (c.arch_name.empty() && k->Has("model_type") && k->json().at("model_type").is_string()) {
      c.arch_name = k->String("model_type", "");
    }
  }
  if (run) {
    if (!top.Has("model_type")) {
      Fail(StatusCode::kDataLoss, "{}: missing key 'model_type' (expected \"llama\" or \"gpt2\")",
           path);
    }
    c.arch_name = top.String("model_type", "");
    if (c.arch_name == "gpt2") {
      c.arch = Arch::kGpt2;
    } else if (c.arch_name != "llama") {
      Fail(StatusCode::kUnimplemented,
           "{}: model_type '{}' is not supported (supported: llama, gpt2)", path, c.arch_name);
    }
  } else if (c.arch_name == "gpt2") {
    c.arch = Arch::kGpt2;
  }

  c.n_layers = static_cast<int>(
      r.ReqInt({"num_hidden_layers", "n_layer", "n_layers", "num_layers"}, 1, lim.layers).value);
  const IntKey heads = r.ReqInt({"num_attention_heads", "n_head", "n_heads"}, 1, lim.heads);
  c.n_heads = static_cast<int>(heads.value);
  // Falcon / BigCode spell MQA as a flag.
  const bool multi_query = r.Has("multi_query") && r.json().at("multi_query").is_boolean() &&
                           r.Bool("multi_query", false);
  const std::optional<IntKey> kv_heads =
      r.OptInt({"num_key_value_heads", "n_head_kv", "num_kv_heads"}, 1, lim.heads);
  c.n_kv_heads = kv_heads ? static_cast<int>(kv_heads->value) : multi_query ? 1 : c.n_heads;
  const std::initializer_list<const char*> ctx_keys = {"max_position_embeddings", "n_positions",
                                                       "n_ctx", "max_sequence_length"};
  if (run) {
    c.context_length = static_cast<int>(r.ReqInt(ctx_keys, 1, lim.context).value);
  } else if (std::optional<IntKey> ctx = r.OptInt(ctx_keys, 1, lim.context)) {
    c.context_length = ClampToInt(ctx->value);
  }

  const std::initializer_list<const char*> hidden_keys = {"hidden_size", "n_embd", "d_model"};
  const bool deepseek = c.arch_name == "deepseek_v2" || c.arch_name == "deepseek_v3";
  if (deepseek || r.Has("kv_lora_rank")) {
    c.mla = true;
    c.kv_lora_rank = static_cast<int>(r.ReqInt({"kv_lora_rank"}, 1, lim.head_dim).value);
    c.qk_rope_head_dim = static_cast<int>(r.ReqInt({"qk_rope_head_dim"}, 0, lim.head_dim).value);
    const int64_t nope =
        r.OptInt({"qk_nope_head_dim"}, 0, lim.head_dim).value_or(IntKey{0, ""}).value;
    c.head_dim = static_cast<int>(nope + c.qk_rope_head_dim);
    c.v_head_dim = static_cast<int>(
        r.OptInt({"v_head_dim"}, 0, lim.head_dim).value_or(IntKey{c.head_dim, ""}).value);
    if (std::optional<IntKey> hidden = r.OptInt(hidden_keys, 1, lim.d_model)) {
      c.d_model = static_cast<int>(hidden->value);
    }
  } else {
    const std::optional<IntKey> head_dim = r.OptInt({"head_dim"}, 1, lim.head_dim);
    if (run || !head_dim) {
      const IntKey hidden = r.ReqInt(hidden_keys, 1, lim.d_model);
      c.d_model = static_cast<int>(hidden.value);
      if (c.d_model % c.n_heads != 0) {
        Fail(StatusCode::kDataLoss, "{}: {} {} is not a multiple of {} {}", path, hidden.key,
             c.d_model, heads.key, c.n_heads);
      }
    }
    const int derived = c.d_model > 0 ? c.d_model / c.n_heads : 0;
    c.head_dim = head_dim ? static_cast<int>(head_dim->value) : derived;
    c.v_head_dim = c.head_dim;
    if (run && c.head_dim != derived) {
      Fail(StatusCode::kUnimplemented,
           "{}: 'head_dim' = {} differs from hidden_size / num_attention_heads = {} (not "
           "supported)",
           path, c.head_dim, derived);
    }
  }

  // Sliding windows. Qwen2 configs carry a window that is off unless
  // use_sliding_window is true.
  const bool window_disabled = r.Has("use_sliding_window") &&
                               r.json().at("use_sliding_window").is_boolean() &&
                               !r.Bool("use_sliding_window", true);
  std::optional<IntKey> window = r.OptInt({"sliding_window"}, 1, lim.context);
  if (window && !window_disabled) {
    c.sliding_window = ClampToInt(window->value);
    c.n_window_layers = c.n_layers;
    const Json& j = r.json();
    if (r.Has("layer_types") && j.at("layer_types").is_array()) {
      // Newer configs list each layer: "sliding_attention" / "full_attention".
      int sliding = 0;
      for (const Json& t : j.at("layer_types")) {
        if (t.is_string() && t.get<std::string>() == "sliding_attention") ++sliding;
      }
      c.n_window_layers = sliding;
    } else if (c.arch_name == "gemma2") {
      c.n_window_layers = WindowLayersOf(c.arch_name, c.n_layers);
    } else if (r.Has("sliding_window_pattern")) {
      // Gemma-3: every pattern-th layer is global, the rest local.
      const int64_t pattern = r.ReqInt({"sliding_window_pattern"}, 1, lim.layers).value;
      c.n_window_layers = c.n_layers - static_cast<int>(c.n_layers / pattern);
    } else if (r.Has("max_window_layers") && r.Has("use_sliding_window")) {
      // Qwen2: layers at index >= max_window_layers use the window.
      const int64_t first = r.ReqInt({"max_window_layers"}, 0, lim.layers).value;
      c.n_window_layers = static_cast<int>(std::max<int64_t>(0, c.n_layers - first));
    }
    if (c.n_window_layers == 0) c.sliding_window = 0;
  }
  if (!run) return c;

  if (c.mla) {
    Fail(StatusCode::kUnimplemented,
         "{}: multi-head latent attention ('kv_lora_rank') is not supported", path);
  }
  if (c.sliding_window > 0) {
    Fail(StatusCode::kUnimplemented,
         "{}: sliding-window attention ('sliding_window' = {}) is not supported", path,
         c.sliding_window);
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    Fail(StatusCode::kDataLoss, "{}: {} {} is not a multiple of {} {}", path, heads.key, c.n_heads,
         kv_heads ? kv_heads->key : "n_kv_heads", c.n_kv_heads);
  }
  c.vocab_size = static_cast<int>(r.ReqInt({"vocab_size"}, 1, lim.vocab).value);
  if (c.arch == Arch::kLlama) {
    c.d_ff = static_cast<int>(r.ReqInt({"intermediate_size"}, 1, lim.d_ff).value);
    c.norm_eps = static_cast<float>(r.Number("rms_norm_eps", 1e-6));
    CheckEps(c.norm_eps, path, "rms_norm_eps");
    c.rope_theta = static_cast<float>(r.Number("rope_theta", 10000.0));
    CheckRopeTheta(c.rope_theta, path, "rope_theta");
    c.tied_output = r.Bool("tie_word_embeddings", false);
    c.rope_dims = c.head_dim;
    if (c.head_dim % 2 != 0) {
      Fail(StatusCode::kDataLoss, "{}: head size {} must be even for rotary embeddings", path,
           c.head_dim);
    }
    CheckLlamaRunnable(r, path);
  } else {
    c.d_ff = static_cast<int>(
        r.OptInt({"n_inner"}, 1, lim.d_ff).value_or(IntKey{4 * int64_t{c.d_model}, ""}).value);
    c.norm_eps = static_cast<float>(r.Number("layer_norm_epsilon", 1e-5));
    CheckEps(c.norm_eps, path, "layer_norm_epsilon");
    c.tied_output = true;  // GPT2LMHeadModel always ties lm_head to wte
    CheckGpt2Runnable(r, path);
  }
  return c;
}

ModelConfig ConfigFromLlama2c(const Llama2cHeader& h) {
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.arch_name = "llama";
  c.n_layers = h.n_layers;
  c.d_model = h.dim;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.v_head_dim = c.head_dim;
  c.d_ff = h.hidden_dim;
  c.vocab_size = h.vocab_size < 0 ? -h.vocab_size : h.vocab_size;
  c.context_length = h.seq_len;
  c.rope_dims = c.head_dim;
  c.rope_theta = 10000.0f;
  c.norm_eps = 1e-5f;
  c.tied_output = h.vocab_size > 0;
  return c;
}

}  // namespace kvinfer
