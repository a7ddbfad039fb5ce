// kvinfer::Server: cpp-httplib's HTTP server in front of an AsyncEngine.
//
// An HTTP thread parses and checks a request (serve/openai_request.h),
// renders the chat template and tokenizes, hands each prompt to the engine
// thread (AsyncEngine::AddTokens) and then only waits on the request's
// streams, turning engine outputs into OpenAI responses (serve/openai_response.h)
// or server-sent events. A streaming client that goes away makes the next
// write fail; the request is then aborted and its KV blocks freed by the
// engine thread at its next step.
#include "kvinfer/server.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "serve/chat_page.h"
#include "serve/metrics.h"
#include "serve/openai_request.h"
#include "serve/openai_response.h"

namespace kvinfer {
namespace {

using Json = nlohmann::json;
using serve::ApiError;
using serve::CompletionRequest;
using serve::Endpoint;
using Clock = std::chrono::steady_clock;

// How long a stream may go without a byte before a keep-alive comment is
// sent; a write to a client that has gone away fails, which aborts the
// request even while it waits for admission.
constexpr auto kKeepAliveInterval = std::chrono::seconds(2);

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(serve::ErrorBody(e), "application/json");
}

ApiError Error(int status, std::string message, std::string type, std::string code = "",
               std::string param = "") {
  return ApiError{.http_status = status,
                  .message = std::move(message),
                  .type = std::move(type),
                  .param = std::move(param),
                  .code = std::move(code)};
}

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Compares without an early exit, so the time taken does not tell how much
// of a guessed key was right.
bool SameKey(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

// An engine output of prompt `prompt_index`, with its log-probabilities in
// the endpoint's shape.
struct PumpedOutput {
  size_t prompt_index = 0;
  RequestOutput out;
  Json logprobs;
};

// One HTTP completion request: the engine requests it became (one per
// prompt, each with n samples) and their outputs as they arrive.
struct Job {
  serve::ResponseContext ctx;
  CompletionRequest request;
  std::vector<RequestStream> streams;                // one per prompt
  std::vector<std::vector<int32_t>> prompt_tokens;   // one per prompt
  std::vector<std::string> prompt_texts;             // one per prompt (echo)
  serve::ChoiceStates choices;
  std::vector<bool> stream_done;
  size_t next_stream = 0;  // round-robin position when there are several
  Clock::time_point arrived = Clock::now();
  std::atomic<int>* active = nullptr;  // the server's count of running jobs
  std::atomic<bool> aborted{false};

  ~Job() {
    if (active) active->fetch_sub(1);
  }
  bool AllDone() const {
    return std::all_of(stream_done.begin(), stream_done.end(), [](bool d) { return d; });
  }
};

class ServerImpl {
 public:
  ServerImpl(Model model, ServerOptions options, std::unique_ptr<AsyncEngine> engine, int max_seq_len)
      : model_(std::move(model)),
        options_(std::move(options)),
        engine_(std::move(engine)),
        max_seq_len_(max_seq_len),
        created_(std::time(nullptr)) {
    model_name_ = options_.served_model_name.empty() ? BaseName(model_.info().path)
                                                     : options_.served_model_name;
    std::random_device rd;
    id_prefix_ = fmt::format("{:08x}", rd());
    if (!options_.log) {
      options_.log = [](const std::string& line) {
        std::fprintf(stderr, "%s\n", line.c_str());
        std::fflush(stderr);
      };
    }
    Routes();
  }

  Status Bind() {
    // SO_REUSEADDR only (cpp-httplib's default adds SO_REUSEPORT, which would
    // let a second server share the port silently), and the socket kept so
    // its listen backlog can be raised below.
    http_.set_socket_options([this](int sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listen_fd_ = sock;
    });
    const int port = options_.port == 0 ? http_.bind_to_any_port(options_.host)
                                        : (http_.bind_to_port(options_.host, options_.port)
                                               ? options_.port
                                               : -1);
    if (port <= 0) {
      return Status(StatusCode::kUnavailable,
                    fmt::format("cannot listen on {}:{} (in use, or not an address of this host)",
                                options_.host, options_.port));
    }
    port_ = port;
    // cpp-httplib listens with a backlog of 5, so a burst of new connections
    // (64 clients starting at once) overflows the accept queue and some are
    // reset. Listening again on the bound socket raises the backlog (the
    // kernel caps it at net.core.somaxconn).
    if (listen_fd_ >= 0 && ::listen(listen_fd_, SOMAXCONN) != 0) {
      return Status(StatusCode::kUnavailable,
                    fmt::format("cannot listen on {}:{}", options_.host, port_));
    }
    return Status::Ok();
  }

  void Start() {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (started_ || stopped_) return;
    started_ = true;
    listener_ = std::thread([this] { http_.listen_after_bind(); });
  }

  void Stop(std::chrono::milliseconds drain) {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (stopped_) return;
    stopped_ = true;
    draining_ = true;
    const auto deadline = Clock::now() + drain;
    while (active_.load() > 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Ends every open stream with finish_reason "abort"; the HTTP threads
    // then write their last events and return.
    engine_->Shutdown();
    const auto flush_deadline = Clock::now() + std::chrono::seconds(2);
    while (active_.load() > 0 && Clock::now() < flush_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    http_.stop();
    if (listener_.joinable()) listener_.join();
  }

  int port() const { return port_; }
  const std::string& model_name() const { return model_name_; }
  EngineStats Stats() const { return engine_->Stats(); }
  KvCacheStats KvStats() const { return engine_->KvStats(); }

 private:
  void Routes();
  void HandleCompletion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  std::optional<ApiError> PreparePrompts(Job& job);
  std::optional<ApiError> Submit(Job& job);
  void Reject(httplib::Response& res, const ApiError& e) {
    metrics_.RecordRejected();
    SendError(res, e);
  }
  // Takes the outputs that are ready (waiting up to `wait` for the first)
  // and folds them into the job; returns them for streaming.
  std::vector<PumpedOutput> Pump(Job& job, std::chrono::milliseconds wait);
  void Finished(Job& job, size_t prompt_index, const RequestOutput& last);
  void ServeNonStreaming(const std::shared_ptr<Job>& job, httplib::Response& res);
  void ServeStreaming(const std::shared_ptr<Job>& job, httplib::Response& res);

  Model model_;
  ServerOptions options_;
  std::unique_ptr<AsyncEngine> engine_;
  const int max_seq_len_;
  const std::time_t created_;
  std::string model_name_;
  std::string id_prefix_;
  std::atomic<uint64_t> next_id_{1};
  httplib::Server http_;
  int port_ = 0;
  int listen_fd_ = -1;  // the listening socket (owned by http_)
  serve::ServerMetrics metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<int> active_{0};
  std::mutex lifecycle_mu_;
  bool started_ = false;
  bool stopped_ = false;
  std::thread listener_;
};

void ServerImpl::Routes() {
  http_.new_task_queue = [n = std::max(1, options_.http_threads)] {
    return new httplib::ThreadPool(static_cast<size_t>(n));
  };
  http_.set_payload_max_length(static_cast<size_t>(std::max<int64_t>(options_.max_body_bytes, 1)));
  http_.set_read_timeout(options_.read_timeout_s, 0);
  http_.set_write_timeout(options_.write_timeout_s, 0);
  http_.set_keep_alive_timeout(options_.keep_alive_timeout_s);

  http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const bool api = req.path.rfind("/v1/", 0) == 0 || req.path == "/tokenize" ||
                     req.path == "/detokenize";
    if (api && !options_.api_key.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string_view bearer = "Bearer ";
      if (auth.rfind(bearer, 0) != 0 || !SameKey(std::string_view(auth).substr(bearer.size()),
                                                 options_.api_key)) {
        Reject(res, Error(401,
                          auth.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                       : "incorrect API key",
                          "authentication_error", "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (draining_ && req.method == "POST") {
      res.set_header("Retry-After", "5");
      Reject(res, Error(503, "the server is shutting down", "server_error", "shutting_down"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  http_.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404:
        SendError(res, Error(404, fmt::format("no route for {} {}", req.method, req.path),
                             "not_found_error"));
        break;
      case 413:
        // cpp-httplib also caps form-encoded bodies (curl -d's default
        // content type) at 8 KiB; JSON bodies may reach max_body_bytes.
        SendError(res, Error(413, fmt::format("the request body is too large: at most {} bytes "
                                              "with Content-Type: application/json, 8192 when "
                                              "form-encoded",
                                              options_.max_body_bytes),
                             "invalid_request_error", "request_too_large"));
        break;
      case 405:
        SendError(res, Error(405, fmt::format("method {} not allowed on {}", req.method, req.path),
                             "invalid_request_error"));
        break;
      default:
        SendError(res, Error(res.status, fmt::format("HTTP {}", res.status),
                             res.status >= 500 ? "server_error" : "invalid_request_error"));
    }
  });

  http_.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        SendError(res, Error(500, "internal error: " + what, "server_error"));
      });

  http_.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(serve::ChatPageHtml()), "text/html; charset=utf-8");
  });
  http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining_) {
      res.status = 503;
      res.set_content(R"({"status":"draining"})", "application/json");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const Json model = {{"id", model_name_},         {"object", "model"},
                        {"created", created_},       {"owned_by", "kvinfer"},
                        {"root", model_.info().path}, {"max_model_len", max_seq_len_}};
    res.set_content(Dump({{"object", "list"}, {"data", Json::array({model})}}),
                    "application/json");
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.Render(engine_->Stats(), engine_->KvStats()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleCompletion(req, res, Endpoint::kCompletions);
  });
  http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleCompletion(req, res, Endpoint::kChatCompletions);
  });
  http_.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    auto parsed = serve::ParseTokenizeRequest(req.body);
    if (auto* e = std::get_if<ApiError>(&parsed)) return Reject(res, *e);
    const serve::TokenizeRequest& t = std::get<serve::TokenizeRequest>(parsed);
    std::string text = t.prompt;
    if (t.is_chat) {
      StatusOr<std::string> rendered = model_.ApplyChatTemplate(t.messages, t.add_generation_prompt);
      if (!rendered.ok()) return Reject(res, serve::InvalidRequest(rendered.status().message(), "messages"));
      text = *rendered;
    }
    StatusOr<std::vector<int32_t>> ids = model_.Tokenize(text, t.add_special_tokens, t.is_chat);
    if (!ids.ok()) return Reject(res, serve::InvalidRequest(ids.status().message(), "prompt"));
    res.set_content(Dump({{"tokens", *ids},
                          {"count", ids->size()},
                          {"max_model_len", max_seq_len_}}),
                    "application/json");
  });
  http_.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    auto parsed = serve::ParseDetokenizeRequest(req.body);
    if (auto* e = std::get_if<ApiError>(&parsed)) return Reject(res, *e);
    const std::vector<int32_t>& ids = std::get<std::vector<int32_t>>(parsed);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] >= model_.info().vocab_size) {
        return Reject(res, serve::InvalidRequest(
                               fmt::format("tokens[{}] = {} is not in the vocabulary (size {})", i,
                                           ids[i], model_.info().vocab_size),
                               "tokens"));
      }
    }
    res.set_content(Dump({{"prompt", model_.Detokenize(ids)}}), "application/json");
  });
}

