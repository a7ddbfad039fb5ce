#include <algorithm>
#include <cmath>
#include <new>
#include <thread>

#include "core/error.h"
#include "engine/engine_impl.h"
#include "engine/engine_testing.h"
#include "ops/ops.h"

namespace kvinfer {
namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

constexpr int kMaxSamples = 1024;

// Tokens per forward pass of the non-finite diagnosis: bounds its scratch
// however long the sequence is.
constexpr int32_t kDiagnosisChunk = 256;

// The error of a request whose logits held a non-finite value (`nan`: the
// first was NaN, else Inf) at `position`: where the forward pass first
// produced one (`site`, from ModelRunner::FindNonFinite), and what that
// suggests.
std::string NonFiniteMessage(const std::optional<NonFiniteSite>& site, bool nan,
                             int32_t position) {
  constexpr const char* kHint = "the model file or its weights may be corrupt";
  if (!site) {
    return fmt::format("non-finite logits ({}) at position {}, though a second pass over the "
                       "sequence found every value finite; {}",
                       nan ? "NaN" : "Inf", position, kHint);
  }
  const char* tensor = ForwardTensorName(site->tensor);
  const std::string where = site->layer >= 0 ? fmt::format("layer {} {}", site->layer, tensor)
                                             : fmt::format("the {}", tensor);
  return fmt::format("non-finite values ({}) in {} at position {} (token {}); {}",
                     site->nan ? "NaN" : "Inf", where, site->position, site->token, kHint);
}

// What names the model for the prefix cache's hashes: its shape, types and
// sizes, and a digest of the first row of every layer's K and V projection
// (the weights that make its K/V), which tells apart two files of one
// architecture (a base model and its fine-tune) without reading the whole
// file. The same file gives the same identity in every process.
std::string ModelIdentity(const ModelImpl& m) {
  const ModelInfo& i = m.info();
  std::string id = fmt::format(
      "model format={} arch={} name={} layers={} d_model={} heads={} kv_heads={} head_dim={} "
      "d_ff={} vocab={} ctx={} rope_dims={} rope_theta={} eps={} params={} bytes={}",
      i.format, i.architecture, i.name, i.n_layers, i.d_model, i.n_heads, i.n_kv_heads, i.head_dim,
      i.d_ff, i.vocab_size, i.context_length, i.rope_dims, i.rope_theta, i.norm_eps,
      i.num_parameters, i.weight_bytes);
  for (const auto& [type, count] : i.tensor_types) id += fmt::format(" {}={}", type, count);
  std::vector<uint8_t> rows;
  for (const LayerWeights& l : m.weights().layers) {
    for (const WeightView* w : {&l.wk, &l.wv}) {
      if (w->data == nullptr || w->rows == 0) continue;
      rows.insert(rows.end(), w->row(0), w->row(0) + w->row_bytes);
    }
  }
  id += " kv_weights=" + BlockHasher(BlockHashAlgorithm::kSha256)
                             .Digest(rows)
                             .Hex(BlockHashAlgorithm::kSha256);
  return id;
}

BlockHashAlgorithm ToBlockHash(PrefixCacheHash h) {
  switch (h) {
    case PrefixCacheHash::kXxh3_128: return BlockHashAlgorithm::kXxh3_128;
    case PrefixCacheHash::kSha256: return BlockHashAlgorithm::kSha256;
  }
  return BlockHashAlgorithm::kXxh3_128;
}

}  // namespace

