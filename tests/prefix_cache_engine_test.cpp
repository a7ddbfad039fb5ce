// The prefix cache end to end on a small real model (stories260K): outputs
// are the same with the cache on and off for every strategy, under
// preemption and under eviction pressure; hits are counted and reported on
// every output; salts isolate; SHA-256 gives the same hits as XXH3; arrivals
// sharing an uncached prefix compute it once; conversations reuse earlier
// turns, and what a re-tokenized reply costs.
#include <algorithm>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "kvinfer/kvinfer.h"
#include "test_util.h"

namespace kvinfer {
namespace {

class PrefixCacheEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVINFER_REQUIRE_FILE(testing::StoriesGguf());
    StatusOr<Model> m = Model::Load(testing::StoriesGguf());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::make_unique<Model>(*m);
  }

  std::unique_ptr<Engine> MakeEngine(EngineOptions o) {
    if (o.num_threads == 0) o.num_threads = 1;
    auto e = Engine::Create(*model_, o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return std::move(e).value();
  }

  struct Run {
    std::map<RequestId, std::vector<int32_t>> tokens;
    std::map<RequestId, int64_t> cached;  // num_cached_tokens (the same on every output)
    std::map<RequestId, FinishReason> finish;
  };
  static Run Drain(Engine& e) {
    Run r;
    for (int guard = 0; e.HasWork(); ++guard) {
      EXPECT_LT(guard, 200000) << "engine does not terminate";
      if (guard >= 200000) break;
      for (const RequestOutput& o : e.Step()) {
        auto& t = r.tokens[o.id];
        t.insert(t.end(), o.new_tokens.begin(), o.new_tokens.end());
        auto [it, fresh] = r.cached.emplace(o.id, o.num_cached_tokens);
        EXPECT_EQ(it->second, o.num_cached_tokens) << "num_cached_tokens changed within request";
        if (o.finished) r.finish[o.id] = o.finish_reason;
      }
    }
    return r;
  }

  // BOS, `shared` tokens common to every prompt of one `family`, then `own`
  // tokens of the prompt's own.
  static std::vector<int32_t> Prompt(int family, int shared, int own, int seed) {
    std::mt19937 rf(static_cast<unsigned>(1000 + family));
    std::mt19937 ro(static_cast<unsigned>(seed));
    std::vector<int32_t> p = {1};
    for (int i = 0; i < shared; ++i) p.push_back(static_cast<int32_t>(3 + rf() % 500));
    for (int i = 0; i < own; ++i) p.push_back(static_cast<int32_t>(3 + ro() % 500));
    return p;
  }

  std::unique_ptr<Model> model_;
};

struct Job {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

std::vector<Job> SharedPrefixJobs(int n) {
  std::vector<Job> jobs;
  for (int i = 0; i < n; ++i) {
    const SamplingParams p{.max_tokens = 4 + (i * 5) % 17, .ignore_eos = true};
    jobs.push_back({[&] {
                      std::mt19937 rf(static_cast<unsigned>(i % 3));
                      std::vector<int32_t> t = {1};
                      const int shared = 20 + 17 * (i % 3);
                      for (int k = 0; k < shared; ++k)
                        t.push_back(static_cast<int32_t>(3 + rf() % 500));
                      std::mt19937 ro(static_cast<unsigned>(100 + i));
                      for (int k = 0; k < 3 + i % 7; ++k)
                        t.push_back(static_cast<int32_t>(3 + ro() % 500));
                      return t;
                    }(),
                    p});
  }
  return jobs;
}

// Runs `jobs` in waves (the second wave arrives after the first finished, so
// it can hit what the first cached) and returns every request's tokens.
std::vector<std::vector<int32_t>> RunWaves(Engine& e, const std::vector<Job>& jobs,
                                           std::vector<int64_t>* cached = nullptr) {
  std::vector<std::vector<int32_t>> out(jobs.size());
  const size_t half = jobs.size() / 2;
  for (size_t lo : {size_t{0}, half}) {
    const size_t hi = lo == 0 ? half : jobs.size();
    std::map<RequestId, size_t> index;
    for (size_t i = lo; i < hi; ++i) {
      auto id = e.AddRequestTokens(jobs[i].prompt, jobs[i].params);
      EXPECT_TRUE(id.ok()) << id.status().ToString();
      index[*id] = i;
    }
    while (e.HasWork()) {
      for (const RequestOutput& o : e.Step()) {
        std::vector<int32_t>& t = out[index.at(o.id)];
        t.insert(t.end(), o.new_tokens.begin(), o.new_tokens.end());
        if (cached != nullptr && o.finished) {
          cached->resize(jobs.size());
          (*cached)[index.at(o.id)] = o.num_cached_tokens;
        }
      }
    }
  }
  return out;
}

TEST_F(PrefixCacheEngineTest, GreedyOutputsAreTheSameWithTheCacheOnAndOffForEveryStrategy) {
  const std::vector<Job> jobs = SharedPrefixJobs(12);
  struct Config {
    KvStrategy strategy;
    int block_size;
    int num_blocks;  // 0 = roomy
  };
  for (const Config& c : std::vector<Config>{{KvStrategy::kNone, 16, 0},
                                             {KvStrategy::kContiguous, 16, 0},
                                             {KvStrategy::kPaged, 1, 0},
                                             {KvStrategy::kPaged, 4, 0},
                                             {KvStrategy::kPaged, 16, 0},
                                             // pressure: preemption and eviction
                                             {KvStrategy::kPaged, 4, 40},
                                             {KvStrategy::kPaged, 8, 14}}) {
    std::vector<std::vector<int32_t>> results[2];
    EngineStats stats[2];
    for (bool on : {false, true}) {
      auto e = MakeEngine({.kv = {.strategy = c.strategy,
                                  .block_size_tokens = c.block_size,
                                  .num_blocks = c.num_blocks,
                                  .max_seq_len = 128},
                           .max_seqs = 6,
                           .max_batch_tokens = 64,
                           .prefix_cache = on});
      results[on] = RunWaves(*e, jobs);
      stats[on] = e->Stats();
      EXPECT_EQ(e->KvStats().num_blocks_used, 0);
    }
    const std::string what = std::string(KvStrategyName(c.strategy)) + " block " +
                             std::to_string(c.block_size) + " blocks " +
                             std::to_string(c.num_blocks);
    for (size_t i = 0; i < jobs.size(); ++i) {
      EXPECT_EQ(results[1][i], results[0][i]) << what << " request " << i;
      EXPECT_EQ(results[1][i].size(), static_cast<size_t>(jobs[i].params.max_tokens)) << what;
    }
    EXPECT_EQ(stats[0].prefix_cache_hits, 0) << what;
    if (c.strategy == KvStrategy::kContiguous) {
      // Cached prefixes are copied into the new sequence's region.
      EXPECT_GT(stats[1].prefix_cache_hits, 0) << what;
      EXPECT_LT(stats[1].tokens_computed, stats[0].tokens_computed) << what;
    } else if (c.strategy == KvStrategy::kPaged) {
      EXPECT_GT(stats[1].prefix_cache_hits, 0) << what;
      EXPECT_LT(stats[1].tokens_computed, stats[0].tokens_computed) << what;
      if (c.num_blocks > 0 && c.num_blocks < 20) {
        EXPECT_GT(stats[1].num_preemptions + stats[0].num_preemptions, 0) << what;
        EXPECT_GT(stats[1].prefix_cache_blocks_evicted, 0) << what;
      }
    } else {
      EXPECT_EQ(stats[1].prefix_cache_hits, 0) << what << ": nothing to share";
    }
  }
}

TEST_F(PrefixCacheEngineTest, HitsAreReportedOnEveryOutputAndInTheStats) {
  auto e = MakeEngine(
      {.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 16, .max_seq_len = 256},
       .max_seqs = 4});
  const std::vector<int32_t> a = Prompt(1, 70, 5, 1);  // 76 tokens: 4 full blocks
  const SamplingParams sp{.max_tokens = 6, .ignore_eos = true};
  auto id1 = e->AddRequestTokens(a, sp);
  Run r1 = Drain(*e);
  EXPECT_EQ(r1.cached[*id1], 0);
  const KvCacheStats kv1 = e->KvStats();
  EXPECT_EQ(kv1.prefix_cache, "shared");
  EXPECT_EQ(kv1.prefix_cache_hash, "xxh3_128");
  // 76 + 5 computed tokens (the 6th sampled token is never fed): 5 full blocks.
  EXPECT_EQ(kv1.num_blocks_cached, 5);
  EXPECT_EQ(kv1.num_blocks_cached_free, 5);
  EXPECT_EQ(kv1.num_blocks_used, 0);
  // The same family with another question: 64 tokens of the shared 71 hit.
  const std::vector<int32_t> b = Prompt(1, 70, 9, 2);
  auto id2 = e->AddRequestTokens(b, sp);
  Run r2 = Drain(*e);
  EXPECT_EQ(r2.cached[*id2], 64);
  const EngineStats st = e->Stats();
  EXPECT_EQ(st.prefix_cache_queries, 76 + 80);
  EXPECT_EQ(st.prefix_cache_hits, 64);
  EXPECT_EQ(st.tokens_computed, 76 + 5 + (80 - 64) + 5);
  // The prompt itself again: all but the last block's worth is reused (the
  // last token is always computed).
  auto id3 = e->AddRequestTokens(a, sp);
  Run r3 = Drain(*e);
  EXPECT_EQ(r3.cached[*id3], 64);
  EXPECT_EQ(r3.tokens[*id3], r1.tokens[*id1]);
}

TEST_F(PrefixCacheEngineTest, DifferentSaltsShareNothingAndSha256HitsTheSame) {
  const std::vector<int32_t> p = Prompt(2, 60, 4, 1);
  const SamplingParams sp{.max_tokens = 3, .ignore_eos = true};
  for (PrefixCacheHash h : {PrefixCacheHash::kXxh3_128, PrefixCacheHash::kSha256}) {
    auto e = MakeEngine(
        {.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 8, .max_seq_len = 128},
         .max_seqs = 2,
         .prefix_cache_hash = h});
    std::vector<int64_t> cached;
    for (const char* salt : {"alice", "bob", "alice", ""}) {
      auto id = e->AddRequestTokens(p, sp, {.cache_salt = salt});
      Run r = Drain(*e);
      cached.push_back(r.cached[*id]);
    }
    EXPECT_EQ(cached, (std::vector<int64_t>{0, 0, 64, 0})) << PrefixCacheHashName(h);
    EXPECT_EQ(e->KvStats().prefix_cache_hash, PrefixCacheHashName(h));
  }
}

