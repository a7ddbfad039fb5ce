#include <algorithm>
#include <thread>

#include "core/error.h"
#include "engine/engine_impl.h"

namespace kvinfer {
namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

constexpr int kMaxSamples = 1024;

}  // namespace

EngineImpl::EngineImpl(const Model& model, const EngineOptions& options, int32_t block_size,
                       int32_t num_blocks)
    : model_(model),
      m_(*model.impl()),
      options_(options),
      pool_(options.num_threads),
      cache_(m_.config(), block_size, num_blocks, options.kv.precision),
      runner_(m_.config(), m_.weights(), &pool_, options.activation_precision) {}

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
  if (options.session) {
    auto it = sessions_.find(*options.session);
    if (it == sessions_.end()) return bad(fmt::format("unknown session {}", *options.session));
    if (it->second.busy) {
      return bad(fmt::format("session {} already has a request in flight", *options.session));
    }
    it->second.busy = true;
  }
  auto r = std::make_unique<Request>(params);
  r->id = next_request_id_;
  next_request_id_ += params.n;
  r->session = options.session;
  r->num_prompt = static_cast<int32_t>(prompt.size());
  r->tokens = std::move(prompt);
  r->tokens.reserve(std::min<int64_t>(max_seq_len, r->tokens.size() + params.max_tokens));
  r->added = Clock::now();
  r->timings.prompt_tokens = r->num_prompt;
  const RequestId id = r->id;
  waiting_.push_back(std::move(r));
  return id;
}

bool EngineImpl::EvictIdleSession() {
  Session* victim = nullptr;
  for (auto& [id, s] : sessions_) {
    if (s.busy || s.seq < 0) continue;
    if (victim == nullptr || s.last_used < victim->last_used) victim = &s;
  }
  if (victim == nullptr) return false;
  cache_.FreeSequence(victim->seq);
  victim->seq = -1;
  victim->tokens.clear();
  ++stats_.num_session_evictions;
  return true;
}

bool EngineImpl::Admit(Request& r) {
  if (recompute()) return true;  // K/V live only within a step
  bool fresh = true;
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    if (s.seq >= 0) {
      // Reuse the longest common prefix of the cached tokens; always leave
      // at least one token to compute so there are logits to sample from.
      size_t common = 0;
      const size_t limit = std::min(s.tokens.size(), r.tokens.size() - 1);
      while (common < limit && s.tokens[common] == r.tokens[common]) ++common;
      cache_.Truncate(s.seq, static_cast<int32_t>(common));
      r.seq = s.seq;
      r.num_computed = static_cast<int32_t>(common);
      r.timings.cached_prompt_tokens = static_cast<int64_t>(common);
      fresh = false;
    }
  }
  if (r.seq < 0) r.seq = cache_.CreateSequence();
  // contiguous reserves the whole region now; paged checks that the tokens
  // it has fit and allocates as they are computed.
  const bool contiguous = options_.kv.strategy == KvStrategy::kContiguous;
  const int32_t want = contiguous ? options_.kv.max_seq_len : static_cast<int32_t>(r.tokens.size());
  for (;;) {
    const int32_t need = cache_.BlocksNeeded(r.seq, want);
    if (need <= cache_.pool().num_free()) break;
    if (!EvictIdleSession()) {
      if (fresh) {
        cache_.FreeSequence(r.seq);
        r.seq = -1;
      }
      return false;
    }
  }
  if (contiguous) KVINFER_CHECK(cache_.Reserve(r.seq, want));
  if (r.session) sessions_.at(*r.session).seq = r.seq;
  return true;
}

void EngineImpl::ReleaseKv(Request& r) {
  if (r.seq < 0) return;
  cache_.FreeSequence(r.seq);
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    s.seq = -1;
    s.tokens.clear();
  }
  r.seq = -1;
}

void EngineImpl::Preempt(Request& r) {
  ReleaseKv(r);
  r.num_computed = 0;
  r.timings.cached_prompt_tokens = 0;
  ++stats_.num_preemptions;
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const std::unique_ptr<Request>& p) { return p.get() == &r; });
  KVINFER_CHECK(it != running_.end());
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

bool EngineImpl::MakeRoom(Request& r, int32_t chunk) {
  if (recompute()) {
    r.seq = cache_.CreateSequence();
    r.num_computed = 0;
  }
  const int32_t end = r.num_computed + chunk;
  for (;;) {
    if (cache_.Reserve(r.seq, end) && cache_.PrepareWrite(r.seq, r.num_computed, end)) return true;
    if (EvictIdleSession()) continue;
    Request* victim = running_.back().get();
    Preempt(*victim);
    if (victim == &r) return false;
  }
}