std::optional<ApiError> ServerImpl::PreparePrompts(Job& job) {
  const CompletionRequest& r = job.request;
  const int vocab = model_.info().vocab_size;
  if (r.endpoint == Endpoint::kChatCompletions) {
    StatusOr<std::string> text = model_.ApplyChatTemplate(r.messages, r.add_generation_prompt);
    if (!text.ok()) return serve::InvalidRequest(text.status().message(), "messages");
    StatusOr<std::vector<int32_t>> ids = model_.Tokenize(*text, /*add_special=*/true,
                                                         /*parse_special=*/true);
    if (!ids.ok()) return serve::InvalidRequest(ids.status().message(), "messages");
    job.prompt_tokens.push_back(std::move(*ids));
    job.prompt_texts.push_back(std::move(*text));
  } else {
    for (const serve::PromptInput& p : r.prompts) {
      if (p.is_tokens) {
        for (size_t i = 0; i < p.tokens.size(); ++i) {
          if (p.tokens[i] >= vocab) {
            return serve::InvalidRequest(
                fmt::format("prompt token {} at index {} is not in the vocabulary (size {})",
                            p.tokens[i], i, vocab),
                "prompt");
          }
        }
        job.prompt_tokens.push_back(p.tokens);
        job.prompt_texts.push_back(r.echo ? model_.Detokenize(p.tokens) : std::string());
      } else {
        StatusOr<std::vector<int32_t>> ids = model_.Tokenize(p.text, /*add_special=*/true);
        if (!ids.ok()) return serve::InvalidRequest(ids.status().message(), "prompt");
        job.prompt_tokens.push_back(std::move(*ids));
        job.prompt_texts.push_back(p.text);
      }
    }
  }
  for (const std::vector<int32_t>& ids : job.prompt_tokens) {
    const int64_t n = static_cast<int64_t>(ids.size());
    const int64_t want = r.max_tokens.value_or(0);
    if (n >= max_seq_len_ || n + want > max_seq_len_) {
      return serve::InvalidRequest(
          r.max_tokens
              ? fmt::format("This model's maximum context length is {} tokens. However, you "
                            "requested {} tokens ({} in the prompt, {} in the completion). "
                            "Please reduce the prompt or max_tokens.",
                            max_seq_len_, n + want, n, want)
              : fmt::format("This model's maximum context length is {} tokens. However, the "
                            "prompt has {} tokens, which leaves no room for a completion.",
                            max_seq_len_, n),
          r.endpoint == Endpoint::kChatCompletions ? "messages" : "prompt",
          "context_length_exceeded");
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ServerImpl::Submit(Job& job) {
  const CompletionRequest& r = job.request;
  for (size_t i = 0; i < job.prompt_tokens.size(); ++i) {
    SamplingParams params = r.params;
    params.max_tokens =
        r.max_tokens.value_or(max_seq_len_ - static_cast<int>(job.prompt_tokens[i].size()));
    // The engine reports the sampled token's log-probability only together
    // with at least one alternative; extra alternatives are not returned.
    params.logprobs = r.want_logprobs ? std::max(1, r.top_logprobs) : 0;
    RequestOptions ro;
    ro.cache_salt = r.cache_salt;
    ro.request_id =
        job.prompt_tokens.size() == 1 ? job.ctx.id : fmt::format("{}-{}", job.ctx.id, i);
    StatusOr<RequestStream> s = engine_->AddTokens(job.prompt_tokens[i], params, ro);
    if (!s.ok()) {
      for (RequestStream& added : job.streams) engine_->Abort(added.id());
      const Status& st = s.status();
      switch (st.code()) {
        case StatusCode::kResourceExhausted:
          return Error(429, "too many requests are waiting; retry later", "rate_limit_error",
                       "queue_full");
        case StatusCode::kUnavailable:
          return Error(503, "the server is shutting down", "server_error", "shutting_down");
        case StatusCode::kOutOfRange:
          return serve::InvalidRequest(st.message(), "prompt", "context_length_exceeded");
        case StatusCode::kInvalidArgument:
          return serve::InvalidRequest(st.message());
        default:
          return Error(500, st.message(), "server_error");
      }
    }
    job.streams.push_back(*s);
    job.stream_done.push_back(false);
  }
  return std::nullopt;
}

std::vector<PumpedOutput> ServerImpl::Pump(Job& job,
                                                               std::chrono::milliseconds wait) {
  std::vector<PumpedOutput> got;
  const size_t m = job.streams.size();
  const auto deadline = Clock::now() + wait;
  for (;;) {
    for (size_t k = 0; k < m; ++k) {
      const size_t i = (job.next_stream + k) % m;
      if (job.stream_done[i]) continue;
      // One stream: block on it; several: poll them in turn.
      const auto timeout = m == 1 ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::max(deadline - Clock::now(), Clock::duration(0)))
                                  : std::chrono::milliseconds(0);
      while (std::optional<RequestOutput> out = job.streams[i].Next(timeout)) {
        const bool last = out->request_finished;
        Json logprobs = job.choices.Apply(i, *out, model_);
        got.push_back({i, std::move(*out), std::move(logprobs)});
        if (last) {
          job.stream_done[i] = true;
          Finished(job, i, got.back().out);
          break;
        }
        if (m == 1) break;
      }
    }
    job.next_stream = (job.next_stream + 1) % std::max<size_t>(m, 1);
    if (!got.empty() || job.AllDone() || Clock::now() >= deadline) return got;
    if (m > 1) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void ServerImpl::Finished(Job& job, size_t prompt_index, const RequestOutput& last) {
  const serve::PromptUsage u = job.choices.Usage(prompt_index);
  serve::FinishedRequest f;
  f.prompt_tokens = u.prompt_tokens;
  f.generation_tokens = u.completion_tokens;
  f.cached_tokens = u.cached_tokens;
  f.finished_reason = serve::MetricsReason(last.finish_reason);
  const RequestTimings& t = last.timings;
  f.e2e_s = std::chrono::duration<double>(Clock::now() - job.arrived).count();
  if (t.generated_tokens > 0) f.ttft_s = t.ttft_ms / 1e3;
  if (t.generated_tokens > 1) f.time_per_output_token_s = t.decode_ms / 1e3 / (t.generated_tokens - 1);
  metrics_.RecordFinished(f);
  const std::string& rid = job.streams[prompt_index].request_id();
  options_.log(fmt::format(
      "kvinfer serve: {} {} prompt={} cached={} completion={} ttft_ms={:.1f} e2e_ms={:.1f} "
      "finish={}{}",
      rid, job.request.endpoint == Endpoint::kChatCompletions ? "chat" : "completion",
      u.prompt_tokens, u.cached_tokens, u.completion_tokens, t.ttft_ms, f.e2e_s * 1e3,
      f.finished_reason, last.error.empty() ? "" : " error=\"" + last.error + "\""));
}

void ServerImpl::HandleCompletion(const httplib::Request& req, httplib::Response& res,
                                  Endpoint endpoint) {
  auto parsed = serve::ParseCompletionRequest(req.body, endpoint);
  if (auto* e = std::get_if<ApiError>(&parsed)) return Reject(res, *e);
  auto job = std::make_shared<Job>();
  job->request = std::move(std::get<CompletionRequest>(parsed));
  if (!job->request.model.empty() && job->request.model != model_name_) {
    return Reject(res, Error(404,
                             fmt::format("the model '{}' does not exist; this server serves '{}'",
                                         job->request.model, model_name_),
                             "not_found_error", "model_not_found", "model"));
  }
  job->ctx.endpoint = endpoint;
  job->ctx.id = fmt::format("{}-{}{:x}",
                            endpoint == Endpoint::kChatCompletions ? "chatcmpl" : "cmpl",
                            id_prefix_, next_id_.fetch_add(1));
  job->ctx.created = std::time(nullptr);
  job->ctx.model = model_name_;
  job->ctx.model_ptr = &model_;
  if (auto e = PreparePrompts(*job)) return Reject(res, *e);
  job->choices.Init(job->request, job->prompt_tokens, job->prompt_texts);

  active_.fetch_add(1);
  job->active = &active_;
  if (auto e = Submit(*job)) {
    if (e->http_status == 429) res.set_header("Retry-After", "1");
    return Reject(res, *e);
  }
  if (job->request.stream) {
    ServeStreaming(job, res);
  } else {
    ServeNonStreaming(job, res);
  }
}

void ServerImpl::ServeNonStreaming(const std::shared_ptr<Job>& job, httplib::Response& res) {
  while (!job->AllDone()) Pump(*job, std::chrono::milliseconds(1000));
  if (std::optional<ApiError> e = job->choices.Failure()) return SendError(res, *e);
  res.set_content(Dump(serve::CompletionResponse(job->ctx, job->request, job->choices)),
                  "application/json");
}

void ServerImpl::ServeStreaming(const std::shared_ptr<Job>& job, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto started = std::make_shared<bool>(false);
  auto last_write = std::make_shared<Clock::time_point>(Clock::now());
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, started, last_write](size_t, httplib::DataSink& sink) {
        std::string out;
        if (!*started) {
          *started = true;
          for (const Json& chunk : serve::StreamStartChunks(job->ctx, job->request, job->choices)) {
            out += "data: " + Dump(chunk) + "\n\n";
          }
        }
        for (const PumpedOutput& p : Pump(*job, std::chrono::milliseconds(250))) {
          for (const Json& chunk : serve::StreamChunks(job->ctx, job->request, job->choices,
                                                       p.prompt_index, p.out, p.logprobs)) {
            out += "data: " + Dump(chunk) + "\n\n";
          }
        }
        if (job->AllDone()) {
          if (job->request.include_usage) {
            out += "data: " + Dump(serve::StreamUsageChunk(job->ctx, job->choices)) + "\n\n";
          }
          out += "data: [DONE]\n\n";
        } else if (out.empty() && Clock::now() - *last_write >= kKeepAliveInterval) {
          out = ": keep-alive\n\n";
        }
        if (!out.empty()) {
          if (!sink.write(out.data(), out.size())) return false;
          *last_write = Clock::now();
        }
        if (job->AllDone()) sink.done();
        return true;
      },
      [this, job](bool /*success*/) {
        // The client went away (or the server stopped) before the end:
        // abort what still runs so its KV blocks are freed, and take the
        // final outputs (within about one engine step) so the request is
        // logged and counted.
        if (job->AllDone()) return;
        for (size_t i = 0; i < job->streams.size(); ++i) {
          if (!job->stream_done[i]) engine_->Abort(job->streams[i].id());
        }
        while (!job->AllDone()) Pump(*job, std::chrono::milliseconds(1000));
      });
}

// ---------------------------------------------------------------- Server

Server::Server(std::unique_ptr<ServerImpl> impl) : impl_(std::move(impl)) {}
Server::~Server() {
  if (impl_) impl_->Stop(std::chrono::milliseconds(0));
}

StatusOr<std::unique_ptr<Server>> Server::Create(const Model& model, const EngineOptions& options,
                                                 const ServerOptions& server_options) {
  EngineOptions eo = options;
  if (eo.kv.max_seq_len <= 0) eo.kv.max_seq_len = model.info().context_length;
  StatusOr<std::unique_ptr<AsyncEngine>> engine =
      AsyncEngine::Create(model, eo, {.max_waiting = server_options.max_waiting});
  if (!engine.ok()) return engine.status();
  const int max_seq_len = (*engine)->options().kv.max_seq_len > 0
                              ? (*engine)->options().kv.max_seq_len
                              : eo.kv.max_seq_len;
  auto impl = std::make_unique<ServerImpl>(model, server_options, std::move(*engine), max_seq_len);
  if (Status st = impl->Bind(); !st.ok()) return st;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->port(); }
const std::string& Server::model_name() const { return impl_->model_name(); }
void Server::Start() { impl_->Start(); }
void Server::Stop(std::chrono::milliseconds drain) { impl_->Stop(drain); }
EngineStats Server::Stats() const { return impl_->Stats(); }
KvCacheStats Server::KvStats() const { return impl_->KvStats(); }

}  // namespace kvinfer
