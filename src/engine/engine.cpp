#include <algorithm>
#include <thread>

#include "core/error.h"
#include "engine/engine_impl.h"

namespace kvinfer {
namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

const char* Version() { return "0.1.0"; }

const char* KvStrategyName(KvStrategy s) {
  switch (s) {
    case KvStrategy::kNone: return "none";
    case KvStrategy::kContiguous: return "contiguous";
    case KvStrategy::kPaged: return "paged";
  }
  return "?";
}

std::optional<KvStrategy> ParseKvStrategy(std::string_view name) {
  for (KvStrategy s : {KvStrategy::kNone, KvStrategy::kContiguous, KvStrategy::kPaged}) {
    if (name == KvStrategyName(s)) return s;
  }
  return std::nullopt;
}

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kContextFull: return "context_full";
    case FinishReason::kKvExhausted: return "kv_exhausted";
    case FinishReason::kAborted: return "aborted";
  }
  return "?";
}

double RequestTimings::prefill_tokens_per_s() const {
  const double n = static_cast<double>(prompt_tokens - cached_prompt_tokens);
  return prefill_ms > 0 ? n / (prefill_ms / 1000.0) : 0.0;
}

double RequestTimings::decode_tokens_per_s() const {
  return decode_ms > 0 && generated_tokens > 1
             ? static_cast<double>(generated_tokens - 1) / (decode_ms / 1000.0)
             : 0.0;
}

// ------------------------------------------------------------------ Model

StatusOr<Model> Model::Load(const std::string& path) {
  std::shared_ptr<const ModelImpl> impl;
  Status st = CatchToStatus([&] { impl = ModelImpl::LoadGguf(path); });
  if (!st.ok()) return st;
  return Model(std::move(impl));
}

const ModelInfo& Model::info() const { return impl_->info(); }

StatusOr<std::vector<int32_t>> Model::Tokenize(std::string_view text, bool add_special,
                                               bool parse_special) const {
  std::vector<int32_t> ids;
  Status st = CatchToStatus([&] { ids = impl_->tokenizer().Encode(text, add_special, parse_special); });
  if (!st.ok()) return st;
  return ids;
}

std::string Model::Detokenize(std::span<const int32_t> ids, bool render_special) const {
  return impl_->tokenizer().Decode(ids, render_special);
}

StatusOr<std::string> Model::ApplyChatTemplate(std::span<const ChatMessage> messages,
                                               bool add_generation_prompt) const {
  std::string text;
  Status st = CatchToStatus([&] { text = impl_->chat_template().Render(messages, add_generation_prompt); });
  if (!st.ok()) return st;
  return text;
}

// ------------------------------------------------------------------ Engine

EngineImpl::EngineImpl(const Model& model, const EngineOptions& options, int max_seq_len,
                       int32_t block_size, int32_t num_blocks)
    : model_(model),
      m_(*model.impl()),
      options_(options),
      max_seq_len_(max_seq_len),
      pool_(options.num_threads),
      cache_(m_.config(), block_size, num_blocks),
      runner_(m_.config(), m_.weights(), &pool_) {}

StatusOr<RequestId> EngineImpl::Add(std::vector<int32_t> prompt, const SamplingParams& params,
                                    const RequestOptions& options) {
  if (Status st = ValidateSamplingParams(params); !st.ok()) return st;
  if (prompt.empty()) return Status(StatusCode::kInvalidArgument, "the prompt is empty");
  if (static_cast<int64_t>(prompt.size()) > max_seq_len_) {
    return Status(StatusCode::kOutOfRange,
                  fmt::format("the prompt has {} tokens but a sequence may hold at most {} "
                              "(the model's context is {})",
                              prompt.size(), max_seq_len_, m_.config().context_length));
  }
  const int32_t vocab = m_.config().vocab_size;
  for (int32_t t : prompt) {
    if (t < 0 || t >= vocab) {
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("prompt token {} is outside the vocabulary [0, {})", t, vocab));
    }
  }
  if (options.session) {
    auto it = sessions_.find(*options.session);
    if (it == sessions_.end()) {
      return Status(StatusCode::kInvalidArgument, fmt::format("unknown session {}", *options.session));
    }
    if (it->second.busy) {
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("session {} already has a request in flight", *options.session));
    }
    it->second.busy = true;
  }
  auto r = std::make_unique<Request>(params);
  r->id = next_request_id_++;
  r->session = options.session;
  r->num_prompt = static_cast<int32_t>(prompt.size());
  r->tokens = std::move(prompt);
  r->tokens.reserve(std::min<int64_t>(max_seq_len_, r->tokens.size() + params.max_tokens));
  r->added = Clock::now();
  r->timings.prompt_tokens = r->num_prompt;
  const RequestId id = r->id;
  waiting_.push_back(std::move(r));
  return id;
}

