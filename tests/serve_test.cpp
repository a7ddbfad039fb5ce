// kvinfer::Server over real HTTP on loopback (cpp-httplib's client), with
// stories260K: answers equal the engine's own, streams end with [DONE],
// errors have OpenAI's shape, a client that disconnects frees its blocks,
// Stop ends open streams. The request parser is tested without a model.
// The official openai client is exercised by tests/python/.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "kvinfer/kvinfer.h"
#include "kvinfer/server.h"
#include "serve/openai_request.h"
#include "test_util.h"

namespace kvinfer {
namespace {

using Json = nlohmann::json;
using serve::ApiError;
using serve::CompletionRequest;
using serve::Endpoint;

// ---------------------------------------------------------------- parser

CompletionRequest Parse(const std::string& body, Endpoint e = Endpoint::kCompletions) {
  auto r = serve::ParseCompletionRequest(body, e);
  if (auto* err = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << body << " -> " << err->message;
    return {};
  }
  return std::get<CompletionRequest>(r);
}

ApiError ParseError(const std::string& body, Endpoint e = Endpoint::kCompletions) {
  auto r = serve::ParseCompletionRequest(body, e);
  if (auto* err = std::get_if<ApiError>(&r)) return *err;
  ADD_FAILURE() << body << " was accepted";
  return {};
}

TEST(OpenAiRequest, MapsEveryParameter) {
  const CompletionRequest r = Parse(R"({
    "model": "m", "prompt": "Once", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
    "n": 3, "stop": "\n", "seed": -1, "presence_penalty": 0.5, "frequency_penalty": -0.25,
    "logprobs": 2, "user": "u", "top_k": -1, "min_p": 0.05, "repetition_penalty": 1.1,
    "ignore_eos": true, "echo": true, "stream": true, "stream_options": {"include_usage": true},
    "cache_salt": "tenant-a"})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "Once");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.params.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.params.top_p, 0.9f);
  EXPECT_EQ(r.params.n, 3);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(r.params.seed, ~uint64_t{0});
  EXPECT_FLOAT_EQ(r.params.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.params.frequency_penalty, -0.25f);
  EXPECT_TRUE(r.want_logprobs);
  EXPECT_EQ(r.top_logprobs, 2);
  EXPECT_EQ(r.params.top_k, 0);
  EXPECT_FLOAT_EQ(r.params.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r.params.repetition_penalty, 1.1f);
  EXPECT_TRUE(r.params.ignore_eos);
  EXPECT_TRUE(r.echo);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.cache_salt, "tenant-a");
}

TEST(OpenAiRequest, DefaultsAreOpenAis) {
  const CompletionRequest r = Parse(R"({"prompt": "x"})");
  EXPECT_FLOAT_EQ(r.params.temperature, 1.0f);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.params.n, 1);
  EXPECT_FALSE(r.want_logprobs);
  EXPECT_FALSE(r.stream);
}

TEST(OpenAiRequest, PromptForms) {
  EXPECT_EQ(Parse(R"({"prompt": ["a", "b"]})").prompts.size(), 2u);
  const CompletionRequest ids = Parse(R"({"prompt": [1, 2, 3]})");
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_TRUE(ids.prompts[0].is_tokens);
  EXPECT_EQ(ids.prompts[0].tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(Parse(R"({"prompt": [[1, 2], [3]]})").prompts.size(), 2u);
  EXPECT_EQ(ParseError(R"({"prompt": ""})").param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": []})").param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": [1, -2]})").param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": [[]]})").param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": {"a": 1}})").param, "prompt");
  EXPECT_EQ(ParseError(R"({})").param, "prompt");
}

TEST(OpenAiRequest, ChatMessagesAndLogprobs) {
  const CompletionRequest r = Parse(R"({"messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null}],
      "logprobs": true, "top_logprobs": 3, "max_completion_tokens": 5})",
                                    Endpoint::kChatCompletions);
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_TRUE(r.want_logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_EQ(r.max_tokens, 5);
  const Endpoint chat = Endpoint::kChatCompletions;
  EXPECT_EQ(ParseError(R"({"messages": []})", chat).param, "messages");
  EXPECT_EQ(ParseError(R"({"messages": [{"role": "tool", "content": "x"}]})", chat).param,
            "messages[0].role");
  EXPECT_EQ(ParseError(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
                       chat)
                .param,
            "messages[0].content[0].type");
  EXPECT_EQ(ParseError(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
                       chat)
                .param,
            "top_logprobs");
}

