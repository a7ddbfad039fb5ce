// The scheduler with fake requests and a KvManager, no model and no K/V
// bytes: admission order, the chunked-prefill token budget, the preemption
// victim, idle-session eviction, requests that can never fit, and the
// `none` and `contiguous` strategies.
#include <memory>
#include <random>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/scheduler.h"
#include "kv/kv_manager.h"

namespace kvinfer {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A request of prompt length n (token ids 1..n) that finishes after
// `max_tokens` generated tokens.
std::unique_ptr<Request> Fake(RequestId id, int32_t n, int max_tokens = 100,
                              std::optional<SessionId> session = std::nullopt) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  auto r = std::make_unique<Request>(p);
  r->id = id;
  r->session = session;
  for (int32_t i = 0; i < n; ++i) r->tokens.push_back(i + 1);
  r->num_prompt = n;
  return r;
}

// "id:[begin,end)" per scheduled chunk, "*" when its last position is sampled.
std::vector<std::string> Chunks(const SchedulerOutput& out) {
  std::vector<std::string> s;
  for (const ScheduledChunk& c : out.scheduled) {
    s.push_back(std::to_string(c.request->id) + ":[" + std::to_string(c.begin) + "," +
                std::to_string(c.begin + c.num_tokens) + ")" + (c.sample ? "*" : ""));
  }
  return s;
}

template <class Container>
std::vector<RequestId> Ids(const Container& rs) {
  std::vector<RequestId> ids;
  for (const auto& r : rs) ids.push_back(r->id);
  return ids;
}

std::vector<int32_t> Table(const KvManager& kv, const Request& r) {
  return {kv.block_table(r.seq).begin(), kv.block_table(r.seq).end()};
}

const Request& Running(const Scheduler& s, RequestId id) {
  for (const auto& r : s.running()) {
    if (r->id == id) return *r;
  }
  ADD_FAILURE() << "request " << id << " is not running";
  return *s.running().front();
}

// Plays the forward pass and the sampler for one step: the scheduled
// positions become cached, a sampled request gains a token (and finishes
// at max_tokens). Returns the requests Update retired.
std::vector<std::unique_ptr<Request>> PlayStep(Scheduler& s, KvManager& kv,
                                               const SchedulerOutput& out) {
  for (const ScheduledChunk& c : out.scheduled) {
    Request& r = *c.request;
    kv.SetNumTokens(r.seq, c.begin + c.num_tokens);
    if (!c.sample) continue;
    r.tokens.push_back(1000 + r.num_generated);
    if (++r.num_generated >= r.params.max_tokens) r.finish = FinishReason::kLength;
  }
  return s.Update();
}

SchedulerConfig Config(KvStrategy strategy, int max_seqs, int32_t budget, int32_t max_seq_len = 64) {
  return {.strategy = strategy,
          .max_seqs = max_seqs,
          .max_batch_tokens = budget,
          .max_seq_len = max_seq_len};
}

TEST(Scheduler, AdmitsInArrivalOrderUpToMaxSeqs) {
  KvManager kv(4, 16);
  Scheduler s(Config(KvStrategy::kPaged, 2, 100), kv);
  s.Add(Fake(1, 3, /*max_tokens=*/1));
  s.Add(Fake(2, 2));
  s.Add(Fake(3, 4));
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[0,3)*", "2:[0,2)*"));
  EXPECT_THAT(Ids(s.running()), ElementsAre(1, 2));
  EXPECT_THAT(Ids(s.waiting()), ElementsAre(3));
  // 1 finishes after its first token; 3 takes its place behind 2.
  EXPECT_THAT(Ids(PlayStep(s, kv, out)), ElementsAre(1));
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("2:[2,3)*", "3:[0,4)*"));
  EXPECT_THAT(Ids(s.running()), ElementsAre(2, 3));
  EXPECT_THAT(Ids(s.waiting()), IsEmpty());
  EXPECT_EQ(s.stats().num_steps, 2);
  EXPECT_EQ(s.stats().peak_running, 2);
}

