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

struct Outcome {
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, FinishReason> finish;
  std::map<RequestId, std::string> error;
};

Outcome Drain(Engine& e) {
  Outcome out;
  for (int guard = 0; e.HasWork() && guard < 100000; ++guard) {
    for (const RequestOutput& o : e.Step()) {
      auto& t = out.tokens[o.id];
      t.insert(t.end(), o.new_tokens.begin(), o.new_tokens.end());
      if (o.finished) {
        out.finish[o.id] = o.finish_reason;
        out.error[o.id] = o.error;
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

  // Three requests on a paged engine: ids 1, 2 (n = 2 samples: ids 2 and
  // 3) and 4. `fail` (request id, n-th block allocation for it) injects one
  // allocation failure.
  Outcome RunThree(std::optional<std::pair<RequestId, int>> fail, int64_t* blocks_left) {
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
    EXPECT_EQ(*engine.AddRequestTokens(Prompt(35, 3), sp), 4u);
    if (fail) FailBlockAllocationForTest(engine, fail->first, fail->second);
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
  for (RequestId id : {1u, 2u, 3u, 4u}) {
    ASSERT_EQ(normal.finish.at(id), FinishReason::kLength) << id;
    ASSERT_EQ(normal.tokens.at(id).size(), 60u) << id;
  }
  // Request 1 (40-token prompt, 16-token blocks): allocations 1-3 at
  // prefill, 4 at position 48 while decoding, 5 at position 64.
  for (int nth : {2, 4, 5}) {
    SCOPED_TRACE("failing allocation " + std::to_string(nth) + " of request 1");
    const Outcome failed = RunThree(std::make_pair(RequestId{1}, nth), &left);
    EXPECT_EQ(left, 0) << "blocks leaked";
    EXPECT_EQ(failed.finish.at(1), FinishReason::kError);
    EXPECT_NE(failed.error.at(1).find("memory"), std::string::npos) << failed.error.at(1);
    // What it produced before the failure is what it produces normally.
    const std::vector<int32_t>& got = failed.tokens.at(1);
    const std::vector<int32_t>& want = normal.tokens.at(1);
    ASSERT_LT(got.size(), want.size());
    EXPECT_EQ(got, std::vector<int32_t>(want.begin(), want.begin() + got.size()));
    EXPECT_EQ(got.size(), nth <= 3 ? 0u : nth == 4 ? 9u : 25u);
    for (RequestId id : {2u, 3u, 4u}) {
      EXPECT_EQ(failed.finish.at(id), FinishReason::kLength) << id;
      EXPECT_EQ(failed.tokens.at(id), normal.tokens.at(id)) << id;
      EXPECT_TRUE(failed.error.at(id).empty());
    }
  }
  // The samples of request 2 (23-token prompt) share its first two blocks.
  // At position 23 the first sample (id 2) copies the shared, half-full
  // block (its 3rd allocation); the second (id 3) then owns the original and
  // allocates first at position 32. Either failing leaves its sibling and
  // the others intact.
  for (const auto& [victim, nth] : {std::pair<RequestId, int>{2, 3}, {3, 1}}) {
    SCOPED_TRACE("failing allocation " + std::to_string(nth) + " of request " +
                 std::to_string(victim));
    const Outcome failed = RunThree(std::make_pair(victim, nth), &left);
    EXPECT_EQ(left, 0) << "blocks leaked";
    EXPECT_EQ(failed.finish.at(victim), FinishReason::kError);
    EXPECT_EQ(failed.tokens.at(victim).size(), victim == 2 ? 1u : 10u);
    for (RequestId id : {1u, 2u, 3u, 4u}) {
      if (id == victim) continue;
      EXPECT_EQ(failed.finish.at(id), FinishReason::kLength) << id;
      EXPECT_EQ(failed.tokens.at(id), normal.tokens.at(id)) << id;
    }
  }
}

}  // namespace
}  // namespace kvinfer
