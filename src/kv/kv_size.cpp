#include "kv/kv_size.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"

namespace kvinfer {
namespace {

// Generous bounds: far beyond any real model, small enough that per-token
// products stay well inside 64 bits.
constexpr int64_t kMaxLayers = 1 << 16;
constexpr int64_t kMaxHeads = 1 << 16;
constexpr int64_t kMaxHeadDim = 1 << 20;
constexpr int64_t kMaxContext = int64_t{1} << 40;

constexpr int kBlockElems = 32;  // GGML q8_0 / q4_0 block

struct DtypeRow {
  KvDtype type;
  std::string_view name;
};
constexpr std::array<DtypeRow, 7> kDtypes = {{
    {KvDtype::kF32, "f32"},
    {KvDtype::kF16, "f16"},
    {KvDtype::kBF16, "bf16"},
    {KvDtype::kFP8, "fp8"},
    {KvDtype::kInt8, "int8"},
    {KvDtype::kQ8_0, "q8_0"},
    {KvDtype::kQ4_0, "q4_0"},
}};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Bytes of one stored vector of `elems` elements: payload and scales apart.
struct VectorBytes {
  uint64_t payload = 0;
  uint64_t scale = 0;
};

VectorBytes BytesOfVector(uint64_t elems, KvDtype t) {
  const uint64_t blocks = (elems + kBlockElems - 1) / kBlockElems;
  switch (t) {
    case KvDtype::kF32:
      return {4 * elems, 0};
    case KvDtype::kF16:
      return {2 * elems, 0};
    case KvDtype::kBF16:
      return {2 * elems, 0};
    case KvDtype::kFP8:
      return {elems, 0};
    case KvDtype::kInt8:
      return {elems, 2};  // one f16 scale per vector
    case KvDtype::kQ8_0:
      // As kvinfer's q8_0 cache stores it (KvRowBytes): one int8 code per
      // element and an f16 scale per started block of 32, the last block's
      // codes not padded.
      return {elems, blocks * 2};
    case KvDtype::kQ4_0:
      // As kvinfer's q4_0 cache stores it (KvRowBytes): two codes per byte
      // and an f16 scale per started block of 32, nothing padded.
      return {(elems + 1) / 2, blocks * 2};
  }
  KVINFER_CHECK_MSG(false, "unknown KvDtype {}", static_cast<int>(t));
  return {};
}

uint64_t MulChecked(uint64_t a, uint64_t b, const char* what) {
  uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) {
    Fail(StatusCode::kOutOfRange, "KV size overflows 64 bits while computing {} ({} x {})", what, a,
         b);
  }
  return r;
}

uint64_t AddChecked(uint64_t a, uint64_t b, const char* what) {
  uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) {
    Fail(StatusCode::kOutOfRange, "KV size overflows 64 bits while computing {}", what);
  }
  return r;
}

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// ---------------------------------------------------------------------------
// Presets. Each number is from the model's published config.json on the
// Hugging Face Hub (path given per entry); head_dim = hidden_size /
// num_attention_heads where the config has no head_dim.

KvSizeSpec Dense(std::string name, int layers, int heads, int kv_heads, int head_dim, int ctx) {
  KvSizeSpec s;
  s.name = std::move(name);
  s.n_layers = layers;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.v_head_dim = head_dim;
  s.context_length = ctx;
  return s;
}

