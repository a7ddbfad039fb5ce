#include "model/chat_template.h"

#include "core/error.h"

namespace kvinfer {

const char* ChatFormatName(ChatFormat f) {
  switch (f) {
    case ChatFormat::kNone: return "none";
    case ChatFormat::kChatMl: return "chatml";
    case ChatFormat::kLlama2: return "llama2";
    case ChatFormat::kLlama3: return "llama3";
  }
  return "?";
}

namespace {

// The format whose marker the template spells, or kNone when it spells none.
ChatFormat MatchChatFormat(std::string_view src) {
  if (src.find("<|im_start|>") != std::string_view::npos) return ChatFormat::kChatMl;
  if (src.find("<|start_header_id|>") != std::string_view::npos) return ChatFormat::kLlama3;
  if (src.find("[INST]") != std::string_view::npos) return ChatFormat::kLlama2;
  return ChatFormat::kNone;
}

}  // namespace

ChatFormat DetectChatFormat(std::string_view src) {
  if (src.empty()) return ChatFormat::kNone;
  const ChatFormat f = MatchChatFormat(src);
  // An unrecognised template: ChatML is the most common convention.
  return f == ChatFormat::kNone ? ChatFormat::kChatMl : f;
}

bool ChatTemplateRecognised(std::string_view src) {
  return src.empty() || MatchChatFormat(src) != ChatFormat::kNone;
}

std::string DefaultSystemPrompt(std::string_view src) {
  // SmolLM2-style: "...{{ '<|im_start|>system\nYou are ...<|im_end|>\n' }}{% endif %}"
  // inside a branch taken when the first message is not a system message.
  const std::string_view marker = "<|im_start|>system\n";
  const size_t cond = src.find("!= 'system'");
  if (cond == std::string_view::npos) return {};
  const size_t start = src.find(marker, cond);
  if (start == std::string_view::npos) return {};
  const size_t text = start + marker.size();
  const size_t end = src.find("<|im_end|>", text);
  if (end == std::string_view::npos) return {};
  return std::string(src.substr(text, end - text));
}

namespace {

void CheckRole(const ChatMessage& m) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant") {
    Fail(StatusCode::kInvalidArgument,
         "unknown chat role '{}' (expected system, user or assistant)", m.role);
  }
}

}  // namespace

std::string ChatTemplate::Render(std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) const {
  for (const ChatMessage& m : messages) CheckRole(m);
  std::string out;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  switch (format) {
    case ChatFormat::kNone:
      for (const ChatMessage& m : messages) {
        out += m.content;
        out += "\n";
      }
      return out;
    case ChatFormat::kChatMl:
      if (!has_system && !default_system.empty()) {
        out += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
      }
      for (const ChatMessage& m : messages) {
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case ChatFormat::kLlama3:
      out += bos_text;
      for (const ChatMessage& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatFormat::kLlama2: {
      // [INST] turns; a system prompt is folded into the first user turn.
      std::string system;
      size_t i = 0;
      if (has_system) {
        system = messages[0].content;
        i = 1;
      }
      bool first_user = true;
      for (; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "user") {
          out += bos_text + "[INST] ";
          if (first_user && !system.empty()) out += "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
          out += m.content + " [/INST]";
          first_user = false;
        } else if (m.role == "assistant") {
          out += " " + m.content + " </s>";
        } else {
          Fail(StatusCode::kInvalidArgument,
               "the llama2 chat format allows a system message only first");
        }
      }
      return out;
    }
  }
  return out;
}

}  // namespace kvinfer
