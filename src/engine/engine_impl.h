// The engine's step loop: requests, sessions, KV allocation, batching.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "core/thread_pool.h"
#include "engine/sampler.h"
#include "engine/utf8_stream.h"
#include "kv/kv_cache.h"
#include "kvinfer/kvinfer.h"
#include "model/forward.h"
#include "model/model_impl.h"

namespace kvinfer {

using Clock = std::chrono::steady_clock;

struct Request {
  RequestId id = 0;
  SamplingParams params;
  Sampler sampler;
  std::optional<SessionId> session;
  std::vector<int32_t> tokens;     // prompt, then generated tokens
  int32_t num_prompt = 0;
  int32_t num_computed = 0;        // leading tokens whose K/V are in the cache
  int32_t seq = -1;                // KvCache sequence (-1: none yet)
  int32_t num_generated = 0;
  Utf8Stream text;
  FinishReason finish = FinishReason::kNone;
  // Timing.
  Clock::time_point added;
  std::optional<Clock::time_point> scheduled;
  std::optional<Clock::time_point> first_token;
  RequestTimings timings;

  explicit Request(const SamplingParams& p) : params(p), sampler(p) {}
};

struct Session {
  int32_t seq = -1;                // KvCache sequence holding `tokens` (-1: none)
  std::vector<int32_t> tokens;     // tokens whose K/V are cached
  bool busy = false;               // a request is using it
};

class EngineImpl {
 public:
  EngineImpl(const Model& model, const EngineOptions& options, int max_seq_len,
             int32_t block_size, int32_t num_blocks);

  StatusOr<RequestId> Add(std::vector<int32_t> prompt, const SamplingParams& params,
                          const RequestOptions& options);
  std::vector<RequestOutput> Step();
  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  bool Abort(RequestId id);
  SessionId CreateSession();
  void EndSession(SessionId id);
  KvCacheStats Stats() const;

  const Model& model() const { return model_; }
  const EngineOptions& options() const { return options_; }
  int max_seq_len() const { return max_seq_len_; }

 private:
  bool Admit(Request& r);
  void Finish(Request& r, FinishReason reason, std::vector<RequestOutput>& outputs);
  RequestOutput MakeOutput(Request& r);

  Model model_;
  const ModelImpl& m_;
  EngineOptions options_;
  int max_seq_len_;
  ThreadPool pool_;
  KvCache cache_;
  ModelRunner runner_;
  RequestId next_request_id_ = 1;
  SessionId next_session_id_ = 1;
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;
  std::map<SessionId, Session> sessions_;
  std::vector<RequestOutput> aborted_outputs_;
  // Per-step scratch.
  ForwardBatch batch_;
  std::vector<float> logits_;
};

}  // namespace kvinfer
