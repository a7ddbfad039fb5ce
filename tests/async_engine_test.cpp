// AsyncEngine: many threads adding, aborting and reading at once; the
// bounded waiting queue; shutdown with streams open. Outputs are checked
// against the single-threaded Engine.
#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "kvinfer/async_engine.h"
#include "kvinfer/kvinfer.h"
#include "test_util.h"

namespace kvinfer {
namespace {

using std::chrono::milliseconds;

// Long enough that only a deadlock could exceed it.
constexpr milliseconds kPatience{30000};

class AsyncEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVINFER_REQUIRE_FILE(testing::StoriesGguf());
    StatusOr<Model> m = Model::Load(testing::StoriesGguf());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::make_unique<Model>(*m);
  }

  static std::vector<int32_t> Prompt(int n, int seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> p = {1};  // BOS
    while (static_cast<int>(p.size()) < n) p.push_back(static_cast<int32_t>(3 + rng() % 500));
    return p;
  }

  std::unique_ptr<Model> model_;
};

// What one stream delivered.
struct Received {
  std::map<int, std::vector<int32_t>> tokens;  // per sample
  std::map<int, FinishReason> finish;          // per sample
  int finals = 0;                              // outputs with request_finished
  bool timed_out = false;
};

// Reads up to `max_outputs` outputs (-1: until the final one) into `r`.
void Read(RequestStream& s, Received& r, int max_outputs = -1) {
  for (int n = 0; r.finals == 0 && (max_outputs < 0 || n < max_outputs); ++n) {
    std::optional<RequestOutput> o = s.Next(kPatience);
    if (!o) {
      r.timed_out = !s.done();
      return;
    }
    auto& t = r.tokens[o->sample_index];
    t.insert(t.end(), o->new_tokens.begin(), o->new_tokens.end());
    if (o->finished) r.finish[o->sample_index] = o->finish_reason;
    if (o->request_finished) ++r.finals;
  }
}

Received ReadToEnd(RequestStream& s) {
  Received r;
  Read(s, r);
  return r;
}

TEST_F(AsyncEngineTest, SixtyFourProducersAddAndAbortAtRandom) {
  constexpr int kPrompts = 6, kThreads = 64, kPerThread = 4;
  const SamplingParams greedy{.max_tokens = 6, .ignore_eos = true};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int32_t>> expected;
  {
    auto e = Engine::Create(*model_, {.kv = {.max_seq_len = 128}, .num_threads = 1, .max_seqs = 1});
    ASSERT_TRUE(e.ok());
    for (int p = 0; p < kPrompts; ++p) {
      prompts.push_back(Prompt(5 + 7 * p, p));
      auto id = (*e)->AddRequestTokens(prompts.back(), greedy);
      ASSERT_TRUE(id.ok());
      std::vector<int32_t> toks;
      while ((*e)->HasWork()) {
        for (const RequestOutput& o : (*e)->Step()) {
          toks.insert(toks.end(), o.new_tokens.begin(), o.new_tokens.end());
        }
      }
      expected.push_back(toks);
    }
  }
  // A pool too small for 16 sequences of up to 3 blocks: preemption happens.
  // Two threads: the forward pass runs on the engine's pool as well.
  auto async = AsyncEngine::Create(*model_,
                                   {.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 16,
                                           .num_blocks = 24, .max_seq_len = 128},
                                    .num_threads = 2, .max_seqs = 16},
                                   {.max_waiting = kThreads * kPerThread});
  ASSERT_TRUE(async.ok()) << async.status().ToString();
  AsyncEngine& engine = **async;

  std::atomic<int> completed{0}, aborted{0}, failures{0};
  std::vector<std::string> errors(kThreads);
  auto fail = [&](int t, const std::string& what) {
    ++failures;
    if (errors[t].empty()) errors[t] = what;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1000 + t);
      for (int i = 0; i < kPerThread; ++i) {
        const int p = static_cast<int>(rng() % kPrompts);
        SamplingParams sp = greedy;
        sp.n = rng() % 4 == 0 ? 2 : 1;
        StatusOr<RequestStream> s = engine.AddTokens(prompts[p], sp);
        if (!s.ok()) {
          fail(t, s.status().ToString());
          continue;
        }
        Received r;
        if (rng() % 3 == 0) {
          // Read 0-2 outputs, abort (perhaps after it finished), read the rest.
          Read(*s, r, static_cast<int>(rng() % 3));
          engine.Abort(s->id());
        }
        Read(*s, r);
        if (r.timed_out) fail(t, "a stream did not end in time");
        if (r.finals != 1) fail(t, "a stream ended " + std::to_string(r.finals) + " times");
        if (s->Next(milliseconds(0)).has_value() || !s->done()) fail(t, "output after the end");
        if (static_cast<int>(r.finish.size()) != sp.n) fail(t, "a sample did not finish");
        bool was_aborted = false;
        for (const auto& [k, reason] : r.finish) was_aborted |= reason == FinishReason::kAborted;
        for (int k = 0; k < sp.n; ++k) {
          const std::vector<int32_t>& got = r.tokens[k];
          const std::vector<int32_t>& want = expected[p];
          const bool prefix = got.size() <= want.size() && std::equal(got.begin(), got.end(), want.begin());
          if (was_aborted ? !prefix : got != want) fail(t, "sample tokens differ from Engine's");
        }
        ++(was_aborted ? aborted : completed);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(errors[t].empty()) << "thread " << t << ": " << errors[t];
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(completed + aborted, kThreads * kPerThread);
  EXPECT_GT(completed.load(), 0);
  EXPECT_GT(aborted.load(), 0);
  const KvCacheStats kv = engine.KvStats();
  EXPECT_EQ(kv.num_blocks_used, 0) << "leaked blocks";
  EXPECT_EQ(kv.num_blocks_free, kv.num_blocks_total);
  const EngineStats st = engine.Stats();
  EXPECT_EQ(st.num_running, 0);
  EXPECT_EQ(st.num_waiting, 0);
  EXPECT_GT(st.peak_running, 1) << "requests from different threads should share steps";
}

