#include "model/model_impl.h"

#include <map>

#include "core/error.h"

namespace kvinfer {

std::shared_ptr<const ModelImpl> ModelImpl::LoadGguf(const std::string& path) {
  std::shared_ptr<ModelImpl> m(new ModelImpl(GgufFile::Open(path)));
  m->config_ = ConfigFromGguf(m->file_);
  const ModelConfig& c = m->config_;
  if (c.arch != Arch::kLlama) {
    Fail(StatusCode::kUnimplemented, "{}: architecture '{}' is recognised but not yet runnable",
         path, c.arch_name);
  }
  m->weights_ = BindLlamaWeights(m->file_, c);
  m->tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::FromGguf(m->file_));
  if (m->tokenizer_->vocab_size() != c.vocab_size) {
    Fail(StatusCode::kDataLoss, "{}: the tokenizer has {} tokens but token_embd has {} rows", path,
         m->tokenizer_->vocab_size(), c.vocab_size);
  }

  const std::string_view jinja = m->file_.GetString("tokenizer.chat_template").value_or("");
  m->chat_template_.format = DetectChatFormat(jinja);
  m->chat_template_.default_system = DefaultSystemPrompt(jinja);
  if (m->tokenizer_->bos_id() >= 0) {
    m->chat_template_.bos_text = m->tokenizer_->Piece(m->tokenizer_->bos_id());
  }

  ModelInfo& info = m->info_;
  info.path = path;
  info.format = "gguf";
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
  info.num_parameters = m->weights_.num_parameters;
  info.weight_bytes = m->weights_.weight_bytes;
  std::map<std::string, int> types;
  for (const GgufTensorInfo& t : m->file_.tensors()) ++types[std::string(DTypeName(t.type))];
  info.tensor_types.assign(types.begin(), types.end());
  const Tokenizer& tok = *m->tokenizer_;
  info.tokenizer = tok.kind() == TokenizerKind::kSpm ? "spm" : "bpe:" + tok.pre();
  info.chat_template = ChatFormatName(m->chat_template_.format);
  info.bos_id = tok.bos_id();
  info.eos_id = tok.eos_id();
  info.eot_id = tok.eot_id();
  info.kv_bytes_per_token_f32 = c.KvBytesPerToken(4);
  info.kv_bytes_per_token_f16 = c.KvBytesPerToken(2);
  return m;
}

}  // namespace kvinfer
