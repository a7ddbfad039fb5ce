// What a loaded model is inside: the mapped file, its config, bound weights,
// tokenizer and chat template. Immutable once loaded; shared by engines.
#pragma once

#include <memory>
#include <string>

#include "engine/chat_template.h"
#include "io/gguf.h"
#include "kvinfer/kvinfer.h"
#include "model/config.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace kvinfer {

class ModelImpl {
 public:
  // Throws Error naming the file and the problem.
  static std::shared_ptr<const ModelImpl> LoadGguf(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ChatTemplate& chat_template() const { return chat_template_; }
  const ModelInfo& info() const { return info_; }

 private:
  ModelImpl(GgufFile file) : file_(std::move(file)) {}

  GgufFile file_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatTemplate chat_template_;
  ModelInfo info_;
};

}  // namespace kvinfer
