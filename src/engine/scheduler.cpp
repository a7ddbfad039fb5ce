#include "engine/scheduler.h"

#include <algorithm>
#include <new>

#include "core/error.h"

namespace kvinfer {
namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, KvManager& kv) : config_(config), kv_(kv) {
  KVINFER_CHECK(config.max_seqs >= 1 && config.max_batch_tokens >= 1 && config.max_seq_len >= 1);
}

void Scheduler::Add(std::unique_ptr<Request> r) {
  KVINFER_CHECK(r != nullptr && r->seq < 0);
  waiting_.push_back(std::move(r));
}

void Scheduler::AddRunning(std::unique_ptr<Request> r) {
  KVINFER_CHECK(r != nullptr);
  running_.push_back(std::move(r));
}

SessionId Scheduler::CreateSession() {
  const SessionId id = next_session_id_++;
  sessions_[id] = Session{};
  return id;
}

Session* Scheduler::FindSession(SessionId id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

void Scheduler::EndSession(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  if (it->second.seq >= 0) kv_.FreeSequence(it->second.seq);
  sessions_.erase(it);
}

bool Scheduler::EvictIdleSession() {
  Session* victim = nullptr;
  for (auto& [id, s] : sessions_) {
    if (s.busy || s.seq < 0) continue;
    if (victim == nullptr || s.last_used < victim->last_used) victim = &s;
  }
  if (victim == nullptr) return false;
  kv_.FreeSequence(victim->seq);
  victim->seq = -1;
  victim->tokens.clear();
  ++stats_.num_session_evictions;
  return true;
}

void Scheduler::HashTokens(Request& r) {
  if (!r.prefix_root) r.prefix_root = kv_.PrefixRoot(r.cache_salt);
  const size_t full = r.tokens.size() / static_cast<size_t>(kv_.block_size());
  if (r.block_hashes.size() != full) {
    kv_.hasher().Chain(*r.prefix_root, r.tokens, kv_.block_size(), r.block_hashes);
  }
}

bool Scheduler::WaitsForSharedPrefix(Request& r) {
  if (pending_.empty()) return false;
  HashTokens(r);
  const std::span<const BlockHash> chain(r.block_hashes);
  const size_t n = static_cast<size_t>(kv_.MatchPrefix(chain));
  // Only blocks it could hit (its last token is always computed) matter.
  const size_t max_hit = (r.tokens.size() - 1) / static_cast<size_t>(kv_.block_size());
  return n < max_hit && pending_.contains(chain[n]);
}

void Scheduler::AddPending(const Request& r) {
  if (r.seq < 0) return;
  const size_t done = kv_.block_hashes(r.seq).size();
  for (size_t i = done; i < r.block_hashes.size(); ++i) pending_.insert(r.block_hashes[i]);
}

bool Scheduler::AdmitWithPrefixCache(Request& r) {
  HashTokens(r);
  const int32_t bs = kv_.block_size();
  const int32_t len = static_cast<int32_t>(r.tokens.size());
  // Leave the last token to compute: its logits are what is sampled.
  const int32_t max_hit = (len - 1) / bs;
  const std::span<const BlockHash> chain =
      std::span<const BlockHash>(r.block_hashes).first(static_cast<size_t>(max_hit));
  const int32_t hit = kv_.MatchPrefix(chain);
  const std::span<const BlockHash> hits = chain.first(static_cast<size_t>(hit));
  const int32_t need = (len + bs - 1) / bs - hit + kv_.FreeBlocksTakenByPrefix(hits);
  if (need > kv_.num_free_blocks()) return false;
  r.seq = kv_.CreateSequence();
  kv_.SetPrefixRoot(r.seq, *r.prefix_root);
  kv_.AttachPrefix(r.seq, hits);
  // Room for every token the request may reach (r.tokens is reserved so).
  kv_.ReserveTokenIds(r.seq, std::max(r.tokens.size(), r.tokens.capacity()));
  kv_.SetTokenIds(r.seq, 0, r.tokens);
  r.num_computed = hit * bs;
  kv_.CountPrefixQuery(len, static_cast<int64_t>(hit) * bs);
  if (!r.scheduled) r.timings.cached_prompt_tokens = std::min(hit * bs, r.num_prompt);
  if (config_.prefix_cache_log) {
    fmt::print(stderr,
               "kvinfer: prefix cache: request {}{}{}{}: {} of {} tokens cached; left the cached "
               "prefix at token {} ({})\n",
               r.id, r.request_id.empty() ? "" : " (", r.request_id,
               r.request_id.empty() ? "" : ")", hit * bs, len, hit * bs,
               hit == max_hit ? "the last token is always computed"
                              : fmt::format("block {} is not cached", hit));
  }
  return true;
}

bool Scheduler::AdmitCopyingPrefix(Request& r, SchedulerOutput& out) {
  if (!r.prefix_root) r.prefix_root = kv_.PrefixRoot(r.cache_salt);
  const int32_t len = static_cast<int32_t>(r.tokens.size());
  // Leave the last token to compute: its logits are what is sampled.
  const KvManager::CachedPrefix hit =
      kv_.FindCachedSequencePrefix(*r.prefix_root, r.tokens, len - 1);
  // A copy needs a region for r besides the source's. Without room for
  // both, a free source region becomes r's own (its tail is then lost to
  // the cache); a source in use is not copied.
  const bool src_free = hit.num_tokens > 0 && kv_.pool().is_free(hit.block);
  const bool in_place = src_free && kv_.num_free_blocks() < 2;
  const bool copy =
      hit.num_tokens > 0 && !in_place && kv_.num_free_blocks() >= 1 + (src_free ? 1 : 0);
  if (!in_place && kv_.num_free_blocks() < 1) return false;
  const int32_t reused = in_place || copy ? hit.num_tokens : 0;
  r.seq = kv_.CreateSequence();
  kv_.SetPrefixRoot(r.seq, *r.prefix_root);
  if (in_place) {
    kv_.AdoptCachedSequence(r.seq, hit.block, hit.num_tokens);
  } else if (copy) {
    kv_.Pin(hit.block);  // before Reserve, so Reserve cannot evict it
    pinned_.push_back(hit.block);
  }
  KVINFER_CHECK(kv_.Reserve(r.seq, config_.max_seq_len));
  if (copy) {
    out.copies.push_back({hit.block, kv_.block_table(r.seq)[0], hit.num_tokens});
    kv_.SetNumTokens(r.seq, hit.num_tokens);
  }
  // Room for every token the request may reach (r.tokens is reserved so).
  kv_.ReserveTokenIds(r.seq, std::max(r.tokens.size(), r.tokens.capacity()));
  kv_.SetTokenIds(r.seq, 0, r.tokens);
  r.num_computed = reused;
  kv_.CountPrefixQuery(len, reused);
  if (!r.scheduled) r.timings.cached_prompt_tokens = std::min(reused, r.num_prompt);
  if (config_.prefix_cache_log) {
    fmt::print(stderr,
               "kvinfer: prefix cache: request {}{}{}{}: {} of {} tokens {} a cached sequence; "
               "left the cached prefix at token {}\n",
               r.id, r.request_id.empty() ? "" : " (", r.request_id,
               r.request_id.empty() ? "" : ")", reused, len,
               in_place ? "reused in place from" : "copied from", reused);
  }
  return true;
}

void Scheduler::ReleasePinned() {
  for (int32_t b : pinned_) kv_.Unpin(b);
  pinned_.clear();
}

bool Scheduler::Admit(Request& r, SchedulerOutput& out) {
  if (recompute()) return true;  // K/V live only within a step
  if (config_.prefix_cache) {
    return kv_.whole_sequence_cache() ? AdmitCopyingPrefix(r, out) : AdmitWithPrefixCache(r);
  }
  bool fresh = true;
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    if (s.seq >= 0) {
      // Reuse the longest common prefix of the cached tokens; always leave
      // at least one token to compute so there are logits to sample from.
      size_t common = 0;
      const size_t limit = std::min(s.tokens.size(), r.tokens.size() - 1);
      while (common < limit && s.tokens[common] == r.tokens[common]) ++common;
      kv_.Truncate(s.seq, static_cast<int32_t>(common));
      r.seq = s.seq;
      r.num_computed = static_cast<int32_t>(common);
      r.timings.cached_prompt_tokens = static_cast<int64_t>(common);
      fresh = false;
    }
  }
  if (r.seq < 0) r.seq = kv_.CreateSequence();
  // contiguous reserves the whole region now; paged checks that the tokens
  // it has fit and allocates as they are computed.
  const bool contiguous = config_.strategy == KvStrategy::kContiguous;
  const int32_t want = contiguous ? config_.max_seq_len : static_cast<int32_t>(r.tokens.size());
  for (;;) {
    const int32_t need = kv_.BlocksNeeded(r.seq, want);
    if (need <= kv_.num_free_blocks()) break;
    if (!EvictIdleSession()) {
      // Waiting must not hold blocks: a session's cache is dropped too
      // (its request is busy, so no eviction would ever reach it, and many
      // sessions waiting this way would hold the pool forever).
      if (!fresh) {
        Session& s = sessions_.at(*r.session);
        s.seq = -1;
        s.tokens.clear();
        r.num_computed = 0;
        r.timings.cached_prompt_tokens = 0;
      }
      kv_.FreeSequence(r.seq);
      r.seq = -1;
      return false;
    }
  }
  if (contiguous) KVINFER_CHECK(kv_.Reserve(r.seq, want));
  if (r.session) sessions_.at(*r.session).seq = r.seq;
  return true;
}

