// A NaN or Inf in the logits a request is about to sample from ends that
// request (kError) with a message naming where its forward pass first
// produced a non-finite value (layer, step, tensor, position, token); the
// other requests of the batch go on with exactly the tokens they produce
// alone. The models are stories260K with weights poisoned as a corrupt
// file would hold them (poisoned_model.h).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kvinfer/kvinfer.h"
#include "poisoned_model.h"
#include "test_util.h"

namespace kvinfer {
namespace {

using testing::EmbeddingRow;
using testing::Poison;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Result {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  std::string error;
};

std::vector<int32_t> Prompt(int n, int seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p = {1};  // BOS
  while (static_cast<int>(p.size()) < n) p.push_back(static_cast<int32_t>(3 + rng() % 500));
  return p;
}

bool Contains(const std::vector<int32_t>& v, int32_t t) {
  return std::find(v.begin(), v.end(), t) != v.end();
}

EngineOptions Options(KvStrategy strategy, int max_batch_tokens = 2048) {
  return {.kv = {.strategy = strategy, .block_size_tokens = 16, .max_seq_len = 128},
          .num_threads = 2,
          .max_seqs = 4,
          .max_batch_tokens = max_batch_tokens};
}

// Every prompt as one request (greedy, max_tokens each, EOS ignored), all
// added before the first step so they share batches; results in prompt order.
std::vector<Result> Generate(const Model& model, const std::vector<std::vector<int32_t>>& prompts,
                             const EngineOptions& options, int max_tokens = 24) {
  auto e = Engine::Create(model, options);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return {};
  Engine& engine = **e;
  std::map<RequestId, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) {
    StatusOr<RequestId> id =
        engine.AddRequestTokens(prompts[i], {.max_tokens = max_tokens, .ignore_eos = true});
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (!id.ok()) return {};
    index[*id] = i;
  }
  std::vector<Result> out(prompts.size());
  for (int guard = 0; engine.HasWork() && guard < 10000; ++guard) {
    for (const RequestOutput& o : engine.Step()) {
      Result& r = out[index.at(o.id)];
      r.tokens.insert(r.tokens.end(), o.new_tokens.begin(), o.new_tokens.end());
      if (o.finished) {
        r.finish = o.finish_reason;
        r.error = o.error;
      }
    }
  }
  EXPECT_FALSE(engine.HasWork()) << "engine does not terminate";
  EXPECT_EQ(engine.KvStats().num_blocks_used, 0) << "blocks leaked";
  return out;
}

class NonFiniteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVINFER_REQUIRE_FILE(testing::StoriesGguf());
    StatusOr<Model> m = Model::Load(testing::StoriesGguf());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    healthy_ = std::make_unique<Model>(*m);
  }

  // stories260K with `poisons` applied, loaded.
  Model Poisoned(const std::vector<Poison>& poisons) {
    const std::string path = ::testing::TempDir() + "/kvinfer_poisoned_" +
                             std::to_string(getpid()) + "_" + std::to_string(files_++) + ".gguf";
    testing::WritePoisonedStories(path, poisons);
    StatusOr<Model> m = Model::Load(path);
    std::filesystem::remove(path);  // the model has mapped it
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return *m;
  }

  std::unique_ptr<Model> healthy_;
  int files_ = 0;
};

// A weight of one layer: every request fails at its prefill, and the
// message names that layer and the projection the weight belongs to, at
// the first position (the BOS token), for each KV strategy.
TEST_F(NonFiniteTest, NaNInALayerWeightNamesTheLayer) {
  const Model model = Poisoned({{"blk.3.attn_v.weight", 100, 101, kNaN}});
  for (KvStrategy strategy : {KvStrategy::kNone, KvStrategy::kContiguous, KvStrategy::kPaged}) {
    SCOPED_TRACE(KvStrategyName(strategy));
    const std::vector<Result> got =
        Generate(model, {Prompt(12, 1), Prompt(20, 2)}, Options(strategy));
    ASSERT_EQ(got.size(), 2u);
    for (const Result& r : got) {
      EXPECT_EQ(r.finish, FinishReason::kError);
      EXPECT_TRUE(r.tokens.empty());
      EXPECT_EQ(r.error,
                "non-finite values (NaN) in layer 3 value projection (attn_v) at position 0 "
                "(token 1); the model file or its weights may be corrupt");
    }
  }
}

TEST_F(NonFiniteTest, InfInALayerWeightNamesTheLayer) {
  // Row 0, column 0 of ffn_up [172, 64]: up[0] = Inf * xn[0] + ... = +-Inf.
  const Model model = Poisoned({{"blk.1.ffn_up.weight", 0, 1, kInf}});
  const std::vector<Result> got = Generate(model, {Prompt(12, 1)}, Options(KvStrategy::kPaged));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].finish, FinishReason::kError);
  EXPECT_NE(got[0].error.find("(Inf) in layer 1 FFN up projection (ffn_up) at position 0"),
            std::string::npos)
      << got[0].error;
}