TEST(Scheduler, ChunkedPrefillStaysWithinTheTokenBudget) {
  KvManager kv(4, 16);
  Scheduler s(Config(KvStrategy::kPaged, 4, 8), kv);
  s.Add(Fake(1, 5));
  s.Add(Fake(2, 6));
  s.Add(Fake(3, 4));
  // 1's prompt whole, 2's first 3 tokens (no sample yet); the budget is
  // spent, so 3 is not admitted.
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[0,5)*", "2:[0,3)"));
  EXPECT_EQ(out.num_tokens, 8);
  EXPECT_THAT(Ids(s.waiting()), ElementsAre(3));
  PlayStep(s, kv, out);
  // 1 decodes, 2 finishes its prompt, 3 gets the 4 tokens left.
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[5,6)*", "2:[3,6)*", "3:[0,4)*"));
  EXPECT_EQ(out.num_tokens, 8);
  PlayStep(s, kv, out);
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[6,7)*", "2:[6,7)*", "3:[4,5)*"));
  EXPECT_EQ(Table(kv, Running(s, 1)), (std::vector<int32_t>{0, 1}));
}

TEST(Scheduler, PreemptsTheMostRecentlyAdmittedRequest) {
  // 4 blocks of 4 tokens; three 4-token prompts take one block each.
  KvManager kv(4, 4);
  Scheduler s(Config(KvStrategy::kPaged, 3, 100), kv);
  s.Add(Fake(1, 4));
  s.Add(Fake(2, 4));
  s.Add(Fake(3, 4));
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[0,4)*", "2:[0,4)*", "3:[0,4)*"));
  PlayStep(s, kv, out);
  // Each now needs a second block; 1 takes the last free one, 2 gets 3's
  // block by preempting 3 (admitted last), which waits at the front.
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[4,5)*", "2:[4,5)*"));
  EXPECT_THAT(out.preempted, ElementsAre(3));
  EXPECT_THAT(Ids(s.running()), ElementsAre(1, 2));
  EXPECT_THAT(Ids(s.waiting()), ElementsAre(3));
  EXPECT_EQ(Table(kv, Running(s, 1)), (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(Table(kv, Running(s, 2)), (std::vector<int32_t>{1, 2}));
  const Request& preempted = *s.waiting().front();
  EXPECT_EQ(preempted.seq, -1);
  EXPECT_EQ(preempted.num_computed, 0);
  EXPECT_EQ(preempted.tokens.size(), 5u);  // its sampled token is kept, to recompute
  EXPECT_EQ(s.stats().num_preemptions, 1);
  EXPECT_EQ(kv.num_free_blocks(), 0);
}

TEST(Scheduler, PreemptsItselfWhenItIsTheLast) {
  KvManager kv(4, 2);
  Scheduler s(Config(KvStrategy::kPaged, 2, 100), kv);
  s.Add(Fake(1, 3));
  s.Add(Fake(2, 4));
  PlayStep(s, kv, s.Schedule());
  // 1's next position still fits its block; 2 needs a second block, and
  // with none free and no one after it, 2 preempts itself. It cannot be
  // admitted again (its 5 tokens need 2 blocks, 1 is free).
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[3,4)*"));
  EXPECT_THAT(out.preempted, ElementsAre(2));
  EXPECT_THAT(Ids(s.running()), ElementsAre(1));
  EXPECT_THAT(Ids(s.waiting()), ElementsAre(2));
  EXPECT_EQ(kv.num_free_blocks(), 1);
}

TEST(Scheduler, EvictsIdleSessionsBeforePreempting) {
  KvManager kv(4, 3);
  Scheduler s(Config(KvStrategy::kPaged, 4, 100), kv);
  const SessionId sid = s.CreateSession();
  s.FindSession(sid)->busy = true;
  s.Add(Fake(1, 4, /*max_tokens=*/1, sid));
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Ids(PlayStep(s, kv, out)), ElementsAre(1));
  // The session keeps block 0 with the 4 computed tokens.
  const Session& session = *s.FindSession(sid);
  EXPECT_FALSE(session.busy);
  EXPECT_EQ(session.seq, 0);
  EXPECT_THAT(session.tokens, ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(kv.num_free_blocks(), 2);
  // 8 tokens take the 2 free blocks; 4 more need the session's block.
  s.Add(Fake(2, 8));
  s.Add(Fake(3, 4));
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("2:[0,8)*", "3:[0,4)*"));
  EXPECT_EQ(s.FindSession(sid)->seq, -1);
  EXPECT_EQ(s.stats().num_session_evictions, 1);
  EXPECT_EQ(s.stats().num_preemptions, 0);
  EXPECT_EQ(Table(kv, Running(s, 3)), (std::vector<int32_t>{0}));
}

TEST(Scheduler, SessionReusesTheCommonPrefix) {
  KvManager kv(4, 8);
  Scheduler s(Config(KvStrategy::kPaged, 4, 100), kv);
  const SessionId sid = s.CreateSession();
  s.FindSession(sid)->busy = true;
  s.Add(Fake(1, 6, 1, sid));
  PlayStep(s, kv, s.Schedule());
  s.FindSession(sid)->busy = true;
  auto next = Fake(2, 9, 1, sid);  // shares tokens 1..6 with the session
  s.Add(std::move(next));
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("2:[6,9)*"));
  EXPECT_EQ(Running(s, 2).timings.cached_prompt_tokens, 6);
}