EngineImpl::EngineImpl(const Model& model, const EngineOptions& options, int32_t block_size,
                       int32_t num_blocks)
    : model_(model),
      m_(ImplOf(model)),
      options_(options),
      pool_(options.num_threads),
      cache_(m_.config().kv_shape(), block_size, num_blocks, options.kv.precision),
      scheduler_(SchedulerConfig{.strategy = options.kv.strategy,
                                 .max_seqs = options.max_seqs,
                                 .max_batch_tokens = options.max_batch_tokens,
                                 .max_seq_len = options.kv.max_seq_len,
                                 .prefix_cache = prefix_cache_on(),
                                 .prefix_cache_log = options.prefix_cache_log},
                 cache_.manager()),
      runner_(m_.config(), m_.weights(), &pool_, options.activation_precision) {
  if (options.kv.resident) cache_.MakeResident();
  if (prefix_cache_on()) {
    // Everything besides the tokens that decides the bytes of a block's K/V.
    cache_.manager().EnablePrefixCache(
        {.algorithm = ToBlockHash(options.prefix_cache_hash),
         .whole_sequences = options.kv.strategy == KvStrategy::kContiguous,
         .extra_keys = {ModelIdentity(m_),
                        fmt::format("kv_dtype={}", KvPrecisionName(options.kv.precision)),
                        fmt::format("activations={}", options.activation_precision ==
                                                              ActivationPrecision::kInt8
                                                          ? "int8"
                                                          : "f32")}});
  }
}

StatusOr<RequestId> EngineImpl::Add(std::vector<int32_t> prompt, const SamplingParams& params,
                                    const RequestOptions& options) {
  if (Status st = ValidateSamplingParams(params); !st.ok()) return st;
  auto bad = [](std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); };
  if (params.n < 1 || params.n > kMaxSamples) {
    return bad(fmt::format("n (samples per prompt) must be in [1, {}], got {}", kMaxSamples, params.n));
  }
  if (params.n > 1 && options.session) return bad("n > 1 cannot be combined with a session");
  if (prompt.empty()) return bad("the prompt is empty");
  const int max_seq_len = options_.kv.max_seq_len;
  if (static_cast<int64_t>(prompt.size()) > max_seq_len) {
    return Status(StatusCode::kOutOfRange,
                  fmt::format("the prompt has {} tokens but a sequence may hold at most {} "
                              "(the model's context is {})",
                              prompt.size(), max_seq_len, m_.config().context_length));
  }
  const int32_t vocab = m_.config().vocab_size;
  for (int32_t t : prompt) {
    if (t < 0 || t >= vocab) {
      return bad(fmt::format("prompt token {} is outside the vocabulary [0, {})", t, vocab));
    }
  }
  for (int32_t t : params.stop_token_ids) {
    if (t >= vocab) {
      return bad(fmt::format("stop token id {} is outside the vocabulary [0, {})", t, vocab));
    }
  }
  if (options.session) {
    Session* s = scheduler_.FindSession(*options.session);
    if (s == nullptr) return bad(fmt::format("unknown session {}", *options.session));
    if (s->busy) {
      return bad(fmt::format("session {} already has a request in flight", *options.session));
    }
    s->busy = true;
  }
  auto r = std::make_unique<Request>(params);
  r->id = next_request_id_++;
  r->request_id = options.request_id;
  r->session = options.session;
  r->cache_salt = options.cache_salt;
  r->num_prompt = static_cast<int32_t>(prompt.size());
  r->tokens = std::move(prompt);
  r->tokens.reserve(std::min<int64_t>(max_seq_len, r->tokens.size() + params.max_tokens));
  r->added = Clock::now();
  r->timings.prompt_tokens = r->num_prompt;
  const RequestId id = r->id;
  unfinished_samples_[id] = params.n;
  scheduler_.Add(std::move(r));
  return id;
}

RequestOutput& EngineImpl::OutputFor(Request& r, std::vector<RequestOutput>& outputs) {
  for (RequestOutput& o : outputs) {
    if (o.id == r.id && o.sample_index == r.sample_index) return o;
  }
  RequestOutput& o = outputs.emplace_back();
  o.id = r.id;
  o.request_id = r.request_id;
  o.sample_index = r.sample_index;
  o.num_cached_tokens = r.timings.cached_prompt_tokens;
  return o;
}

