// The engine's scheduling and KV behaviour end to end on a small real model:
// batching, chunked prefill, preemption, forks with copy-on-write, sessions,
// aborts — each checked against running the same requests one at a time.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "engine/model_access.h"
#include "forward_util.h"
#include "io/gguf_writer.h"
#include "kvinfer/kvinfer.h"
#include "test_util.h"

namespace kvinfer {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVINFER_REQUIRE_FILE(testing::StoriesGguf());
    StatusOr<Model> m = Model::Load(testing::StoriesGguf());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::make_unique<Model>(*m);
  }

  std::unique_ptr<Engine> MakeEngine(EngineOptions o) {
    // One thread: the model is tiny, so a second thread would only add
    // synchronisation (threading is exercised in BatchedOutputsEqualOneAtATime).
    if (o.num_threads == 0) o.num_threads = 1;
    auto e = Engine::Create(*model_, o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return std::move(e).value();
  }

  // Runs everything; returns tokens, text and finish reasons per request id
  // (of sample 0) and per (request id, sample index).
  struct Result {
    std::map<RequestId, std::vector<int32_t>> tokens;
    std::map<RequestId, FinishReason> finish;
    std::map<RequestId, std::string> text;
    std::map<std::pair<RequestId, int>, std::vector<int32_t>> sample_tokens;
    std::map<std::pair<RequestId, int>, FinishReason> sample_finish;
    std::map<RequestId, int> requests_finished;  // outputs with request_finished, per id
  };
  static Result Drain(Engine& e, const std::function<void(const KvCacheStats&)>& each_step = {}) {
    Result r;
    int guard = 0;
    while (e.HasWork()) {
      for (const RequestOutput& o : e.Step()) {
        auto& s = r.sample_tokens[{o.id, o.sample_index}];
        s.insert(s.end(), o.new_tokens.begin(), o.new_tokens.end());
        if (o.finished) r.sample_finish[{o.id, o.sample_index}] = o.finish_reason;
        if (o.request_finished) ++r.requests_finished[o.id];
        if (o.sample_index != 0) continue;
        auto& t = r.tokens[o.id];
        t.insert(t.end(), o.new_tokens.begin(), o.new_tokens.end());
        r.text[o.id] += o.text_delta;
        if (o.finished) r.finish[o.id] = o.finish_reason;
      }
      if (each_step) each_step(e.KvStats());
      EXPECT_LT(++guard, 100000) << "engine does not terminate";
      if (guard >= 100000) break;
    }
    return r;
  }

  std::vector<int32_t> Prompt(int n, int seed) const {
    std::mt19937 rng(seed);
    std::vector<int32_t> p = {1};  // BOS
    while (static_cast<int>(p.size()) < n) p.push_back(static_cast<int32_t>(3 + rng() % 500));
    return p;
  }

  // Tokens of one request run alone.
  std::vector<int32_t> Alone(const std::vector<int32_t>& prompt, const SamplingParams& sp,
                             KvStrategy strategy = KvStrategy::kContiguous) {
    auto e = MakeEngine({.kv = {.strategy = strategy, .max_seq_len = 512}, .max_seqs = 1});
    auto id = e->AddRequestTokens(prompt, sp);
    EXPECT_TRUE(id.ok());
    return Drain(*e).tokens[*id];
  }

  std::unique_ptr<Model> model_;
};

