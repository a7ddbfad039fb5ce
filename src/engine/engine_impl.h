// The engine's step loop: schedule (Scheduler, over the KvManager) ->
// forward (one ragged batch through the ModelRunner, K/V in KvStorage) ->
// sample -> update (retire finished requests).
#pragma once

#include <memory>
#include <map>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "engine/model_access.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "kv/kv_cache.h"
#include "kvinfer/kvinfer.h"
#include "model/forward.h"
#include "model/model_impl.h"

namespace kvinfer {

class EngineImpl {
 public:
  EngineImpl(const Model& model, const EngineOptions& options, int32_t block_size,
             int32_t num_blocks);

  StatusOr<RequestId> Add(std::vector<int32_t> prompt, const SamplingParams& params,
                          const RequestOptions& options);
  std::vector<RequestOutput> Step();
  bool HasWork() const { return scheduler_.HasRequests() || !pending_outputs_.empty(); }
  bool Abort(RequestId id);
  SessionId CreateSession();
  void EndSession(SessionId id);
  KvCacheStats KvStats() const;
  EngineStats Stats() const;

  // Test-only: the nth block allocation for request `id` throws std::bad_alloc.
  void FailBlockAllocationForTest(RequestId id, int sample_index, int nth);

  const Model& model() const { return model_; }
  const EngineOptions& options() const { return options_; }

 private:
  bool recompute() const { return options_.kv.strategy == KvStrategy::kNone; }
  // EngineOptions::prefix_cache, where there is K/V to keep: `paged`
  // shares cached blocks, `contiguous` copies cached prefixes.
  bool prefix_cache_on() const {
    return options_.prefix_cache && options_.kv.strategy != KvStrategy::kNone;
  }
  void Fork(Request& parent, std::span<const float> logits, std::vector<RequestOutput>& outputs);
  void Sample(Request& r, std::span<const float> logits, Clock::time_point now,
              std::vector<RequestOutput>& outputs);
  // Reports r as finished; its KV is already released (by the scheduler).
  void Finish(Request& r, FinishReason reason, std::vector<RequestOutput>& outputs);
  RequestOutput& OutputFor(Request& r, std::vector<RequestOutput>& outputs);
  // Runs fn, a step of r's own work; if it throws, marks r finished with
  // kError and the reason (retired by the scheduler's Update).
  template <class Fn>
  void Guard(Request& r, Fn&& fn);
  // Ends r (kError) because its logits row is not finite: finds the tensor,
  // layer and position where its forward pass first produced a non-finite
  // value and says so in r.error. Runs before Update, while r's K/V (all
  // r.num_computed tokens) are still in the cache.
  void FailNonFinite(Request& r, bool nan);
  // Builds the step's batch from the schedule (into batch_, sampled_) and
  // runs the forward pass.
  void BuildAndForward(const SchedulerOutput& sched);

  Model model_;
  const ModelImpl& m_;
  EngineOptions options_;
  ThreadPool pool_;
  KvCache cache_;
  Scheduler scheduler_;  // over cache_.manager()
  ModelRunner runner_;
  RequestId next_request_id_ = 1;
  std::vector<RequestOutput> pending_outputs_;     // from Abort, delivered by the next Step
  int64_t tokens_computed_ = 0;
  struct InjectedFault {
    RequestId id = 0;
    int sample_index = 0;
    int countdown = 0;  // allocations for `id` left until the failing one
  } fault_;
  std::map<RequestId, int> unfinished_samples_;    // per request: samples not finished yet
  // Per-step scratch.
  SchedulerOutput sched_;
  ForwardBatch batch_;
  ForwardBatch diag_batch_;  // FailNonFinite's chunks
  std::vector<Request*> sampled_;
  std::vector<float> logits_;
};

}  // namespace kvinfer
