// The OpenAI request bodies kvinfer serves, parsed and checked: what a
// /v1/completions or /v1/chat/completions body asks for, or the
// OpenAI-shaped error that says which field is wrong. Pure functions of the
// body, no model or engine (fuzzed by fuzz/openai_request_fuzz.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kvinfer/kvinfer.h"

namespace kvinfer::serve {

// {"error": {"message", "type", "param", "code"}} with its HTTP status.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
};
// The response body for an error.
std::string ErrorBody(const ApiError& e);
ApiError InvalidRequest(std::string message, std::string param = "", std::string code = "");

enum class Endpoint { kCompletions, kChatCompletions };

// One prompt of a completions request: text, or token ids as given.
struct PromptInput {
  std::string text;
  std::vector<int32_t> tokens;
  bool is_tokens = false;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                      // empty: not given
  std::vector<PromptInput> prompts;       // completions: one or more
  std::vector<ChatMessage> messages;      // chat
  bool add_generation_prompt = true;      // chat (vLLM's extension)
  SamplingParams params;                  // n, temperature, stop, penalties, ...
  std::optional<int> max_tokens;          // unset: up to the context
  bool stream = false;
  bool include_usage = false;             // stream_options.include_usage
  bool echo = false;                      // completions: prompt text before the completion
  // Log-probabilities: completions' `logprobs: k` / chat's `logprobs: true`
  // with `top_logprobs: k`. want_logprobs with top_logprobs = k alternatives.
  bool want_logprobs = false;
  int top_logprobs = 0;
  std::string cache_salt;                 // vLLM's prefix-cache isolation key
};

// Parses a request body for `endpoint`. Unknown fields are ignored, except
// those that would change the answer and that kvinfer does not implement
// (tools, response_format other than text, logit_bias, suffix, best_of > n,
// ...), which are refused by name.
std::variant<CompletionRequest, ApiError> ParseCompletionRequest(std::string_view body,
                                                                 Endpoint endpoint);

// POST /tokenize: {"prompt": str} or {"messages": [...]} (+ add_special_tokens,
// add_generation_prompt). POST /detokenize: {"tokens": [int...]}.
struct TokenizeRequest {
  std::string prompt;
  std::vector<ChatMessage> messages;
  bool is_chat = false;
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
};
std::variant<TokenizeRequest, ApiError> ParseTokenizeRequest(std::string_view body);
std::variant<std::vector<int32_t>, ApiError> ParseDetokenizeRequest(std::string_view body);

}  // namespace kvinfer::serve
