#include "model/kv_size.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "kv/kv_format.h"

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

// Bytes of a vector in kvinfer's own K/V row format (kv/kv_format.h): the
// codes, then the scales.
VectorBytes StoredBytes(KvPrecision p, uint64_t elems) {
  const int n = static_cast<int>(elems);
  const uint64_t code = KvCodeRowBytes(p, n);
  return {code, KvRowBytes(p, n) - code};
}

VectorBytes BytesOfVector(uint64_t elems, KvDtype t) {
  const uint64_t blocks = (elems + kBlockElems - 1) / kBlockElems;
  switch (t) {
    case KvDtype::kF32:
      return StoredBytes(KvPrecision::kF32, elems);
    case KvDtype::kF16:
      return StoredBytes(KvPrecision::kF16, elems);
    case KvDtype::kBF16:
      return {2 * elems, 0};
    case KvDtype::kFP8:
      return {elems, 0};
    case KvDtype::kInt8:
      return {elems, 2};  // one f16 scale per vector
    case KvDtype::kQ8_0:
      // One int8 code per element and an f16 scale per started block of 32,
      // the last block's codes not padded.
      return StoredBytes(KvPrecision::kQ8_0, elems);
    case KvDtype::kQ4_0:
      // Two codes per byte and an f16 scale per started block of 32, nothing
      // padded. kvinfer stores even lengths only; an odd one is sized with
      // its last byte half used.
      if (elems % 2 == 0) return StoredBytes(KvPrecision::kQ4_0, elems);
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

KvSizeSpec KvSizeSpecFromConfig(const ModelConfig& c, std::string name) {
  KvSizeSpec s;
  s.name = std::move(name);
  s.n_layers = c.n_layers;
  s.n_heads = c.n_heads;
  s.n_kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim;
  s.v_head_dim = c.v_head_dim;
  s.mla = c.mla;
  s.kv_lora_rank = c.kv_lora_rank;
  s.qk_rope_head_dim = c.qk_rope_head_dim;
  s.sliding_window = c.sliding_window;
  s.n_window_layers = c.n_window_layers;
  s.context_length = c.context_length;
  ValidateKvSizeSpec(s);
  return s;
}

KvSizeSpec KvSizeSpecFromHfConfig(std::string_view json_text, std::string name) {
  // The text is the caller's argument, so a bad one is an invalid argument
  // (the reader reports a malformed file as kDataLoss).
  try {
    return KvSizeSpecFromConfig(ConfigFromHfJson(json_text, name, ConfigUse::kShape), name);
  } catch (const Error& e) {
    if (e.code() != StatusCode::kDataLoss) throw;
    Fail(StatusCode::kInvalidArgument, "{}", e.what());
  }
}

KvSizeSpec KvSizeSpecFromGguf(const GgufFile& f) {
  const ModelConfig c = ConfigFromGguf(f, ConfigUse::kShape);
  std::string name = !c.name.empty() ? c.name : std::filesystem::path(f.path()).stem().string();
  try {
    return KvSizeSpecFromConfig(c, std::move(name));
  } catch (const Error& e) {
    Fail(StatusCode::kDataLoss, "{}: {}", f.path(), e.what());
  }
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

// ---------------------------------------------------------------------------
// The public, non-throwing API (include/kvinfer/kv_size.h).

namespace {

template <typename T, typename Fn>
StatusOr<T> Catching(Fn&& fn) {
  std::optional<T> out;
  Status st = CatchToStatus([&] { out.emplace(fn()); });
  if (!st.ok()) return st;
  return std::move(*out);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(StatusCode::kNotFound, "cannot read '{}'", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A config.json, or a directory holding one, named after the checkpoint
// directory when the file is config.json.
KvSizeSpec SpecOfConfigFile(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) p /= "config.json";
  if (!fs::is_regular_file(p, ec)) {
    Fail(StatusCode::kNotFound, "config file '{}' does not exist", p.string());
  }
  const std::string name =
      p.filename() == "config.json" && p.has_parent_path() && !p.parent_path().filename().empty()
          ? p.parent_path().filename().string()
          : p.filename().string();
  KvSizeSpec spec = KvSizeSpecFromHfConfig(ReadText(p.string()), p.string());
  spec.name = name;
  return spec;
}

}  // namespace

StatusOr<KvDtype> KvDtypeFromName(std::string_view name) {
  return Catching<KvDtype>([&] { return ParseKvDtype(name); });
}

StatusOr<KvSizeSpec> KvSizeSpecForPreset(std::string_view name) {
  return Catching<KvSizeSpec>([&] { return KvSizeSpecFromPreset(name); });
}

StatusOr<KvSizeSpec> KvSizeSpecForConfigFile(const std::string& path) {
  return Catching<KvSizeSpec>([&] { return SpecOfConfigFile(path); });
}

StatusOr<KvSizeSpec> KvSizeSpecForModel(const std::string& path) {
  return Catching<KvSizeSpec>([&] {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      if (!fs::is_regular_file(fs::path(path) / "config.json", ec)) {
        Fail(StatusCode::kNotFound,
             "'{}' is a directory without config.json: not a Hugging Face checkpoint", path);
      }
      return SpecOfConfigFile(path);
    }
    if (!fs::is_regular_file(path, ec)) {
      Fail(StatusCode::kNotFound, "model file '{}' does not exist", path);
    }
    char magic[4] = {};
    std::ifstream(path, std::ios::binary).read(magic, 4);
    try {
      if (std::string_view(magic, 4) == "GGUF") return KvSizeSpecFromGguf(GgufFile::Open(path));
      if (path.ends_with(".bin")) {
        const Llama2cCheckpoint ck = Llama2cCheckpoint::Open(path);
        return KvSizeSpecFromConfig(ConfigFromLlama2c(ck.header()),
                                    fs::path(path).stem().string());
      }
    } catch (const Error& e) {
      Fail(e.code(), "cannot read the model config from '{}': {}", path, e.what());
    }
    Fail(StatusCode::kInvalidArgument,
         "'{}' is not a model kvinfer knows (a GGUF file, a Hugging Face checkpoint directory "
         "or a llama2.c .bin)",
         path);
  });
}

StatusOr<KvSizeResult> KvSizeFor(const KvSizeSpec& spec, const KvSizeOptions& options) {
  return Catching<KvSizeResult>([&] { return ComputeKvSize(spec, options); });
}

}  // namespace kvinfer