std::vector<KvSizeSpec> MakePresets() {
  std::vector<KvSizeSpec> p;
  // openai-community/gpt2: n_layer 12, n_head 12, n_embd 768 (-> 64), n_positions 1024.
  p.push_back(Dense("gpt2", 12, 12, 12, 64, 1024));
  // HuggingFaceTB/SmolLM2-135M: num_hidden_layers 30, num_attention_heads 9,
  // num_key_value_heads 3, hidden_size 576 (-> 64), max_position_embeddings 8192.
  p.push_back(Dense("smollm2-135m", 30, 9, 3, 64, 8192));
  // meta-llama/Llama-2-7b-hf: 32 layers, 32 heads, 32 KV heads, hidden 4096 (-> 128), 4096.
  p.push_back(Dense("llama-2-7b", 32, 32, 32, 128, 4096));
  // meta-llama/Llama-2-70b-hf: 80 layers, 64 heads, 8 KV heads, hidden 8192 (-> 128), 4096.
  p.push_back(Dense("llama-2-70b", 80, 64, 8, 128, 4096));
  // meta-llama/Meta-Llama-3-8B: 32 layers, 32 heads, 8 KV heads, hidden 4096 (-> 128), 8192.
  p.push_back(Dense("llama-3-8b", 32, 32, 8, 128, 8192));
  // meta-llama/Meta-Llama-3-70B: 80 layers, 64 heads, 8 KV heads, hidden 8192 (-> 128), 8192.
  p.push_back(Dense("llama-3-70b", 80, 64, 8, 128, 8192));
  // mistralai/Mistral-7B-v0.1: 32 layers, 32 heads, 8 KV heads, hidden 4096 (-> 128),
  // max_position_embeddings 32768, sliding_window 4096 on every layer.
  KvSizeSpec mistral = Dense("mistral-7b", 32, 32, 8, 128, 32768);
  mistral.sliding_window = 4096;
  mistral.n_window_layers = 32;
  p.push_back(mistral);
  // mistralai/Mixtral-8x7B-v0.1: 32 layers, 32 heads, 8 KV heads, hidden 4096 (-> 128),
  // max_position_embeddings 32768, sliding_window null. The 8 experts are
  // feed-forward only, so the KV cache is that of a dense model.
  p.push_back(Dense("mixtral-8x7b", 32, 32, 8, 128, 32768));
  // deepseek-ai/DeepSeek-V3: num_hidden_layers 61, num_attention_heads 128,
  // kv_lora_rank 512, qk_rope_head_dim 64, qk_nope_head_dim 128 (query/key head
  // 128 + 64 = 192), v_head_dim 128, max_position_embeddings 163840. MLA caches
  // the 512-wide latent and the 64-wide RoPE key per token per layer.
  KvSizeSpec ds = Dense("deepseek-v3", 61, 128, 128, 192, 163840);
  ds.v_head_dim = 128;
  ds.mla = true;
  ds.kv_lora_rank = 512;
  ds.qk_rope_head_dim = 64;
  p.push_back(ds);
  return p;
}

const std::vector<KvSizeSpec>& Presets() {
  static const std::vector<KvSizeSpec> presets = MakePresets();
  return presets;
}

// ---------------------------------------------------------------------------
// Hugging Face config.json

using Json = nlohmann::json;

bool Has(const Json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

// The first of `keys` present (non-null) as an integer in [lo, hi]; nullopt
// when none is present. A present key with a bad value is an error.
std::optional<int64_t> OptInt(const Json& j, std::initializer_list<const char*> keys, int64_t lo,
                              int64_t hi, const std::string& where) {
  for (const char* key : keys) {
    if (!Has(j, key)) continue;
    const Json& v = j.at(key);
    int64_t n = 0;
    if (v.is_number_integer()) {
      // number_unsigned beyond int64 would wrap; compare as unsigned first.
      if (v.is_number_unsigned() &&
          v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Fail(StatusCode::kInvalidArgument, "{}: '{}' = {} is out of range (expected {}..{})", where,
             key, v.dump(), lo, hi);
      }
      n = v.get<int64_t>();
    } else if (v.is_number_float() && std::abs(v.get<double>()) < 0x1p62 &&
               v.get<double>() == std::floor(v.get<double>())) {
      n = static_cast<int64_t>(v.get<double>());  // 4096.0 written by some exporters
    } else {
      Fail(StatusCode::kInvalidArgument, "{}: '{}' must be an integer, got {}", where, key,
           v.dump());
    }
    if (n < lo || n > hi) {
      Fail(StatusCode::kInvalidArgument, "{}: '{}' = {} is out of range (expected {}..{})", where,
           key, n, lo, hi);
    }
    return n;
  }
  return std::nullopt;
}

int64_t ReqInt(const Json& j, std::initializer_list<const char*> keys, int64_t lo, int64_t hi,
               const std::string& where) {
  std::optional<int64_t> v = OptInt(j, keys, lo, hi, where);
  if (!v) {
    std::string names;
    for (const char* k : keys) names += fmt::format("{}'{}'", names.empty() ? "" : " or ", k);
    Fail(StatusCode::kInvalidArgument, "{}: missing key {}", where, names);
  }
  return *v;
}

}  // namespace

// ---------------------------------------------------------------------------

std::string_view KvDtypeName(KvDtype t) {
  for (const DtypeRow& r : kDtypes) {
    if (r.type == t) return r.name;
  }
  return "?";
}

std::string KvDtypeNames() {
  std::string out;
  for (const DtypeRow& r : kDtypes) out += fmt::format("{}{}", out.empty() ? "" : ", ", r.name);
  return out;
}