TEST_F(PrefixCacheEngineTest, ArrivalsSharingAnUncachedPrefixComputeItOnce) {
  const int n = 8;
  std::vector<int32_t> computed;
  std::vector<std::vector<int32_t>> outputs[2];
  for (bool on : {false, true}) {
    auto e = MakeEngine(
        {.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 16, .max_seq_len = 256},
         .max_seqs = n,
         .max_batch_tokens = 2048,
         .prefix_cache = on});
    std::vector<RequestId> ids;
    for (int i = 0; i < n; ++i) {
      ids.push_back(
          *e->AddRequestTokens(Prompt(3, 159, 10, i), {.max_tokens = 4, .ignore_eos = true}));
    }
    Run r = Drain(*e);
    for (RequestId id : ids) outputs[on].push_back(r.tokens[id]);
    computed.push_back(static_cast<int32_t>(e->Stats().tokens_computed));
    if (on) {
      // The first computes the 160 shared tokens; each other hits them.
      EXPECT_EQ(r.cached[ids[0]], 0);
      for (int i = 1; i < n; ++i) EXPECT_EQ(r.cached[ids[i]], 160) << i;
    }
  }
  EXPECT_EQ(outputs[1], outputs[0]);
  EXPECT_EQ(computed[0], n * (170 + 3));
  EXPECT_EQ(computed[1], 170 + (n - 1) * 10 + n * 3);
}