TEST(Scheduler, RequestThatCanNeverFitFinishesWithKvExhausted) {
  KvManager kv(4, 2);
  Scheduler s(Config(KvStrategy::kPaged, 4, 100), kv);
  s.Add(Fake(1, 9));  // 3 blocks > 2
  s.Add(Fake(2, 3));
  SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.finished.size(), 1u);
  EXPECT_EQ(out.finished[0]->id, 1u);
  EXPECT_EQ(out.finished[0]->finish, FinishReason::kKvExhausted);
  EXPECT_EQ(out.finished[0]->seq, -1);
  EXPECT_THAT(Chunks(out), ElementsAre("2:[0,3)*"));
  EXPECT_EQ(kv.num_free_blocks(), 1);
}

TEST(Scheduler, NoneRecomputesWholeSequencesEachStep) {
  KvManager kv(64, 2);
  Scheduler s(Config(KvStrategy::kNone, 4, 10, 64), kv);
  s.Add(Fake(1, 4));
  s.Add(Fake(2, 5));
  s.Add(Fake(3, 3));
  // 4 + 5 fit the budget of 10; 3's 3 tokens do not and wait (admitted).
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[0,4)*", "2:[0,5)*"));
  EXPECT_THAT(Ids(s.running()), ElementsAre(1, 2, 3));
  PlayStep(s, kv, out);
  EXPECT_EQ(kv.num_sequences(), 0);  // K/V live only within a step
  EXPECT_EQ(kv.num_free_blocks(), 2);
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[0,5)*", "3:[0,3)*"));
}

TEST(Scheduler, ContiguousReservesMaxSeqLenOnAdmission) {
  KvManager kv(16, 2);
  Scheduler s(Config(KvStrategy::kContiguous, 4, 100, 16), kv);
  s.Add(Fake(1, 3));
  s.Add(Fake(2, 3));
  s.Add(Fake(3, 3));
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[0,3)*", "2:[0,3)*"));
  EXPECT_EQ(kv.capacity_tokens(Running(s, 1).seq), 16);
  EXPECT_THAT(Ids(s.waiting()), ElementsAre(3));
}