KvDtype ParseKvDtype(std::string_view name) {
  std::string n = Lower(name);
  // Common spellings of the same types.
  if (n == "fp32" || n == "float32") n = "f32";
  if (n == "fp16" || n == "float16" || n == "half") n = "f16";
  if (n == "bfloat16") n = "bf16";
  if (n == "f8" || n == "fp8_e4m3" || n == "fp8_e5m2" || n == "e4m3" || n == "e5m2") n = "fp8";
  if (n == "i8") n = "int8";
  for (const DtypeRow& r : kDtypes) {
    if (r.name == n) return r.type;
  }
  Fail(StatusCode::kInvalidArgument, "unknown KV dtype '{}' (expected one of: {})", name,
       KvDtypeNames());
}

std::string_view KvAttentionName(KvAttention a) {
  switch (a) {
    case KvAttention::kMHA:
      return "MHA";
    case KvAttention::kGQA:
      return "GQA";
    case KvAttention::kMQA:
      return "MQA";
    case KvAttention::kMLA:
      return "MLA";
  }
  return "?";
}

KvAttention KvSizeSpec::attention() const {
  if (mla) return KvAttention::kMLA;
  if (n_kv_heads == n_heads) return KvAttention::kMHA;
  if (n_kv_heads == 1) return KvAttention::kMQA;
  return KvAttention::kGQA;
}

void ValidateKvSizeSpec(const KvSizeSpec& s) {
  auto in_range = [&](const char* field, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
      Fail(StatusCode::kInvalidArgument, "{}: {} = {} is out of range (expected {}..{})", s.name,
           field, v, lo, hi);
    }
  };
  in_range("n_layers", s.n_layers, 1, kMaxLayers);
  in_range("n_heads", s.n_heads, 1, kMaxHeads);
  if (s.mla) {
    in_range("kv_lora_rank", s.kv_lora_rank, 1, kMaxHeadDim);
    in_range("qk_rope_head_dim", s.qk_rope_head_dim, 0, kMaxHeadDim);
  } else {
    in_range("n_kv_heads", s.n_kv_heads, 1, s.n_heads);
    if (s.n_heads % s.n_kv_heads != 0) {
      Fail(StatusCode::kInvalidArgument,
           "{}: n_heads {} is not a multiple of n_kv_heads {} (grouped-query attention shares "
           "each KV head among a whole number of query heads)",
           s.name, s.n_heads, s.n_kv_heads);
    }
    in_range("head_dim", s.head_dim, 1, kMaxHeadDim);
    in_range("v_head_dim", s.v_head_dim, 1, kMaxHeadDim);
  }
  in_range("sliding_window", s.sliding_window, 0, kMaxContext);
  if (s.sliding_window > 0) {
    in_range("n_window_layers", s.n_window_layers, 1, s.n_layers);
  } else if (s.n_window_layers != 0) {
    Fail(StatusCode::kInvalidArgument, "{}: n_window_layers = {} but there is no sliding window",
         s.name, s.n_window_layers);
  }
  in_range("context_length", s.context_length, 0, kMaxContext);
}

std::vector<std::string> KvSizePresetNames() {
  std::vector<std::string> names;
  for (const KvSizeSpec& s : Presets()) names.push_back(s.name);
  return names;
}

KvSizeSpec KvSizeSpecFromPreset(std::string_view name) {
  const std::string n = Lower(name);
  for (const KvSizeSpec& s : Presets()) {
    if (s.name == n) return s;
  }
  std::string known;
  for (const KvSizeSpec& s : Presets())
    known += fmt::format("{}{}", known.empty() ? "" : ", ", s.name);
  Fail(StatusCode::kNotFound, "unknown preset '{}' (known presets: {})", name, known);
}