// Gives the request a KV sequence. contiguous reserves max_seq_len up front;
// paged reserves the prompt's blocks; none allocates per step.
bool EngineImpl::Admit(Request& r) {
  const KvStrategy strategy = options_.kv.strategy;
  if (strategy == KvStrategy::kNone) return true;
  int32_t seq = -1;
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    if (s.seq >= 0) {
      // Reuse the longest common prefix of the cached tokens; always leave
      // at least one prompt token to compute so there are logits to sample.
      size_t common = 0;
      const size_t limit = std::min(s.tokens.size(), r.tokens.size() - 1);
      while (common < limit && s.tokens[common] == r.tokens[common]) ++common;
      cache_.Truncate(s.seq, static_cast<int32_t>(common));
      seq = s.seq;
      r.num_computed = static_cast<int32_t>(common);
      r.timings.cached_prompt_tokens = static_cast<int64_t>(common);
    }
  }
  if (seq < 0) seq = cache_.CreateSequence();
  const int32_t want = strategy == KvStrategy::kContiguous ? max_seq_len_ : r.num_prompt;
  if (!cache_.Reserve(seq, want)) {
    if (!r.session || sessions_.at(*r.session).seq != seq) cache_.FreeSequence(seq);
    return false;
  }
  r.seq = seq;
  if (r.session) sessions_.at(*r.session).seq = seq;
  return true;
}

RequestOutput EngineImpl::MakeOutput(Request& r) {
  RequestOutput out;
  out.id = r.id;
  return out;
}

void EngineImpl::Finish(Request& r, FinishReason reason, std::vector<RequestOutput>& outputs) {
  r.finish = reason;
  const Clock::time_point now = Clock::now();
  r.timings.total_ms = Ms(now - r.added);
  r.timings.generated_tokens = r.num_generated;
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    s.busy = false;
    if (r.seq >= 0) {
      s.seq = r.seq;
      s.tokens.assign(r.tokens.begin(), r.tokens.begin() + r.num_computed);
    }
  } else if (r.seq >= 0) {
    cache_.FreeSequence(r.seq);
  }
  r.seq = -1;
  // Attach the end to this step's output for the request, or add one.
  RequestOutput* out = nullptr;
  for (RequestOutput& o : outputs) {
    if (o.id == r.id) out = &o;
  }
  if (out == nullptr) out = &outputs.emplace_back(MakeOutput(r));
  out->text_delta += r.text.Flush();
  out->finished = true;
  out->finish_reason = reason;
  out->timings = r.timings;
}