void EngineImpl::Finish(Request& r, FinishReason reason, std::vector<RequestOutput>& outputs) {
  r.finish = reason;
  r.timings.total_ms = Ms(Clock::now() - r.added);
  r.timings.generated_tokens = r.num_generated;
  KVINFER_CHECK(r.seq < 0);
  int samples_done = 1;
  if (r.params.n > 1 && !r.forked) {
    // Finished before the first token (aborted, no room, max_tokens 0): the
    // other samples never started and finish with it.
    for (int i = 1; i < r.params.n; ++i) {
      RequestOutput& o = outputs.emplace_back();
      o.id = r.id;
      o.request_id = r.request_id;
      o.sample_index = i;
      o.finished = true;
      o.finish_reason = reason;
      if (reason == FinishReason::kError) o.error = r.error;
      o.timings = r.timings;
      o.num_cached_tokens = r.timings.cached_prompt_tokens;
    }
    samples_done = r.params.n;
  }
  RequestOutput& out = OutputFor(r, outputs);
  if (!r.stop_text.matched()) {
    out.text_delta += r.stop_text.Push(r.text.Flush());
    out.text_delta += r.stop_text.Flush();
  }
  out.finished = true;
  out.finish_reason = reason;
  if (reason == FinishReason::kError) out.error = r.error;
  out.timings = r.timings;
  out.num_cached_tokens = r.timings.cached_prompt_tokens;
  auto it = unfinished_samples_.find(r.id);
  KVINFER_CHECK(it != unfinished_samples_.end() && it->second >= samples_done);
  it->second -= samples_done;
  if (it->second == 0) {
    unfinished_samples_.erase(it);
    out.request_finished = true;
  }
}

void EngineImpl::Sample(Request& r, std::span<const float> logits, Clock::time_point now,
                        std::vector<RequestOutput>& outputs) {
  const Tokenizer& tok = m_.tokenizer();
  const std::span<const int32_t> all(r.tokens);
  const int32_t token = r.sampler.Sample(logits, all.first(r.num_prompt), all.subspan(r.num_prompt));
  r.tokens.push_back(token);
  ++r.num_generated;
  if (!r.first_token) {
    r.first_token = now;
    r.timings.ttft_ms = Ms(now - r.added);
  }
  RequestOutput& out = OutputFor(r, outputs);
  out.new_tokens.push_back(token);
  if (r.params.logprobs > 0) out.logprobs.push_back(ComputeLogprob(logits, token, r.params.logprobs));
  const bool eog = tok.IsEndOfGeneration(token);
  const std::vector<int32_t>& stop_ids = r.params.stop_token_ids;
  const bool stop_token = std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end();
  const bool ends = (eog && !r.params.ignore_eos) || stop_token;
  if (!tok.IsControl(token) && (!ends || (stop_token && r.params.include_stop_str_in_output))) {
    out.text_delta += r.stop_text.Push(r.text.Push(tok.TokenBytes(token)));
  }
  if (ends || r.stop_text.matched()) {
    r.finish = FinishReason::kStop;
  } else if (r.num_generated >= r.params.max_tokens) {
    r.finish = FinishReason::kLength;
  } else if (static_cast<int>(r.tokens.size()) >= options_.kv.max_seq_len) {
    r.finish = FinishReason::kContextFull;
  }
}

void EngineImpl::Fork(Request& parent, std::span<const float> logits,
                      std::vector<RequestOutput>& outputs) {
  parent.forked = true;
  const Clock::time_point now = Clock::now();
  for (int i = 1; i < parent.params.n; ++i) {
    SamplingParams p = parent.params;
    p.seed = parent.params.seed + static_cast<uint64_t>(i);
    auto child = std::make_unique<Request>(p);
    child->id = parent.id;
    child->request_id = parent.request_id;
    child->sample_index = i;
    child->forked = true;
    child->tokens = parent.tokens;
    child->num_prompt = parent.num_prompt;
    child->num_computed = parent.num_computed;
    // The prompt's blocks are shared, not copied (copy-on-write later).
    child->seq = parent.seq >= 0 && !recompute() ? cache_.Fork(parent.seq) : -1;
    child->added = parent.added;
    child->scheduled = parent.scheduled;
    child->timings = parent.timings;
    Request& c = *child;
    scheduler_.AddRunning(std::move(child));
    Guard(c, [&] { Sample(c, logits, now, outputs); });
  }
}

