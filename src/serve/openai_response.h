// OpenAI response shapes built from engine outputs: the per-choice state of
// one HTTP request (text, tokens, log-probabilities, finish reason), the
// non-streamed response, the server-sent-event chunks and the usage block.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvinfer/kvinfer.h"
#include "serve/openai_request.h"

namespace kvinfer::serve {

struct ResponseContext {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;            // "cmpl-..." / "chatcmpl-..."
  std::time_t created = 0;   // Unix seconds
  std::string model;         // the served model name
  const Model* model_ptr = nullptr;  // for token strings in log-probabilities
};

struct PromptUsage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
};

// "stop", "length", "abort" or "error": the finish reason as responses and
// the request_success_total metric name it.
const char* MetricsReason(FinishReason r);

// The choices of one request: prompt i's sample j is choice i * n + j.
class ChoiceStates {
 public:
  void Init(const CompletionRequest& request, const std::vector<std::vector<int32_t>>& prompt_tokens,
            const std::vector<std::string>& prompt_texts);
  // Folds one engine output of prompt `prompt_index` into its choice;
  // returns the output's own log-probabilities in the endpoint's shape
  // (null when none were asked for), for its stream chunk.
  nlohmann::json Apply(size_t prompt_index, const RequestOutput& out, const Model& model);
  PromptUsage Usage(size_t prompt_index) const;
  PromptUsage TotalUsage() const;
  // The error a non-streamed response returns instead of choices, when a
  // choice ended with one.
  std::optional<ApiError> Failure() const;

  struct Choice {
    std::string text;                // non-streamed only (see accumulate_)
    int64_t num_tokens = 0;
    FinishReason finish = FinishReason::kNone;
    std::string error;
    int64_t text_bytes = 0;          // completions' text_offset base
    nlohmann::json logprobs;         // accumulated, in the endpoint's shape (null: none)
  };
  const Choice& choice(size_t index) const { return choices_[index]; }
  size_t size() const { return choices_.size(); }
  size_t Index(size_t prompt_index, int sample_index) const {
    return prompt_index * static_cast<size_t>(n_) + static_cast<size_t>(sample_index);
  }
  const std::string& prompt_text(size_t prompt_index) const { return prompt_texts_[prompt_index]; }

 private:
  Endpoint endpoint_ = Endpoint::kCompletions;
  int n_ = 1;
  bool want_logprobs_ = false;
  // Whole text and log-probabilities are kept only for a non-streamed
  // response; a stream sends each output's part as it comes.
  bool accumulate_ = true;
  int top_logprobs_ = 0;
  std::vector<Choice> choices_;
  std::vector<PromptUsage> usage_;  // per prompt
  std::vector<std::string> prompt_texts_;
};

nlohmann::json UsageJson(const PromptUsage& u);
// The non-streamed response.
nlohmann::json CompletionResponse(const ResponseContext& ctx, const CompletionRequest& request,
                                  const ChoiceStates& choices);
// The chunks a stream opens with: the assistant role (chat) or the echoed
// prompt (completions with echo), one per choice; none otherwise.
std::vector<nlohmann::json> StreamStartChunks(const ResponseContext& ctx,
                                              const CompletionRequest& request,
                                              const ChoiceStates& choices);
// The chunks one engine output becomes (none when it carries nothing).
// `logprobs` is what ChoiceStates::Apply returned for `out`.
std::vector<nlohmann::json> StreamChunks(const ResponseContext& ctx, const CompletionRequest& request,
                                         const ChoiceStates& choices, size_t prompt_index,
                                         const RequestOutput& out, const nlohmann::json& logprobs);
// The last chunk with stream_options.include_usage: no choices, the usage.
nlohmann::json StreamUsageChunk(const ResponseContext& ctx, const ChoiceStates& choices);

}  // namespace kvinfer::serve
