// The server's Prometheus metrics: request counters and latency histograms
// kept here, engine and KV gauges read from the engine's snapshots. Names
// follow vLLM's under a "kvinfer:" prefix (kv_cache_usage_perc,
// num_requests_running, time_to_first_token_seconds, ...), plus kvinfer's
// own KV gauges. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "kvinfer/kvinfer.h"

namespace kvinfer::serve {

// A Prometheus histogram over fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // "<name>_bucket{le=...} n" lines (cumulative), _sum and _count.
  void Render(const std::string& name, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bound, plus +Inf last; not cumulative
  double sum_ = 0;
  int64_t count_ = 0;
};

// One finished request (all its samples), as the metrics count it.
struct FinishedRequest {
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  int64_t cached_tokens = 0;
  const char* finished_reason = "stop";  // "stop", "length", "abort", "error"
  double ttft_s = -1;                    // < 0: no token was produced
  double e2e_s = 0;
  double time_per_output_token_s = -1;   // < 0: fewer than two tokens
};

class ServerMetrics {
 public:
  ServerMetrics();
  void RecordFinished(const FinishedRequest& r);
  void RecordRejected();  // refused before reaching the engine (4xx/5xx)
  std::string Render(const EngineStats& engine, const KvCacheStats& kv) const;

 private:
  static constexpr std::array<const char*, 4> kReasons = {"stop", "length", "abort", "error"};
  mutable std::mutex mu_;
  int64_t prompt_tokens_total_ = 0;
  int64_t generation_tokens_total_ = 0;
  int64_t cached_prompt_tokens_total_ = 0;
  int64_t requests_rejected_total_ = 0;
  std::array<int64_t, 4> success_by_reason_{};
  Histogram ttft_;
  Histogram tpot_;
  Histogram e2e_;
};

}  // namespace kvinfer::serve