RequestOutput& EngineImpl::OutputFor(Request& r, std::vector<RequestOutput>& outputs) {
  for (RequestOutput& o : outputs) {
    if (o.id == r.id) return o;
  }
  RequestOutput& o = outputs.emplace_back();
  o.id = r.id;
  o.sample_index = r.sample_index;
  return o;
}

void EngineImpl::Finish(Request& r, FinishReason reason, std::vector<RequestOutput>& outputs) {
  r.finish = reason;
  r.timings.total_ms = Ms(Clock::now() - r.added);
  r.timings.generated_tokens = r.num_generated;
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    s.busy = false;
    s.last_used = stats_.num_steps;
    if (r.seq >= 0 && !recompute()) {
      s.seq = r.seq;
      s.tokens.assign(r.tokens.begin(), r.tokens.begin() + r.num_computed);
      r.seq = -1;  // now owned by the session
    }
  }
  if (r.seq >= 0) cache_.FreeSequence(r.seq);
  r.seq = -1;
  RequestOutput& out = OutputFor(r, outputs);
  out.text_delta += r.text.Flush();
  out.finished = true;
  out.finish_reason = reason;
  out.timings = r.timings;
}

void EngineImpl::Sample(Request& r, std::span<const float> logits, Clock::time_point now,
                        std::vector<RequestOutput>& outputs) {
  const Tokenizer& tok = m_.tokenizer();
  const int32_t token = r.sampler.Sample(logits);
  r.tokens.push_back(token);
  ++r.num_generated;
  if (!r.first_token) {
    r.first_token = now;
    r.timings.ttft_ms = Ms(now - r.added);
  }
  RequestOutput& out = OutputFor(r, outputs);
  out.new_tokens.push_back(token);
  const bool eog = tok.IsEndOfGeneration(token);
  if ((!eog || r.params.ignore_eos) && !tok.IsControl(token)) {
    out.text_delta += r.text.Push(tok.TokenBytes(token));
  }
  if (eog && !r.params.ignore_eos) {
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
    child->id = parent.id + i;
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
    child->admitted_order = next_admitted_order_++;
    Sample(*child, logits, now, outputs);
    running_.push_back(std::move(child));
  }
}