template <class Fn>
void EngineImpl::Guard(Request& r, Fn&& fn) {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    r.finish = FinishReason::kError;
    r.error = "out of memory while sampling or reporting the request's output";
  } catch (const std::exception& e) {
    r.finish = FinishReason::kError;
    r.error = fmt::format("sampling the request failed: {}", e.what());
  }
}

void EngineImpl::FailBlockAllocationForTest(RequestId id, int sample_index, int nth) {
  fault_ = {.id = id, .sample_index = sample_index, .countdown = nth};
  cache_.manager().SetAllocateHookForTest([this](int32_t seq) {
    if (fault_.countdown <= 0) return;
    auto owns = [&](const std::unique_ptr<Request>& r) {
      return r->id == fault_.id && r->sample_index == fault_.sample_index && r->seq == seq;
    };
    const auto& running = scheduler_.running();
    const auto& waiting = scheduler_.waiting();
    if (std::none_of(running.begin(), running.end(), owns) &&
        std::none_of(waiting.begin(), waiting.end(), owns)) {
      return;
    }
    if (--fault_.countdown == 0) throw std::bad_alloc();
  });
}

void FailBlockAllocationForTest(Engine& engine, RequestId id, int sample_index, int nth) {
  engine.impl_->FailBlockAllocationForTest(id, sample_index, nth);
}

std::vector<RequestOutput> EngineImpl::Step() {
  std::vector<RequestOutput> outputs = std::move(pending_outputs_);
  pending_outputs_.clear();

  // 1. Schedule: who runs, with how many tokens; blocks reserved.
  SchedulerOutput& sched = sched_;
  scheduler_.Schedule(sched);
  for (std::unique_ptr<Request>& r : sched.finished) Finish(*r, r->finish, outputs);
  sched.finished.clear();
  cache_.storage().CopyBlocks(sched.copies);
  scheduler_.ReleasePinned();
  batch_.Clear();
  sampled_.clear();

  // 2. One forward pass over the ragged batch.
  const Clock::time_point t0 = Clock::now();
  try {
    BuildAndForward(sched);
  } catch (const std::exception& e) {
    // Every request in the batch has K/V of unknown state: each ends with
    // the error; the engine and the requests not in this batch go on.
    const std::string reason = fmt::format("the forward pass over this request's batch failed: {}",
                                           e.what());
    for (const ScheduledChunk& c : sched.scheduled) {
      c.request->finish = FinishReason::kError;
      c.request->error = reason;
    }
    sampled_.clear();
  }
  const Clock::time_point t1 = Clock::now();
  tokens_computed_ += batch_.size();
  const double step_ms = Ms(t1 - t0);
  for (const std::unique_ptr<Request>& rp : scheduler_.running()) {
    if (rp->seq < 0 && !recompute()) continue;
    (rp->first_token ? rp->timings.decode_ms : rp->timings.prefill_ms) += step_ms;
  }

  // 3. Sample. A row with a NaN or Inf ends its request (kError) instead:
  // no sampler can choose from it. The rows are independent, so the other
  // requests sample as they would have.
  const int32_t vocab = m_.config().vocab_size;
  for (size_t i = 0; i < sampled_.size(); ++i) {
    Request& r = *sampled_[i];
    const std::span<const float> row(logits_.data() + i * vocab, vocab);
    if (r.params.max_tokens == 0) {
      r.finish = FinishReason::kLength;
      continue;
    }
    if (const int64_t bad = ops::FindNonFinite(row.data(), vocab); bad >= 0) {
      FailNonFinite(r, std::isnan(row[static_cast<size_t>(bad)]));
      continue;
    }
    Guard(r, [&] {
      if (r.params.n > 1 && !r.forked) Fork(r, row, outputs);
      Sample(r, row, t1, outputs);
    });
  }

  // 4. Update: retire finished requests.
  for (std::unique_ptr<Request>& r : scheduler_.Update()) Finish(*r, r->finish, outputs);
  return outputs;
}

