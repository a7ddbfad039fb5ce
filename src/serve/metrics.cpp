#include "serve/metrics.h"

#include <algorithm>
#include <string_view>

#include <fmt/format.h>

namespace kvinfer::serve {
namespace {

void Line(std::string* out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(*out), "# HELP kvinfer:{} {}\n# TYPE kvinfer:{} {}\n", name,
                 help, name, type);
}

template <typename T>
void Value(std::string* out, std::string_view name, std::string_view type, std::string_view help,
           T value) {
  Line(out, name, type, help);
  fmt::format_to(std::back_inserter(*out), "kvinfer:{} {}\n", name, value);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::Render(const std::string& name, std::string* out) const {
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    fmt::format_to(std::back_inserter(*out), "kvinfer:{}_bucket{{le=\"{}\"}} {}\n", name,
                   bounds_[i], cumulative);
  }
  fmt::format_to(std::back_inserter(*out), "kvinfer:{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
  fmt::format_to(std::back_inserter(*out), "kvinfer:{}_sum {}\nkvinfer:{}_count {}\n", name, sum_,
                 name, count_);
}

ServerMetrics::ServerMetrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
             0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}),
      e2e_({0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            120.0, 240.0}) {}

void ServerMetrics::RecordFinished(const FinishedRequest& r) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_total_ += r.prompt_tokens;
  generation_tokens_total_ += r.generation_tokens;
  cached_prompt_tokens_total_ += r.cached_tokens;
  for (size_t i = 0; i < kReasons.size(); ++i) {
    if (std::string_view(kReasons[i]) == r.finished_reason) ++success_by_reason_[i];
  }
  if (r.ttft_s >= 0) ttft_.Observe(r.ttft_s);
  if (r.time_per_output_token_s >= 0) tpot_.Observe(r.time_per_output_token_s);
  e2e_.Observe(r.e2e_s);
}

void ServerMetrics::RecordRejected() {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_rejected_total_;
}

std::string ServerMetrics::Render(const EngineStats& e, const KvCacheStats& kv) const {
  std::string out;
  const double usage =
      kv.num_blocks_total > 0 ? static_cast<double>(kv.num_blocks_used) / kv.num_blocks_total : 0.0;
  Value(&out, "kv_cache_usage_perc", "gauge", "KV-cache usage: fraction of the pool's blocks in use (1 = full).", usage);
  Value(&out, "num_requests_running", "gauge", "Sequences in the running batch.", e.num_running);
  Value(&out, "num_requests_waiting", "gauge", "Requests waiting for admission.", e.num_waiting);
  Value(&out, "num_preemptions_total", "counter", "Running requests preempted (KV freed, recomputed later).", e.num_preemptions);
  Value(&out, "num_recomputed_tokens_total", "counter", "Tokens whose K/V a preemption forced to be computed again.", e.tokens_recomputed);
  Value(&out, "engine_steps_total", "counter", "Engine steps run.", e.num_steps);
  Value(&out, "tokens_computed_total", "counter", "Tokens through the forward pass (prefill, decode and recompute).", e.tokens_computed);
  Value(&out, "prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.", e.prefix_cache_queries);
  Value(&out, "prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache (their K/V reused).", e.prefix_cache_hits);
  Value(&out, "prefix_cache_blocks_evicted_total", "counter", "Cached blocks evicted to make room.", e.prefix_cache_blocks_evicted);

  std::lock_guard<std::mutex> lock(mu_);
  Value(&out, "prompt_tokens_total", "counter", "Prompt tokens of finished requests.", prompt_tokens_total_);
  Value(&out, "generation_tokens_total", "counter", "Generated tokens of finished requests.", generation_tokens_total_);
  Value(&out, "cached_prompt_tokens_total", "counter", "Prompt tokens whose K/V came from the cache.", cached_prompt_tokens_total_);
  Value(&out, "request_rejected_total", "counter", "Requests refused before reaching the engine.", requests_rejected_total_);
  Line(&out, "request_success_total", "counter", "Finished requests by finish reason.");
  for (size_t i = 0; i < kReasons.size(); ++i) {
    fmt::format_to(std::back_inserter(out), "kvinfer:request_success_total{{finished_reason=\"{}\"}} {}\n",
                   kReasons[i], success_by_reason_[i]);
  }
  Line(&out, "time_to_first_token_seconds", "histogram", "Time from arrival to the first token.");
  ttft_.Render("time_to_first_token_seconds", &out);
  Line(&out, "time_per_output_token_seconds", "histogram", "Mean time between a request's output tokens after the first.");
  tpot_.Render("time_per_output_token_seconds", &out);
  Line(&out, "e2e_request_latency_seconds", "histogram", "Time from arrival to the last token.");
  e2e_.Render("e2e_request_latency_seconds", &out);

  Value(&out, "kv_blocks_total", "gauge", "Blocks in the KV pool.", kv.num_blocks_total);
  Value(&out, "kv_blocks_used", "gauge", "Blocks held by sequences.", kv.num_blocks_used);
  Value(&out, "kv_blocks_free", "gauge", "Blocks free.", kv.num_blocks_free);
  Value(&out, "kv_blocks_cached", "gauge", "Blocks whose contents the prefix cache indexes (held or free).", kv.num_blocks_cached);
  Value(&out, "kv_blocks_cached_free", "gauge", "Cached blocks no sequence holds (evictable; counted as free).", kv.num_blocks_cached_free);
  Value(&out, "kv_blocks_shared", "gauge", "Blocks held by more than one sequence.", kv.num_blocks_shared);
  Value(&out, "kv_block_size_tokens", "gauge", "Tokens per KV block.", kv.block_size_tokens);
  Value(&out, "kv_tokens_held", "gauge", "Tokens whose K/V are stored.", kv.tokens_held);
  Value(&out, "kv_bytes_total", "gauge", "Bytes of the whole KV pool.", kv.bytes_total);
  Value(&out, "kv_bytes_reserved", "gauge", "Bytes of the blocks in use.", kv.bytes_reserved);
  Value(&out, "kv_bytes_used", "gauge", "Bytes of the tokens held.", kv.bytes_used);
  Value(&out, "kv_bytes_saved_by_sharing", "gauge", "Bytes that block sharing saves.", kv.bytes_saved_by_sharing);
  Value(&out, "kv_cow_copies_total", "counter", "Blocks copied on first write to a shared block.", kv.num_cow_copies);
  return out;
}

}  // namespace kvinfer::serve
