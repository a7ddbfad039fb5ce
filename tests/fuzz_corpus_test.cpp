// Replays the corpora of the llama2c, tokenizer and batch_request fuzz
// targets (tests/data/<name>_corpus/: seeds and fuzzer reproducers), each
// file decoded as its fuzz target decodes it (docs/fuzzing.md). Every input
// must parse or fail with the reader's documented error and a message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "batch_request.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "serve/openai_request.h"
#include "io/llama2c.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace kvinfer {
namespace {

std::vector<std::vector<uint8_t>> ReadCorpus(const std::string& name, size_t* files) {
  const std::filesystem::path dir =
      std::filesystem::path(KVINFER_SOURCE_DIR) / "tests" / "data" / (name + "_corpus");
  std::vector<std::vector<uint8_t>> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  *files = out.size();
  return out;
}

TEST(FuzzCorpusTest, Llama2cInputsParseOrFailWithDataLoss) {
  size_t files = 0;
  int parsed = 0;
  for (const std::vector<uint8_t>& input : ReadCorpus("llama2c", &files)) {
    if (input.empty()) continue;
    const std::span<const uint8_t> file(input.data() + 1, input.size() - 1);
    try {
      if (input[0] & 1) {
        const TokenizerSpec spec = Llama2cTokenizerSpecFromBytes(MappedFile::FromBytes(file));
        EXPECT_FALSE(spec.tokens.empty());
        EXPECT_EQ(spec.scores.size(), spec.tokens.size());
      } else {
        const Llama2cCheckpoint c = Llama2cCheckpoint::Parse(MappedFile::FromBytes(file));
        EXPECT_EQ(c.layers().size(), static_cast<size_t>(c.header().n_layers));
        for (const auto& [name, w] : c.NamedTensors()) {
          const auto* p = static_cast<const uint8_t*>(w.data);
          EXPECT_GE(p, file.data()) << name;
          EXPECT_LE(p + static_cast<size_t>(w.rows) * w.row_bytes, file.data() + file.size()) << name;
        }
      }
      ++parsed;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), StatusCode::kDataLoss) << e.what();
      EXPECT_STRNE(e.what(), "");
    }
  }
  EXPECT_GE(files, 4u);
  EXPECT_GE(parsed, 3);  // the seeds: two checkpoints, two tokenizer files
}

TEST(FuzzCorpusTest, HfTokenizerInputsParseOrFailWithError) {
  size_t files = 0;
  int encoded = 0;
  for (const std::vector<uint8_t>& input : ReadCorpus("tokenizer", &files)) {
    if (input.empty()) continue;
    const std::string_view rest(reinterpret_cast<const char*>(input.data()) + 1, input.size() - 1);
    const size_t sep = rest.find('\0');
    const std::string_view first = rest.substr(0, sep);
    const std::string_view second =
        sep == std::string_view::npos ? std::string_view() : rest.substr(sep + 1);
    try {
      TokenizerSpec spec = (input[0] & 1)
                               ? TokenizerSpecFromVocabMerges(first, second, "", "corpus")
                               : TokenizerSpecFromHfJson(first, second, "corpus");
      const Tokenizer tok(std::move(spec));
      const std::string_view text = rest.substr(rest.size() - std::min<size_t>(rest.size(), 64));
      const std::vector<int32_t> ids = tok.Encode(text, true, true);
      for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < tok.vocab_size()) << id;
      EXPECT_EQ(tok.Encode("hello the", false).empty(), false);
      ++encoded;
    } catch (const Error& e) {
      EXPECT_STRNE(e.what(), "");
    }
  }
  EXPECT_GE(files, 4u);
  EXPECT_GE(encoded, 4);
}

TEST(FuzzCorpusTest, BatchLinesParseInRangeOrFailWithInvalidArgument) {
  size_t files = 0;
  int parsed = 0;
  for (const std::vector<uint8_t>& input : ReadCorpus("batch_request", &files)) {
    const std::string_view line(reinterpret_cast<const char*>(input.data()), input.size());
    const StatusOr<cli::BatchRequest> r = cli::ParseBatchRequest(line, SamplingParams{});
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
      EXPECT_FALSE(r.status().message().empty());
      continue;
    }
    EXPECT_FALSE(r->prompt.empty());
    EXPECT_TRUE(r->params.max_tokens >= 0 && r->params.max_tokens <= (1 << 24));
    EXPECT_TRUE(r->params.top_k >= 0 && r->params.top_k <= (1 << 30));
    EXPECT_TRUE(std::isfinite(r->params.temperature) && std::isfinite(r->params.top_p));
    ++parsed;
  }
  EXPECT_GE(files, 3u);
  EXPECT_GE(parsed, 3);
}

TEST(FuzzCorpusTest, ServerRequestBodiesParseInRangeOrGiveA4xx) {
  size_t files = 0;
  int parsed = 0;
  for (const std::vector<uint8_t>& input : ReadCorpus("openai_request", &files)) {
    if (input.empty()) continue;
    const std::string_view body(reinterpret_cast<const char*>(input.data()) + 1, input.size() - 1);
    const int kind = input[0] % 4;
    if (kind >= 2) {
      auto t = serve::ParseTokenizeRequest(body);
      auto d = serve::ParseDetokenizeRequest(body);
      for (const serve::ApiError* e : {std::get_if<serve::ApiError>(&t), std::get_if<serve::ApiError>(&d)}) {
        if (e) {
          EXPECT_EQ(e->http_status / 100, 4);
        }
      }
      continue;
    }
    const serve::Endpoint endpoint =
        kind == 0 ? serve::Endpoint::kCompletions : serve::Endpoint::kChatCompletions;
    auto r = serve::ParseCompletionRequest(body, endpoint);
    if (auto* e = std::get_if<serve::ApiError>(&r)) {
      EXPECT_EQ(e->http_status / 100, 4);
      EXPECT_FALSE(e->message.empty());
      continue;
    }
    const serve::CompletionRequest& c = std::get<serve::CompletionRequest>(r);
    EXPECT_TRUE(c.params.n >= 1 && c.params.n <= 128);
    EXPECT_TRUE(c.params.temperature >= 0 && c.params.temperature <= 2);
    EXPECT_TRUE(c.params.top_p > 0 && c.params.top_p <= 1);
    EXPECT_TRUE(c.top_logprobs >= 0 && c.top_logprobs <= 20);
    EXPECT_FALSE(c.prompts.empty() && c.messages.empty());
    ++parsed;
  }
  EXPECT_GE(files, 8u);
  EXPECT_GE(parsed, 5);
}

TEST(FuzzCorpusTest, BatchNumbersPastAFloatAreRefused) {
  // A double a float cannot hold has no float to become (UBSan's
  // float-cast-overflow): refused by name rather than cast.
  for (const char* line : {R"({"prompt": "x", "temperature": 1e300})",
                           R"({"prompt": "x", "top_p": -1e39})"}) {
    const StatusOr<cli::BatchRequest> r = cli::ParseBatchRequest(line, SamplingParams{});
    ASSERT_FALSE(r.ok()) << line;
    EXPECT_NE(r.status().message().find("finite number"), std::string::npos) << r.status().message();
  }
  const StatusOr<cli::BatchRequest> ok =
      cli::ParseBatchRequest(R"({"prompt": "x", "temperature": 3.4e38})", SamplingParams{});
  ASSERT_TRUE(ok.ok()) << ok.status().message();
}

}  // namespace
}  // namespace kvinfer