TEST(Scheduler, ForkedSampleSharesBlocksAndIsPreemptedFirst) {
  KvManager kv(4, 3);
  Scheduler s(Config(KvStrategy::kPaged, 4, 100), kv);
  s.Add(Fake(1, 4));
  SchedulerOutput out = s.Schedule();
  PlayStep(s, kv, out);
  Request& parent = const_cast<Request&>(Running(s, 1));
  auto child = Fake(2, 0);
  child->tokens = parent.tokens;
  child->num_computed = parent.num_computed;
  child->seq = kv.Fork(parent.seq);
  s.AddRunning(std::move(child));
  EXPECT_EQ(kv.pool().ref_count(0), 2);
  // Both write position 4 (block 1 each: no copy of the shared block 0).
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[4,5)*", "2:[4,5)*"));
  EXPECT_TRUE(out.copies.empty());
  EXPECT_EQ(Table(kv, Running(s, 1)), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(Table(kv, Running(s, 2)), (std::vector<int32_t>{0, 2}));
  PlayStep(s, kv, out);
  for (int i = 0; i < 3; ++i) PlayStep(s, kv, s.Schedule());  // positions 5, 6, 7
  // Position 8 needs a third block each; only the fork (last) can yield.
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[8,9)*"));
  EXPECT_THAT(out.preempted, ElementsAre(2));
}

TEST(Scheduler, RemoveReleasesTheKv) {
  KvManager kv(4, 4);
  Scheduler s(Config(KvStrategy::kPaged, 4, 100), kv);
  s.Add(Fake(1, 8));
  s.Add(Fake(2, 4));
  PlayStep(s, kv, s.Schedule());
  EXPECT_EQ(kv.num_free_blocks(), 1);
  std::unique_ptr<Request> r = s.Remove(1);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->seq, -1);
  EXPECT_EQ(kv.num_free_blocks(), 3);
  EXPECT_EQ(s.Remove(1), nullptr);
  EXPECT_THAT(Ids(s.running()), ElementsAre(2));
}

TEST(Scheduler, AFailedAllocationEndsOnlyThatRequest) {
  KvManager kv(4, 8);
  Scheduler s(Config(KvStrategy::kPaged, 4, 100), kv);
  s.Add(Fake(1, 4));
  s.Add(Fake(2, 4));
  s.Add(Fake(3, 4));
  PlayStep(s, kv, s.Schedule());
  EXPECT_EQ(kv.num_free_blocks(), 5);
  // 2's next block allocation fails as memory would (once: 4 reuses the
  // sequence id that 2 frees).
  const int32_t seq2 = Running(s, 2).seq;
  bool failed_once = false;
  kv.SetAllocateHookForTest([&](int32_t seq) {
    if (seq == seq2 && !failed_once) {
      failed_once = true;
      throw std::bad_alloc();
    }
  });
  s.Add(Fake(4, 4));
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[4,5)*", "3:[4,5)*", "4:[0,4)*"));
  ASSERT_EQ(out.finished.size(), 1u);
  const Request& failed = *out.finished[0];
  EXPECT_EQ(failed.id, 2u);
  EXPECT_EQ(failed.finish, FinishReason::kError);
  EXPECT_THAT(failed.error, ::testing::HasSubstr("out of memory"));
  EXPECT_EQ(failed.seq, -1);
  EXPECT_THAT(Ids(s.running()), ElementsAre(1, 3, 4));
  // 2's block is free again: 8 - (1 and 3: two each) - (4: one).
  EXPECT_EQ(kv.num_free_blocks(), 3);
  EXPECT_EQ(kv.num_sequences(), 3);
}

TEST(Scheduler, AFailedSessionRequestDropsTheSessionsCache) {
  KvManager kv(4, 8);
  Scheduler s(Config(KvStrategy::kPaged, 4, 100), kv);
  const SessionId sid = s.CreateSession();
  s.FindSession(sid)->busy = true;
  s.Add(Fake(1, 4, 1, sid));
  PlayStep(s, kv, s.Schedule());
  ASSERT_GE(s.FindSession(sid)->seq, 0);
  s.FindSession(sid)->busy = true;
  s.Add(Fake(2, 9, 1, sid));
  kv.SetAllocateHookForTest([](int32_t) { throw std::bad_alloc(); });
  SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.finished.size(), 1u);
  EXPECT_EQ(out.finished[0]->finish, FinishReason::kError);
  EXPECT_EQ(s.FindSession(sid)->seq, -1);
  EXPECT_FALSE(s.FindSession(sid)->busy);
  EXPECT_EQ(kv.num_free_blocks(), 8);
  EXPECT_EQ(kv.num_sequences(), 0);
}


