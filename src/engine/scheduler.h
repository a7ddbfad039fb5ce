// Scheduler: which requests run in the next step, with how many tokens.
//
// It owns the waiting and running queues and the sessions' cached
// sequences, and asks the KvManager (block bookkeeping only; no K/V bytes)
// whether their tokens fit. Schedule() turns them into a SchedulerOutput:
//
//   1. Running requests, earliest admitted first, each get their next chunk
//      (the whole rest of the prompt, or one decode token) while the batch
//      has token budget (max_batch_tokens). If its blocks do not fit, idle
//      sessions are evicted (least recently used first), then the most
//      recently admitted running request is preempted (its blocks freed, its
//      tokens to be recomputed; it goes to the front of the waiting queue);
//      if that is the request itself, the pass over running requests ends.
//   2. Waiting requests (preempted ones first, then in arrival order) are
//      admitted while fewer than max_seqs run and budget is left. A request
//      whose blocks can never fit (nothing runs, no idle session is left)
//      finishes with kKvExhausted.
//
// A failure while admitting or growing one request (an exception from the
// KV manager, such as std::bad_alloc) finishes that request with kError,
// its KV released, and scheduling goes on with the others.
//
// Prefix cache (config.prefix_cache; the KvManager hashes and indexes the
// blocks). `paged`: admission looks the request's tokens up block by
// block and attaches the cached blocks (always leaving at least its last
// token to compute), so it starts with those positions computed. A waiting
// request whose next uncached block is being computed right now by a
// running request (requests that arrived together with a shared prefix)
// is passed over until that block is done, then hits it: a shared prefix
// is computed once. Sessions hold no sequence then: a finished turn's
// blocks are simply cached, and the next turn's lookup finds them. Without
// the prefix cache a session keeps its sequence and the next request on it
// reuses the longest common prefix (Truncate drops the rest). `contiguous`
// has one block per sequence and nothing to share: its prefix cache keeps
// finished sequences' regions and copies the longest cached prefix of a
// new request's tokens into its own region (out.copies, token granular),
// or, with no room for a copy, takes a free cached region as its own.
//
// Strategies: `paged` allocates blocks as tokens are computed; `contiguous`
// reserves max_seq_len on admission; `none` recomputes each running
// request's whole sequence every step in a sequence created for that step
// (a sequence that does not fit the budget waits, unless the batch is still
// empty). Scheduled tokens count as computed at once (num_computed moves
// forward in Schedule); the caller computes exactly those tokens.
//
// The running queue is kept in admission order (forked samples are
// admitted when created), so the most recently admitted request is its last.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/request.h"
#include "kv/kv_manager.h"
#include "kvinfer/kvinfer.h"

namespace kvinfer {

struct SchedulerConfig {
  KvStrategy strategy = KvStrategy::kPaged;
  int max_seqs = 1;              // requests running at once
  int32_t max_batch_tokens = 1;  // tokens per step
  int32_t max_seq_len = 1;       // tokens a sequence may hold (contiguous reserves it)
  // Look requests up in the KvManager's prefix cache (which must be
  // enabled: blocks for `paged`, whole sequences for `contiguous`).
  bool prefix_cache = false;
  // Print each admission's prefix-cache hit and where it left the cached
  // prefix to stderr.
  bool prefix_cache_log = false;
};

// One request's share of a step: positions [begin, begin + num_tokens) of
// its tokens go through the forward pass.
struct ScheduledChunk {
  Request* request = nullptr;
  int32_t begin = 0;
  int32_t num_tokens = 0;
  // The chunk ends the request's known tokens: its last position's logits
  // are sampled.
  bool sample = false;
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> scheduled;  // in batch order
  int32_t num_tokens = 0;                 // sum of the chunks
  // Copy-on-write copies the storage must carry out, in order, before the
  // forward pass writes K/V.
  std::vector<KvBlockCopy> copies;
  // Requests preempted in this step (one may be admitted again in the same
  // step, when its blocks fit from scratch).
  std::vector<RequestId> preempted;
  // Requests that ended while being scheduled (finish set: kKvExhausted or
  // kError with `error`; KV released); the caller reports them.
  std::vector<std::unique_ptr<Request>> finished;
};

struct SchedulerStats {
  int64_t num_steps = 0;
  int64_t peak_running = 0;
  int64_t num_preemptions = 0;
  int64_t tokens_recomputed = 0;  // computed tokens whose K/V preemptions dropped
  int64_t num_session_evictions = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, KvManager& kv);

