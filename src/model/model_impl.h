// What a loaded model is inside: the mapped file, its config, bound weights,
// tokenizer and chat template. Immutable once loaded; shared by engines.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "model/chat_template.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "kvinfer/kvinfer.h"
#include "model/config.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace kvinfer {

class ModelImpl {
 public:
  // Any supported format, recognised by content: a GGUF file (magic
  // "GGUF"), a Hugging Face checkpoint directory (config.json +
  // safetensors + tokenizer files; also given as the path of its
  // config.json, model.safetensors or index file), or a llama2.c checkpoint
  // (.bin) with its tokenizer file (tok<vocab>.bin or tokenizer.bin) beside
  // it. Throws Error naming the file and the problem.
  static std::shared_ptr<const ModelImpl> Load(const std::string& path);
  static std::shared_ptr<const ModelImpl> LoadGguf(const std::string& path);
  static std::shared_ptr<const ModelImpl> LoadLlama2c(const std::string& path);
  static std::shared_ptr<const ModelImpl> LoadHfDirectory(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ChatTemplate& chat_template() const { return chat_template_; }
  const ModelInfo& info() const { return info_; }

 private:
  ModelImpl() = default;
  // Fills info_ from config_, weights_, tokenizer_ and chat_template_.
  void FillInfo(const std::string& path, const std::string& format);

  // The mapped source the weight views point into (one of the three).
  std::optional<GgufFile> gguf_;
  std::optional<Llama2cCheckpoint> llama2c_;
  std::optional<SafetensorsModel> safetensors_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatTemplate chat_template_;
  ModelInfo info_;
};

}  // namespace kvinfer
