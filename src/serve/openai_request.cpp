#include "serve/openai_request.h"

#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kvinfer::serve {
namespace {

using Json = nlohmann::json;

constexpr int kMaxN = 128;            // samples per prompt
constexpr int kMaxStop = 16;          // stop strings
constexpr int kMaxTopLogprobs = 20;   // SamplingParams::logprobs' limit
constexpr size_t kMaxPrompts = 256;   // prompts in one completions request

// Reads typed fields of one JSON object, recording the first error.
class Fields {
 public:
  explicit Fields(const Json& j) : j_(j) {}

  const ApiError* error() const { return error_ ? &*error_ : nullptr; }
  void Fail(std::string message, const std::string& param, std::string code = "") {
    if (!error_) error_ = InvalidRequest(std::move(message), param, std::move(code));
  }

  // The field, or null when absent or JSON null (null means "not given",
  // as OpenAI's clients send it).
  const Json* Get(const char* name) const {
    auto it = j_.find(name);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  void Bool(const char* name, bool* out) {
    const Json* v = Get(name);
    if (!v) return;
    if (!v->is_boolean()) return Fail(fmt::format("'{}' must be a boolean", name), name);
    *out = v->get<bool>();
  }
  void String(const char* name, std::string* out) {
    const Json* v = Get(name);
    if (!v) return;
    if (!v->is_string()) return Fail(fmt::format("'{}' must be a string", name), name);
    *out = v->get<std::string>();
  }
  // An integer in [lo, hi]; a JSON number with a fraction is refused.
  bool Int(const char* name, int64_t lo, int64_t hi, int64_t* out) {
    const Json* v = Get(name);
    if (!v) return false;
    if (!v->is_number_integer()) {
      Fail(fmt::format("'{}' must be an integer", name), name);
      return false;
    }
    int64_t x = 0;
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) {
        Fail(fmt::format("'{}' must be at most {}", name, hi), name);
        return false;
      }
      x = static_cast<int64_t>(u);
    } else {
      x = v->get<int64_t>();
    }
    if (x < lo || x > hi) {
      Fail(fmt::format("'{}' must be in [{}, {}], got {}", name, lo, hi, x), name);
      return false;
    }
    *out = x;
    return true;
  }
  bool Int(const char* name, int lo, int hi, int* out) {
    int64_t x = 0;
    if (!Int(name, static_cast<int64_t>(lo), static_cast<int64_t>(hi), &x)) return false;
    *out = static_cast<int>(x);
    return true;
  }
  // A finite number in [lo, hi] (integers accepted).
  void Float(const char* name, double lo, double hi, float* out, bool lo_open = false) {
    const Json* v = Get(name);
    if (!v) return;
    if (!v->is_number()) return Fail(fmt::format("'{}' must be a number", name), name);
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
      return Fail(fmt::format("'{}' must be in {}{}, {}], got {}", name, lo_open ? "(" : "[", lo,
                              hi, x),
                  name);
    }
    *out = static_cast<float>(x);
  }

 private:
  const Json& j_;
  std::optional<ApiError> error_;
};

std::optional<ApiError> ParseMessages(const Json& j, std::vector<ChatMessage>* out) {
  if (!j.is_array() || j.empty()) {
    return InvalidRequest("'messages' must be a non-empty array", "messages");
  }
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& m = j[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) return InvalidRequest(param + " must be an object", param);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return InvalidRequest(param + ".role must be a string", param + ".role");
    }
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for it
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant") {
      return InvalidRequest(fmt::format("{}.role '{}' is not supported (system, developer, user, "
                                        "assistant)",
                                        param, msg.role),
                            param + ".role");
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      return InvalidRequest(param + ".tool_calls: tools are not supported", param + ".tool_calls");
    }
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (msg.role != "assistant") {
        return InvalidRequest(param + ".content is required", param + ".content");
      }
    } else if (content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content->is_array()) {
      // Content parts: only text parts, concatenated.
      for (size_t k = 0; k < content->size(); ++k) {
        const Json& part = (*content)[k];
        const std::string pp = fmt::format("{}.content[{}]", param, k);
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
          return InvalidRequest(pp + " must be an object with a 'type'", pp);
        }
        if (part["type"] != "text") {
          return InvalidRequest(fmt::format("{}: content of type '{}' is not supported (text only)",
                                            pp, part["type"].get<std::string>()),
                                pp + ".type");
        }
        if (!part.contains("text") || !part["text"].is_string()) {
          return InvalidRequest(pp + ".text must be a string", pp + ".text");
        }
        msg.content += part["text"].get<std::string>();
      }
    } else {
      return InvalidRequest(param + ".content must be a string or an array of text parts",
                            param + ".content");
    }
    out->push_back(std::move(msg));
  }
  return std::nullopt;
}

// A list of token ids, each a non-negative int32 (the vocabulary bound is
// checked against the model by the server).
std::optional<ApiError> ParseTokenList(const Json& j, const std::string& param,
                                       std::vector<int32_t>* out) {
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& t = j[i];
    if (!t.is_number_integer() || (!t.is_number_unsigned() && t.get<int64_t>() < 0) ||
        t.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      return InvalidRequest(fmt::format("{}[{}] must be a non-negative token id", param, i), param);
    }
    out->push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return std::nullopt;
}