TEST(OpenAiRequest, RefusesWrongTypesAndRangesByName) {
  struct Case {
    const char* body;
    const char* param;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"prompt": "x", "max_tokens": "5"})", "max_tokens"},
           {R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens"},
           {R"({"prompt": "x", "max_tokens": -1})", "max_tokens"},
           {R"({"prompt": "x", "temperature": 3})", "temperature"},
           {R"({"prompt": "x", "temperature": "hot"})", "temperature"},
           {R"({"prompt": "x", "top_p": 0})", "top_p"},
           {R"({"prompt": "x", "n": 0})", "n"},
           {R"({"prompt": "x", "n": 100000})", "n"},
           {R"({"prompt": "x", "stop": ["a", 1]})", "stop"},
           {R"({"prompt": "x", "stop": [""]})", "stop"},
           {R"({"prompt": "x", "presence_penalty": 2.5})", "presence_penalty"},
           {R"({"prompt": "x", "repetition_penalty": 0})", "repetition_penalty"},
           {R"({"prompt": "x", "logprobs": 21})", "logprobs"},
           {R"({"prompt": "x", "seed": 1e30})", "seed"},
           {R"({"prompt": "x", "seed": 18446744073709551615})", "seed"},
           {R"({"prompt": "x", "stream": "yes"})", "stream"},
           {R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options"},
           {R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": 1}})",
            "stream_options.include_usage"},
           {R"({"prompt": "x", "tools": [{"type": "function"}]})", "tools"},
           {R"({"prompt": "x", "logit_bias": {"50256": -100}})", "logit_bias"},
           {R"({"prompt": "x", "suffix": "end"})", "suffix"},
           {R"({"prompt": "x", "best_of": 3})", "best_of"},
           {R"({"prompt": "x", "response_format": {"type": "json_object"}})", "response_format"},
           {R"({"prompt": "x", "model": 5})", "model"},
       }) {
    const ApiError e = ParseError(c.body);
    EXPECT_EQ(e.http_status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.message;
    EXPECT_FALSE(e.message.empty());
  }
  EXPECT_EQ(ParseError("{").message, "the request body is not valid JSON");
  EXPECT_EQ(ParseError("[1]").message, "the request body must be a JSON object");
  // Fields that change nothing pass: nulls, an empty tools list, "text" format.
  Parse(R"({"prompt": "x", "max_tokens": null, "tools": [], "response_format": {"type": "text"},
            "logit_bias": {}, "suffix": null, "best_of": 1})");
}

TEST(OpenAiRequest, ErrorBodyHasOpenAisShape) {
  const Json j = Json::parse(serve::ErrorBody(
      serve::InvalidRequest("too long", "prompt", "context_length_exceeded")));
  EXPECT_EQ(j["error"]["message"], "too long");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "prompt");
  EXPECT_EQ(j["error"]["code"], "context_length_exceeded");
  const Json k = Json::parse(serve::ErrorBody(serve::InvalidRequest("bad")));
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_TRUE(k["error"]["code"].is_null());
}

TEST(OpenAiRequest, TokenizeAndDetokenizeBodies) {
  auto t = serve::ParseTokenizeRequest(R"({"prompt": "hi", "add_special_tokens": false})");
  ASSERT_TRUE(std::holds_alternative<serve::TokenizeRequest>(t));
  EXPECT_FALSE(std::get<serve::TokenizeRequest>(t).add_special_tokens);
  EXPECT_TRUE(std::holds_alternative<ApiError>(serve::ParseTokenizeRequest(R"({"prompt": 3})")));
  auto d = serve::ParseDetokenizeRequest(R"({"tokens": [5, 6]})");
  ASSERT_TRUE(std::holds_alternative<std::vector<int32_t>>(d));
  EXPECT_THAT(std::get<std::vector<int32_t>>(d), ::testing::ElementsAre(5, 6));
  EXPECT_TRUE(std::holds_alternative<ApiError>(serve::ParseDetokenizeRequest(R"({"tokens": ["a"]})")));
}

// ---------------------------------------------------------------- server