// A NaN in the output head: every layer is finite, the logits are not, at
// the sampled (last) position.
TEST_F(NonFiniteTest, NaNInTheOutputHeadNamesTheLogits) {
  const Model model =
      Poisoned({{"output.weight", 7 * testing::kStoriesDim, 7 * testing::kStoriesDim + 1, kNaN}});
  const std::vector<int32_t> prompt = Prompt(12, 1);
  const std::vector<Result> got = Generate(model, {prompt}, Options(KvStrategy::kPaged));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].finish, FinishReason::kError);
  EXPECT_NE(got[0].error.find("(NaN) in the logits (output) at position 11 (token " +
                              std::to_string(prompt.back()) + ")"),
            std::string::npos)
      << got[0].error;
}

// The embedding row of a token only request B's prompt holds: B fails and
// the message names the embedding at that token's position, found by the
// diagnosis from position 0 even when the token was prefilled in an
// earlier chunk than the one sampled; A, in the same batches, produces
// exactly the tokens it produces alone on the healthy model.
TEST_F(NonFiniteTest, PoisonedPromptTokenEndsOnlyItsRequest) {
  const std::vector<int32_t> a = Prompt(20, 11), b = Prompt(40, 12);
  const std::vector<Result> alone = Generate(*healthy_, {a}, Options(KvStrategy::kPaged));
  ASSERT_EQ(alone.size(), 1u);
  ASSERT_EQ(alone[0].finish, FinishReason::kLength);
  // A token of B's prompt that A never reads; at position >= 3 so the
  // 8-token chunks below put it in an earlier chunk than the sampled one.
  int32_t pos = -1;
  for (int32_t p = 3; p < 30 && pos < 0; ++p) {
    const int32_t t = b[static_cast<size_t>(p)];
    if (!Contains(a, t) && !Contains(alone[0].tokens, t) &&
        std::count(b.begin(), b.begin() + p, t) == 0) {
      pos = p;
    }
  }
  ASSERT_GE(pos, 0) << "no token of B's prompt is unused by A";
  const int32_t token = b[static_cast<size_t>(pos)];
  for (float value : {kNaN, kInf}) {
    const Model model = Poisoned({EmbeddingRow(token, value)});
    for (int max_batch_tokens : {2048, 8}) {
      SCOPED_TRACE("value " + std::to_string(value) + ", max_batch_tokens " +
                   std::to_string(max_batch_tokens));
      const std::vector<Result> got =
          Generate(model, {a, b}, Options(KvStrategy::kPaged, max_batch_tokens));
      ASSERT_EQ(got.size(), 2u);
      EXPECT_EQ(got[0].finish, FinishReason::kLength);
      EXPECT_EQ(got[0].tokens, alone[0].tokens);
      EXPECT_TRUE(got[0].error.empty());
      EXPECT_EQ(got[1].finish, FinishReason::kError);
      EXPECT_TRUE(got[1].tokens.empty());
      EXPECT_EQ(got[1].error, "non-finite values (" + std::string(value == kInf ? "Inf" : "NaN") +
                                  ") in the token embedding (token_embd) at position " +
                                  std::to_string(pos) + " (token " + std::to_string(token) +
                                  "); the model file or its weights may be corrupt");
    }
  }
}

// The embedding row of a token that A generates: A ends with the tokens
// it produced up to and including that one, at the next step, and the
// message names the generated token's position; B is unaffected.
TEST_F(NonFiniteTest, PoisonedGeneratedTokenEndsItsRequestMidway) {
  // Prompts whose greedy outputs let A generate a token (after two others)
  // that nothing before it in A and nothing of B holds; the first such
  // pair of seeds.
  const std::vector<int32_t> b = Prompt(14, 22);
  std::vector<int32_t> a;
  std::vector<Result> alone;
  int k = -1;
  for (int seed = 21; seed < 80 && k < 0; ++seed) {
    a = Prompt(10, seed);
    alone = Generate(*healthy_, {a, b}, Options(KvStrategy::kPaged));
    ASSERT_EQ(alone.size(), 2u);
    const std::vector<int32_t>& out = alone[0].tokens;
    for (int i = 2; i < static_cast<int>(out.size()) - 1 && k < 0; ++i) {
      const int32_t t = out[static_cast<size_t>(i)];
      if (!Contains(a, t) && std::count(out.begin(), out.begin() + i, t) == 0 && !Contains(b, t) &&
          !Contains(alone[1].tokens, t)) {
        k = i;
      }
    }
  }
  ASSERT_GE(k, 0) << "no generated token of A is unused by B";
  const std::vector<int32_t>& out_a = alone[0].tokens;
  const int32_t token = out_a[static_cast<size_t>(k)];
  const Model model = Poisoned({EmbeddingRow(token, kNaN)});
  const std::vector<Result> got = Generate(model, {a, b}, Options(KvStrategy::kPaged));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].finish, FinishReason::kError);
  EXPECT_EQ(got[0].tokens, std::vector<int32_t>(out_a.begin(), out_a.begin() + k + 1));
  EXPECT_NE(got[0].error.find("(NaN) in the token embedding (token_embd) at position " +
                              std::to_string(a.size() + static_cast<size_t>(k)) + " (token " +
                              std::to_string(token) + ")"),
            std::string::npos)
      << got[0].error;
  EXPECT_EQ(got[1].finish, FinishReason::kLength);
  EXPECT_EQ(got[1].tokens, alone[1].tokens);
}

