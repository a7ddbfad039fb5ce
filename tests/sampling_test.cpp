#include <cmath>
#include <map>
#include <span>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "model/chat_template.h"
#include "engine/sampler.h"
#include "engine/utf8_stream.h"

namespace kvinfer {
namespace {

TEST(Sampler, GreedyPicksTheLowestIndexAmongMaxima) {
  Sampler s({.temperature = 0.0f});
  const std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.Sample(logits), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = static_cast<float>(i % 7) * 0.3f;
  auto draw = [&](uint64_t seed) {
    Sampler s({.temperature = 1.0f, .seed = seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) out.push_back(s.Sample(logits));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampler, TopKOnlyReturnsTheKBest) {
  std::vector<float> logits = {5.0f, 4.0f, 3.0f, 2.0f, 1.0f, 0.0f};
  Sampler s({.temperature = 5.0f, .top_k = 2, .seed = 1});
  std::map<int32_t, int> counts;
  for (int i = 0; i < 2000; ++i) ++counts[s.Sample(logits)];
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // Probabilities ~ 0.665, 0.245, 0.09 at temperature 1: top_p 0.8 keeps two.
  std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  Sampler s({.temperature = 1.0f, .top_p = 0.8f, .seed = 3});
  std::map<int32_t, int> counts;
  for (int i = 0; i < 5000; ++i) ++counts[s.Sample(logits)];
  EXPECT_EQ(counts.count(2), 0u);
  // Renormalised: 0.665 / 0.91 = 0.73 for token 0.
  EXPECT_NEAR(counts[0] / 5000.0, 0.731, 0.03);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  std::vector<float> logits = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75
  Sampler s({.temperature = 1.0f, .seed = 11});
  int ones = 0;
  for (int i = 0; i < 20000; ++i) ones += s.Sample(logits);
  EXPECT_NEAR(ones / 20000.0, 0.75, 0.015);
}

TEST(Sampler, ValidatesParameters) {
  EXPECT_TRUE(ValidateSamplingParams({}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.temperature = -1.0f}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.top_k = -3}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.top_p = 0.0f}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.top_p = 1.5f}).ok());
  Status st = ValidateSamplingParams({.max_tokens = -1});
  EXPECT_NE(st.message().find("max_tokens"), std::string::npos);
}

TEST(Sampler, ValidatesTheServingParameters) {
  EXPECT_TRUE(ValidateSamplingParams({.stop = {"\n\n"}, .stop_token_ids = {2}, .logprobs = 5,
                                      .presence_penalty = -2.0f, .frequency_penalty = 2.0f,
                                      .repetition_penalty = 1.3f, .min_p = 0.05f})
                  .ok());
  auto message = [](const SamplingParams& p) { return ValidateSamplingParams(p).message(); };
  EXPECT_NE(message({.stop = {"a", ""}}).find("stop string 1 is empty"), std::string::npos);
  EXPECT_NE(message({.stop_token_ids = {-1}}).find("stop token id -1"), std::string::npos);
  EXPECT_NE(message({.logprobs = 21}).find("logprobs must be in [0, 20]"), std::string::npos);
  EXPECT_NE(message({.logprobs = -1}).find("logprobs"), std::string::npos);
  EXPECT_NE(message({.presence_penalty = 2.5f}).find("presence_penalty"), std::string::npos);
  EXPECT_NE(message({.frequency_penalty = -3.0f}).find("frequency_penalty"), std::string::npos);
  EXPECT_NE(message({.repetition_penalty = 0.0f}).find("repetition_penalty"), std::string::npos);
  EXPECT_NE(message({.repetition_penalty = NAN}).find("repetition_penalty"), std::string::npos);
  EXPECT_NE(message({.min_p = 1.5f}).find("min_p must be in [0, 1]"), std::string::npos);
}

// Logits 2, -1, 0.5, 3 for tokens 0..3; the prompt holds token 0 and the
// generated tokens are 1, 3, 3.
TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  const std::vector<int32_t> prompt = {0}, generated = {1, 3, 3};
  Sampler s({.repetition_penalty = 2.0f});
  const std::span<const float> got = s.Penalize(logits, prompt, generated);
  EXPECT_EQ(std::vector<float>(got.begin(), got.end()),
            (std::vector<float>{1.0f, -2.0f, 0.5f, 1.5f}));
}