struct Job {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

std::vector<Job> MixedJobs(int n, const std::function<std::vector<int32_t>(int, int)>& prompt) {
  std::vector<Job> jobs;
  for (int i = 0; i < n; ++i) {
    SamplingParams p{.max_tokens = 5 + (i * 7) % 40, .ignore_eos = true};
    if (i % 3 == 1) {
      p.temperature = 0.8f;
      p.top_k = 40;
      p.seed = 100 + i;
    }
    jobs.push_back({prompt(3 + (i * 13) % 60, i), p});
  }
  return jobs;
}

TEST_F(EngineTest, BatchedOutputsEqualOneAtATime) {
  const std::vector<Job> jobs = MixedJobs(10, [&](int n, int s) { return Prompt(n, s); });
  for (KvStrategy strategy : {KvStrategy::kContiguous, KvStrategy::kPaged}) {
    auto e = MakeEngine({.kv = {.strategy = strategy, .max_seq_len = 512}, .num_threads = 2, .max_seqs = 16});
    std::vector<RequestId> ids;
    for (const Job& j : jobs) ids.push_back(*e->AddRequestTokens(j.prompt, j.params));
    int64_t max_running = 0;
    Result r = Drain(*e, [&](const KvCacheStats& st) { max_running = std::max(max_running, st.num_sequences); });
    EXPECT_GT(e->Stats().peak_running, 1) << "requests should run together";
    EXPECT_GT(max_running, 1) << "sequences should hold KV blocks together";
    EXPECT_LE(max_running, e->Stats().peak_running);
    for (size_t i = 0; i < jobs.size(); ++i) {
      EXPECT_EQ(r.tokens[ids[i]], Alone(jobs[i].prompt, jobs[i].params))
          << KvStrategyName(strategy) << " request " << i;
      EXPECT_EQ(r.finish[ids[i]], FinishReason::kLength);
    }
    EXPECT_EQ(e->KvStats().num_blocks_used, 0);
  }
}

TEST_F(EngineTest, ChunkedPrefillGivesTheSameTokens) {
  const std::vector<int32_t> prompt = Prompt(100, 5);
  const SamplingParams sp{.max_tokens = 20, .ignore_eos = true};
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .max_seq_len = 512},
                       .max_seqs = 4, .max_batch_tokens = 7});
  auto id = e->AddRequestTokens(prompt, sp);
  Result r = Drain(*e);
  EXPECT_EQ(r.tokens[*id], Alone(prompt, sp));
  EXPECT_GE(e->Stats().num_steps, 100 / 7 + 20);
}

TEST_F(EngineTest, PreemptionNeverChangesAnAnswer) {
  const std::vector<Job> jobs = MixedJobs(8, [&](int n, int s) { return Prompt(n, s); });
  // 12 blocks of 8 tokens: far less than 8 sequences of up to ~100 tokens.
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 8,
                              .num_blocks = 12, .max_seq_len = 96},
                       .max_seqs = 8});
  std::vector<RequestId> ids;
  for (const Job& j : jobs) ids.push_back(*e->AddRequestTokens(j.prompt, j.params));
  Result r = Drain(*e);
  EXPECT_GT(e->Stats().num_preemptions, 0) << "the budget should force preemption";
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(r.tokens[ids[i]], Alone(jobs[i].prompt, jobs[i].params)) << "request " << i;
  }
  EXPECT_EQ(e->KvStats().num_blocks_used, 0);
}

TEST_F(EngineTest, ContiguousAdmitsFewerSequencesThanPagedUnderOneBudget) {
  const std::vector<Job> jobs = MixedJobs(12, [&](int n, int s) { return Prompt(n, s); });
  auto peak = [&](KvStrategy s) {
    // Budget: 4 sequences of max_seq_len=256 tokens at 1280 bytes/token.
    auto e = MakeEngine({.kv = {.strategy = s, .block_size_tokens = 16,
                                .memory_bytes = 4 * 256 * 1280, .max_seq_len = 256},
                         .max_seqs = 64});
    for (const Job& j : jobs) EXPECT_TRUE(e->AddRequestTokens(j.prompt, j.params).ok());
    Drain(*e);
    return e->Stats().peak_running;
  };
  const int64_t contiguous = peak(KvStrategy::kContiguous);
  const int64_t paged = peak(KvStrategy::kPaged);
  EXPECT_EQ(contiguous, 4);
  EXPECT_GT(paged, contiguous);
}