void EngineImpl::FailNonFinite(Request& r, bool nan) {
  r.finish = FinishReason::kError;
  const int32_t end = r.num_computed;  // every token's K/V is in the cache; the last was sampled
  std::optional<NonFiniteSite> site;
  try {
    // The sequence again from position 0, in chunks, checking every tensor:
    // the first chunk with a non-finite value holds its origin (a position
    // only reads K/V of earlier ones). The diagnosis writes no K/V (see
    // ModelRunner::FindNonFinite), so no other request can be affected.
    ForwardBatch& diag = diag_batch_;
    for (int32_t begin = 0; begin < end && !site; begin += kDiagnosisChunk) {
      diag.Clear();
      diag.seq_ids.push_back(r.seq);
      for (int32_t p = begin; p < std::min(end, begin + kDiagnosisChunk); ++p) {
        diag.tokens.push_back(r.tokens[static_cast<size_t>(p)]);
        diag.positions.push_back(p);
        diag.seq_index.push_back(0);
      }
      if (begin + kDiagnosisChunk >= end) diag.logit_rows.push_back(diag.size() - 1);
      site = runner_.FindNonFinite(diag, cache_);
    }
  } catch (const std::exception& e) {
    r.error = fmt::format("non-finite logits ({}) at position {}; finding where they arose "
                          "failed: {}",
                          nan ? "NaN" : "Inf", end - 1, e.what());
    return;
  }
  r.error = NonFiniteMessage(site, nan, end - 1);
}

void EngineImpl::BuildAndForward(const SchedulerOutput& sched) {
  KvManager& kv = cache_.manager();
  for (const ScheduledChunk& c : sched.scheduled) {
    Request& r = *c.request;
    const int32_t slot = static_cast<int32_t>(batch_.seq_ids.size());
    batch_.seq_ids.push_back(r.seq);
    for (int32_t p = c.begin; p < c.begin + c.num_tokens; ++p) {
      batch_.tokens.push_back(r.tokens[p]);
      batch_.positions.push_back(p);
      batch_.seq_index.push_back(slot);
    }
    if (kv.has_event_sink()) {
      kv.SetTokenIds(r.seq, c.begin, std::span<const int32_t>(r.tokens).subspan(c.begin, c.num_tokens));
    }
    if (c.sample) {
      batch_.logit_rows.push_back(batch_.size() - 1);
      sampled_.push_back(&r);
    }
  }

  if (batch_.size() > 0) runner_.Forward(batch_, cache_, &logits_);
}

bool EngineImpl::Abort(RequestId id) {
  // Every sample of the request: a preempted sample waits while the others run.
  bool found = false;
  while (std::unique_ptr<Request> r = scheduler_.Remove(id)) {
    Finish(*r, FinishReason::kAborted, pending_outputs_);
    found = true;
  }
  return found;
}

SessionId EngineImpl::CreateSession() { return scheduler_.CreateSession(); }

void EngineImpl::EndSession(SessionId id) {
  if (scheduler_.FindSession(id) == nullptr) return;
  std::vector<RequestId> in_flight;
  for (const auto& r : scheduler_.running()) {
    if (r->session == id) in_flight.push_back(r->id);
  }
  for (const auto& r : scheduler_.waiting()) {
    if (r->session == id) in_flight.push_back(r->id);
  }
  for (RequestId r : in_flight) Abort(r);
  scheduler_.EndSession(id);
}

KvCacheStats EngineImpl::KvStats() const {
  KvCacheStats st = cache_.Stats();
  st.strategy = KvStrategyName(options_.kv.strategy);
  const KvManager& kv = cache_.manager();
  if (kv.prefix_cache_enabled()) {
    st.prefix_cache = kv.whole_sequence_cache() ? "copied" : "shared";
    st.prefix_cache_hash = PrefixCacheHashName(options_.prefix_cache_hash);
    st.prefix_cache_queries = kv.prefix_counters().queries;
    st.prefix_cache_hits = kv.prefix_counters().hits;
    st.prefix_cache_blocks_evicted = kv.prefix_counters().blocks_evicted;
    st.num_blocks_cached = kv.num_blocks_cached();
    st.num_blocks_cached_free = kv.pool().num_cached_free();
  }
  for (const auto& r : scheduler_.running()) {
    if (r->seq < 0) continue;
    KvSequenceStats s = cache_.SequenceStats(r->seq);
    s.request_id = r->id;
    st.sequences.push_back(s);
  }
  for (const auto& [id, s] : scheduler_.sessions()) {
    if (s.seq >= 0 && !s.busy) st.sequences.push_back(cache_.SequenceStats(s.seq));
  }
  return st;
}