TEST(Sampler, FrequencyPenaltyCountsAndPresencePenaltyDoesNot) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  const std::vector<int32_t> prompt = {0}, generated = {1, 3, 3};
  {
    Sampler s({.frequency_penalty = 0.5f});
    const std::span<const float> got = s.Penalize(logits, prompt, generated);
    // Token 1 seen once, token 3 twice; the prompt's token 0 does not count.
    EXPECT_EQ(std::vector<float>(got.begin(), got.end()),
              (std::vector<float>{2.0f, -1.5f, 0.5f, 2.0f}));
  }
  {
    Sampler s({.presence_penalty = 0.25f});
    const std::span<const float> got = s.Penalize(logits, prompt, generated);
    EXPECT_EQ(std::vector<float>(got.begin(), got.end()),
              (std::vector<float>{2.0f, -1.25f, 0.5f, 2.75f}));
  }
  {
    // All three: repetition first (1, -2, 0.5, 1.5), then
    // 1: -2 - 0.5 - 0.25, 3: 1.5 - 2 * 0.5 - 0.25.
    Sampler s({.presence_penalty = 0.25f, .frequency_penalty = 0.5f, .repetition_penalty = 2.0f});
    const std::span<const float> got = s.Penalize(logits, prompt, generated);
    EXPECT_EQ(std::vector<float>(got.begin(), got.end()),
              (std::vector<float>{1.0f, -2.75f, 0.5f, 0.25f}));
    // Greedy follows the penalized logits: 0, not the raw maximum 3.
    EXPECT_EQ(s.Sample(logits, prompt, generated), 0);
    // The penalties leave no state behind: the next call starts afresh.
    EXPECT_EQ(s.Sample(logits, prompt, {}), 3);
  }
  Sampler off({});
  EXPECT_EQ(off.Penalize(logits, prompt, generated).data(), logits.data());
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheMostLikely) {
  // Probabilities relative to the most likely: 1, 0.5, 0.05.
  const std::vector<float> logits = {0.0f, std::log(0.5f), std::log(0.05f)};
  Sampler s({.temperature = 1.0f, .seed = 5, .min_p = 0.1f});
  std::map<int32_t, int> counts;
  for (int i = 0; i < 6000; ++i) ++counts[s.Sample(logits)];
  EXPECT_EQ(counts.count(2), 0u);
  // Renormalised over the two kept: 1 / 1.5.
  EXPECT_NEAR(counts[0] / 6000.0, 2.0 / 3.0, 0.03);
  Sampler without({.temperature = 1.0f, .seed = 5});
  counts.clear();
  for (int i = 0; i < 6000; ++i) ++counts[without.Sample(logits)];
  EXPECT_GT(counts[2], 0);
  Sampler all({.temperature = 1.0f, .seed = 5, .min_p = 1.0f});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(all.Sample(logits), 0);
}

TEST(Sampler, LogprobsAreTheLogSoftmaxOfTheLogits) {
  const std::vector<float> logits = {1.5f, -0.25f, 3.0f, 3.0f, 0.0f, -7.0f};
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l));
  auto expect = [&](int32_t t) { return static_cast<double>(logits[t]) - std::log(sum); };
  const TokenLogprob lp = ComputeLogprob(logits, 1, 3);
  EXPECT_EQ(lp.token, 1);
  EXPECT_NEAR(lp.logprob, expect(1), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  // Ties go to the lower id.
  EXPECT_EQ(lp.top[0].first, 2);
  EXPECT_EQ(lp.top[1].first, 3);
  EXPECT_EQ(lp.top[2].first, 0);
  for (const auto& [t, l] : lp.top) EXPECT_NEAR(l, expect(t), 1e-6) << t;
  EXPECT_TRUE(ComputeLogprob(logits, 4, 0).top.empty());
  EXPECT_EQ(ComputeLogprob(logits, 4, 100).top.size(), logits.size());
}

TEST(StopStringFilter, HoldsBackAPossibleStartAndCutsTheMatch) {
  StopStringFilter f({"cde", "zz"}, false);
  EXPECT_EQ(f.Push("ab"), "ab");
  EXPECT_EQ(f.Push("xc"), "x");   // "c" may begin "cde"
  EXPECT_EQ(f.Push("d"), "");     // "cd" still may
  EXPECT_EQ(f.Push("f"), "cdf");  // decided: not a stop string
  EXPECT_EQ(f.Push("yz"), "y");
  EXPECT_FALSE(f.matched());
  EXPECT_EQ(f.Push("qc"), "zq");
  EXPECT_EQ(f.Push("de and more"), "");
  EXPECT_TRUE(f.matched());
  EXPECT_EQ(f.Push("later"), "");
  EXPECT_EQ(f.Flush(), "");
}