  // Queues a request (its tokens set, seq -1) at the back of the waiting queue.
  void Add(std::unique_ptr<Request> r);
  // Appends a request that already holds its KV (a forked sample) to the
  // running queue: it is the most recently admitted.
  void AddRunning(std::unique_ptr<Request> r);
  // One step's schedule; see the file comment. `out` is cleared first; its
  // vectors keep their capacity, so a caller reusing one allocates nothing
  // in the steady state.
  void Schedule(SchedulerOutput& out);
  SchedulerOutput Schedule() {
    SchedulerOutput out;
    Schedule(out);
    return out;
  }
  // After the step's tokens are computed and sampled: under `none` drops
  // every running request's K/V; then removes the running requests whose
  // finish is set, in running order, releasing their KV (Release). Returns
  // them for the caller to report.
  std::vector<std::unique_ptr<Request>> Update();
  // Removes a waiting or running request (nullptr if unknown), its KV
  // released.
  std::unique_ptr<Request> Remove(RequestId id);
  // Gives up r's KV: a session's request hands its sequence (and the
  // computed tokens) to the session unless it failed (kError: its K/V may
  // be incomplete, so the session's cache is dropped); otherwise the
  // sequence is freed. Releasing again changes nothing.
  void Release(Request& r);

  SessionId CreateSession();
  // The session, or nullptr.
  Session* FindSession(SessionId id);
  // Frees the session's cached sequence and forgets it. The caller removes
  // its requests first.
  void EndSession(SessionId id);

  // Releases the source blocks of this step's prefix copies; call once the
  // storage has carried out out.copies (Schedule does it first too).
  void ReleasePinned();

  bool HasRequests() const { return !waiting_.empty() || !running_.empty(); }
  const std::deque<std::unique_ptr<Request>>& waiting() const { return waiting_; }
  const std::vector<std::unique_ptr<Request>>& running() const { return running_; }
  const std::map<SessionId, Session>& sessions() const { return sessions_; }
  const SchedulerStats& stats() const { return stats_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  bool recompute() const { return config_.strategy == KvStrategy::kNone; }
  // Tokens r would put in this step's batch; 0 = none now.
  int32_t ChunkFor(const Request& r, const SchedulerOutput& out) const;
  void AddChunk(Request& r, int32_t chunk, SchedulerOutput& out);
  // Gives a waiting request its KV sequence; false if its blocks do not fit.
  bool Admit(Request& r, SchedulerOutput& out);
  // Prefix-cache admission: a sequence holding r's cached leading blocks.
  bool AdmitWithPrefixCache(Request& r);
  // Whole-sequence prefix cache (contiguous): a sequence whose region gets
  // the longest cached prefix copied into it (a copy in out.copies; the
  // source block is pinned until ReleasePinned).
  bool AdmitCopyingPrefix(Request& r, SchedulerOutput& out);
  // r's chain root and block hashes, brought up to date with its tokens.
  void HashTokens(Request& r);
  // Whether r should wait: the block after its cached prefix is being
  // computed by a running request (in pending_).
  bool WaitsForSharedPrefix(Request& r);
  // Adds the blocks r (running) will fill but has not yet to pending_.
  void AddPending(const Request& r);
  // Reserves (and un-shares) the blocks for r's next `chunk` tokens, freeing
  // idle sessions and preempting later requests as needed. False if r itself
  // had to be preempted.
  bool MakeRoom(Request& r, int32_t chunk, SchedulerOutput& out);
  bool EvictIdleSession();
  void Preempt(Request& r, SchedulerOutput& out);
  // Frees r's sequence (and its session's claim on it).
  void ReleaseKv(Request& r);
  // Runs fn, a step of scheduling r; if it throws, r (waiting or running)
  // leaves its queue finished with kError and the reason. False then.
  template <class Fn>
  bool Guard(Request& r, SchedulerOutput& out, Fn&& fn);
  void Fail(Request& r, std::string reason, SchedulerOutput& out);

  SchedulerConfig config_;
  KvManager& kv_;
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;  // in admission order
  std::map<SessionId, Session> sessions_;
  SessionId next_session_id_ = 1;
  int32_t budget_ = 0;  // tokens left in the step being scheduled
  SchedulerStats stats_;
  // Hashes of full blocks that running requests have yet to compute (this
  // step's admission pass).
  std::unordered_set<BlockHash, BlockHashHasher> pending_;
  std::vector<int32_t> pinned_;  // sources of this step's prefix copies
};

}  // namespace kvinfer