TEST_F(EngineTest, ForksShareThePromptAndMatchIndependentRuns) {
  const std::vector<int32_t> prompt = Prompt(37, 9);  // 37 tokens: a partly filled last block
  const SamplingParams sp{.max_tokens = 24, .temperature = 0.9f, .seed = 7, .ignore_eos = true,
                          .n = 4};
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 16,
                              .max_seq_len = 128},
                       .max_seqs = 8});
  auto first = e->AddRequestTokens(prompt, sp);
  ASSERT_TRUE(first.ok());
  std::vector<KvCacheStats> steps;
  Result r = Drain(*e, [&](const KvCacheStats& st) { steps.push_back(st); });
  ASSERT_GE(steps.size(), 3u);
  // Step 1 prefills and forks: all three prompt blocks (two full, one with 5
  // tokens) are shared by the four samples; three samples' worth are saved.
  EXPECT_EQ(steps[0].num_blocks_shared, 3);
  EXPECT_EQ(steps[0].num_blocks_used, 3);
  EXPECT_EQ(steps[0].bytes_saved_by_sharing, 3 * 3 * 16 * 1280);
  EXPECT_EQ(steps[0].sequences.size(), 4u);
  // Step 2: writing position 37 copies the partly filled block for all but
  // one sample; the two full blocks stay shared.
  EXPECT_EQ(steps[1].num_blocks_shared, 2);
  EXPECT_EQ(steps[1].num_blocks_used, 2 + 4);
  EXPECT_EQ(steps[1].bytes_saved_by_sharing, 3 * 2 * 16 * 1280);
  EXPECT_EQ(e->KvStats().num_cow_copies, 3);
  std::set<std::vector<int32_t>> distinct;
  for (int i = 0; i < 4; ++i) {
    SamplingParams one = sp;
    one.n = 1;
    one.seed = sp.seed + i;
    EXPECT_EQ(r.sample_tokens[std::make_pair(*first, i)], Alone(prompt, one)) << "sample " << i;
    distinct.insert(r.sample_tokens[std::make_pair(*first, i)]);
  }
  EXPECT_EQ(distinct.size(), 4u) << "different seeds should give different samples";
  // One request: every output carries its id, and it finishes once.
  EXPECT_EQ(r.sample_tokens.size(), 4u);
  EXPECT_EQ(r.requests_finished, (std::map<RequestId, int>{{*first, 1}}));
  EXPECT_EQ(e->KvStats().num_blocks_used, 0);
}

TEST_F(EngineTest, ForksWorkForEveryStrategy) {
  const std::vector<int32_t> prompt = Prompt(20, 3);
  const SamplingParams sp{.max_tokens = 10, .temperature = 1.0f, .seed = 1, .ignore_eos = true,
                          .n = 3};
  std::map<KvStrategy, Result> results;
  for (KvStrategy s : {KvStrategy::kNone, KvStrategy::kContiguous, KvStrategy::kPaged}) {
    auto e = MakeEngine({.kv = {.strategy = s, .max_seq_len = 64}, .max_seqs = 4});
    ASSERT_TRUE(e->AddRequestTokens(prompt, sp).ok());
    results[s] = Drain(*e);
    EXPECT_EQ(e->KvStats().num_blocks_used, 0);
  }
  EXPECT_EQ(results[KvStrategy::kPaged].sample_tokens.size(), 3u);
  EXPECT_EQ(results[KvStrategy::kNone].sample_tokens, results[KvStrategy::kPaged].sample_tokens);
  EXPECT_EQ(results[KvStrategy::kContiguous].sample_tokens,
            results[KvStrategy::kPaged].sample_tokens);
}

TEST_F(EngineTest, AbortFreesEveryBlock) {
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .max_seq_len = 256}, .max_seqs = 4});
  std::vector<RequestId> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(*e->AddRequestTokens(Prompt(30 + i, i), {.max_tokens = 100, .ignore_eos = true}));
  }
  for (int i = 0; i < 5; ++i) e->Step();
  EXPECT_GT(e->KvStats().num_blocks_used, 0);
  for (RequestId id : ids) EXPECT_TRUE(e->Abort(id));
  EXPECT_FALSE(e->Abort(ids[0]));
  EXPECT_EQ(e->KvStats().num_blocks_used, 0);
  Result r = Drain(*e);
  for (RequestId id : ids) EXPECT_EQ(r.finish[id], FinishReason::kAborted);
}