std::vector<RequestOutput> EngineImpl::Step() {
  std::vector<RequestOutput> outputs = std::move(pending_outputs_);
  pending_outputs_.clear();
  ++stats_.num_steps;
  batch_.Clear();
  sampled_.clear();
  int32_t budget = options_.max_batch_tokens;

  auto add_to_batch = [&](Request& r, int32_t chunk) {
    const int32_t slot = static_cast<int32_t>(batch_.seq_ids.size());
    batch_.seq_ids.push_back(r.seq);
    for (int32_t p = r.num_computed; p < r.num_computed + chunk; ++p) {
      batch_.tokens.push_back(r.tokens[p]);
      batch_.positions.push_back(p);
      batch_.seq_index.push_back(slot);
    }
    r.num_computed += chunk;
    if (r.num_computed == static_cast<int32_t>(r.tokens.size())) {
      batch_.logit_rows.push_back(batch_.size() - 1);
      sampled_.push_back(&r);
    }
    budget -= chunk;
  };
  // Tokens r would put in this step's batch; 0 = none now.
  auto chunk_for = [&](const Request& r) -> int32_t {
    if (recompute()) {
      const int32_t all = static_cast<int32_t>(r.tokens.size());
      // The baseline recomputes whole sequences; one always fits so the
      // engine makes progress.
      return all <= budget || batch_.size() == 0 ? all : 0;
    }
    return std::min(r.num_uncomputed(), budget);
  };

  // 1. Running requests, earliest admitted first; MakeRoom may preempt the
  //    latest ones (which are not in the batch yet).
  for (size_t i = 0; i < running_.size(); ++i) {
    Request& r = *running_[i];
    const int32_t chunk = chunk_for(r);
    if (chunk <= 0) continue;
    if (!MakeRoom(r, chunk)) break;  // r itself was preempted: it was the last
    add_to_batch(r, chunk);
  }

  // 2. Admit waiting requests (preempted ones are at the front) while there
  //    is room.
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_seqs &&
         budget > 0) {
    Request& r = *waiting_.front();
    if (!Admit(r)) {
      if (running_.empty()) {
        // Nothing running will free blocks, and idle sessions are gone:
        // this request can never fit.
        std::unique_ptr<Request> dead = std::move(waiting_.front());
        waiting_.pop_front();
        Finish(*dead, FinishReason::kKvExhausted, outputs);
        continue;
      }
      break;
    }
    if (!r.scheduled) {
      r.scheduled = Clock::now();
      r.timings.queue_ms = Ms(*r.scheduled - r.added);
    }
    r.admitted_order = next_admitted_order_++;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    const int32_t chunk = chunk_for(r);
    if (chunk <= 0) continue;
    if (!MakeRoom(r, chunk)) break;
    add_to_batch(r, chunk);
  }
  stats_.peak_running = std::max<int64_t>(stats_.peak_running, static_cast<int64_t>(running_.size()));

  // 3. One forward pass over the ragged batch.
  const Clock::time_point t0 = Clock::now();
  if (batch_.size() > 0) runner_.Forward(batch_, cache_, &logits_);
  const Clock::time_point t1 = Clock::now();
  stats_.tokens_computed += batch_.size();
  const double step_ms = Ms(t1 - t0);
  for (std::unique_ptr<Request>& rp : running_) {
    if (rp->seq < 0 && !recompute()) continue;
    (rp->first_token ? rp->timings.decode_ms : rp->timings.prefill_ms) += step_ms;
  }

  // 4. Sample.
  const int32_t vocab = m_.config().vocab_size;
  for (size_t i = 0; i < sampled_.size(); ++i) {
    Request& r = *sampled_[i];
    const std::span<const float> row(logits_.data() + i * vocab, vocab);
    if (r.params.max_tokens == 0) {
      r.finish = FinishReason::kLength;
      continue;
    }
    if (r.params.n > 1 && !r.forked) Fork(r, row, outputs);
    Sample(r, row, t1, outputs);
  }
  if (recompute()) {
    for (std::unique_ptr<Request>& rp : running_) {
      if (rp->seq >= 0) cache_.FreeSequence(rp->seq);
      rp->seq = -1;
      rp->num_computed = 0;
    }
  }

  // 5. Retire finished requests.
  for (size_t i = 0; i < running_.size();) {
    if (running_[i]->finish != FinishReason::kNone) {
      Finish(*running_[i], running_[i]->finish, outputs);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  return outputs;
}

bool EngineImpl::Abort(RequestId id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      Finish(**it, FinishReason::kAborted, pending_outputs_);
      waiting_.erase(it);
      return true;
    }
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id == id) {
      Finish(**it, FinishReason::kAborted, pending_outputs_);
      running_.erase(it);
      return true;
    }
  }
  return false;
}

SessionId EngineImpl::CreateSession() {
  const SessionId id = next_session_id_++;
  sessions_[id] = Session{};
  return id;
}

void EngineImpl::EndSession(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  std::vector<RequestId> in_flight;
  for (const auto& r : running_) {
    if (r->session == id) in_flight.push_back(r->id);
  }
  for (const auto& r : waiting_) {
    if (r->session == id) in_flight.push_back(r->id);
  }
  for (RequestId r : in_flight) Abort(r);
  Session& s = sessions_.at(id);
  if (s.seq >= 0) cache_.FreeSequence(s.seq);
  sessions_.erase(id);
}

KvCacheStats EngineImpl::KvStats() const {
  KvCacheStats st = cache_.Stats();
  st.strategy = KvStrategyName(options_.kv.strategy);
  for (const auto& r : running_) {
    if (r->seq < 0) continue;
    KvSequenceStats s = cache_.SequenceStats(r->seq);
    s.request_id = r->id;
    st.sequences.push_back(s);
  }
  for (const auto& [id, s] : sessions_) {
    if (s.seq >= 0 && !s.busy) st.sequences.push_back(cache_.SequenceStats(s.seq));
  }
  return st;
}

EngineStats EngineImpl::Stats() const {
  EngineStats st = stats_;
  st.num_running = static_cast<int64_t>(running_.size());
  st.num_waiting = static_cast<int64_t>(waiting_.size());
  return st;
}

// ------------------------------------------------------------------ Engine facade

StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model& model, const EngineOptions& options) {
  EngineOptions o = options;
  const ModelConfig& c = model.impl()->config();
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
  if (!ParseKvPrecision(KvPrecisionName(o.kv.precision))) {
    return bad("unknown KV precision (expected f32, f16, q8_0 or q4_0)");
  }
  if (o.kv.precision == KvPrecision::kQ4_0 && c.head_dim % 2 != 0) {
    return bad(fmt::format("a q4_0 KV cache packs two elements per byte and needs an even "
                           "head_dim; this model's is {}",
                           c.head_dim));
  }
  const int64_t kv_token_bytes = KvBytesPerToken(c, o.kv.precision);
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
