#include <cmath>
#include <map>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "engine/chat_template.h"
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