TEST_F(AsyncEngineTest, AFullWaitingQueueRefusesAndShutdownEndsEveryStream) {
  auto async = AsyncEngine::Create(*model_, {.kv = {.max_seq_len = 512}, .num_threads = 1, .max_seqs = 1},
                                   {.max_waiting = 2});
  ASSERT_TRUE(async.ok());
  AsyncEngine& engine = **async;
  // Bad parameters come back from the engine thread as the engine's error.
  EXPECT_EQ(engine.AddTokens({1}, {.top_p = 2.0f}).status().code(), StatusCode::kInvalidArgument);
  // One runs (max_seqs 1) for a long time; two wait; the fourth is refused.
  const SamplingParams long_run{.max_tokens = 480, .ignore_eos = true};
  std::vector<RequestStream> streams;
  const std::vector<std::string> names = {"req-a", "req-b", "req-c"};
  for (int i = 0; i < 3; ++i) {
    StatusOr<RequestStream> s = engine.AddTokens(Prompt(10, i), long_run, {.request_id = names[i]});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(s->request_id(), names[i]);
    streams.push_back(*s);
  }
  StatusOr<RequestStream> refused = engine.AddTokens(Prompt(10, 3), long_run);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("max_waiting is 2"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(engine.Stats().num_waiting, 2);
  // A waiting request has nothing to read yet.
  EXPECT_FALSE(streams[2].Next(milliseconds(1)).has_value());
  EXPECT_FALSE(streams[2].done());

  EXPECT_TRUE(engine.Abort(streams[0].id()));
  Received first = ReadToEnd(streams[0]);
  EXPECT_EQ(first.finals, 1);
  EXPECT_EQ(first.finish[0], FinishReason::kAborted);
  EXPECT_FALSE(engine.Abort(streams[0].id())) << "already finished";

  engine.Shutdown();
  for (int i = 1; i < 3; ++i) {
    Received r = ReadToEnd(streams[i]);
    EXPECT_EQ(r.finals, 1) << i;
    EXPECT_EQ(r.finish[0], FinishReason::kAborted) << i;
    EXPECT_TRUE(streams[i].done());
  }
  EXPECT_EQ(engine.AddTokens({1}, {}).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(engine.KvStats().num_blocks_used, 0);
  engine.Shutdown();  // idempotent
}

TEST_F(AsyncEngineTest, RejectsABadQueueBound) {
  auto async = AsyncEngine::Create(*model_, {}, {.max_waiting = 0});
  ASSERT_FALSE(async.ok());
  EXPECT_NE(async.status().message().find("max_waiting"), std::string::npos);
}

}  // namespace
}  // namespace kvinfer