// "prompt": a string, a list of strings, a list of token ids, or a list of
// lists of token ids.
std::optional<ApiError> ParsePrompts(const Json& j, std::vector<PromptInput>* out) {
  if (j.is_string()) {
    out->push_back({.text = j.get<std::string>()});
  } else if (j.is_array() && !j.empty()) {
    if (j.size() > kMaxPrompts && !j[0].is_number()) {
      return InvalidRequest(fmt::format("at most {} prompts per request", kMaxPrompts), "prompt");
    }
    if (j[0].is_number()) {
      PromptInput p{.is_tokens = true};
      if (auto e = ParseTokenList(j, "prompt", &p.tokens)) return e;
      out->push_back(std::move(p));
    } else {
      for (size_t i = 0; i < j.size(); ++i) {
        const std::string param = fmt::format("prompt[{}]", i);
        if (j[i].is_string()) {
          out->push_back({.text = j[i].get<std::string>()});
        } else if (j[i].is_array() && !j[i].empty()) {
          PromptInput p{.is_tokens = true};
          if (auto e = ParseTokenList(j[i], param, &p.tokens)) return e;
          out->push_back(std::move(p));
        } else {
          return InvalidRequest(param + " must be a string or a non-empty list of token ids",
                                "prompt");
        }
      }
    }
  } else {
    return InvalidRequest(
        "'prompt' must be a string, a list of strings, or a (list of) non-empty list of token ids",
        "prompt");
  }
  for (const PromptInput& p : *out) {
    if (!p.is_tokens && p.text.empty()) return InvalidRequest("the prompt is empty", "prompt");
  }
  return std::nullopt;
}

// Fields that would change the answer and that kvinfer does not implement:
// refused rather than silently ignored.
std::optional<ApiError> RefuseUnsupported(const Json& j, Endpoint endpoint) {
  auto present = [&](const char* name) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) return false;
    if ((it->is_array() || it->is_object() || it->is_string()) && it->empty()) return false;
    return true;
  };
  for (const char* name : {"tools", "functions", "tool_choice", "function_call", "logit_bias",
                           "guided_json", "guided_regex", "guided_choice", "guided_grammar",
                           "prompt_logprobs", "audio", "prediction"}) {
    if (present(name)) {
      if (std::string_view(name) == "tool_choice" && j[name] == "none") continue;
      return InvalidRequest(fmt::format("'{}' is not supported by this server", name), name,
                            "unsupported_parameter");
    }
  }
  if (present("response_format")) {
    const Json& rf = j["response_format"];
    if (!rf.is_object() || rf.value("type", "") != "text") {
      return InvalidRequest("'response_format' other than {\"type\": \"text\"} is not supported",
                            "response_format", "unsupported_parameter");
    }
  }
  if (endpoint == Endpoint::kCompletions && present("suffix")) {
    return InvalidRequest("'suffix' is not supported by this server", "suffix",
                          "unsupported_parameter");
  }
  if (present("modalities")) {
    const Json& m = j["modalities"];
    if (!m.is_array() || m.size() != 1 || m[0] != "text") {
      return InvalidRequest("only the 'text' modality is supported", "modalities",
                            "unsupported_parameter");
    }
  }
  return std::nullopt;
}

}  // namespace

ApiError InvalidRequest(std::string message, std::string param, std::string code) {
  return ApiError{.http_status = 400,
                  .message = std::move(message),
                  .type = "invalid_request_error",
                  .param = std::move(param),
                  .code = std::move(code)};
}

