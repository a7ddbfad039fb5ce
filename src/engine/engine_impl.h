// The engine's step loop: requests, sessions, scheduling with preemption,
// KV allocation, one ragged batch per step.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "engine/sampler.h"
#include "engine/model_access.h"
#include "engine/utf8_stream.h"
#include "kv/kv_cache.h"
#include "kvinfer/kvinfer.h"
#include "model/forward.h"
#include "model/model_impl.h"

namespace kvinfer {

using Clock = std::chrono::steady_clock;

struct Request {
  RequestId id = 0;                // shared by the n samples of one request
  std::string request_id;          // the caller's name for it
  int sample_index = 0;
  SamplingParams params;
  Sampler sampler;
  StopStringFilter stop_text;      // cuts `text` at a stop string
  std::optional<SessionId> session;
  std::vector<int32_t> tokens;     // prompt, then generated tokens
  int32_t num_prompt = 0;
  int32_t num_computed = 0;        // leading tokens whose K/V are in the cache
  int32_t seq = -1;                // KvCache sequence (-1: none held)
  int32_t num_generated = 0;
  bool forked = false;             // n > 1: the other samples were created
  int64_t admitted_order = 0;      // larger = admitted later (preempted first)
  Utf8Stream text;
  FinishReason finish = FinishReason::kNone;
  Clock::time_point added;
  std::optional<Clock::time_point> scheduled;
  std::optional<Clock::time_point> first_token;
  RequestTimings timings;

  explicit Request(const SamplingParams& p)
      : params(p), sampler(p), stop_text(p.stop, p.include_stop_str_in_output) {}
  int32_t num_uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed; }
};

struct Session {
  int32_t seq = -1;                // KvCache sequence holding `tokens` (-1: none)
  std::vector<int32_t> tokens;     // tokens whose K/V are cached
  bool busy = false;               // a request is using it
  int64_t last_used = 0;           // step of last use, for eviction order
};

class EngineImpl {
 public:
  EngineImpl(const Model& model, const EngineOptions& options, int32_t block_size,
             int32_t num_blocks);

  StatusOr<RequestId> Add(std::vector<int32_t> prompt, const SamplingParams& params,
                          const RequestOptions& options);
  std::vector<RequestOutput> Step();
  bool HasWork() const {
    return !waiting_.empty() || !running_.empty() || !pending_outputs_.empty();
  }
  bool Abort(RequestId id);
  SessionId CreateSession();
  void EndSession(SessionId id);
  KvCacheStats KvStats() const;
  EngineStats Stats() const;

  const Model& model() const { return model_; }
  const EngineOptions& options() const { return options_; }

 private:
  bool recompute() const { return options_.kv.strategy == KvStrategy::kNone; }
  // Gives a waiting request its KV sequence; false if its blocks do not fit.
  bool Admit(Request& r);
  // Reserves (and un-shares) the blocks for r's next `chunk` tokens, freeing
  // idle sessions and preempting later requests as needed. False if r itself
  // had to be preempted (or cannot fit at all).
  bool MakeRoom(Request& r, int32_t chunk);
  bool EvictIdleSession();
  void Preempt(Request& r);
  void ReleaseKv(Request& r);
  void Fork(Request& parent, std::span<const float> logits, std::vector<RequestOutput>& outputs);
  void Sample(Request& r, std::span<const float> logits, Clock::time_point now,
              std::vector<RequestOutput>& outputs);
  void Finish(Request& r, FinishReason reason, std::vector<RequestOutput>& outputs);
  RequestOutput& OutputFor(Request& r, std::vector<RequestOutput>& outputs);

  Model model_;
  const ModelImpl& m_;
  EngineOptions options_;
  ThreadPool pool_;
  KvCache cache_;
  ModelRunner runner_;
  RequestId next_request_id_ = 1;
  SessionId next_session_id_ = 1;
  int64_t next_admitted_order_ = 0;
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;  // in admission order
  std::map<SessionId, Session> sessions_;
  std::vector<RequestOutput> pending_outputs_;     // from Abort, delivered by the next Step
  std::map<RequestId, int> unfinished_samples_;    // per request: samples not finished yet
  EngineStats stats_;
  // Per-step scratch.
  ForwardBatch batch_;
  std::vector<Request*> sampled_;
  std::vector<float> logits_;
};

}  // namespace kvinfer
