// libFuzzer target for the server's request readers
// (src/serve/openai_request.h). The first byte picks the reader
// (completions, chat, tokenize, detokenize); the rest is the body. Every
// body must parse to in-range values or give a 4xx error with a message;
// nothing may throw or crash.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "serve/openai_request.h"

namespace {

void CheckError(const kvinfer::serve::ApiError& e) {
  if (e.http_status < 400 || e.http_status >= 500 || e.message.empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using namespace kvinfer::serve;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
    case 1: {
      const Endpoint e = data[0] % 4 == 0 ? Endpoint::kCompletions : Endpoint::kChatCompletions;
      auto r = ParseCompletionRequest(body, e);
      if (auto* err = std::get_if<ApiError>(&r)) {
        CheckError(*err);
        return 0;
      }
      const CompletionRequest& c = std::get<CompletionRequest>(r);
      const kvinfer::SamplingParams& p = c.params;
      if (p.n < 1 || p.n > 128 || p.top_k < 0) std::abort();
      if (!(p.temperature >= 0 && p.temperature <= 2) || !(p.top_p > 0 && p.top_p <= 1)) std::abort();
      if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty)) std::abort();
      if (!(p.repetition_penalty > 0) || !(p.min_p >= 0 && p.min_p <= 1)) std::abort();
      if (c.max_tokens && *c.max_tokens < 0) std::abort();
      if (c.top_logprobs < 0 || c.top_logprobs > 20) std::abort();
      if (e == Endpoint::kCompletions && c.prompts.empty()) std::abort();
      if (e == Endpoint::kChatCompletions && c.messages.empty()) std::abort();
      for (const PromptInput& in : c.prompts) {
        for (int32_t t : in.tokens) {
          if (t < 0) std::abort();
        }
      }
      for (const std::string& s : p.stop) {
        if (s.empty()) std::abort();
      }
      return 0;
    }
    case 2: {
      auto r = ParseTokenizeRequest(body);
      if (auto* err = std::get_if<ApiError>(&r)) CheckError(*err);
      return 0;
    }
    default: {
      auto r = ParseDetokenizeRequest(body);
      if (auto* err = std::get_if<ApiError>(&r)) {
        CheckError(*err);
        return 0;
      }
      for (int32_t t : std::get<std::vector<int32_t>>(r)) {
        if (t < 0) std::abort();
      }
      return 0;
    }
  }
}