// Server-sent events of one response: the JSON payloads and whether the
// stream ended with [DONE].
struct Sse {
  std::vector<Json> events;
  bool done = false;
};
Sse ParseSse(const std::string& body) {
  Sse s;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    const std::string event = body.substr(pos, end - pos);
    pos = end + 2;
    if (event.rfind("data: ", 0) != 0) continue;
    const std::string data = event.substr(6);
    if (data == "[DONE]") {
      s.done = true;
    } else {
      s.events.push_back(Json::parse(data));
    }
  }
  return s;
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVINFER_REQUIRE_FILE(testing::StoriesGguf());
    StatusOr<Model> m = Model::Load(testing::StoriesGguf());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::make_unique<Model>(*m);
  }

  EngineOptions Options() const {
    EngineOptions o;
    o.kv.strategy = KvStrategy::kPaged;
    o.kv.num_blocks = 256;
    o.kv.max_seq_len = 256;
    o.max_seqs = 8;
    o.num_threads = 1;
    return o;
  }

  void Start(EngineOptions eo, ServerOptions so = {}) {
    so.port = 0;
    so.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(line);
    };
    StatusOr<std::unique_ptr<Server>> s = Server::Create(*model_, eo, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    server_->Start();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(60, 0);
  }

  httplib::Result Post(const std::string& path, const Json& body,
                       const httplib::Headers& headers = {}) {
    return client_->Post(path.c_str(), headers, body.dump(), "application/json");
  }

  // The text the engine itself produces for `prompt` greedily.
  std::string EngineText(const std::vector<int32_t>& prompt, int max_tokens) {
    EngineOptions eo = Options();
    auto engine = Engine::Create(*model_, eo);
    EXPECT_TRUE(engine.ok());
    StatusOr<RequestId> id =
        (*engine)->AddRequestTokens(prompt, {.max_tokens = max_tokens, .temperature = 0});
    EXPECT_TRUE(id.ok());
    std::string text;
    while ((*engine)->HasWork()) {
      for (const RequestOutput& o : (*engine)->Step()) text += o.text_delta;
    }
    return text;
  }

  bool Logged(const std::string& needle) {
    std::lock_guard<std::mutex> lock(log_mu_);
    for (const std::string& l : log_) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<httplib::Client> client_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378, 113, 284, 260};

