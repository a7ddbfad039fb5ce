#include "model/model_impl.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "kv/kv_cache.h"
#include "model/hf_checkpoint.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/llama2c_tokenizer.h"

namespace kvinfer {

namespace {

// A weight given as [1, n] or [n] f32 view: its data as floats.
const float* F32Vector(const WeightView& v) {
  KVINFER_CHECK(v.type == DType::kF32);
  return static_cast<const float*>(v.data);
}

int64_t Elements(const WeightView& v) { return v.rows * v.cols; }

}  // namespace

std::shared_ptr<const ModelImpl> ModelImpl::Load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return LoadHfDirectory(path);
  // A file of a Hugging Face checkpoint stands for its directory.
  const std::string file = fs::path(path).filename().string();
  const bool hf_file = file == "config.json" || file == "model.safetensors.index.json" ||
                       (file.size() > 12 && file.ends_with(".safetensors"));
  if (hf_file && fs::is_regular_file(path, ec)) {
    const fs::path dir = fs::path(path).parent_path();
    return LoadHfDirectory(dir.empty() ? std::string(".") : dir.string());
  }
  char magic[4] = {};
  {
    // Mapping checks existence, permission and file type (a named pipe would
    // block a plain read forever) and names the problem.
    const MappedFile head = MappedFile::Open(path);
    std::memcpy(magic, head.data(), std::min<size_t>(4, head.size()));
  }
  if (std::string_view(magic, 4) == "GGUF") return LoadGguf(path);
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".bin") == 0) return LoadLlama2c(path);
  Fail(StatusCode::kDataLoss,
       "{}: not a model kvinfer knows (expected a GGUF file, which starts with \"GGUF\", a "
       "Hugging Face checkpoint directory with config.json, or a llama2.c checkpoint ending in "
       ".bin)",
       path);
}

std::shared_ptr<const ModelImpl> ModelImpl::LoadHfDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path d(dir);
  const fs::path config_path = d / "config.json";
  if (!fs::is_regular_file(config_path, ec)) {
    Fail(StatusCode::kNotFound,
         "{} is a directory without config.json: not a Hugging Face checkpoint (kvinfer loads a "
         "GGUF file, a llama2.c .bin, or a directory with config.json + model.safetensors)",
         dir);
  }
  std::shared_ptr<ModelImpl> m(new ModelImpl());
  std::string config_text;
  {
    std::ifstream in(config_path, std::ios::binary);
    if (!in) Fail(StatusCode::kNotFound, "cannot read '{}'", config_path.string());
    config_text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  m->config_ = ConfigFromHfJson(config_text, config_path.string());
  ModelConfig& c = m->config_;
  c.name = fs::absolute(d, ec).lexically_normal().filename().string();
  if (c.name.empty()) c.name = fs::absolute(d, ec).lexically_normal().parent_path().filename().string();

  const bool has_index = fs::exists(d / "model.safetensors.index.json", ec);
  if (!has_index && !fs::exists(d / "model.safetensors", ec)) {
    Fail(StatusCode::kNotFound,
         "{}: no weights (expected model.safetensors or model.safetensors.index.json; kvinfer "
         "does not read pytorch_model.bin)",
         dir);
  }
  m->safetensors_.emplace(SafetensorsModel::Open(dir));
  m->weights_ = BindHfWeights(*m->safetensors_, c);
  PackWeights(m->weights_);

  const bool has_tokenizer = fs::exists(d / "tokenizer.json", ec) ||
                             fs::exists(d / "vocab.json", ec) || fs::exists(d / "encoder.json", ec);
  if (!has_tokenizer) {
    Fail(StatusCode::kNotFound,
         "{}: no tokenizer (expected tokenizer.json, or vocab.json + merges.txt)", dir);
  }
  m->tokenizer_ = std::make_unique<Tokenizer>(TokenizerSpecFromHf(dir));
  if (m->tokenizer_->vocab_size() != c.vocab_size) {
    Fail(StatusCode::kDataLoss, "{}: the tokenizer has {} tokens but config.json's vocab_size is {}",
         dir, m->tokenizer_->vocab_size(), c.vocab_size);
  }
  // The chat template, when tokenizer_config.json carries one.
  const fs::path tok_config = d / "tokenizer_config.json";
  if (fs::exists(tok_config, ec)) {
    std::ifstream in(tok_config, std::ios::binary);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string()) {
      const std::string jinja = j["chat_template"].get<std::string>();
      m->chat_template_.format = DetectChatFormat(jinja);
      m->chat_template_.default_system = DefaultSystemPrompt(jinja);
      m->chat_template_.recognised = ChatTemplateRecognised(jinja);
    }
  }
  if (m->tokenizer_->bos_id() >= 0) {
    m->chat_template_.bos_text = m->tokenizer_->Piece(m->tokenizer_->bos_id());
  }
  m->FillInfo(dir, "hf");
  std::map<std::string, int> types;
  for (const SafetensorsTensor* t : m->safetensors_->tensors()) {
    std::string name = t->dtype_name;
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    ++types[name];
  }
  m->info_.tensor_types.assign(types.begin(), types.end());
  return m;
}