// ---------------------------------------------------------------- prefix cache

SchedulerConfig PrefixConfig(int max_seqs, int32_t budget) {
  SchedulerConfig c = Config(KvStrategy::kPaged, max_seqs, budget);
  c.prefix_cache = true;
  return c;
}

// A request whose prompt is `shared` tokens 1..shared, then `own` tokens of
// its own (ids 500 + 10 * id + i).
std::unique_ptr<Request> Sharing(RequestId id, int32_t shared, int32_t own, int max_tokens = 100) {
  auto r = Fake(id, shared, max_tokens);
  for (int32_t i = 0; i < own; ++i) r->tokens.push_back(500 + 10 * static_cast<int32_t>(id) + i);
  r->num_prompt = shared + own;
  return r;
}

TEST(SchedulerPrefixCache, ArrivalsSharingAnUncachedPrefixComputeItOnce) {
  KvManager kv(4, 32);
  kv.EnablePrefixCache({.extra_keys = {"test"}});
  Scheduler s(PrefixConfig(4, 100), kv);
  for (RequestId id = 1; id <= 3; ++id) s.Add(Sharing(id, 12, 2));
  // 1 computes the shared 12 tokens; 2 and 3 wait for them (not for room:
  // the budget and the pool would take all three).
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[0,14)*"));
  EXPECT_THAT(Ids(s.waiting()), ElementsAre(2, 3));
  PlayStep(s, kv, out);
  // Now 2 and 3 hit 1's three full blocks and compute only their own two.
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("1:[14,15)*", "2:[12,14)*", "3:[12,14)*"));
  const Request& r1 = Running(s, 1);
  const Request& r2 = Running(s, 2);
  const Request& r3 = Running(s, 3);
  EXPECT_EQ(Table(kv, r2)[0], Table(kv, r1)[0]);
  EXPECT_EQ(Table(kv, r3)[2], Table(kv, r1)[2]);
  EXPECT_EQ(kv.pool().ref_count(Table(kv, r1)[0]), 3);
  EXPECT_EQ(r2.timings.cached_prompt_tokens, 12);
  EXPECT_EQ(r1.timings.cached_prompt_tokens, 0);
  // Queries count every admitted token, hits the cached ones.
  EXPECT_EQ(kv.prefix_counters().queries, 3 * 14);
  EXPECT_EQ(kv.prefix_counters().hits, 2 * 12);
  EXPECT_EQ(kv.CheckInvariants(), "");
}

TEST(SchedulerPrefixCache, ARequestWithNothingSharedIsNotHeldBack) {
  KvManager kv(4, 32);
  kv.EnablePrefixCache({.extra_keys = {"test"}});
  Scheduler s(PrefixConfig(4, 100), kv);
  s.Add(Sharing(1, 12, 2));
  s.Add(Fake(2, 3));  // shares tokens 1..3 but no full block it could hit
  auto other = Fake(3, 9);
  for (int32_t& t : other->tokens) t += 200;
  s.Add(std::move(other));
  EXPECT_THAT(Chunks(s.Schedule()), ElementsAre("1:[0,14)*", "2:[0,3)*", "3:[0,9)*"));
}