KvSizeSpec KvSizeSpecFromHfConfig(std::string_view json_text, std::string name) {
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::parse_error& e) {
    Fail(StatusCode::kInvalidArgument, "{}: not valid JSON: {}", name, e.what());
  }
  if (!root.is_object()) {
    Fail(StatusCode::kInvalidArgument, "{}: expected a JSON object at the top level", name);
  }
  // Multimodal checkpoints (Llava, Gemma-3, ...) nest the language model's
  // config under text_config.
  const Json* cfg = &root;
  if (!Has(root, "num_hidden_layers") && !Has(root, "n_layer") && Has(root, "text_config") &&
      root.at("text_config").is_object()) {
    cfg = &root.at("text_config");
  }
  const Json& j = *cfg;
  const std::string where = name;  // a copy: name is moved into the spec below

  std::string model_type;
  if (Has(j, "model_type") && j.at("model_type").is_string()) {
    model_type = j.at("model_type").get<std::string>();
  } else if (Has(root, "model_type") && root.at("model_type").is_string()) {
    model_type = root.at("model_type").get<std::string>();
  }

  KvSizeSpec s;
  s.name = std::move(name);
  s.n_layers = static_cast<int>(
      ReqInt(j, {"num_hidden_layers", "n_layer", "n_layers", "num_layers"}, 1, kMaxLayers, where));
  s.n_heads = static_cast<int>(
      ReqInt(j, {"num_attention_heads", "n_head", "n_heads"}, 1, kMaxHeads, where));
  // Falcon/BigCode spell MQA as a flag.
  const bool multi_query =
      Has(j, "multi_query") && j.at("multi_query").is_boolean() && j.at("multi_query").get<bool>();
  s.n_kv_heads = static_cast<int>(
      OptInt(j, {"num_key_value_heads", "n_head_kv", "num_kv_heads"}, 1, kMaxHeads, where)
          .value_or(multi_query ? 1 : s.n_heads));
  if (std::optional<int64_t> ctx =
          OptInt(j, {"max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"}, 1,
                 kMaxContext, where)) {
    s.context_length = static_cast<int>(std::min<int64_t>(*ctx, std::numeric_limits<int>::max()));
  }

  const bool is_deepseek = model_type == "deepseek_v2" || model_type == "deepseek_v3";
  if (is_deepseek || Has(j, "kv_lora_rank")) {
    s.mla = true;
    s.kv_lora_rank = static_cast<int>(ReqInt(j, {"kv_lora_rank"}, 1, kMaxHeadDim, where));
    s.qk_rope_head_dim = static_cast<int>(ReqInt(j, {"qk_rope_head_dim"}, 0, kMaxHeadDim, where));
    const int64_t nope = OptInt(j, {"qk_nope_head_dim"}, 0, kMaxHeadDim, where).value_or(0);
    s.head_dim = static_cast<int>(nope + s.qk_rope_head_dim);
    s.v_head_dim =
        static_cast<int>(OptInt(j, {"v_head_dim"}, 0, kMaxHeadDim, where).value_or(s.head_dim));
  } else {
    std::optional<int64_t> head_dim = OptInt(j, {"head_dim"}, 1, kMaxHeadDim, where);
    if (!head_dim) {
      const int64_t hidden =
          ReqInt(j, {"hidden_size", "n_embd", "d_model"}, 1, kMaxHeadDim * kMaxHeads, where);
      if (hidden % s.n_heads != 0) {
        Fail(StatusCode::kInvalidArgument,
             "{}: hidden_size {} is not a multiple of num_attention_heads {} (give head_dim)",
             where, hidden, s.n_heads);
      }
      head_dim = hidden / s.n_heads;
    }
    s.head_dim = static_cast<int>(*head_dim);
    s.v_head_dim = s.head_dim;
  }

  // Sliding windows. Qwen2 configs carry a window that is off unless
  // use_sliding_window is true.
  const bool window_disabled = Has(j, "use_sliding_window") &&
                               j.at("use_sliding_window").is_boolean() &&
                               !j.at("use_sliding_window").get<bool>();
  std::optional<int64_t> window = OptInt(j, {"sliding_window"}, 1, kMaxContext, where);
  if (window && !window_disabled) {
    s.sliding_window =
        static_cast<int>(std::min<int64_t>(*window, std::numeric_limits<int>::max()));
    s.n_window_layers = s.n_layers;
    if (Has(j, "layer_types") && j.at("layer_types").is_array()) {
      // Newer configs list each layer: "sliding_attention" / "full_attention".
      int sliding = 0;
      for (const Json& t : j.at("layer_types")) {
        if (t.is_string() && t.get<std::string>() == "sliding_attention") ++sliding;
      }
      s.n_window_layers = sliding;
    } else if (model_type == "gemma2") {
      s.n_window_layers = (s.n_layers + 1) / 2;  // even-numbered layers are local
    } else if (Has(j, "sliding_window_pattern")) {
      // Gemma-3: every pattern-th layer is global, the rest local.
      const int64_t pattern = ReqInt(j, {"sliding_window_pattern"}, 1, kMaxLayers, where);
      s.n_window_layers = s.n_layers - static_cast<int>(s.n_layers / pattern);
    } else if (Has(j, "max_window_layers") && Has(j, "use_sliding_window")) {
      // Qwen2: layers at index >= max_window_layers use the window.
      const int64_t first = ReqInt(j, {"max_window_layers"}, 0, kMaxLayers, where);
      s.n_window_layers = static_cast<int>(std::max<int64_t>(0, s.n_layers - first));
    }
    if (s.n_window_layers == 0) s.sliding_window = 0;
  }
  ValidateKvSizeSpec(s);
  return s;
}