std::shared_ptr<const ModelImpl> ModelImpl::LoadLlama2c(const std::string& path) {
  std::shared_ptr<ModelImpl> m(new ModelImpl());
  m->llama2c_.emplace(Llama2cCheckpoint::Open(path));
  const Llama2cCheckpoint& ck = *m->llama2c_;
  m->config_ = ConfigFromLlama2c(ck.header());
  const ModelConfig& c = m->config_;
  ModelWeights& w = m->weights_;
  w.token_embd = ck.token_embedding();
  w.output = ck.output();
  w.output_norm = F32Vector(ck.output_norm());
  w.num_parameters = Elements(ck.token_embedding()) + Elements(ck.output_norm()) +
                     (ck.shared_classifier() ? 0 : Elements(ck.output()));
  for (const Llama2cCheckpoint::Layer& l : ck.layers()) {
    LayerWeights& L = w.layers.emplace_back();
    L.attn_norm = F32Vector(l.attn_norm);
    L.wq = l.wq;
    L.wk = l.wk;
    L.wv = l.wv;
    L.wo = l.wo;
    L.ffn_norm = F32Vector(l.ffn_norm);
    L.w_gate = l.w1;
    L.w_up = l.w3;
    L.w_down = l.w2;
    for (const WeightView* v : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w1, &l.w2, &l.w3}) {
      w.num_parameters += Elements(*v);
    }
  }
  w.weight_bytes = w.num_parameters * static_cast<int64_t>(sizeof(float));
  PackWeights(w);

  // The tokenizer lives in its own file beside the checkpoint.
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::string tok_path;
  for (const std::string& name : {fmt::format("tok{}.bin", c.vocab_size), std::string("tokenizer.bin")}) {
    std::error_code ec;
    if (std::filesystem::exists(dir / name, ec)) {
      tok_path = (dir / name).string();
      break;
    }
  }
  if (tok_path.empty()) {
    Fail(StatusCode::kNotFound,
         "{}: a llama2.c checkpoint needs its tokenizer beside it (tok{}.bin or tokenizer.bin in {})",
         path, c.vocab_size, dir.empty() ? std::string(".") : dir.string());
  }
  m->tokenizer_ = std::make_unique<Tokenizer>(Llama2cTokenizerSpec(tok_path, c.vocab_size));
  if (m->tokenizer_->vocab_size() != c.vocab_size) {
    Fail(StatusCode::kDataLoss, "{}: the tokenizer has {} tokens but the checkpoint {}", tok_path,
         m->tokenizer_->vocab_size(), c.vocab_size);
  }
  m->FillInfo(path, "llama2c");
  return m;
}

std::shared_ptr<const ModelImpl> ModelImpl::LoadGguf(const std::string& path) {
  std::shared_ptr<ModelImpl> m(new ModelImpl());
  m->gguf_.emplace(GgufFile::Open(path));
  const GgufFile& file = *m->gguf_;
  m->config_ = ConfigFromGguf(file);
  const ModelConfig& c = m->config_;
  switch (c.arch) {
    case Arch::kLlama:
      m->weights_ = BindLlamaWeights(file, c);
      break;
    case Arch::kGpt2:
      m->weights_ = BindGpt2Weights(file, c);
      break;
  }
  PackWeights(m->weights_);
  m->tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::FromGguf(file));
  if (m->tokenizer_->vocab_size() != c.vocab_size) {
    Fail(StatusCode::kDataLoss, "{}: the tokenizer has {} tokens but token_embd has {} rows", path,
         m->tokenizer_->vocab_size(), c.vocab_size);
  }
  const std::string_view jinja = file.GetString("tokenizer.chat_template").value_or("");
  m->chat_template_.format = DetectChatFormat(jinja);
  m->chat_template_.default_system = DefaultSystemPrompt(jinja);
  m->chat_template_.recognised = ChatTemplateRecognised(jinja);
  if (m->tokenizer_->bos_id() >= 0) {
    m->chat_template_.bos_text = m->tokenizer_->Piece(m->tokenizer_->bos_id());
  }
  m->FillInfo(path, "gguf");
  std::map<std::string, int> types;
  for (const GgufTensorInfo& t : file.tensors()) ++types[std::string(DTypeName(t.type))];
  m->info_.tensor_types.assign(types.begin(), types.end());
  return m;
}

void ModelImpl::FillInfo(const std::string& path, const std::string& format) {
  const ModelConfig& c = config_;
  ModelInfo& info = info_;
  info.path = path;
  info.format = format;
  info.architecture = c.arch_name;
  info.name = c.name;
  info.n_layers = c.n_layers;
  info.d_model = c.d_model;
  info.n_heads = c.n_heads;
  info.n_kv_heads = c.n_kv_heads;
  info.head_dim = c.head_dim;
  info.d_ff = c.d_ff;
  info.vocab_size = c.vocab_size;
  info.context_length = c.context_length;
  info.rope_dims = c.rope_dims;
  info.rope_theta = c.rope_theta;
  info.norm_eps = c.norm_eps;
  info.tied_output = c.tied_output;
  info.num_parameters = weights_.num_parameters;
  info.weight_bytes = weights_.weight_bytes;
  if (format == "llama2c") info.tensor_types = {{"f32", 2 + 9 * c.n_layers + (c.tied_output ? 0 : 1)}};
  const Tokenizer& tok = *tokenizer_;
  info.tokenizer = tok.kind() == TokenizerKind::kSpm ? "spm" : "bpe:" + tok.pre();
  info.chat_template = ChatFormatName(chat_template_.format);
  info.chat_template_recognised = chat_template_.recognised;
  info.bos_id = tok.bos_id();
  info.eos_id = tok.eos_id();
  info.eot_id = tok.eot_id();
  info.kv_bytes_per_token_f32 = KvBytesPerToken(c.kv_shape(), KvPrecision::kF32);
  info.kv_bytes_per_token_f16 = KvBytesPerToken(c.kv_shape(), KvPrecision::kF16);
  info.kv_bytes_per_token_q8_0 = KvBytesPerToken(c.kv_shape(), KvPrecision::kQ8_0);
  info.kv_bytes_per_token_q4_0 =
      c.head_dim % 2 == 0 ? KvBytesPerToken(c.kv_shape(), KvPrecision::kQ4_0) : 0;
}

}  // namespace kvinfer
