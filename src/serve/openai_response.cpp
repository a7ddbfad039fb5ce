#include "serve/openai_response.h"

#include <fmt/format.h>

namespace kvinfer::serve {
namespace {

using Json = nlohmann::json;

bool Chat(Endpoint e) { return e == Endpoint::kChatCompletions; }

// The finish_reason a response names: OpenAI's stop / length, vLLM's abort,
// and "error" for a choice that failed.
Json FinishJson(FinishReason r) {
  if (r == FinishReason::kNone) return nullptr;
  return MetricsReason(r);
}

Json Bytes(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

Json ChunkBase(const ResponseContext& ctx, const CompletionRequest& request) {
  Json j = {{"id", ctx.id},
            {"object", Chat(ctx.endpoint) ? "chat.completion.chunk" : "text_completion"},
            {"created", ctx.created},
            {"model", ctx.model},
            {"choices", Json::array()}};
  if (request.include_usage) j["usage"] = nullptr;
  return j;
}

Json ChoiceChunk(Endpoint endpoint, size_t index, const std::string& text, const Json& logprobs,
                 FinishReason finish, bool role) {
  Json c = {{"index", index}, {"logprobs", logprobs}, {"finish_reason", FinishJson(finish)}};
  if (Chat(endpoint)) {
    Json delta = Json::object();
    if (role) delta["role"] = "assistant";
    if (role || !text.empty()) delta["content"] = text;
    c["delta"] = std::move(delta);
  } else {
    c["text"] = text;
  }
  return c;
}

}  // namespace

const char* MetricsReason(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
    case FinishReason::kContextFull:
      return "length";
    case FinishReason::kAborted:
      return "abort";
    case FinishReason::kKvExhausted:
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

void ChoiceStates::Init(const CompletionRequest& request,
                        const std::vector<std::vector<int32_t>>& prompt_tokens,
                        const std::vector<std::string>& prompt_texts) {
  endpoint_ = request.endpoint;
  n_ = request.params.n;
  want_logprobs_ = request.want_logprobs;
  accumulate_ = !request.stream;
  top_logprobs_ = request.top_logprobs;
  prompt_texts_ = prompt_texts;
  choices_.assign(prompt_tokens.size() * static_cast<size_t>(n_), Choice{});
  usage_.assign(prompt_tokens.size(), PromptUsage{});
  for (size_t i = 0; i < prompt_tokens.size(); ++i) {
    usage_[i].prompt_tokens = static_cast<int64_t>(prompt_tokens[i].size());
    for (int j = 0; j < n_; ++j) {
      Choice& c = choices_[Index(i, j)];
      if (request.echo) {
        c.text = prompt_texts[i];
        c.text_bytes = static_cast<int64_t>(c.text.size());
      }
      if (want_logprobs_) {
        c.logprobs = Chat(endpoint_) ? Json{{"content", Json::array()}}
                                     : Json{{"tokens", Json::array()},
                                            {"token_logprobs", Json::array()},
                                            {"top_logprobs", Json::array()},
                                            {"text_offset", Json::array()}};
      }
    }
  }
}

Json ChoiceStates::Apply(size_t prompt_index, const RequestOutput& out, const Model& model) {
  Json part;
  if (out.sample_index < 0 || out.sample_index >= n_) return part;
  Choice& c = choices_[Index(prompt_index, out.sample_index)];
  if (want_logprobs_ && !out.logprobs.empty()) {
    const bool chat = Chat(endpoint_);
    part = chat ? Json{{"content", Json::array()}}
                     : Json{{"tokens", Json::array()},
                            {"token_logprobs", Json::array()},
                            {"top_logprobs", Json::array()},
                            {"text_offset", Json::array()}};
    int64_t offset = c.text_bytes;
    for (const TokenLogprob& t : out.logprobs) {
      const int32_t id = t.token;
      const std::string s = model.Detokenize({&id, 1});
      const size_t k = std::min(t.top.size(), static_cast<size_t>(top_logprobs_));
      if (chat) {
        Json top = Json::array();
        for (size_t a = 0; a < k; ++a) {
          const std::string ts = model.Detokenize({&t.top[a].first, 1});
          top.push_back({{"token", ts}, {"logprob", t.top[a].second}, {"bytes", Bytes(ts)}});
        }
        part["content"].push_back(
            {{"token", s}, {"logprob", t.logprob}, {"bytes", Bytes(s)}, {"top_logprobs", top}});
      } else {
        part["tokens"].push_back(s);
        part["token_logprobs"].push_back(t.logprob);
        Json top = Json::object();
        for (size_t a = 0; a < k; ++a) {
          top[model.Detokenize({&t.top[a].first, 1})] = t.top[a].second;
        }
        part["top_logprobs"].push_back(k > 0 ? top : Json(nullptr));
        part["text_offset"].push_back(offset);
        offset += static_cast<int64_t>(s.size());
      }
    }
    if (accumulate_) {
      for (auto& [key, values] : part.items()) {
        for (const Json& v : values) c.logprobs[key].push_back(v);
      }
    }
  }
  if (accumulate_) c.text += out.text_delta;
  c.text_bytes += static_cast<int64_t>(out.text_delta.size());
  c.num_tokens += static_cast<int64_t>(out.new_tokens.size());
  usage_[prompt_index].cached_tokens = out.num_cached_tokens;
  if (out.finished) {
    c.finish = out.finish_reason;
    c.error = out.error;
  }
  usage_[prompt_index].completion_tokens += static_cast<int64_t>(out.new_tokens.size());
  return part;
}

PromptUsage ChoiceStates::Usage(size_t prompt_index) const { return usage_[prompt_index]; }

PromptUsage ChoiceStates::TotalUsage() const {
  PromptUsage t;
  for (const PromptUsage& u : usage_) {
    t.prompt_tokens += u.prompt_tokens;
    t.completion_tokens += u.completion_tokens;
    t.cached_tokens += u.cached_tokens;
  }
  return t;
}

std::optional<ApiError> ChoiceStates::Failure() const {
  for (const Choice& c : choices_) {
    if (c.finish == FinishReason::kKvExhausted) {
      return ApiError{.http_status = 400,
                      .message = "the request needs more KV cache than the server's pool holds; "
                                 "reduce the prompt, max_tokens or n",
                      .type = "invalid_request_error",
                      .code = "kv_cache_exhausted"};
    }
    if (c.finish == FinishReason::kError) {
      return ApiError{.http_status = 500,
                      .message = c.error.empty() ? "the engine failed on this request" : c.error,
                      .type = "server_error",
                      .code = "engine_error"};
    }
    if (c.finish == FinishReason::kAborted) {
      return ApiError{.http_status = 503,
                      .message = "the request was aborted (the server is shutting down)",
                      .type = "server_error",
                      .code = "aborted"};
    }
  }
  return std::nullopt;
}

Json UsageJson(const PromptUsage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

Json CompletionResponse(const ResponseContext& ctx, const CompletionRequest& request,
                        const ChoiceStates& choices) {
  const bool chat = Chat(ctx.endpoint);
  Json list = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceStates::Choice& c = choices.choice(i);
    Json j = {{"index", i}, {"logprobs", c.logprobs}, {"finish_reason", FinishJson(c.finish)}};
    if (chat) {
      j["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      j["text"] = c.text;
    }
    list.push_back(std::move(j));
  }
  return {{"id", ctx.id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", ctx.created},
          {"model", ctx.model},
          {"choices", std::move(list)},
          {"usage", UsageJson(choices.TotalUsage())}};
}

std::vector<Json> StreamStartChunks(const ResponseContext& ctx, const CompletionRequest& request,
                                    const ChoiceStates& choices) {
  std::vector<Json> chunks;
  const bool chat = Chat(ctx.endpoint);
  if (!chat && !request.echo) return chunks;
  for (size_t i = 0; i < choices.size(); ++i) {
    Json j = ChunkBase(ctx, request);
    const std::string text = chat ? "" : choices.prompt_text(i / static_cast<size_t>(request.params.n));
    j["choices"].push_back(ChoiceChunk(ctx.endpoint, i, text, nullptr, FinishReason::kNone, chat));
    chunks.push_back(std::move(j));
  }
  return chunks;
}

std::vector<Json> StreamChunks(const ResponseContext& ctx, const CompletionRequest& request,
                               const ChoiceStates& choices, size_t prompt_index,
                               const RequestOutput& out, const Json& logprobs) {
  std::vector<Json> chunks;
  const size_t index = choices.Index(prompt_index, out.sample_index);
  if (index >= choices.size()) return chunks;
  if (out.finished && (out.finish_reason == FinishReason::kError ||
                       out.finish_reason == FinishReason::kKvExhausted)) {
    if (std::optional<ApiError> e = choices.Failure()) {
      Json err = {{"message", e->message}, {"type", e->type}, {"param", nullptr}, {"code", e->code}};
      chunks.push_back({{"error", std::move(err)}});
    }
  }
  if (out.text_delta.empty() && !out.finished && logprobs.is_null()) return chunks;
  Json j = ChunkBase(ctx, request);
  j["choices"].push_back(ChoiceChunk(ctx.endpoint, index, out.text_delta, logprobs,
                                     out.finished ? out.finish_reason : FinishReason::kNone,
                                     /*role=*/false));
  chunks.push_back(std::move(j));
  return chunks;
}

Json StreamUsageChunk(const ResponseContext& ctx, const ChoiceStates& choices) {
  return {{"id", ctx.id},
          {"object", Chat(ctx.endpoint) ? "chat.completion.chunk" : "text_completion"},
          {"created", ctx.created},
          {"model", ctx.model},
          {"choices", Json::array()},
          {"usage", UsageJson(choices.TotalUsage())}};
}

}  // namespace kvinfer::serve