TEST_F(ServeTest, GreedyCompletionEqualsTheEngineAndStreamingEqualsBoth) {
  Start(Options());
  const std::string expected = EngineText(kPrompt, 40);
  ASSERT_FALSE(expected.empty());

  auto res = Post("/v1/completions", {{"prompt", kPrompt}, {"max_tokens", 40}, {"temperature", 0}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const Json j = Json::parse(res->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], server_->model_name());
  EXPECT_EQ(j["choices"][0]["text"], expected);
  EXPECT_EQ(j["usage"]["prompt_tokens"], kPrompt.size());
  EXPECT_EQ(j["usage"]["total_tokens"],
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

  auto sres = Post("/v1/completions", {{"prompt", kPrompt},
                                       {"max_tokens", 40},
                                       {"temperature", 0},
                                       {"stream", true},
                                       {"stream_options", {{"include_usage", true}}}});
  ASSERT_TRUE(sres);
  ASSERT_EQ(sres->status, 200);
  EXPECT_EQ(sres->get_header_value("Content-Type"), "text/event-stream");
  const Sse s = ParseSse(sres->body);
  EXPECT_TRUE(s.done);
  std::string text;
  Json finish = nullptr;
  for (const Json& e : s.events) {
    if (!e["choices"].empty()) {
      text += e["choices"][0]["text"].get<std::string>();
      if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
    }
  }
  EXPECT_EQ(text, expected);
  EXPECT_EQ(finish, j["choices"][0]["finish_reason"]);
  ASSERT_FALSE(s.events.empty());
  EXPECT_TRUE(s.events.back()["choices"].empty());
  EXPECT_EQ(s.events.back()["usage"], j["usage"]);
  EXPECT_TRUE(Logged("finish=" + j["choices"][0]["finish_reason"].get<std::string>()));
}

TEST_F(ServeTest, ChatStreamsRoleFirstAndNSamplesAreIndexed) {
  Start(Options());
  auto res = Post("/v1/chat/completions",
                  {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                   {"max_tokens", 12},
                   {"n", 3},
                   {"seed", 7},
                   {"stream", true}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const Sse s = ParseSse(res->body);
  EXPECT_TRUE(s.done);
  std::vector<bool> role(3, false), finished(3, false);
  for (const Json& e : s.events) {
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    for (const Json& c : e["choices"]) {
      const int i = c["index"];
      ASSERT_GE(i, 0);
      ASSERT_LT(i, 3);
      if (c["delta"].contains("role")) {
        EXPECT_FALSE(role[i]) << "role sent twice";
        EXPECT_FALSE(finished[i]);
        role[i] = true;
      } else {
        EXPECT_TRUE(role[i]) << "content before the role";
      }
      if (!c["finish_reason"].is_null()) finished[i] = true;
    }
  }
  EXPECT_THAT(role, ::testing::Each(true));
  EXPECT_THAT(finished, ::testing::Each(true));

  auto whole = Post("/v1/chat/completions",
                    {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                     {"max_tokens", 5},
                     {"temperature", 0},
                     {"logprobs", true},
                     {"top_logprobs", 2}});
  ASSERT_EQ(whole->status, 200) << whole->body;
  const Json j = Json::parse(whole->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const Json& lp = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), j["usage"]["completion_tokens"].get<size_t>());
  for (const Json& t : lp) {
    ASSERT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    // Greedy: the sampled token is the most likely one.
    EXPECT_EQ(t["token"], t["top_logprobs"][0]["token"]);
    EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(),
              t["top_logprobs"][1]["logprob"].get<double>());
  }
}

TEST_F(ServeTest, ErrorsHaveStatusAndShape) {
  EngineOptions eo = Options();
  eo.kv.max_seq_len = 32;
  Start(eo, {.api_key = "sekret", .max_body_bytes = 4096});
  const httplib::Headers auth = {{"Authorization", "Bearer sekret"}};
  auto check = [&](const httplib::Result& r, int status, const char* code) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    const Json j = Json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(j["error"].contains(k)) << k;
    if (code) {
      EXPECT_EQ(j["error"]["code"], code) << r->body;
    }
  };
  check(Post("/v1/completions", {{"prompt", "x"}}), 401, "invalid_api_key");
  check(Post("/v1/completions", {{"prompt", "x"}}, {{"Authorization", "Bearer wrong"}}), 401,
        "invalid_api_key");
  check(Post("/v1/completions", {{"prompt", "x"}, {"model", "nope"}}, auth), 404, "model_not_found");
  std::vector<int32_t> long_prompt(40, 300);
  check(Post("/v1/completions", {{"prompt", long_prompt}}, auth), 400, "context_length_exceeded");
  check(Post("/v1/completions", {{"prompt", kPrompt}, {"max_tokens", 30}}, auth), 400,
        "context_length_exceeded");
  check(Post("/v1/completions", {{"prompt", std::string(8000, 'a')}}, auth), 413, "request_too_large");
  check(client_->Post("/v1/completions", auth, "{not json", "application/json"), 400, nullptr);
  check(client_->Get("/no/such/route"), 404, nullptr);
  // The health check and metrics need no key.
  auto health = client_->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// The default model (not stories260K) so that generation is slow enough
// for the disconnect to land while the request still runs.
TEST_F(ServeTest, ADisconnectedStreamIsAbortedAndItsBlocksFreed) {
  KVINFER_REQUIRE_FILE(testing::DefaultModel());
  StatusOr<Model> m = Model::Load(testing::DefaultModel());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  model_ = std::make_unique<Model>(*m);
  EngineOptions eo = Options();
  eo.num_threads = 2;
  Start(eo);
  const std::vector<int32_t> prompt = *model_->Tokenize("Once upon a time");
  const std::string expected = EngineText(prompt, 24);

  // A second client's request runs beside the one that disconnects.
  std::string other_text;
  std::thread other([&] {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    auto r = c.Post("/v1/completions",
                    Json{{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}}.dump(),
                    "application/json");
    if (r && r->status == 200) other_text = Json::parse(r->body)["choices"][0]["text"];
  });

  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.set_header("Content-Type", "application/json");
  req.body = Json{{"prompt", prompt},
                  {"max_tokens", 240},
                  {"ignore_eos", true},
                  {"temperature", 0},
                  {"stream", true}}
                 .dump();
  int reads = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++reads < 2; };
  httplib::Client dropper("127.0.0.1", server_->port());
  dropper.send(req);  // returns once the receiver refuses more
  dropper.stop();
  EXPECT_EQ(reads, 2);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!Logged("finish=abort") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  other.join();
  EXPECT_TRUE(Logged("finish=abort")) << "the dropped stream's request was not aborted: "
                                      << ::testing::PrintToString(log_);
  EXPECT_EQ(other_text, expected);
  while (server_->KvStats().num_blocks_used != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(server_->KvStats().num_blocks_used, 0);
}

TEST_F(ServeTest, StopEndsOpenStreamsWithAbortAndDone) {
  Start(Options());
  std::string body;
  std::thread reader([&] {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(60, 0);
    auto r = c.Post("/v1/completions",
                    Json{{"prompt", kPrompt},
                         {"max_tokens", 240},
                         {"ignore_eos", true},
                         {"stream", true}}
                        .dump(),
                    "application/json");
    if (r) body = r->body;
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server_->Stats().num_running == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  server_->Stop(std::chrono::milliseconds(0));
  reader.join();
  const Sse s = ParseSse(body);
  ASSERT_FALSE(s.events.empty());
  // Either the request finished before Stop reached it, or it was aborted;
  // both end the stream properly.
  EXPECT_TRUE(s.done);
  const Json& last = s.events.back()["choices"][0]["finish_reason"];
  EXPECT_TRUE(last == "abort" || last == "length") << last;
}

TEST_F(ServeTest, UsageReportsThePrefixTokensReallyReused) {
  Start(Options());
  std::vector<int32_t> prompt = {1};
  for (int i = 0; i < 40; ++i) prompt.push_back(static_cast<int32_t>(300 + i));
  auto cached = [&](const Json& extra) {
    Json body = {{"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0}};
    if (extra.is_object()) body.update(extra);
    auto r = Post("/v1/completions", body);
    EXPECT_EQ(r->status, 200) << r->body;
    return Json::parse(r->body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  };
  EXPECT_EQ(cached(Json::object()), 0);
  // 41 prompt tokens: two full blocks of 16 are cached and shared.
  EXPECT_EQ(cached(Json::object()), 32);
  // Another tenant's salt shares nothing; the same salt again does.
  EXPECT_EQ(cached({{"cache_salt", "tenant-b"}}), 0);
  EXPECT_EQ(cached({{"cache_salt", "tenant-b"}}), 32);
  auto m = client_->Get("/metrics");
  EXPECT_NE(m->body.find("kvinfer:prefix_cache_hits_total 64"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("kvinfer:cached_prompt_tokens_total 64"), std::string::npos);
}

TEST_F(ServeTest, ASecondServerOnTheSamePortIsRefused) {
  Start(Options());
  ServerOptions so;
  so.port = server_->port();
  StatusOr<std::unique_ptr<Server>> second = Server::Create(*model_, Options(), so);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(std::to_string(so.port)), std::string::npos);
}

TEST_F(ServeTest, MetricsCountFinishedRequests) {
  Start(Options());
  for (int i = 0; i < 2; ++i) {
    auto r = Post("/v1/completions", {{"prompt", kPrompt}, {"max_tokens", 4}, {"ignore_eos", true}});
    ASSERT_EQ(r->status, 200);
  }
  auto m = client_->Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  for (const char* line : {"kvinfer:request_success_total{finished_reason=\"length\"} 2",
                           "kvinfer:generation_tokens_total 8", "kvinfer:kv_blocks_used 0",
                           "kvinfer:kv_blocks_total 256", "kvinfer:time_to_first_token_seconds_count 2",
                           "kvinfer:num_requests_running 0"}) {
    EXPECT_NE(m->body.find(line), std::string::npos) << line << "\n" << m->body;
  }
  auto t = Post("/tokenize", {{"prompt", "Once upon a time"}});
  ASSERT_EQ(t->status, 200);
  const Json tj = Json::parse(t->body);
  auto d = Post("/detokenize", {{"tokens", tj["tokens"]}});
  ASSERT_EQ(d->status, 200);
  EXPECT_NE(Json::parse(d->body)["prompt"].get<std::string>().find("Once upon a time"),
            std::string::npos);
  EXPECT_EQ(tj["count"], tj["tokens"].size());
}

}  // namespace
}  // namespace kvinfer
