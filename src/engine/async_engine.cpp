// AsyncEngine: the engine thread's loop, the request streams and the
// hand-over of requests, aborts and statistics between threads.
//
// Locks: AsyncEngineImpl::mu_ guards the command queues and the stream
// table; StreamState::mu_ guards one stream's outputs; stats_mu_ guards the
// snapshots. No two are held at once, and none is held during Step().
#include "kvinfer/async_engine.h"

#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include <fmt/format.h>

namespace kvinfer {

class StreamState {
 public:
  StreamState(RequestId id, std::string request_id) : id_(id), request_id_(std::move(request_id)) {}

  RequestId id() const { return id_; }
  const std::string& request_id() const { return request_id_; }

  void Push(RequestOutput output) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(output));
    }
    cv_.notify_all();
  }

  std::optional<RequestOutput> Next(std::optional<std::chrono::milliseconds> timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    auto ready = [&] { return !queue_.empty() || final_taken_; };
    if (timeout) {
      if (!cv_.wait_for(lock, *timeout, ready)) return std::nullopt;
    } else {
      cv_.wait(lock, ready);
    }
    if (queue_.empty()) return std::nullopt;  // the final output was taken before
    RequestOutput out = std::move(queue_.front());
    queue_.pop_front();
    if (out.request_finished) final_taken_ = true;
    return out;
  }

  bool done() const {
    std::lock_guard<std::mutex> lock(mu_);
    return final_taken_;
  }

 private:
  const RequestId id_;
  const std::string request_id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  bool final_taken_ = false;
};

RequestId RequestStream::id() const { return state_->id(); }
const std::string& RequestStream::request_id() const { return state_->request_id(); }
std::optional<RequestOutput> RequestStream::Next(std::optional<std::chrono::milliseconds> timeout) {
  return state_->Next(timeout);
}
bool RequestStream::done() const { return state_->done(); }

class AsyncEngineImpl {
 public:
  AsyncEngineImpl(std::unique_ptr<Engine> engine, const AsyncEngineOptions& options)
      : engine_(std::move(engine)), options_(options) {
    stats_ = engine_->Stats();
    kv_stats_ = engine_->KvStats();
    thread_ = std::thread([this] { Loop(); });
  }
  ~AsyncEngineImpl() { Shutdown(); }