void Scheduler::ReleaseKv(Request& r) {
  if (r.seq < 0) return;
  kv_.FreeSequence(r.seq);
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    s.seq = -1;
    s.tokens.clear();
  }
  r.seq = -1;
}

void Scheduler::Preempt(Request& r, SchedulerOutput& out) {
  stats_.tokens_recomputed += r.num_computed;
  ReleaseKv(r);
  r.num_computed = 0;
  // A session's cache is gone with the sequence; the prefix cache's
  // figure stays what it was at first admission.
  if (!config_.prefix_cache) r.timings.cached_prompt_tokens = 0;
  ++stats_.num_preemptions;
  out.preempted.push_back(r.id);
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const std::unique_ptr<Request>& p) { return p.get() == &r; });
  KVINFER_CHECK(it != running_.end());
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

bool Scheduler::MakeRoom(Request& r, int32_t chunk, SchedulerOutput& out) {
  if (recompute()) {
    r.seq = kv_.CreateSequence();
    r.num_computed = 0;
  }
  const int32_t end = r.num_computed + chunk;
  for (;;) {
    if (kv_.Reserve(r.seq, end) && kv_.PrepareWrite(r.seq, r.num_computed, end, out.copies)) {
      return true;
    }
    if (EvictIdleSession()) continue;
    Request* victim = running_.back().get();
    Preempt(*victim, out);
    if (victim == &r) return false;
  }
}

