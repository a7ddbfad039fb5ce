// The engine's record of one request (one sample of it) and of one session:
// what the scheduler, the KV manager and the sampler need, and nothing of
// the model, so the scheduler can be driven by records alone.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/utf8_stream.h"
#include "kv/block_hash.h"
#include "kvinfer/kvinfer.h"

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
  std::string cache_salt;          // RequestOptions::cache_salt
  std::vector<int32_t> tokens;     // prompt, then generated tokens
  // Prefix cache: the chain root (from cache_salt) and the hashes of the
  // full blocks of `tokens` (kv/block_hash.h), computed at admission.
  std::optional<BlockHash> prefix_root;
  std::vector<BlockHash> block_hashes;
  int32_t num_prompt = 0;
  int32_t num_computed = 0;        // leading tokens whose K/V are in the cache (or scheduled)
  int32_t seq = -1;                // KvManager sequence (-1: none held)
  int32_t num_generated = 0;
  bool forked = false;             // n > 1: the other samples were created
  Utf8Stream text;
  FinishReason finish = FinishReason::kNone;
  std::string error;               // why, when finish is kError
  Clock::time_point added;
  std::optional<Clock::time_point> scheduled;
  std::optional<Clock::time_point> first_token;
  RequestTimings timings;

  explicit Request(const SamplingParams& p)
      : params(p), sampler(p), stop_text(p.stop, p.include_stop_str_in_output) {}
  int32_t num_uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed; }
};

struct Session {
  int32_t seq = -1;                // KvManager sequence holding `tokens` (-1: none)
  std::vector<int32_t> tokens;     // tokens whose K/V are cached
  bool busy = false;               // a request is using it
  int64_t last_used = 0;           // step of last use, for eviction order
};

}  // namespace kvinfer