  StatusOr<RequestStream> Add(std::optional<std::string> text, std::vector<int32_t> tokens,
                              const SamplingParams& params, const RequestOptions& options) {
    auto cmd = std::make_unique<AddCommand>();
    cmd->text = std::move(text);
    cmd->tokens = std::move(tokens);
    cmd->params = params;
    cmd->options = options;
    std::future<StatusOr<RequestStream>> result = cmd->result.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return Status(StatusCode::kUnavailable, "the engine is shut down");
      const int64_t waiting = engine_waiting_ + in_hand_ + static_cast<int64_t>(adds_.size());
      if (waiting >= options_.max_waiting) {
        return Status(StatusCode::kResourceExhausted,
                      fmt::format("the waiting queue is full ({} requests wait, max_waiting is "
                                  "{}); retry later",
                                  waiting, options_.max_waiting));
      }
      adds_.push_back(std::move(cmd));
    }
    cv_.notify_one();
    return result.get();
  }

  bool Abort(RequestId id) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (streams_.find(id) == streams_.end()) return false;
      aborts_.push_back(id);
    }
    cv_.notify_one();
    return true;
  }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    std::lock_guard<std::mutex> join_lock(join_mu_);
    if (thread_.joinable()) thread_.join();
  }

  EngineStats Stats() const {
    std::lock_guard<std::mutex> lock(stats_mu_);
    return stats_;
  }
  KvCacheStats KvStats() const {
    std::lock_guard<std::mutex> lock(stats_mu_);
    return kv_stats_;
  }
  const EngineOptions& options() const { return engine_->options(); }

 private:
  struct AddCommand {
    std::optional<std::string> text;  // else `tokens`
    std::vector<int32_t> tokens;
    SamplingParams params;
    RequestOptions options;
    std::promise<StatusOr<RequestStream>> result;
  };

  // The engine thread: take commands, step, publish statistics, deliver
  // outputs; sleep while there is nothing to do.
  void Loop() {
    std::vector<std::unique_ptr<AddCommand>> adds;
    std::vector<RequestId> aborts;
    std::vector<std::pair<std::unique_ptr<AddCommand>, std::shared_ptr<StreamState>>> accepted;
    for (;;) {
      bool stopping = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return stop_ || !adds_.empty() || !aborts_.empty() || engine_->HasWork();
        });
        adds.swap(adds_);
        aborts.swap(aborts_);
        in_hand_ = static_cast<int64_t>(adds.size());
        stopping = stop_;
      }
      for (std::unique_ptr<AddCommand>& a : adds) {
        StatusOr<RequestId> id =
            a->text ? engine_->AddRequest(*a->text, a->params, a->options)
                    : engine_->AddRequestTokens(std::move(a->tokens), a->params, a->options);
        if (!id.ok()) {
          a->result.set_value(id.status());
          continue;
        }
        auto state = std::make_shared<StreamState>(*id, a->options.request_id);
        {
          std::lock_guard<std::mutex> lock(mu_);
          streams_.emplace(*id, state);
        }
        accepted.emplace_back(std::move(a), std::move(state));
      }
      adds.clear();
      for (RequestId id : aborts) engine_->Abort(id);
      aborts.clear();
      if (stopping) {
        std::vector<RequestId> open;
        {
          std::lock_guard<std::mutex> lock(mu_);
          for (const auto& [id, s] : streams_) open.push_back(id);
        }
        for (RequestId id : open) engine_->Abort(id);
      }

      std::vector<RequestOutput> outputs;
      if (engine_->HasWork()) outputs = engine_->Step();
      EngineStats stats = engine_->Stats();
      KvCacheStats kv_stats = engine_->KvStats();
      const int64_t waiting = stats.num_waiting;
      {
        std::lock_guard<std::mutex> lock(stats_mu_);
        stats_ = std::move(stats);
        kv_stats_ = std::move(kv_stats);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        engine_waiting_ = waiting;
        in_hand_ = 0;
      }
      Deliver(outputs);
      // The stream exists and has this step's outputs before Add returns it.
      for (auto& [cmd, state] : accepted) cmd->result.set_value(RequestStream(state));
      accepted.clear();
      if (stopping && !engine_->HasWork()) break;
    }
    // Every request was aborted and its final output delivered; a stream
    // left open would be a broken invariant, ended here so no reader hangs.
    std::map<RequestId, std::shared_ptr<StreamState>> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      left.swap(streams_);
    }
    for (auto& [id, state] : left) {
      RequestOutput out;
      out.id = id;
      out.request_id = state->request_id();
      out.finished = true;
      out.finish_reason = FinishReason::kAborted;
      out.request_finished = true;
      state->Push(std::move(out));
    }
  }

  void Deliver(std::vector<RequestOutput>& outputs) {
    for (RequestOutput& out : outputs) {
      std::shared_ptr<StreamState> state;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = streams_.find(out.id);
        if (it == streams_.end()) continue;
        state = it->second;
        if (out.request_finished) streams_.erase(it);
      }
      state->Push(std::move(out));
    }
  }

  const std::unique_ptr<Engine> engine_;  // used by the engine thread only
  const AsyncEngineOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::unique_ptr<AddCommand>> adds_;
  std::vector<RequestId> aborts_;
  std::map<RequestId, std::shared_ptr<StreamState>> streams_;  // not yet finished
  int64_t engine_waiting_ = 0;  // the engine's waiting requests after its latest step
  int64_t in_hand_ = 0;         // adds taken by the engine thread, not yet in engine_waiting_

  mutable std::mutex stats_mu_;
  EngineStats stats_;
  KvCacheStats kv_stats_;

  std::mutex join_mu_;
  std::thread thread_;  // last: started after everything above exists
};

StatusOr<std::unique_ptr<AsyncEngine>> AsyncEngine::Create(const Model& model,
                                                           const EngineOptions& options,
                                                           const AsyncEngineOptions& async_options) {
  if (async_options.max_waiting < 1) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("max_waiting must be >= 1, got {}", async_options.max_waiting));
  }
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(model, options);
  if (!engine.ok()) return engine.status();
  auto impl = std::make_unique<AsyncEngineImpl>(std::move(engine).value(), async_options);
  return std::unique_ptr<AsyncEngine>(new AsyncEngine(std::move(impl)));
}

AsyncEngine::AsyncEngine(std::unique_ptr<AsyncEngineImpl> impl) : impl_(std::move(impl)) {}
AsyncEngine::~AsyncEngine() = default;

StatusOr<RequestStream> AsyncEngine::Add(std::string_view prompt, const SamplingParams& params,
                                         const RequestOptions& options) {
  return impl_->Add(std::string(prompt), {}, params, options);
}

StatusOr<RequestStream> AsyncEngine::AddTokens(std::vector<int32_t> prompt_tokens,
                                               const SamplingParams& params,
                                               const RequestOptions& options) {
  return impl_->Add(std::nullopt, std::move(prompt_tokens), params, options);
}

bool AsyncEngine::Abort(RequestId id) { return impl_->Abort(id); }
void AsyncEngine::Shutdown() { impl_->Shutdown(); }
EngineStats AsyncEngine::Stats() const { return impl_->Stats(); }
KvCacheStats AsyncEngine::KvStats() const { return impl_->KvStats(); }
const EngineOptions& AsyncEngine::options() const { return impl_->options(); }

}  // namespace kvinfer
