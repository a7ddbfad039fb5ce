#include "model/model_impl.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"

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
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    Fail(StatusCode::kUnimplemented,
         "{} is a directory: Hugging Face checkpoint directories are recognised but not yet "
         "runnable (use a GGUF file or a llama2.c .bin)",
         path);
  }
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) Fail(StatusCode::kNotFound, "cannot open '{}'", path);
    in.read(magic, 4);
  }
  if (std::string_view(magic, 4) == "GGUF") return LoadGguf(path);
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".bin") == 0) return LoadLlama2c(path);
  Fail(StatusCode::kDataLoss,
       "{}: not a model file kvinfer knows (expected a GGUF file, which starts with \"GGUF\", or "
       "a llama2.c checkpoint ending in .bin)",
       path);
}

std::shared_ptr<const ModelImpl> ModelImpl::LoadLlama2c(const std::string& path) {
  std::shared_ptr<ModelImpl> m(new ModelImpl());
  m->llama2c_.emplace(Llama2cCheckpoint::Open(path));
  const Llama2cCheckpoint& ck = *m->llama2c_;
  m->config_ = ck.config();
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
  if (c.arch != Arch::kLlama) {
    Fail(StatusCode::kUnimplemented, "{}: architecture '{}' is recognised but not yet runnable",
         path, c.arch_name);
  }
  m->weights_ = BindLlamaWeights(file, c);
  m->tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::FromGguf(file));
  if (m->tokenizer_->vocab_size() != c.vocab_size) {
    Fail(StatusCode::kDataLoss, "{}: the tokenizer has {} tokens but token_embd has {} rows", path,
         m->tokenizer_->vocab_size(), c.vocab_size);
  }
  const std::string_view jinja = file.GetString("tokenizer.chat_template").value_or("");
  m->chat_template_.format = DetectChatFormat(jinja);
  m->chat_template_.default_system = DefaultSystemPrompt(jinja);
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
  info.bos_id = tok.bos_id();
  info.eos_id = tok.eos_id();
  info.eot_id = tok.eot_id();
  info.kv_bytes_per_token_f32 = c.KvBytesPerToken(4);
  info.kv_bytes_per_token_f16 = c.KvBytesPerToken(2);
}

}  // namespace kvinfer