// Sessions without the prefix cache keep their sequence between requests
// (with it, see prefix_cache_engine_test.cpp).
TEST_F(EngineTest, SessionsReuseTheCachedPrefix) {
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .max_seq_len = 256}, .max_seqs = 2,
                       .prefix_cache = false});
  const SessionId s = e->CreateSession();
  const std::vector<int32_t> turn1 = Prompt(40, 1);
  const SamplingParams sp{.max_tokens = 10, .ignore_eos = true};
  auto id1 = e->AddRequestTokens(turn1, sp, {.session = s});
  Result r1 = Drain(*e);
  // The next prompt extends the first conversation.
  std::vector<int32_t> turn2 = turn1;
  turn2.insert(turn2.end(), r1.tokens[*id1].begin(), r1.tokens[*id1].end());
  const std::vector<int32_t> extra = Prompt(12, 2);
  turn2.insert(turn2.end(), extra.begin() + 1, extra.end());
  auto id2 = e->AddRequestTokens(turn2, sp, {.session = s});
  RequestTimings t;
  std::vector<int32_t> got;
  while (e->HasWork()) {
    for (const RequestOutput& o : e->Step()) {
      got.insert(got.end(), o.new_tokens.begin(), o.new_tokens.end());
      if (o.finished) t = o.timings;
    }
  }
  // Everything but the last sampled token of turn 1 (never fed) is reused.
  EXPECT_EQ(t.cached_prompt_tokens, 40 + 10 - 1);
  EXPECT_EQ(got, Alone(turn2, sp));
  EXPECT_GT(e->KvStats().num_blocks_used, 0) << "the idle session keeps its cache";
  e->EndSession(s);
  EXPECT_EQ(e->KvStats().num_blocks_used, 0);
  (void)id2;
}

TEST_F(EngineTest, IdleSessionsAreEvictedBeforeRequestsArePreempted) {
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 16,
                              .num_blocks = 6, .max_seq_len = 96},
                       .max_seqs = 2, .prefix_cache = false});
  const SessionId s = e->CreateSession();
  ASSERT_TRUE(e->AddRequestTokens(Prompt(60, 1), {.max_tokens = 4}, {.session = s}).ok());
  Drain(*e);
  EXPECT_EQ(e->KvStats().num_blocks_used, 4);
  auto id = e->AddRequestTokens(Prompt(70, 2), {.max_tokens = 10, .ignore_eos = true});
  Result r = Drain(*e);
  EXPECT_EQ(r.finish[*id], FinishReason::kLength);
  EXPECT_EQ(e->Stats().num_session_evictions, 1);
  EXPECT_EQ(e->Stats().num_preemptions, 0);
}

TEST_F(EngineTest, ARequestLargerThanThePoolEndsWithKvExhausted) {
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .block_size_tokens = 16,
                              .num_blocks = 2, .max_seq_len = 128},
                       .max_seqs = 2});
  auto big = e->AddRequestTokens(Prompt(50, 1), {.max_tokens = 4});
  auto grows = e->AddRequestTokens(Prompt(20, 2), {.max_tokens = 40, .ignore_eos = true});
  Result r = Drain(*e);
  EXPECT_EQ(r.finish[*big], FinishReason::kKvExhausted);
  EXPECT_EQ(r.finish[*grows], FinishReason::kKvExhausted);
  EXPECT_EQ(r.tokens[*grows].size(), 32u - 20u + 1u) << "ran until its 2 blocks were full";
  EXPECT_EQ(e->KvStats().num_blocks_used, 0);
}