TEST(SchedulerPrefixCache, AFinishedRequestsBlocksServeTheNextAndEvictionFreesThem) {
  KvManager kv(4, 6);
  kv.EnablePrefixCache({.extra_keys = {"test"}});
  Scheduler s(PrefixConfig(4, 100), kv);
  s.Add(Sharing(1, 12, 2, /*max_tokens=*/3));
  for (int i = 0; i < 3; ++i) PlayStep(s, kv, s.Schedule());
  ASSERT_FALSE(s.HasRequests());
  // 16 tokens computed (14 + 2 generated): four full blocks cached, free.
  EXPECT_EQ(kv.num_blocks_cached(), 4);
  EXPECT_EQ(kv.pool().num_cached_free(), 4);
  EXPECT_EQ(kv.num_free_blocks(), 6);
  // A session-less follow-up that extends the whole first exchange hits all
  // four blocks (prompt and generated tokens alike).
  auto next = Sharing(1, 12, 2);
  next->id = 2;
  next->tokens.push_back(1000);
  next->tokens.push_back(1001);
  next->tokens.push_back(7);
  next->num_prompt = 17;
  s.Add(std::move(next));
  SchedulerOutput out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("2:[16,17)*"));
  PlayStep(s, kv, out);
  // A request of six new blocks waits: 2 holds five of the six.
  auto big = Fake(3, 24, 1);
  for (int32_t& t : big->tokens) t += 300;
  s.Add(std::move(big));
  out = s.Schedule();
  EXPECT_THAT(Chunks(out), ElementsAre("2:[17,18)*"));
  EXPECT_THAT(Ids(s.waiting()), ElementsAre(3));
  EXPECT_EQ(kv.CheckInvariants(), "");
}

// Random arrivals sharing a few prefixes, with sessions, aborts and a pool
// small enough to preempt and evict: every step keeps the KV manager's
// invariants, and after the drain every block is free (blank or cached).
TEST(SchedulerPrefixCache, RandomWorkloadsKeepInvariantsAndDrainToFreeBlocks) {
  for (unsigned seed : {1u, 2u, 3u}) {
    std::mt19937 rng(seed);
    KvManager kv(4, 16);
    kv.EnablePrefixCache({.extra_keys = {"test"}});
    Scheduler s(PrefixConfig(5, 24), kv);
    RequestId next = 1;
    std::vector<SessionId> sessions = {s.CreateSession(), s.CreateSession()};
    for (int step = 0; step < 400; ++step) {
      if (rng() % 2 == 0 && next < 150) {
        const int32_t shared = 4 * static_cast<int32_t>(rng() % 4) + static_cast<int32_t>(rng() % 3);
        auto r = Sharing(next, shared, 1 + static_cast<int32_t>(rng() % 6),
                         1 + static_cast<int>(rng() % 24));
        for (int32_t& t : r->tokens) t += 1000 * static_cast<int32_t>(rng() % 2);  // two families
        const SessionId sid = sessions[rng() % sessions.size()];
        if (rng() % 4 == 0 && !s.FindSession(sid)->busy) {
          s.FindSession(sid)->busy = true;
          r->session = sid;
        }
        s.Add(std::move(r));
        ++next;
      }
      if (rng() % 17 == 0 && next > 1) s.Remove(1 + static_cast<RequestId>(rng() % (next - 1)));
      SchedulerOutput out = s.Schedule();
      ASSERT_EQ(kv.CheckInvariants(), "") << "seed " << seed << " step " << step;
      PlayStep(s, kv, out);
      ASSERT_EQ(kv.CheckInvariants(), "") << "seed " << seed << " step " << step;
    }
    for (int guard = 0; s.HasRequests() && guard < 2000; ++guard) PlayStep(s, kv, s.Schedule());
    s.ReleasePinned();
    EXPECT_FALSE(s.HasRequests());
    EXPECT_EQ(kv.CheckInvariants(), "");
    EXPECT_EQ(kv.num_sequences(), 0);
    EXPECT_EQ(kv.num_free_blocks(), kv.num_blocks()) << "no block leaks";
    EXPECT_EQ(kv.pool().num_cached_free(), kv.num_blocks_cached());
    EXPECT_GT(kv.prefix_counters().hits, 0);
    EXPECT_GT(kv.prefix_counters().blocks_evicted, 0);
    EXPECT_GT(s.stats().num_preemptions, 0);
  }
}

}  // namespace
}  // namespace kvinfer
