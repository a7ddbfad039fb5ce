// A failure that belongs to one request (here an injected allocation failure
// while its KV grows) ends that request with kError and a message; the
// engine and every other request go on with exactly their normal outputs,
// and no block leaks.
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/engine_testing.h"
#include "kvinfer/kvinfer.h"
#include "test_util.h"

namespace kvinfer {
namespace {

// Results per sample: key 1 = request 1; 2 and 3 = samples 0 and 1 of
// request 2 (n = 2); 4 = request 3.
using SampleKey = int;
SampleKey KeyOf(const RequestOutput& o) { return o.id == 3 ? 4 : static_cast<int>(o.id) + o.sample_index; }

struct Outcome {
  std::map<SampleKey, std::vector<int32_t>> tokens;
  std::map<SampleKey, FinishReason> finish;
  std::map<SampleKey, std::string> error;
};

Outcome Drain(Engine& e) {
  Outcome out;
  for (int guard = 0; e.HasWork() && guard < 100000; ++guard) {
    for (const RequestOutput& o : e.Step()) {
      auto& t = out.tokens[KeyOf(o)];
      t.insert(t.end(), o.new_tokens.begin(), o.new_tokens.end());
      if (o.finished) {
        out.finish[KeyOf(o)] = o.finish_reason;
        out.error[KeyOf(o)] = o.error;
      }
    }
  }
  EXPECT_FALSE(e.HasWork()) << "engine does not terminate";
  return out;
}

std::vector<int32_t> Prompt(int n, int seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p = {1};  // BOS
  while (static_cast<int>(p.size()) < n) p.push_back(static_cast<int32_t>(3 + rng() % 500));
  return p;
}

class EngineFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(testing::StoriesGguf()))
        << "missing test model " << testing::StoriesGguf()
        << " (check out ../shared/ beside the repository)";
    StatusOr<Model> m = Model::Load(testing::StoriesGguf());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::make_unique<Model>(*m);
  }

  // Three requests on a paged engine: ids 1, 2 (n = 2 samples: keys 2 and
  // 3) and 3 (key 4). `fail` (sample key, n-th block allocation for it)
  // injects one allocation failure.
  Outcome RunThree(std::optional<std::pair<SampleKey, int>> fail, int64_t* blocks_left) {
    auto e = Engine::Create(*model_, {.kv = {.strategy = KvStrategy::kPaged,
                                             .block_size_tokens = 16,
                                             .max_seq_len = 256},
                                      .num_threads = 1,
                                      .max_seqs = 8});
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    Engine& engine = **e;
    const SamplingParams sp = {.max_tokens = 60, .ignore_eos = true};
    SamplingParams two = sp;
    two.n = 2;
    two.temperature = 0.8f;
    two.seed = 5;
    EXPECT_EQ(*engine.AddRequestTokens(Prompt(40, 1), sp), 1u);
    EXPECT_EQ(*engine.AddRequestTokens(Prompt(23, 2), two), 2u);
    EXPECT_EQ(*engine.AddRequestTokens(Prompt(35, 3), sp), 3u);
    if (fail) {
      const auto [key, nth] = *fail;
      const RequestId id = key == 1 ? 1 : key == 4 ? 3 : 2;
      FailBlockAllocationForTest(engine, id, key == 3 ? 1 : 0, nth);
    }
    Outcome out = Drain(engine);
    *blocks_left = engine.KvStats().num_blocks_used;
    return out;
  }

  std::unique_ptr<Model> model_;
};

TEST_F(EngineFaultTest, FailedAllocationEndsOnlyThatRequest) {
  int64_t left = -1;
  const Outcome normal = RunThree(std::nullopt, &left);
  EXPECT_EQ(left, 0);
  for (SampleKey id : {1, 2, 3, 4}) {
    ASSERT_EQ(normal.finish.at(id), FinishReason::kLength) << id;
    ASSERT_EQ(normal.tokens.at(id).size(), 60u) << id;
  }
  // Request 1 (40-token prompt, 16-token blocks): allocations 1-3 at
  // prefill, 4 at position 48 while decoding, 5 at position 64.
  for (int nth : {2, 4, 5}) {
    SCOPED_TRACE("failing allocation " + std::to_string(nth) + " of request 1");
    const Outcome failed = RunThree(std::make_pair(SampleKey{1}, nth), &left);
    EXPECT_EQ(left, 0) << "blocks leaked";
    EXPECT_EQ(failed.finish.at(1), FinishReason::kError);
    EXPECT_NE(failed.error.at(1).find("memory"), std::string::npos) << failed.error.at(1);
    // What it produced before the failure is what it produces normally.
    const std::vector<int32_t>& got = failed.tokens.at(1);
    const std::vector<int32_t>& want = normal.tokens.at(1);
    ASSERT_LT(got.size(), want.size());
    EXPECT_EQ(got, std::vector<int32_t>(want.begin(), want.begin() + got.size()));
    EXPECT_EQ(got.size(), nth <= 3 ? 0u : nth == 4 ? 9u : 25u);
    for (SampleKey id : {2, 3, 4}) {
      EXPECT_EQ(failed.finish.at(id), FinishReason::kLength) << id;
      EXPECT_EQ(failed.tokens.at(id), normal.tokens.at(id)) << id;
      EXPECT_TRUE(failed.error.at(id).empty());
    }
  }
  // The samples of request 2 (23-token prompt) share its first two blocks.
  // At position 23 the first sample (key 2) copies the shared, half-full
  // block (its 3rd allocation); the second (key 3) then owns the original and
  // allocates first at position 32. Either failing leaves its sibling and
  // the others intact.
  for (const auto& [victim, nth] : {std::pair<SampleKey, int>{2, 3}, {3, 1}}) {
    SCOPED_TRACE("failing allocation " + std::to_string(nth) + " of request " +
                 std::to_string(victim));
    const Outcome failed = RunThree(std::make_pair(victim, nth), &left);
    EXPECT_EQ(left, 0) << "blocks leaked";
    EXPECT_EQ(failed.finish.at(victim), FinishReason::kError);
    EXPECT_EQ(failed.tokens.at(victim).size(), victim == 2 ? 1u : 10u);
    for (SampleKey id : {1, 2, 3, 4}) {
      if (id == victim) continue;
      EXPECT_EQ(failed.finish.at(id), FinishReason::kLength) << id;
      EXPECT_EQ(failed.tokens.at(id), normal.tokens.at(id)) << id;
    }
  }
}

}  // namespace
}  // namespace kvinfer