TEST_F(EngineTest, BadRequestsAreRejectedClearly) {
  auto e = MakeEngine({.kv = {.max_seq_len = 32}});
  auto empty = e->AddRequestTokens({}, {});
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  auto too_long = e->AddRequestTokens(Prompt(40, 1), {});
  EXPECT_EQ(too_long.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(too_long.status().message().find("40 tokens"), std::string::npos);
  auto bad_token = e->AddRequestTokens({1, 99999}, {});
  EXPECT_EQ(bad_token.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->AddRequestTokens({1}, {.n = 0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->AddRequestTokens({1}, {.top_p = 2.0f}).status().code(), StatusCode::kInvalidArgument);
  const SessionId s = e->CreateSession();
  EXPECT_FALSE(e->AddRequestTokens({1}, {.n = 2}, {.session = s}).ok());
  EXPECT_FALSE(e->AddRequestTokens({1}, {}, {.session = 12345}).ok());
  EXPECT_FALSE(e->HasWork());
  auto bad_engine = Engine::Create(*model_, {.kv = {.max_seq_len = 100000}});
  EXPECT_FALSE(bad_engine.ok());
  auto tiny_budget = Engine::Create(*model_, {.kv = {.strategy = KvStrategy::kPaged, .memory_bytes = 100}});
  EXPECT_FALSE(tiny_budget.ok());
  EXPECT_NE(tiny_budget.status().message().find("smaller than one block"), std::string::npos);
  auto bad_precision = Engine::Create(*model_, {.kv = {.precision = static_cast<KvPrecision>(42)}});
  EXPECT_FALSE(bad_precision.ok());
  EXPECT_NE(bad_precision.status().message().find("unknown KV precision"), std::string::npos);
}

TEST_F(EngineTest, StreamedTextEqualsTheDetokenizedTokens) {
  auto e = MakeEngine({.kv = {.max_seq_len = 128}});
  auto id = e->AddRequest("Once upon a time", {.max_tokens = 40});
  Result r = Drain(*e);
  std::vector<int32_t> toks = r.tokens[*id];
  if (!toks.empty() && r.finish[*id] == FinishReason::kStop) toks.pop_back();
  EXPECT_EQ(r.text[*id], model_->Detokenize(toks).substr(0, r.text[*id].size()));
  EXPECT_EQ(r.text[*id].rfind(", there was a little girl named Lily", 0), 0u) << r.text[*id];
}

TEST_F(EngineTest, AStopStringAcrossTokensIsNotReturned) {
  const std::string stop = "little girl";
  ASSERT_GT(model_->Tokenize(" " + stop, false)->size(), 1u) << "the stop string should span tokens";
  auto e = MakeEngine({.kv = {.max_seq_len = 128}});
  auto base = e->AddRequest("Once upon a time", {.max_tokens = 40});
  const std::string full = Drain(*e).text[*base];
  const size_t at = full.find(stop);
  ASSERT_NE(at, std::string::npos) << full;
  for (bool include : {false, true}) {
    SamplingParams sp{.max_tokens = 40};
    sp.stop = {"no such text", stop};
    sp.include_stop_str_in_output = include;
    auto id = e->AddRequest("Once upon a time", sp);
    ASSERT_TRUE(id.ok());
    Result r = Drain(*e);
    EXPECT_EQ(r.finish[*id], FinishReason::kStop);
    EXPECT_EQ(r.text[*id], full.substr(0, at) + (include ? stop : "")) << "include " << include;
    EXPECT_LT(r.tokens[*id].size(), 40u);
  }
}

TEST_F(EngineTest, StreamingHoldsBackTextThatMayBeginAStopString) {
  auto e = MakeEngine({.kv = {.max_seq_len = 128}});
  auto base = e->AddRequest("Once upon a time", {.max_tokens = 30});
  const std::string full = Drain(*e).text[*base];
  // A stop string that begins like the text but never matches: its first
  // characters are held back while they could begin it, then released.
  const std::string stop = full.substr(0, 8) + "\x01";
  SamplingParams sp{.max_tokens = 30};
  sp.stop = {stop};
  auto id = e->AddRequest("Once upon a time", sp);
  std::string streamed;
  size_t held_steps = 0;
  while (e->HasWork()) {
    for (const RequestOutput& o : e->Step()) {
      streamed += o.text_delta;
      if (!o.new_tokens.empty() && o.text_delta.empty()) ++held_steps;
      if (o.finished) {
        EXPECT_EQ(o.finish_reason, FinishReason::kLength);
      }
    }
    EXPECT_TRUE(full.compare(0, streamed.size(), streamed) == 0) << streamed;
    if (streamed.size() < 8) {
      EXPECT_TRUE(streamed.empty()) << "a possible stop string leaked";
    }
  }
  EXPECT_GT(held_steps, 0u);
  EXPECT_EQ(streamed, full);
  (void)id;
}

TEST_F(EngineTest, AStopTokenIdEndsTheRequestWithoutItsText) {
  auto e = MakeEngine({.kv = {.max_seq_len = 128}});
  auto base = e->AddRequest("Once upon a time", {.max_tokens = 30, .ignore_eos = true});
  const std::vector<int32_t> toks = Drain(*e).tokens[*base];
  ASSERT_EQ(toks.size(), 30u);
  // The first token after position 4 that did not occur before it.
  size_t k = 5;
  while (k < toks.size() && std::find(toks.begin(), toks.begin() + k, toks[k]) != toks.begin() + k) ++k;
  ASSERT_LT(k, toks.size());
  auto upto = e->AddRequest("Once upon a time", {.max_tokens = static_cast<int>(k), .ignore_eos = true});
  const std::string before = Drain(*e).text[*upto];
  // Stop token ids apply also with ignore_eos.
  SamplingParams sp{.max_tokens = 30, .ignore_eos = true};
  sp.stop_token_ids = {toks[k]};
  auto id = e->AddRequest("Once upon a time", sp);
  Result r = Drain(*e);
  EXPECT_EQ(r.finish[*id], FinishReason::kStop);
  EXPECT_EQ(r.tokens[*id], std::vector<int32_t>(toks.begin(), toks.begin() + k + 1));
  EXPECT_EQ(r.text[*id], before);
  sp.stop_token_ids = {model_->info().vocab_size};
  EXPECT_EQ(e->AddRequest("Once", sp).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, LogprobsAreTheLogSoftmaxOfTheRawLogits) {
  const std::vector<int32_t> prompt = Prompt(12, 4);
  // Penalties and temperature change the sampling, not the reported logprobs.
  SamplingParams sp{.max_tokens = 8, .temperature = 0.7f, .seed = 3, .ignore_eos = true};
  sp.logprobs = 4;
  sp.repetition_penalty = 1.5f;
  auto e = MakeEngine({.kv = {.max_seq_len = 128}});
  auto id = e->AddRequestTokens(prompt, sp);
  std::vector<int32_t> gen;
  std::vector<TokenLogprob> lps;
  while (e->HasWork()) {
    for (const RequestOutput& o : e->Step()) {
      ASSERT_EQ(o.logprobs.size(), o.new_tokens.size());
      gen.insert(gen.end(), o.new_tokens.begin(), o.new_tokens.end());
      lps.insert(lps.end(), o.logprobs.begin(), o.logprobs.end());
    }
  }
  ASSERT_EQ(gen.size(), 8u);
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), gen.begin(), gen.end() - 1);
  std::vector<int32_t> rows;
  for (size_t i = 0; i < gen.size(); ++i) rows.push_back(static_cast<int32_t>(prompt.size() + i - 1));
  const std::vector<float> logits = testing::ForwardLogits(ImplOf(*model_), seq, rows);
  const size_t vocab = static_cast<size_t>(model_->info().vocab_size);
  for (size_t i = 0; i < gen.size(); ++i) {
    const float* row = logits.data() + i * vocab;
    double max_l = row[0];
    for (size_t v = 0; v < vocab; ++v) max_l = std::max<double>(max_l, row[v]);
    double sum = 0;
    for (size_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max_l);
    auto ref = [&](int32_t t) { return static_cast<double>(row[t]) - max_l - std::log(sum); };
    EXPECT_EQ(lps[i].token, gen[i]);
    EXPECT_NEAR(lps[i].logprob, ref(gen[i]), 1e-4) << "token " << i;
    ASSERT_EQ(lps[i].top.size(), 4u);
    for (size_t j = 0; j < 4; ++j) {
      EXPECT_NEAR(lps[i].top[j].second, ref(lps[i].top[j].first), 1e-4);
      if (j > 0) {
        EXPECT_GE(lps[i].top[j - 1].second, lps[i].top[j].second);
      }
    }
    int32_t best = 0;
    for (size_t v = 1; v < vocab; ++v) {
      if (row[v] > row[best]) best = static_cast<int32_t>(v);
    }
    EXPECT_EQ(lps[i].top[0].first, best);
  }
  (void)id;
}

TEST_F(EngineTest, TheSamplesOfOneRequestShareItsIdAndAbortTogether) {
  const SamplingParams sp{.max_tokens = 50, .temperature = 1.0f, .seed = 2, .ignore_eos = true,
                          .n = 3};
  auto e = MakeEngine({.kv = {.strategy = KvStrategy::kPaged, .max_seq_len = 128}, .max_seqs = 4});
  auto id = e->AddRequestTokens(Prompt(20, 1), sp, {.request_id = "chatcmpl-abc"});
  ASSERT_TRUE(id.ok());
  std::set<int> indices;
  for (int i = 0; i < 3; ++i) {
    for (const RequestOutput& o : e->Step()) {
      EXPECT_EQ(o.id, *id);
      EXPECT_EQ(o.request_id, "chatcmpl-abc");
      indices.insert(o.sample_index);
    }
  }
  EXPECT_EQ(indices, (std::set<int>{0, 1, 2}));
  EXPECT_TRUE(e->Abort(*id));
  EXPECT_FALSE(e->Abort(*id));
  EXPECT_EQ(e->KvStats().num_blocks_used, 0);
  Result r = Drain(*e);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.sample_finish[std::make_pair(*id, i)], FinishReason::kAborted) << i;
  EXPECT_EQ(r.requests_finished[*id], 1);

  // Aborted before the first token: every sample still ends, once.
  auto early = e->AddRequestTokens(Prompt(20, 2), sp);
  EXPECT_TRUE(e->Abort(*early));
  r = Drain(*e);
  EXPECT_EQ(r.sample_finish.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.sample_finish[std::make_pair(*early, i)], FinishReason::kAborted) << i;
  EXPECT_EQ(r.requests_finished[*early], 1);

  // Each sample's own finish reason; the last one finishes the request.
  SamplingParams mixed{.max_tokens = 6, .temperature = 1.0f, .seed = 2, .ignore_eos = true, .n = 2};
  auto both = e->AddRequestTokens(Prompt(20, 3), mixed);
  int finals = 0;
  while (e->HasWork()) {
    for (const RequestOutput& o : e->Step()) {
      if (o.finished) ++finals;
      if (o.request_finished) {
        EXPECT_EQ(finals, 2) << "finished before all its samples";
      }
    }
  }
  EXPECT_EQ(finals, 2);
  (void)both;
  EXPECT_EQ(e->KvStats().num_blocks_used, 0);
}

// A q4_0 cache packs two elements per byte: a model with an odd head_dim
// (here 3: hidden 6, 2 heads, RoPE on 2 of the 3 dims) is refused with an
// error naming the head_dim, while q8_0 serves it.
TEST(EngineKvPrecision, Q4NeedsAnEvenHeadDim) {
  constexpr uint32_t kDim = 6, kFf = 4, kVocab = 4;
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.context_length", 32);
  w.SetU32("llama.embedding_length", kDim);
  w.SetU32("llama.block_count", 1);
  w.SetU32("llama.feed_forward_length", kFf);
  w.SetU32("llama.attention.head_count", 2);
  w.SetU32("llama.attention.head_count_kv", 2);
  w.SetU32("llama.rope.dimension_count", 2);
  w.SetF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "gpt-2");
  const std::vector<std::string> pieces = {"a", "b", "ab", "c"}, merges = {"a b"};
  w.SetStringArray("tokenizer.ggml.tokens", std::span<const std::string>(pieces));
  w.SetStringArray("tokenizer.ggml.merges", std::span<const std::string>(merges));
  auto add = [&](const std::string& name, std::vector<uint64_t> dims) {
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    const std::vector<float> v(n, 0.1f);
    const auto* bytes = reinterpret_cast<const uint8_t*>(v.data());
    w.AddTensor(name, dims, DType::kF32, std::vector<uint8_t>(bytes, bytes + n * sizeof(float)));
  };
  add("token_embd.weight", {kDim, kVocab});
  add("blk.0.attn_norm.weight", {kDim});
  for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
    add(std::string("blk.0.") + m + ".weight", {kDim, kDim});
  }
  add("blk.0.ffn_norm.weight", {kDim});
  add("blk.0.ffn_gate.weight", {kDim, kFf});
  add("blk.0.ffn_up.weight", {kDim, kFf});
  add("blk.0.ffn_down.weight", {kFf, kDim});
  add("output_norm.weight", {kDim});
  const std::string path = ::testing::TempDir() + "/odd_head_dim.gguf";
  w.WriteFile(path);
  StatusOr<Model> model = Model::Load(path);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->info().kv_bytes_per_token_q4_0, 0);
  auto q4 = Engine::Create(*model, {.kv = {.precision = KvPrecision::kQ4_0}});
  ASSERT_FALSE(q4.ok());
  EXPECT_EQ(q4.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(q4.status().message().find("even head_dim"), std::string::npos)
      << q4.status().message();
  EXPECT_NE(q4.status().message().find("3"), std::string::npos) << q4.status().message();
  EXPECT_TRUE(Engine::Create(*model, {.kv = {.precision = KvPrecision::kQ8_0}}).ok());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kvinfer