// Conversations: each turn's prompt is the previous turn's prompt, its
// reply's sampled ids and a new message. The cache reuses every full block
// of that (a finished turn's prompt and reply blocks stay cached), and many
// conversations interleaved under a small pool (sessions, cache on) give
// the outputs of plain requests with the cache off.
TEST_F(PrefixCacheEngineTest, InterleavedConversationsMatchCacheOffAndReuseEarlierTurns) {
  const int kConversations = 100;
  const int kTurns = 3;
  std::vector<std::vector<std::vector<int32_t>>> replies[2];
  int reused = 0;  // later turns that hit their conversation's earlier blocks
  EngineStats stats[2];
  for (bool on : {false, true}) {
    // 48 blocks of 8 tokens: about 4 conversations' worth.
    auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged,
                                .block_size_tokens = 8,
                                .num_blocks = 48,
                                .max_seq_len = 160},
                         .max_seqs = 8,
                         .max_batch_tokens = 96,
                         .prefix_cache = on});
    std::vector<std::vector<int32_t>> history(kConversations);
    std::vector<SessionId> session(kConversations);
    replies[on].assign(kConversations, {});
    for (int c = 0; c < kConversations; ++c) {
      session[c] = e->CreateSession();
      history[c] = Prompt(c % 7, 20, 8, c);
    }
    for (int turn = 0; turn < kTurns; ++turn) {
      std::map<RequestId, int> owner;
      // 100 conversations, 8 running at once: they interleave.
      for (int c = 0; c < kConversations; ++c) {
        const SamplingParams sp{.max_tokens = 3 + (c + turn) % 6, .ignore_eos = true};
        RequestOptions ro;
        if (on) ro.session = session[c];
        auto id = e->AddRequestTokens(history[c], sp, ro);
        ASSERT_TRUE(id.ok()) << id.status().ToString();
        owner[*id] = c;
      }
      std::map<int, std::vector<int32_t>> got;
      std::map<int, int64_t> cached;
      while (e->HasWork()) {
        for (const RequestOutput& o : e->Step()) {
          const int c = owner.at(o.id);
          got[c].insert(got[c].end(), o.new_tokens.begin(), o.new_tokens.end());
          if (o.finished) cached[c] = o.num_cached_tokens;
        }
      }
      for (int c = 0; c < kConversations; ++c) {
        if (on && turn > 0) reused += cached[c] > 0 ? 1 : 0;
        replies[on][c].push_back(got[c]);
        history[c].insert(history[c].end(), got[c].begin(), got[c].end());
        const std::vector<int32_t> msg = Prompt(50, 0, 5, 1000 * turn + c);
        history[c].insert(history[c].end(), msg.begin() + 1, msg.end());
      }
    }
    stats[on] = e->Stats();
    EXPECT_EQ(e->KvStats().num_blocks_used, 0);
  }
  EXPECT_EQ(replies[1], replies[0]);
  EXPECT_GT(stats[1].prefix_cache_hits, 0);
  EXPECT_GT(stats[1].prefix_cache_blocks_evicted, 0) << "the pool is too small to keep everything";
  EXPECT_GT(reused, 0);
}