std::vector<RequestOutput> EngineImpl::Step() {
  std::vector<RequestOutput> outputs = std::move(aborted_outputs_);
  aborted_outputs_.clear();

  // Admit waiting requests in arrival order while there is room.
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_seqs) {
    Request& r = *waiting_.front();
    if (!Admit(r)) {
      if (running_.empty()) {
        // Nothing running will free blocks: this request can never fit.
        std::unique_ptr<Request> dead = std::move(waiting_.front());
        waiting_.pop_front();
        Finish(*dead, FinishReason::kKvExhausted, outputs);
        continue;
      }
      break;
    }
    r.scheduled = Clock::now();
    r.timings.queue_ms = Ms(*r.scheduled - r.added);
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  if (running_.empty()) return outputs;

  // Build one ragged batch: every running request's uncomputed tokens (the
  // prompt, or the last sampled token), within the token budget.
  const bool recompute = options_.kv.strategy == KvStrategy::kNone;
  batch_.Clear();
  std::vector<Request*> sampled;  // requests whose last token is in the batch
  int32_t budget = options_.max_batch_tokens;
  for (std::unique_ptr<Request>& rp : running_) {
    Request& r = *rp;
    if (recompute) {
      // The baseline: a transient sequence recomputes everything each step.
      r.seq = cache_.CreateSequence();
      r.num_computed = 0;
    }
    const int32_t total = static_cast<int32_t>(r.tokens.size());
    int32_t chunk = total - r.num_computed;
    if (!recompute) {
      if (budget <= 0) continue;  // chunked prefill: the rest waits for the next step
      chunk = std::min(chunk, budget);
    }
    if (chunk <= 0) continue;
    if (!cache_.Reserve(r.seq, r.num_computed + chunk)) {
      // Out of blocks. (Preemption belongs to the scheduler; without it the
      // request ends with a clear reason.)
      if (recompute) {
        cache_.FreeSequence(r.seq);
        r.seq = -1;
      }
      r.finish = FinishReason::kKvExhausted;
      continue;
    }
    budget -= chunk;
    const int32_t seq_slot = static_cast<int32_t>(batch_.seq_ids.size());
    batch_.seq_ids.push_back(r.seq);
    for (int32_t p = r.num_computed; p < r.num_computed + chunk; ++p) {
      batch_.tokens.push_back(r.tokens[p]);
      batch_.positions.push_back(p);
      batch_.seq_index.push_back(seq_slot);
    }
    if (r.num_computed + chunk == total) {
      batch_.logit_rows.push_back(batch_.size() - 1);
      sampled.push_back(&r);
    }
    r.num_computed += chunk;
  }

  const Clock::time_point t0 = Clock::now();
  if (batch_.size() > 0) runner_.Forward(batch_, cache_, &logits_);
  const Clock::time_point t1 = Clock::now();
  const double step_ms = Ms(t1 - t0);

  const Tokenizer& tok = m_.tokenizer();
  const int32_t vocab = m_.config().vocab_size;
  for (std::unique_ptr<Request>& rp : running_) {
    Request& r = *rp;
    if (r.first_token) {
      r.timings.decode_ms += step_ms;
    } else {
      r.timings.prefill_ms += step_ms;
    }
  }
  for (size_t i = 0; i < sampled.size(); ++i) {
    Request& r = *sampled[i];
    if (r.params.max_tokens == 0) {
      r.finish = FinishReason::kLength;
      continue;
    }
    const std::span<const float> row(logits_.data() + i * vocab, vocab);
    const int32_t token = r.sampler.Sample(row);
    r.tokens.push_back(token);
    ++r.num_generated;
    if (!r.first_token) {
      r.first_token = t1;
      r.timings.ttft_ms = Ms(t1 - r.added);
    }
    RequestOutput& out = outputs.emplace_back(MakeOutput(r));
    out.new_tokens.push_back(token);
    const bool eog = tok.IsEndOfGeneration(token);
    if (!eog || r.params.ignore_eos) {
      if (!tok.IsControl(token)) out.text_delta = r.text.Push(tok.TokenBytes(token));
    }
    if (eog && !r.params.ignore_eos) {
      r.finish = FinishReason::kStop;
    } else if (r.num_generated >= r.params.max_tokens) {
      r.finish = FinishReason::kLength;
    } else if (static_cast<int>(r.tokens.size()) >= max_seq_len_) {
      r.finish = FinishReason::kContextFull;
    }
  }
  if (recompute) {
    for (std::unique_ptr<Request>& rp : running_) {
      if (rp->seq >= 0) cache_.FreeSequence(rp->seq);
      rp->seq = -1;
      rp->num_computed = 0;
    }
  }

  // Retire finished requests.
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
  auto finish_one = [&](std::unique_ptr<Request>& r) {
    Finish(*r, FinishReason::kAborted, aborted_outputs_);
  };
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      finish_one(*it);
      waiting_.erase(it);
      return true;
    }
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id == id) {
      finish_one(*it);
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
  if (it->second.busy) {
    // Let the in-flight request finish first; it frees nothing it shares.
    for (auto& r : running_) {
      if (r->session == id) Abort(r->id);
    }
    for (auto& r : waiting_) {
      if (r->session == id) Abort(r->id);
    }
  }
  it = sessions_.find(id);
  if (it != sessions_.end() && it->second.seq >= 0) cache_.FreeSequence(it->second.seq);
  sessions_.erase(id);
}

KvCacheStats EngineImpl::Stats() const {
  KvCacheStats st = cache_.Stats();
  st.strategy = KvStrategyName(options_.kv.strategy);
  return st;
}

// ------------------------------------------------------------------ Engine facade

StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model& model, const EngineOptions& options) {
  EngineOptions o = options;
  const ModelConfig& c = model.impl()->config();
  auto bad = [](std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); };
  if (o.num_threads < 0) return bad(fmt::format("num_threads must be >= 0, got {}", o.num_threads));
  if (o.num_threads == 0) o.num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (o.max_seqs < 1) return bad(fmt::format("max_seqs must be >= 1, got {}", o.max_seqs));
  if (o.max_batch_tokens < 1) {
    return bad(fmt::format("max_batch_tokens must be >= 1, got {}", o.max_batch_tokens));
  }
  if (o.kv.max_seq_len < 0) return bad(fmt::format("max_seq_len must be >= 0, got {}", o.kv.max_seq_len));
  if (o.kv.max_seq_len > c.context_length) {
    return bad(fmt::format("max_seq_len {} exceeds the model's context length {}", o.kv.max_seq_len,
                           c.context_length));
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
  const int64_t block_bytes = static_cast<int64_t>(block_size) * c.KvBytesPerToken(sizeof(float));
  int64_t num_blocks = 0;
  if (o.kv.num_blocks > 0) {
    num_blocks = o.kv.num_blocks;
  } else if (o.kv.memory_bytes > 0) {
    num_blocks = o.kv.memory_bytes / block_bytes;
    if (num_blocks == 0) {
      return bad(fmt::format("a KV memory budget of {} bytes is smaller than one block ({} bytes: {} "
                             "tokens x {} bytes per token)",
                             o.kv.memory_bytes, block_bytes, block_size,
                             c.KvBytesPerToken(sizeof(float))));
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
    impl = std::make_unique<EngineImpl>(model, o, max_seq_len, block_size,
                                        static_cast<int32_t>(num_blocks));
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
KvCacheStats Engine::KvStats() const { return impl_->Stats(); }
const EngineOptions& Engine::options() const { return impl_->options(); }

}  // namespace kvinfer