KvSizeSpec KvSizeSpecFromGguf(const GgufFile& f) {
  std::optional<std::string_view> arch = f.GetString("general.architecture");
  if (!arch)
    Fail(StatusCode::kDataLoss, "{}: missing metadata key 'general.architecture'", f.path());
  const std::string a(*arch);
  auto get = [&](const std::string& key, int64_t lo, int64_t hi) -> std::optional<int64_t> {
    std::optional<uint64_t> v = f.GetUint(key);
    if (!v) return std::nullopt;
    if (*v < static_cast<uint64_t>(lo) || *v > static_cast<uint64_t>(hi)) {
      Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected {}..{})", f.path(), key,
           *v, lo, hi);
    }
    return static_cast<int64_t>(*v);
  };
  auto req = [&](const std::string& key, int64_t lo, int64_t hi) -> int64_t {
    std::optional<int64_t> v = get(key, lo, hi);
    if (!v) Fail(StatusCode::kDataLoss, "{}: missing metadata key '{}'", f.path(), key);
    return *v;
  };

  KvSizeSpec s;
  if (std::optional<std::string_view> n = f.GetString("general.name"); n && !n->empty()) {
    s.name = std::string(*n);
  } else {
    s.name = std::filesystem::path(f.path()).stem().string();
  }
  s.n_layers = static_cast<int>(req(a + ".block_count", 1, kMaxLayers));
  s.n_heads = static_cast<int>(req(a + ".attention.head_count", 1, kMaxHeads));
  s.n_kv_heads =
      static_cast<int>(get(a + ".attention.head_count_kv", 1, kMaxHeads).value_or(s.n_heads));
  if (std::optional<int64_t> ctx = get(a + ".context_length", 1, kMaxContext)) {
    s.context_length = static_cast<int>(std::min<int64_t>(*ctx, std::numeric_limits<int>::max()));
  }
  std::optional<int64_t> k_len = get(a + ".attention.key_length", 1, kMaxHeadDim);
  std::optional<int64_t> v_len = get(a + ".attention.value_length", 1, kMaxHeadDim);
  if (!k_len || !v_len) {
    const int64_t embd = req(a + ".embedding_length", 1, kMaxHeadDim * kMaxHeads);
    if (embd % s.n_heads != 0) {
      Fail(StatusCode::kDataLoss,
           "{}: '{}.embedding_length' {} is not a multiple of head_count {} (and no key_length)",
           f.path(), a, embd, s.n_heads);
    }
    if (!k_len) k_len = embd / s.n_heads;
    if (!v_len) v_len = embd / s.n_heads;
  }
  s.head_dim = static_cast<int>(*k_len);
  s.v_head_dim = static_cast<int>(*v_len);

  if (a == "deepseek2" || f.Find(a + ".attention.kv_lora_rank") != nullptr) {
    s.mla = true;
    s.kv_lora_rank = static_cast<int>(req(a + ".attention.kv_lora_rank", 1, kMaxHeadDim));
    s.qk_rope_head_dim = static_cast<int>(req(a + ".rope.dimension_count", 1, kMaxHeadDim));
  }
  if (std::optional<int64_t> w = get(a + ".attention.sliding_window", 0, kMaxContext);
      w && *w > 0) {
    s.sliding_window = static_cast<int>(std::min<int64_t>(*w, std::numeric_limits<int>::max()));
    if (a == "gemma2") {
      s.n_window_layers = (s.n_layers + 1) / 2;  // even-numbered layers are local
    } else if (a == "gemma3") {
      s.n_window_layers = s.n_layers - s.n_layers / 6;  // every 6th layer is global
    } else {
      s.n_window_layers = s.n_layers;
    }
  }
  try {
    ValidateKvSizeSpec(s);
  } catch (const Error& e) {
    Fail(StatusCode::kDataLoss, "{}: {}", f.path(), e.what());
  }
  return s;
}