std::string ErrorBody(const ApiError& e) {
  Json err = {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
              {"code", e.code.empty() ? Json(nullptr) : Json(e.code)}};
  return Json{{"error", std::move(err)}}.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::variant<CompletionRequest, ApiError> ParseCompletionRequest(std::string_view body,
                                                                 Endpoint endpoint) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidRequest("the request body is not valid JSON");
  if (!j.is_object()) return InvalidRequest("the request body must be a JSON object");
  if (auto e = RefuseUnsupported(j, endpoint)) return *e;

  CompletionRequest r;
  r.endpoint = endpoint;
  Fields f(j);
  f.String("model", &r.model);
  const bool chat = endpoint == Endpoint::kChatCompletions;
  if (chat) {
    const Json* m = f.Get("messages");
    if (!m) return InvalidRequest("'messages' is required", "messages");
    if (auto e = ParseMessages(*m, &r.messages)) return *e;
    f.Bool("add_generation_prompt", &r.add_generation_prompt);
  } else {
    const Json* p = f.Get("prompt");
    if (!p) return InvalidRequest("'prompt' is required", "prompt");
    if (auto e = ParsePrompts(*p, &r.prompts)) return *e;
    f.Bool("echo", &r.echo);
  }

  SamplingParams& s = r.params;
  int max_tokens = 0;
  if (f.Int("max_tokens", 0, std::numeric_limits<int>::max(), &max_tokens)) r.max_tokens = max_tokens;
  if (chat && f.Int("max_completion_tokens", 0, std::numeric_limits<int>::max(), &max_tokens)) {
    r.max_tokens = max_tokens;
  }
  s.temperature = 1.0f;  // OpenAI's default
  f.Float("temperature", 0.0, 2.0, &s.temperature);
  f.Float("top_p", 0.0, 1.0, &s.top_p, /*lo_open=*/true);
  int top_k = 0;
  if (f.Int("top_k", -1, 1 << 20, &top_k)) s.top_k = std::max(top_k, 0);  // -1: off (vLLM)
  f.Float("min_p", 0.0, 1.0, &s.min_p);
  f.Float("presence_penalty", -2.0, 2.0, &s.presence_penalty);
  f.Float("frequency_penalty", -2.0, 2.0, &s.frequency_penalty);
  f.Float("repetition_penalty", 0.0, 100.0, &s.repetition_penalty, /*lo_open=*/true);
  f.Int("n", 1, kMaxN, &s.n);
  int64_t best_of = 0;
  if (f.Int("best_of", 1, kMaxN, &best_of) && best_of != s.n) {
    return InvalidRequest("'best_of' different from 'n' is not supported", "best_of",
                          "unsupported_parameter");
  }
  int64_t seed = 0;
  if (f.Int("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
            &seed)) {
    s.seed = static_cast<uint64_t>(seed);
  }
  f.Bool("ignore_eos", &s.ignore_eos);
  f.Bool("include_stop_str_in_output", &s.include_stop_str_in_output);
  f.Bool("stream", &r.stream);
  f.String("cache_salt", &r.cache_salt);
  if (const Json* u = f.Get("user"); u && !u->is_string()) f.Fail("'user' must be a string", "user");

  if (const Json* stop = f.Get("stop")) {
    if (stop->is_string()) {
      s.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array() && stop->size() <= kMaxStop) {
      for (const Json& x : *stop) {
        if (!x.is_string()) return InvalidRequest("'stop' must be a string or a list of strings", "stop");
        s.stop.push_back(x.get<std::string>());
      }
    } else {
      return InvalidRequest(
          fmt::format("'stop' must be a string or a list of at most {} strings", kMaxStop), "stop");
    }
    for (const std::string& x : s.stop) {
      if (x.empty()) return InvalidRequest("'stop' strings must not be empty", "stop");
    }
  }
  if (const Json* ids = f.Get("stop_token_ids")) {
    if (!ids->is_array()) return InvalidRequest("'stop_token_ids' must be a list of token ids", "stop_token_ids");
    if (auto e = ParseTokenList(*ids, "stop_token_ids", &s.stop_token_ids)) return *e;
  }

  if (const Json* so = f.Get("stream_options")) {
    if (!so->is_object()) return InvalidRequest("'stream_options' must be an object", "stream_options");
    if (!r.stream) {
      return InvalidRequest("'stream_options' is only allowed when 'stream' is true", "stream_options");
    }
    Fields sf(*so);
    sf.Bool("include_usage", &r.include_usage);
    if (sf.error()) {
      ApiError e = *sf.error();
      e.param = "stream_options." + e.param;
      return e;
    }
  }

  if (chat) {
    f.Bool("logprobs", &r.want_logprobs);
    if (f.Int("top_logprobs", 0, kMaxTopLogprobs, &r.top_logprobs) && !r.want_logprobs &&
        !f.error()) {
      return InvalidRequest("'top_logprobs' requires 'logprobs': true", "top_logprobs");
    }
  } else {
    int k = 0;
    if (f.Int("logprobs", 0, kMaxTopLogprobs, &k)) {
      r.want_logprobs = true;
      r.top_logprobs = k;
    }
  }
  if (f.error()) return *f.error();
  return r;
}

std::variant<TokenizeRequest, ApiError> ParseTokenizeRequest(std::string_view body) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidRequest("the request body is not valid JSON");
  if (!j.is_object()) return InvalidRequest("the request body must be a JSON object");
  TokenizeRequest r;
  Fields f(j);
  if (const Json* m = f.Get("messages")) {
    r.is_chat = true;
    if (auto e = ParseMessages(*m, &r.messages)) return *e;
    f.Bool("add_generation_prompt", &r.add_generation_prompt);
  } else {
    const Json* p = f.Get("prompt");
    if (!p) return InvalidRequest("'prompt' or 'messages' is required", "prompt");
    if (!p->is_string()) return InvalidRequest("'prompt' must be a string", "prompt");
    r.prompt = p->get<std::string>();
  }
  f.Bool("add_special_tokens", &r.add_special_tokens);
  if (f.error()) return *f.error();
  return r;
}

std::variant<std::vector<int32_t>, ApiError> ParseDetokenizeRequest(std::string_view body) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidRequest("the request body is not valid JSON");
  if (!j.is_object()) return InvalidRequest("the request body must be a JSON object");
  auto it = j.find("tokens");
  if (it == j.end() || !it->is_array()) return InvalidRequest("'tokens' must be a list of token ids", "tokens");
  std::vector<int32_t> ids;
  if (auto e = ParseTokenList(*it, "tokens", &ids)) return *e;
  return ids;
}

}  // namespace kvinfer::serve