int32_t Scheduler::ChunkFor(const Request& r, const SchedulerOutput& out) const {
  if (recompute()) {
    const int32_t all = static_cast<int32_t>(r.tokens.size());
    // The baseline recomputes whole sequences; one always fits so the
    // engine makes progress.
    return all <= budget_ || out.num_tokens == 0 ? all : 0;
  }
  return std::min(r.num_uncomputed(), budget_);
}

void Scheduler::AddChunk(Request& r, int32_t chunk, SchedulerOutput& out) {
  ScheduledChunk& c = out.scheduled.emplace_back();
  c.request = &r;
  c.begin = r.num_computed;
  c.num_tokens = chunk;
  if (config_.prefix_cache && !recompute()) {
    // The ids of the positions about to be written: a block is hashed from
    // them when it fills.
    kv_.SetTokenIds(r.seq, c.begin,
                    std::span<const int32_t>(r.tokens).subspan(static_cast<size_t>(c.begin),
                                                               static_cast<size_t>(chunk)));
  }
  r.num_computed += chunk;
  c.sample = r.num_computed == static_cast<int32_t>(r.tokens.size());
  out.num_tokens += chunk;
  budget_ -= chunk;
}

template <class Fn>
bool Scheduler::Guard(Request& r, SchedulerOutput& out, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const std::bad_alloc&) {
    Fail(r, "out of memory while allocating the request's KV cache blocks", out);
  } catch (const std::exception& e) {
    Fail(r, fmt::format("scheduling the request failed: {}", e.what()), out);
  }
  return false;
}

void Scheduler::Fail(Request& r, std::string reason, SchedulerOutput& out) {
  std::unique_ptr<Request> owned;
  auto is_r = [&](const std::unique_ptr<Request>& p) { return p.get() == &r; };
  if (auto it = std::find_if(running_.begin(), running_.end(), is_r); it != running_.end()) {
    owned = std::move(*it);
    running_.erase(it);
  } else if (auto w = std::find_if(waiting_.begin(), waiting_.end(), is_r); w != waiting_.end()) {
    owned = std::move(*w);
    waiting_.erase(w);
  }
  KVINFER_CHECK_MSG(owned != nullptr, "failed request {} is in no queue", r.id);
  owned->finish = FinishReason::kError;
  owned->error = std::move(reason);
  Release(*owned);
  out.finished.push_back(std::move(owned));
}