int64_t WindowTokens(int64_t seq_len, int64_t window, int64_t block_size) {
  KVINFER_CHECK(seq_len > 0 && window > 0 && block_size > 0);
  if (seq_len <= window) return RoundUp(seq_len, block_size);
  // Live positions [seq_len - window, seq_len) touch these blocks.
  const int64_t first_block = (seq_len - window) / block_size;
  const int64_t last_block = (seq_len - 1) / block_size;
  return (last_block - first_block + 1) * block_size;
}

KvSizeResult ComputeKvSize(const KvSizeSpec& spec, const KvSizeOptions& o) {
  ValidateKvSizeSpec(spec);
  if (o.seq_len <= 0)
    Fail(StatusCode::kInvalidArgument, "seq_len must be positive, got {}", o.seq_len);
  if (o.batch <= 0) Fail(StatusCode::kInvalidArgument, "batch must be positive, got {}", o.batch);
  if (o.block_size <= 0) {
    Fail(StatusCode::kInvalidArgument, "block_size must be positive, got {}", o.block_size);
  }
  if (o.seq_len > std::numeric_limits<int64_t>::max() - o.block_size) {
    Fail(StatusCode::kOutOfRange, "seq_len {} is too large", o.seq_len);
  }

  // One token, one layer.
  KvSizeBreakdown per;
  if (spec.mla) {
    const VectorBytes latent = BytesOfVector(static_cast<uint64_t>(spec.kv_lora_rank), o.dtype);
    per.latent_bytes = latent.payload;
    per.scale_bytes = latent.scale;
    if (spec.qk_rope_head_dim > 0) {
      const VectorBytes rope = BytesOfVector(static_cast<uint64_t>(spec.qk_rope_head_dim), o.dtype);
      per.k_bytes = rope.payload;
      per.scale_bytes += rope.scale;
    }
  } else {
    const uint64_t heads = static_cast<uint64_t>(spec.n_kv_heads);
    const VectorBytes k = BytesOfVector(static_cast<uint64_t>(spec.head_dim), o.dtype);
    const VectorBytes v = BytesOfVector(static_cast<uint64_t>(spec.v_head_dim), o.dtype);
    per.k_bytes = heads * k.payload;
    per.v_bytes = heads * v.payload;
    per.scale_bytes = heads * (k.scale + v.scale);
  }
  const uint64_t per_layer = per.k_bytes + per.v_bytes + per.latent_bytes + per.scale_bytes;

  KvSizeResult r;
  r.bytes_per_token_per_layer = per_layer;
  r.bytes_per_token = per_layer * static_cast<uint64_t>(spec.n_layers);
  r.tokens_per_sequence = RoundUp(o.seq_len, o.block_size);
  const int64_t n_window_layers = spec.sliding_window > 0 ? spec.n_window_layers : 0;
  if (n_window_layers > 0) {
    r.window_tokens_per_sequence = WindowTokens(o.seq_len, spec.sliding_window, o.block_size);
  }
  // Token slots summed over layers, for one sequence, then the batch.
  const uint64_t full_slots =
      MulChecked(static_cast<uint64_t>(spec.n_layers - n_window_layers),
                 static_cast<uint64_t>(r.tokens_per_sequence), "token slots");
  const uint64_t window_slots =
      MulChecked(static_cast<uint64_t>(n_window_layers),
                 static_cast<uint64_t>(r.window_tokens_per_sequence), "token slots");
  const uint64_t slots = MulChecked(AddChecked(full_slots, window_slots, "token slots"),
                                    static_cast<uint64_t>(o.batch), "token slots x batch");
  r.breakdown.k_bytes = MulChecked(slots, per.k_bytes, "K bytes");
  r.breakdown.v_bytes = MulChecked(slots, per.v_bytes, "V bytes");
  r.breakdown.latent_bytes = MulChecked(slots, per.latent_bytes, "latent bytes");
  r.breakdown.scale_bytes = MulChecked(slots, per.scale_bytes, "scale bytes");
  r.total_bytes = MulChecked(slots, per_layer, "total bytes");
  r.exceeds_context = spec.context_length > 0 && o.seq_len > spec.context_length;
  return r;
}

std::string FormatBytes(uint64_t bytes) {
  constexpr std::array<const char*, 6> kUnits = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  v /= 1024.0;
  while (v >= 1024.0 && unit + 1 < kUnits.size()) {
    v /= 1024.0;
    ++unit;
  }
  if (v >= 100) return fmt::format("{:.0f} {}", v, kUnits[unit]);
  if (v >= 10) return fmt::format("{:.1f} {}", v, kUnits[unit]);
  return fmt::format("{:.2f} {}", v, kUnits[unit]);
}

}  // namespace kvinfer