EngineStats EngineImpl::Stats() const {
  EngineStats st;
  const SchedulerStats& ss = scheduler_.stats();
  st.num_steps = ss.num_steps;
  st.peak_running = ss.peak_running;
  st.num_preemptions = ss.num_preemptions;
  st.tokens_recomputed = ss.tokens_recomputed;
  st.num_session_evictions = ss.num_session_evictions;
  st.tokens_computed = tokens_computed_;
  st.num_running = static_cast<int64_t>(scheduler_.running().size());
  st.num_waiting = static_cast<int64_t>(scheduler_.waiting().size());
  const KvManager& kv = cache_.manager();
  st.prefix_cache_queries = kv.prefix_counters().queries;
  st.prefix_cache_hits = kv.prefix_counters().hits;
  st.prefix_cache_blocks_evicted = kv.prefix_counters().blocks_evicted;
  st.num_blocks_cached = kv.num_blocks_cached();
  return st;
}

// ------------------------------------------------------------------ Engine facade

StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model& model, const EngineOptions& options) {
  EngineOptions o = options;
  const ModelConfig& c = ImplOf(model).config();
  auto bad = [](std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); };
  if (o.num_threads < 0) return bad(fmt::format("num_threads must be >= 0, got {}", o.num_threads));
  if (o.num_threads == 0) {
    o.num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  if (o.max_seqs < 1) return bad(fmt::format("max_seqs must be >= 1, got {}", o.max_seqs));
  if (o.max_batch_tokens < 1) {
    return bad(fmt::format("max_batch_tokens must be >= 1, got {}", o.max_batch_tokens));
  }
  if (o.kv.max_seq_len < 0) {
    return bad(fmt::format("max_seq_len must be >= 0, got {}", o.kv.max_seq_len));
  }
  if (o.kv.max_seq_len > c.context_length) {
    return bad(fmt::format("max_seq_len {} exceeds the model's context length {}",
                           o.kv.max_seq_len, c.context_length));
  }
  const int max_seq_len = o.kv.max_seq_len > 0 ? o.kv.max_seq_len : c.context_length;
  o.kv.max_seq_len = max_seq_len;
  if (o.kv.memory_bytes < 0 || o.kv.num_blocks < 0) {
    return bad("KV memory and block count must be >= 0");
  }

  int32_t block_size = max_seq_len;  // none and contiguous: one block per sequence
  if (o.kv.strategy == KvStrategy::kPaged) {
    // A block longer than max_seq_len is allowed (it only wastes memory).
    if (o.kv.block_size_tokens < 1 || o.kv.block_size_tokens > (1 << 20)) {
      return bad(fmt::format("block size must be in [1, {}], got {}", 1 << 20,
                             o.kv.block_size_tokens));
    }
    block_size = o.kv.block_size_tokens;
  }
  o.kv.block_size_tokens = block_size;
  if (o.activation_precision != ActivationPrecision::kInt8 &&
      o.activation_precision != ActivationPrecision::kF32) {
    return bad("unknown activation precision (expected int8 or f32)");
  }
  if (!ParsePrefixCacheHash(PrefixCacheHashName(o.prefix_cache_hash))) {
    return bad("unknown prefix cache hash (expected xxh3_128 or sha256)");
  }
  if (!ParseKvPrecision(KvPrecisionName(o.kv.precision))) {
    return bad("unknown KV precision (expected f32, f16, q8_0 or q4_0)");
  }
  if (o.kv.precision == KvPrecision::kQ4_0 && c.head_dim % 2 != 0) {
    return bad(fmt::format("a q4_0 KV cache packs two elements per byte and needs an even "
                           "head_dim; this model's is {}",
                           c.head_dim));
  }
  const int64_t kv_token_bytes = KvBytesPerToken(c.kv_shape(), o.kv.precision);
  const int64_t block_bytes = static_cast<int64_t>(block_size) * kv_token_bytes;
  int64_t num_blocks = 0;
  if (o.kv.num_blocks > 0) {
    num_blocks = o.kv.num_blocks;
  } else if (o.kv.memory_bytes > 0) {
    num_blocks = o.kv.memory_bytes / block_bytes;
    if (num_blocks == 0) {
      return bad(fmt::format(
          "a KV memory budget of {} bytes is smaller than one block ({} bytes: {} tokens x {} "
          "bytes per token)",
          o.kv.memory_bytes, block_bytes, block_size, kv_token_bytes));
    }
  } else {
    const int64_t per_seq = (max_seq_len + block_size - 1) / block_size;
    num_blocks = per_seq * o.max_seqs;
  }
  if (num_blocks > (int64_t{1} << 30) || num_blocks * block_bytes > (int64_t{1} << 40)) {
    return bad(fmt::format("{} KV blocks of {} bytes is more memory than kvinfer will reserve",
                           num_blocks, block_bytes));
  }
  std::unique_ptr<EngineImpl> impl;
  Status st = CatchToStatus([&] {
    impl = std::make_unique<EngineImpl>(model, o, block_size, static_cast<int32_t>(num_blocks));
  });
  if (st.code() == StatusCode::kResourceExhausted) {
    // Almost all of what the engine allocates up front is the KV pool: name
    // its shape so the user sees what to shrink.
    return Status(StatusCode::kResourceExhausted,
                  fmt::format("out of memory allocating the KV pool ({} strategy, {} KV cache): "
                              "{} blocks of {} tokens x {} bytes per token = {} bytes per block, "
                              "{} bytes ({:.1f} MiB) in total; ask for fewer blocks "
                              "(--num-blocks / --kv-memory-mib) or a smaller KV dtype",
                              KvStrategyName(o.kv.strategy), KvPrecisionName(o.kv.precision),
                              num_blocks, block_size, kv_token_bytes, block_bytes,
                              num_blocks * block_bytes,
                              static_cast<double>(num_blocks * block_bytes) / 1048576.0));
  }
  if (!st.ok()) return st;
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<EngineImpl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

StatusOr<RequestId> Engine::AddRequest(std::string_view prompt, const SamplingParams& params,
                                       const RequestOptions& options) {
  StatusOr<std::vector<int32_t>> ids =
      impl_->model().Tokenize(prompt, options.add_special, options.parse_special);
  if (!ids.ok()) return ids.status();
  return impl_->Add(std::move(ids).value(), params, options);
}

StatusOr<RequestId> Engine::AddRequestTokens(std::vector<int32_t> prompt_tokens,
                                             const SamplingParams& params,
                                             const RequestOptions& options) {
  return impl_->Add(std::move(prompt_tokens), params, options);
}

std::vector<RequestOutput> Engine::Step() {
  std::vector<RequestOutput> out;
  // A request's own failures end that request inside Step (kError); an
  // exception that still escapes means the engine's state is broken.
  Status st = CatchToStatus([&] { out = impl_->Step(); });
  KVINFER_CHECK_MSG(st.ok(), "engine step failed: {}", st.ToString());
  return out;
}

bool Engine::HasWork() const { return impl_->HasWork(); }
bool Engine::Abort(RequestId id) { return impl_->Abort(id); }
SessionId Engine::CreateSession() { return impl_->CreateSession(); }
void Engine::EndSession(SessionId id) { impl_->EndSession(id); }
KvCacheStats Engine::KvStats() const { return impl_->KvStats(); }
EngineStats Engine::Stats() const { return impl_->Stats(); }
const EngineOptions& Engine::options() const { return impl_->options(); }

}  // namespace kvinfer