void Scheduler::Schedule(SchedulerOutput& out) {
  out.scheduled.clear();
  out.num_tokens = 0;
  out.copies.clear();
  out.preempted.clear();
  out.finished.clear();
  ReleasePinned();  // the previous step's copies are done
  ++stats_.num_steps;
  budget_ = config_.max_batch_tokens;

  // 1. Running requests, earliest admitted first; MakeRoom may preempt the
  //    latest ones (which are not scheduled yet).
  for (size_t i = 0; i < running_.size();) {
    Request& r = *running_[i];
    const int32_t chunk = ChunkFor(r, out);
    if (chunk <= 0) {
      ++i;
      continue;
    }
    bool fits = false;
    if (!Guard(r, out, [&] { fits = MakeRoom(r, chunk, out); })) continue;  // r left: i is the next
    if (!fits) break;  // r itself was preempted: it was the last
    AddChunk(r, chunk, out);
    ++i;
  }

  // 2. Admit waiting requests (preempted ones are at the front) while there
  //    is room. With the prefix cache, one whose next uncached block a
  //    running request is computing waits (it is passed over, keeping its
  //    place) and hits that block in a later step.
  const bool dedup = config_.prefix_cache && !recompute() && !kv_.whole_sequence_cache();
  pending_.clear();
  if (dedup) {
    for (const std::unique_ptr<Request>& rp : running_) AddPending(*rp);
  }
  size_t w = 0;
  while (w < waiting_.size() && static_cast<int>(running_.size()) < config_.max_seqs &&
         budget_ > 0) {
    Request& r = *waiting_[w];
    bool waits = false;
    if (dedup && !Guard(r, out, [&] { waits = WaitsForSharedPrefix(r); })) continue;
    if (waits) {
      ++w;
      continue;
    }
    bool admitted = false;
    if (!Guard(r, out, [&] { admitted = Admit(r, out); })) continue;
    const auto it = waiting_.begin() + static_cast<std::ptrdiff_t>(w);
    if (!admitted) {
      if (running_.empty()) {
        // Nothing running will free blocks, and idle sessions are gone:
        // this request can never fit.
        std::unique_ptr<Request> dead = std::move(*it);
        waiting_.erase(it);
        dead->finish = FinishReason::kKvExhausted;
        Release(*dead);
        out.finished.push_back(std::move(dead));
        continue;
      }
      break;
    }
    if (!r.scheduled) {
      r.scheduled = Clock::now();
      r.timings.queue_ms = Ms(*r.scheduled - r.added);
    }
    running_.push_back(std::move(*it));
    waiting_.erase(it);
    if (dedup) AddPending(r);
    const int32_t chunk = ChunkFor(r, out);
    if (chunk <= 0) continue;
    bool fits = false;
    if (!Guard(r, out, [&] { fits = MakeRoom(r, chunk, out); })) continue;
    if (!fits) break;
    AddChunk(r, chunk, out);
  }
  stats_.peak_running =
      std::max<int64_t>(stats_.peak_running, static_cast<int64_t>(running_.size()));
}

void Scheduler::Release(Request& r) {
  if (r.session) {
    Session& s = sessions_.at(*r.session);
    s.busy = false;
    s.last_used = stats_.num_steps;
    if (config_.prefix_cache) {
      // Nothing to keep: the turn's full blocks stay in the prefix cache.
    } else if (r.seq >= 0 && !recompute() && r.finish != FinishReason::kError) {
      s.seq = r.seq;
      s.tokens.assign(r.tokens.begin(), r.tokens.begin() + r.num_computed);
      r.seq = -1;  // now owned by the session
    } else if (r.seq >= 0 && s.seq == r.seq) {
      s.seq = -1;  // freed below
      s.tokens.clear();
    }
  }
  if (r.seq >= 0) kv_.FreeSequence(r.seq);
  r.seq = -1;
}

std::vector<std::unique_ptr<Request>> Scheduler::Update() {
  if (recompute()) {
    for (std::unique_ptr<Request>& rp : running_) {
      if (rp->seq >= 0) kv_.FreeSequence(rp->seq);
      rp->seq = -1;
      rp->num_computed = 0;
    }
  }
  std::vector<std::unique_ptr<Request>> done;
  for (size_t i = 0; i < running_.size();) {
    if (running_[i]->finish != FinishReason::kNone) {
      Release(*running_[i]);
      done.push_back(std::move(running_[i]));
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  return done;
}

std::unique_ptr<Request> Scheduler::Remove(RequestId id) {
  std::unique_ptr<Request> r;
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      r = std::move(*it);
      waiting_.erase(it);
      break;
    }
  }
  if (r == nullptr) {
    for (auto it = running_.begin(); it != running_.end(); ++it) {
      if ((*it)->id == id) {
        r = std::move(*it);
        running_.erase(it);
        break;
      }
    }
  }
  if (r != nullptr) Release(*r);
  return r;
}

}  // namespace kvinfer