// n = 2 samples of a poisoned prompt: the prompt's logits fail before the
// samples fork, and both samples end with the error.
TEST_F(NonFiniteTest, EverySampleOfAFailedPromptEnds) {
  const Model model = Poisoned({{"blk.0.attn_q.weight", 0, 1, kNaN}});
  auto e = Engine::Create(model, Options(KvStrategy::kPaged));
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(
      (*e)->AddRequestTokens(Prompt(9, 3), {.max_tokens = 8, .temperature = 0.8f, .n = 2}).ok());
  std::map<int, std::string> errors;
  while ((*e)->HasWork()) {
    for (const RequestOutput& o : (*e)->Step()) {
      EXPECT_TRUE(o.new_tokens.empty());
      if (o.finished) {
        EXPECT_EQ(o.finish_reason, FinishReason::kError);
        errors[o.sample_index] = o.error;
      }
    }
  }
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("layer 0 query projection (attn_q) at position 0"), std::string::npos)
      << errors[0];
  EXPECT_EQ(errors[1], errors[0]);
}

// The GPT-2 pass (LayerNorm, biases, GELU, learned positions) is checked
// step by step too: a NaN bias of layer 1's FFN, and an Inf in the learned
// embedding of position 5, which a request reaches while decoding.
TEST_F(NonFiniteTest, Gpt2StepsAreNamed) {
  const std::string src = std::string(KVINFER_SOURCE_DIR) + "/models/gpt2-tiny-random/model.gguf";
  KVINFER_REQUIRE_FILE(src);
  auto load = [&](const std::vector<Poison>& poisons) {
    const std::string path = ::testing::TempDir() + "/kvinfer_poisoned_gpt2_" +
                             std::to_string(getpid()) + "_" + std::to_string(files_++) + ".gguf";
    testing::WritePoisonedCopy(src, path, poisons);
    StatusOr<Model> m = Model::Load(path);
    std::filesystem::remove(path);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return *m;
  };
  const EngineOptions options = {.kv = {.strategy = KvStrategy::kPaged, .max_seq_len = 64},
                                 .num_threads = 2};
  const std::vector<int32_t> prompt = Prompt(3, 7);

  const Model bias = load({{"blk.1.ffn_up.bias", 5, 6, kNaN}});
  std::vector<Result> got = Generate(bias, {prompt}, options, 8);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].finish, FinishReason::kError);
  EXPECT_NE(got[0].error.find("(NaN) in layer 1 FFN up projection (ffn_up) at position 0"),
            std::string::npos)
      << got[0].error;

  StatusOr<Model> healthy = Model::Load(src);
  ASSERT_TRUE(healthy.ok());
  const std::vector<Result> want = Generate(*healthy, {prompt}, options, 8);
  ASSERT_EQ(want.size(), 1u);
  ASSERT_EQ(want[0].tokens.size(), 8u);
  // position_embd [64 positions, 64] in F16: row 5 is elements [320, 384).
  const Model position = load({{"position_embd.weight", 5 * 64, 6 * 64, kInf}});
  got = Generate(position, {prompt}, options, 8);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].finish, FinishReason::kError);
  // Positions 3 and 4 were fed the first two sampled tokens and sampled two
  // more; position 5's pass fails.
  EXPECT_EQ(got[0].tokens,
            std::vector<int32_t>(want[0].tokens.begin(), want[0].tokens.begin() + 3));
  EXPECT_NE(got[0].error.find("(Inf) in the token + position embedding (position_embd) at "
                              "position 5"),
            std::string::npos)
      << got[0].error;
}

}  // namespace
}  // namespace kvinfer
