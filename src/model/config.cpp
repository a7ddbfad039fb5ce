#include "model/config.h"

#include <string>

#include "core/error.h"
#include "io/gguf.h"

namespace kvinfer {
namespace {

int RequirePositive(const GgufFile& f, const std::string& key, int64_t limit) {
  std::optional<uint64_t> v = f.GetUint(key);
  if (!v) Fail(StatusCode::kDataLoss, "{}: missing metadata key '{}'", f.path(), key);
  if (*v == 0 || *v > static_cast<uint64_t>(limit)) {
    Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected 1..{})", f.path(), key,
         *v, limit);
  }
  return static_cast<int>(*v);
}

}  // namespace

ModelConfig ConfigFromGguf(const GgufFile& f) {
  ModelConfig c;
  std::optional<std::string_view> arch = f.GetString("general.architecture");
  if (!arch) Fail(StatusCode::kDataLoss, "{}: missing 'general.architecture'", f.path());
  c.arch_name = std::string(*arch);
  if (c.arch_name == "llama") {
    c.arch = Arch::kLlama;
  } else if (c.arch_name == "gpt2") {
    c.arch = Arch::kGpt2;
  } else {
    Fail(StatusCode::kUnimplemented,
         "{}: architecture '{}' is not supported (supported: llama, gpt2)", f.path(), c.arch_name);
  }
  if (std::optional<std::string_view> name = f.GetString("general.name")) c.name = *name;

  const std::string& a = c.arch_name;
  c.n_layers = RequirePositive(f, a + ".block_count", 4096);
  c.d_model = RequirePositive(f, a + ".embedding_length", 1 << 17);
  c.n_heads = RequirePositive(f, a + ".attention.head_count", 4096);
  c.n_kv_heads = f.Find(a + ".attention.head_count_kv")
                     ? RequirePositive(f, a + ".attention.head_count_kv", 4096)
                     : c.n_heads;
  c.d_ff = RequirePositive(f, a + ".feed_forward_length", 1 << 20);
  c.context_length = RequirePositive(f, a + ".context_length", 1 << 24);
  if (c.d_model % c.n_heads != 0) {
    Fail(StatusCode::kDataLoss, "{}: embedding_length {} is not a multiple of head_count {}",
         f.path(), c.d_model, c.n_heads);
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    Fail(StatusCode::kDataLoss, "{}: head_count {} is not a multiple of head_count_kv {}",
         f.path(), c.n_heads, c.n_kv_heads);
  }
  c.head_dim = c.d_model / c.n_heads;

  const std::string eps_key = c.arch == Arch::kLlama ? a + ".attention.layer_norm_rms_epsilon"
                                                     : a + ".attention.layer_norm_epsilon";
  if (std::optional<double> eps = f.GetFloat(eps_key)) c.norm_eps = static_cast<float>(*eps);
  if (!(c.norm_eps > 0.0f && c.norm_eps < 1.0f)) {
    Fail(StatusCode::kDataLoss, "{}: '{}' = {} is out of range (expected 0 < eps < 1)", f.path(),
         eps_key, c.norm_eps);
  }

  if (c.arch == Arch::kLlama) {
    c.rope_dims = f.Find(a + ".rope.dimension_count")
                      ? RequirePositive(f, a + ".rope.dimension_count", c.head_dim)
                      : c.head_dim;
    if (c.rope_dims % 2 != 0) {
      Fail(StatusCode::kDataLoss, "{}: rope.dimension_count {} must be even", f.path(),
           c.rope_dims);
    }
    if (std::optional<double> theta = f.GetFloat(a + ".rope.freq_base")) {
      c.rope_theta = static_cast<float>(*theta);
    }
    if (!(c.rope_theta > 0.0f)) {
      Fail(StatusCode::kDataLoss, "{}: rope.freq_base {} must be positive", f.path(),
           c.rope_theta);
    }
  }

  // The vocabulary size comes from the embedding matrix (the metadata key is
  // optional and sometimes absent).
  const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) Fail(StatusCode::kDataLoss, "{}: missing tensor 'token_embd.weight'", f.path());
  if (embd->dims.size() != 2 || embd->dims[0] != static_cast<uint64_t>(c.d_model) ||
      embd->dims[1] == 0 || embd->dims[1] > (1u << 22)) {
    Fail(StatusCode::kDataLoss, "{}: tensor 'token_embd.weight' has a bad shape (expected [{}, vocab])",
         f.path(), c.d_model);
  }
  c.vocab_size = static_cast<int>(embd->dims[1]);
  c.tied_output = f.FindTensor("output.weight") == nullptr;
  return c;
}

}  // namespace kvinfer
