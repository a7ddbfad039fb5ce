// Chat templates. kvinfer does not run Jinja: it recognises the template a
// model file carries (tokenizer.chat_template) as one of a few well-known
// formats and renders that format natively.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "kvinfer/kvinfer.h"

namespace kvinfer {

enum class ChatFormat {
  kNone,    // no template: messages are joined as plain text
  kChatMl,  // <|im_start|>role\ncontent<|im_end|>\n  (SmolLM2, Qwen, ...)
  kLlama2,  // <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] answer </s>
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
};

const char* ChatFormatName(ChatFormat f);

// Recognises the format from the Jinja source (empty = kNone). A non-empty
// template matching none of the known formats is rendered as ChatML, the most
// common convention; ChatTemplateRecognised tells that guess apart.
ChatFormat DetectChatFormat(std::string_view jinja_source);

// False when the source is non-empty but matches none of the known formats,
// i.e. DetectChatFormat's answer is a guess.
bool ChatTemplateRecognised(std::string_view jinja_source);

// The default system prompt the template injects when the conversation has
// none (SmolLM2's template does this), or empty.
std::string DefaultSystemPrompt(std::string_view jinja_source);

struct ChatTemplate {
  ChatFormat format = ChatFormat::kNone;
  std::string default_system;  // injected when messages[0] is not "system"
  std::string bos_text;        // the BOS token's text, for formats that spell it
  bool recognised = true;      // false: the model's template is unknown, `format` is a guess

  // Throws Error(kInvalidArgument) for an unknown role or bad ordering.
  std::string Render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
};

}  // namespace kvinfer