TEST_F(PrefixCacheEngineTest, ASessionsNextTurnPrefillsOnlyItsNewTokensAndOneBlock) {
  auto e = MakeEngine(
      {.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 16, .max_seq_len = 512},
       .max_seqs = 2});
  const SessionId s = e->CreateSession();
  std::vector<int32_t> history = Prompt(4, 30, 10, 1);
  const SamplingParams sp{.max_tokens = 12, .ignore_eos = true};
  for (int turn = 0; turn < 6; ++turn) {
    const int64_t before = e->Stats().tokens_computed;
    auto id = e->AddRequestTokens(history, sp, {.session = s});
    ASSERT_TRUE(id.ok());
    Run r = Drain(*e);
    const int64_t prefilled = static_cast<int64_t>(history.size()) - r.cached[*id];
    if (turn > 0) {
      // New message (8) + the previous reply's last sampled token (never fed)
      // + what was in the previous turn's partial last block (< 16).
      EXPECT_LE(prefilled, 8 + 1 + 15) << "turn " << turn;
    }
    EXPECT_EQ(e->Stats().tokens_computed - before, prefilled + 11);
    history.insert(history.end(), r.tokens[*id].begin(), r.tokens[*id].end());
    const std::vector<int32_t> msg = Prompt(60, 0, 8, turn);
    history.insert(history.end(), msg.begin() + 1, msg.end());
  }
}

// A chat template renders a reply as text, and re-tokenizing that text may
// give other ids than the sampled ones ("Hel"+"lo" sampled, "Hello"
// re-tokenized). The chain then leaves the cache at the first block holding
// a changed id: everything before it is still reused, everything from it on
// is recomputed (which is why `kvinfer chat` appends the sampled ids
// instead of re-tokenizing the reply).
TEST_F(PrefixCacheEngineTest, AReTokenizedReplyIsReusedUpToItsFirstChangedBlock) {
  auto e = MakeEngine(
      {.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 8, .max_seq_len = 256},
       .max_seqs = 2});
  const std::vector<int32_t> prompt = Prompt(5, 39, 0, 1);  // 40 tokens: 5 full blocks
  const SamplingParams sp{.max_tokens = 25, .ignore_eos = true};
  auto id1 = e->AddRequestTokens(prompt, sp);
  Run r1 = Drain(*e);
  const std::vector<int32_t>& reply = r1.tokens[*id1];
  ASSERT_EQ(reply.size(), 25u);
  const std::vector<int32_t> msg = Prompt(61, 0, 6, 1);
  // As sampled: 40 + 24 computed reply tokens = 8 full blocks cached.
  std::vector<int32_t> exact = prompt;
  exact.insert(exact.end(), reply.begin(), reply.end());
  exact.insert(exact.end(), msg.begin() + 1, msg.end());
  auto id2 = e->AddRequestTokens(exact, sp);
  EXPECT_EQ(Drain(*e).cached[*id2], 64);
  // Re-tokenized differently at reply token 13 (prompt position 53, block 6):
  // blocks 0-5 (48 tokens) still hit.
  std::vector<int32_t> retokenized = exact;
  retokenized[40 + 13] = retokenized[40 + 13] == 7 ? 8 : 7;
  auto id3 = e->AddRequestTokens(retokenized, sp);
  EXPECT_EQ(Drain(*e).cached[*id3], 48);
}