TEST(StopStringFilter, ReturnsTheTextBeforeTheMatchAndOptionallyTheStop) {
  StopStringFilter cut({"END"}, false);
  EXPECT_EQ(cut.Push("one E"), "one ");
  EXPECT_EQ(cut.Push("NDtwo"), "");
  EXPECT_TRUE(cut.matched());
  StopStringFilter keep({"END"}, true);
  EXPECT_EQ(keep.Push("one EN"), "one ");
  EXPECT_EQ(keep.Push("Dtwo"), "END");
  StopStringFilter inside({"END"}, false);
  EXPECT_EQ(inside.Push("xENDy"), "x");
  StopStringFilter flush({"END"}, false);
  EXPECT_EQ(flush.Push("abEN"), "ab");
  EXPECT_EQ(flush.Flush(), "EN");
  StopStringFilter none({}, false);
  EXPECT_EQ(none.Push("anything"), "anything");
}

TEST(Utf8Stream, HoldsBackIncompleteCharacters) {
  Utf8Stream s;
  // "é" = C3 A9, "€" = E2 82 AC
  EXPECT_EQ(s.Push("a\xC3"), "a");
  EXPECT_EQ(s.Push("\xA9"), "\xC3\xA9");
  EXPECT_EQ(s.Push("\xE2\x82"), "");
  EXPECT_EQ(s.Push("\xAC!"), "\xE2\x82\xAC!");
  EXPECT_EQ(s.Push("\xF0\x9F"), "");
  // The stream ended inside a character: it becomes U+FFFD, not a broken byte.
  EXPECT_EQ(s.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(s.Flush(), "");
}

TEST(Utf8Stream, ReplacesBytesThatAreNotUtf8) {
  Utf8Stream s;
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(s.Push("\xFF" "a"), fffd + "a");
  EXPECT_EQ(s.Push("\x80"), fffd);
  // Overlong "/" (C0 AF), a surrogate (ED A0 80), past U+10FFFF (F4 90 80 80).
  EXPECT_EQ(s.Push("\xC0\xAF"), fffd + fffd);
  EXPECT_EQ(s.Push("\xED\xA0\x80"), fffd + fffd + fffd);
  EXPECT_EQ(s.Push("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);
  // A lead byte followed by a non-continuation: the lead alone is replaced.
  EXPECT_EQ(s.Push("\xC3" "A"), fffd + "A");
  EXPECT_EQ(s.Push("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(s.Flush(), "");
}

TEST(ChatTemplate, DetectsFormats) {
  EXPECT_EQ(DetectChatFormat(""), ChatFormat::kNone);
  EXPECT_EQ(DetectChatFormat("{{'<|im_start|>' + message['role']}}"), ChatFormat::kChatMl);
  EXPECT_EQ(DetectChatFormat("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"),
            ChatFormat::kLlama2);
  EXPECT_EQ(DetectChatFormat("<|start_header_id|>"), ChatFormat::kLlama3);
}

TEST(ChatTemplate, UnknownTemplateIsAGuessedChatMl) {
  const std::string alpaca =
      "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}{% endfor %}";
  EXPECT_EQ(DetectChatFormat(alpaca), ChatFormat::kChatMl);
  EXPECT_FALSE(ChatTemplateRecognised(alpaca));
  EXPECT_TRUE(ChatTemplateRecognised(""));
  EXPECT_TRUE(ChatTemplateRecognised("{{'<|im_start|>' + message['role']}}"));
  EXPECT_TRUE(ChatTemplateRecognised("[INST]"));
  EXPECT_TRUE(ChatTemplateRecognised("<|start_header_id|>"));
}

TEST(ChatTemplate, ChatMlWithTheDefaultSystemPrompt) {
  // The shape of SmolLM2's template.
  const std::string jinja =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
      "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
  ChatTemplate t{.format = DetectChatFormat(jinja), .default_system = DefaultSystemPrompt(jinja)};
  EXPECT_EQ(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const std::vector<ChatMessage> msgs = {{"user", "Hi"}};
  EXPECT_EQ(t.Render(msgs, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<ChatMessage> with_system = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}};
  EXPECT_EQ(t.Render(with_system, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello<|im_end|>\n");
}

TEST(ChatTemplate, Llama2FoldsTheSystemPromptIntoTheFirstTurn) {
  ChatTemplate t{.format = ChatFormat::kLlama2, .bos_text = "<s>"};
  const std::vector<ChatMessage> msgs = {
      {"system", "S"}, {"user", "A"}, {"assistant", "B"}, {"user", "C"}};
  EXPECT_EQ(t.Render(msgs, true),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nA [/INST] B </s><s>[INST] C [/INST]");
}

TEST(ChatTemplate, RejectsUnknownRoles) {
  ChatTemplate t{.format = ChatFormat::kChatMl};
  const std::vector<ChatMessage> msgs = {{"wizard", "x"}};
  EXPECT_THROW(t.Render(msgs, true), Error);
}

}  // namespace
}  // namespace kvinfer