// Two regions: the cached prefix is copied into the new one. One region:
// there is no room for a copy, and the cached region itself is reused.
TEST_F(PrefixCacheEngineTest, ContiguousCopiesTheLongestCachedPrefixIntoItsRegion) {
  for (const auto& [regions, precision] :
       std::vector<std::pair<int, KvPrecision>>{{2, KvPrecision::kF32},
                                                {2, KvPrecision::kQ8_0},
                                                {1, KvPrecision::kF32},
                                                {1, KvPrecision::kQ8_0}}) {
    std::map<bool, std::vector<std::vector<int32_t>>> outs;
    for (bool on : {false, true}) {
      auto e = MakeEngine(
          {.kv = {.strategy = KvStrategy::kContiguous, .precision = precision, .max_seq_len = 128},
           .max_seqs = regions,
           .prefix_cache = on});
      const SessionId s = e->CreateSession();
      std::vector<int32_t> history = Prompt(7, 30, 5, 1);
      const SamplingParams sp{.max_tokens = 9, .ignore_eos = true};
      for (int turn = 0; turn < 4; ++turn) {
        auto id = e->AddRequestTokens(history, sp, {.session = s});
        ASSERT_TRUE(id.ok());
        Run r = Drain(*e);
        outs[on].push_back(r.tokens[*id]);
        if (on && turn > 0) {
          // Token granular: everything computed before (the last sampled
          // token was never fed) is copied.
          EXPECT_EQ(r.cached[*id], static_cast<int64_t>(history.size()) - 6 - 1) << turn;
        }
        history.insert(history.end(), r.tokens[*id].begin(), r.tokens[*id].end());
        const std::vector<int32_t> msg = Prompt(70, 0, 6, turn);
        history.insert(history.end(), msg.begin() + 1, msg.end());
      }
      const KvCacheStats kv = e->KvStats();
      EXPECT_EQ(kv.prefix_cache, on ? "copied" : "off");
      // The session holds nothing with the cache (its turns are cached),
      // its sequence without.
      EXPECT_EQ(kv.num_blocks_used, on ? 0 : 1);
    }
    EXPECT_EQ(outs[true], outs[false]) << KvPrecisionName(precision) << " " << regions;
  }
}

// Conversations A, B, A within a pool that holds two: the third request
// reuses at least 95% of A's prompt. Then C: the least recently used
// blocks (B's, tail first) are evicted, A's survive.
TEST_F(PrefixCacheEngineTest, ConversationsABAReuseAAndEvictionTakesTheLeastRecentlyUsed) {
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged,
                              .block_size_tokens = 16,
                              .num_blocks = 28,
                              .max_seq_len = 256},
                       .max_seqs = 1});
  const SamplingParams sp{.max_tokens = 4, .ignore_eos = true};
  auto turn = [&](std::vector<int32_t>& history, int seed) {
    auto id = e->AddRequestTokens(history, sp);
    EXPECT_TRUE(id.ok());
    Run r = Drain(*e);
    const int64_t cached = r.cached[*id];
    history.insert(history.end(), r.tokens[*id].begin(), r.tokens[*id].end());
    const std::vector<int32_t> msg = Prompt(80, 0, 10, seed);
    history.insert(history.end(), msg.begin() + 1, msg.end());
    return cached;
  };
  std::vector<int32_t> a = Prompt(11, 190, 9, 1), b = Prompt(12, 190, 9, 2),
                       c = Prompt(13, 190, 9, 3);
  EXPECT_EQ(turn(a, 1), 0);
  EXPECT_EQ(turn(b, 2), 0);
  EXPECT_GE(turn(a, 3), 190) << "at least 95% of A's 200-token prompt";
  EXPECT_EQ(turn(c, 4), 0);
  EXPECT_GT(e->Stats().prefix_cache_blocks_evicted, 0);
  EXPECT_GE(turn(a, 5), 200) << "A's blocks were used more recently than B's";
  EXPECT_LE(turn(b, 6), 32) << "B's blocks were evicted, tail first";
}

}  // namespace
}  // namespace kvinfer
