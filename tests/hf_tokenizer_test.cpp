// Hugging Face tokenizer files: the real GPT-2 vocab.json/merges.txt
// (encoder.json/vocab.bpe) against llama.cpp's GPT-2 vocabulary GGUF and its
// test vectors, tokenizer.json variants, pre-tokenizer recognition, special
// token configs, and malformed or missing files.
#include "tokenizer/hf_tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "vocab_vectors.h"

namespace kvinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Ids = std::vector<int32_t>;

const std::string kGpt2Dir = testing::SharedModels() + "/tokenizers/gpt2";
const std::string kGpt2Gguf = testing::SharedModels() + "/tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf";

// Expects `fn` to throw `code` with a message containing `part`.
template <typename Fn>
void ExpectError(Fn&& fn, StatusCode code, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

class HfTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("kvinfer_hftok_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// The spec from GPT-2's original files equals llama.cpp's conversion of
// the same tokenizer: tokens, merges, types, special ids.
TEST(HfTokenizerGpt2Test, FilesMatchGgufVocab) {
  KVINFER_REQUIRE_FILE(kGpt2Dir + "/encoder.json");
  KVINFER_REQUIRE_FILE(kGpt2Gguf);
  const TokenizerSpec spec = TokenizerSpecFromHf(kGpt2Dir);
  const GgufFile g = GgufFile::Open(kGpt2Gguf);
  const auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
  const auto merges = g.GetStringArray("tokenizer.ggml.merges");
  const auto types = g.GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(tokens && merges && types);
  EXPECT_EQ(spec.kind, TokenizerKind::kBpe);
  EXPECT_EQ(spec.pre, "gpt-2");
  ASSERT_EQ(spec.tokens.size(), 50257u);
  ASSERT_EQ(spec.tokens.size(), tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) {
    ASSERT_EQ(spec.tokens[i], (*tokens)[i]) << i;
    ASSERT_EQ(static_cast<int64_t>(spec.types[i]), (*types)[i]) << i;
  }
  ASSERT_EQ(spec.merges.size(), merges->size());
  for (size_t i = 0; i < merges->size(); ++i) ASSERT_EQ(spec.merges[i], (*merges)[i]) << i;
  EXPECT_EQ(spec.bos_id, 50256);
  EXPECT_EQ(spec.eos_id, 50256);
  EXPECT_EQ(spec.bos_id, g.GetInt("tokenizer.ggml.bos_token_id"));
  EXPECT_EQ(spec.eos_id, g.GetInt("tokenizer.ggml.eos_token_id"));
  EXPECT_EQ(spec.unk_id, -1);
  EXPECT_FALSE(spec.add_bos);
  EXPECT_FALSE(spec.add_eos);
  // The encoder.json path names the pair too.
  EXPECT_EQ(TokenizerSpecFromHf(kGpt2Dir + "/encoder.json").merges, spec.merges);
}

TEST(HfTokenizerGpt2Test, Gpt2Vectors) {
  KVINFER_REQUIRE_FILE(kGpt2Dir + "/encoder.json");
  KVINFER_REQUIRE_FILE(kGpt2Gguf + ".inp");
  const Tokenizer tok(TokenizerSpecFromHf(kGpt2Dir));
  const std::vector<testing::VocabCase> cases = testing::LoadVocabCases(kGpt2Gguf);
  ASSERT_EQ(cases.size(), 46u);
  for (const testing::VocabCase& c : cases) {
    const Ids ids = tok.Encode(c.input, /*add_special=*/false);
    EXPECT_EQ(ids, c.expected) << "input \"" << testing::EscapedText(c.input) << "\"";
    EXPECT_EQ(tok.Decode(ids), c.input) << "round trip of \"" << testing::EscapedText(c.input)
                                        << "\"";
  }
  EXPECT_EQ(tok.Encode("Hello world", true), (Ids{15496, 995}));
  EXPECT_EQ(tok.Encode("<|endoftext|>", false, /*parse_special=*/true), (Ids{50256}));
  EXPECT_TRUE(tok.IsEndOfGeneration(50256));
}

// The same vocabulary as vocab.json + merges.txt, and as tokenizer.json in
// both merge spellings, gives the same spec.
TEST_F(HfTokenizerTest, Gpt2AllFileLayouts) {
  KVINFER_REQUIRE_FILE(kGpt2Dir + "/encoder.json");
  const TokenizerSpec ref = TokenizerSpecFromHf(kGpt2Dir);
  fs::copy_file(kGpt2Dir + "/encoder.json", dir_ / "vocab.json");
  fs::copy_file(kGpt2Dir + "/vocab.bpe", dir_ / "merges.txt");
  for (const std::string& p : {dir_.string(), Path("vocab.json")}) {
    const TokenizerSpec s = TokenizerSpecFromHf(p);
    EXPECT_EQ(s.tokens, ref.tokens);
    EXPECT_EQ(s.merges, ref.merges);
    EXPECT_EQ(s.types, ref.types);
    EXPECT_EQ(s.bos_id, 50256);
  }

  const Json vocab = Json::parse(testing::ReadTextFile(kGpt2Dir + "/encoder.json"));
  for (const bool pairs : {false, true}) {
    Json merges = Json::array();
    for (const std::string& m : ref.merges) {
      const size_t sp = m.find(' ');
      if (pairs) {
        merges.push_back({m.substr(0, sp), m.substr(sp + 1)});
      } else {
        merges.push_back(m);
      }
    }
    Json vocab_no_eot = vocab;
    vocab_no_eot.erase("<|endoftext|>");  // comes from added_tokens instead
    const Json tj = {
        {"version", "1.0"},
        {"added_tokens",
         {{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}}}},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
          {"use_regex", true}}},
        {"model",
         {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab_no_eot}, {"merges", merges}}}};
    Write("tokenizer.json", tj.dump());
    const TokenizerSpec s = TokenizerSpecFromHf(dir_.string());  // tokenizer.json preferred
    EXPECT_EQ(s.tokens, ref.tokens);
    EXPECT_EQ(s.merges, ref.merges);
    EXPECT_EQ(s.types, ref.types);
    EXPECT_EQ(s.pre, "gpt-2");
    EXPECT_EQ(s.bos_id, 50256);
    EXPECT_EQ(s.eos_id, 50256);
    EXPECT_EQ(TokenizerSpecFromHf(Path("tokenizer.json")).tokens, ref.tokens);
  }
  // A tokenizer built from it encodes like the reference.
  const Tokenizer a(TokenizerSpecFromHf(dir_.string()));
  const Tokenizer b(ref);
  EXPECT_EQ(a.Encode("It's 2024: héllo  wörld!\n", false), b.Encode("It's 2024: héllo  wörld!\n", false));
}

// A small byte-level vocabulary as tokenizer.json text.
std::string SmallTokenizerJson(const Json& pre, const Json& extra_model = Json::object(),
                               const Json& added = Json::array()) {
  Json vocab = Json::object();
  const std::vector<std::string> pieces = {"a", "b", "c", "ab", "abc", "Ġ", "<s>", "</s>"};
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = i;
  Json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "ab c"}}};
  model.update(extra_model);
  return Json({{"added_tokens", added}, {"pre_tokenizer", pre}, {"model", model}}).dump();
}

TEST(HfTokenizerJsonTest, PreTokenizerRecognition) {
  const Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  EXPECT_EQ(TokenizerSpecFromHfJson(SmallTokenizerJson(byte_level), "", "t").pre, "gpt-2");
  const Json smollm = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
  EXPECT_EQ(TokenizerSpecFromHfJson(SmallTokenizerJson(smollm), "", "t").pre, "smollm");
  const std::string llama3_regex =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const Json llama3 = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", llama3_regex}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
         {"use_regex", false}}}}};
  EXPECT_EQ(TokenizerSpecFromHfJson(SmallTokenizerJson(llama3), "", "t").pre, "llama3");
  // Every recognised name is one the Tokenizer accepts.
  for (const Json& pre : {byte_level, smollm, llama3}) {
    EXPECT_NO_THROW(Tokenizer(TokenizerSpecFromHfJson(SmallTokenizerJson(pre), "", "t")));
  }

  // Unrecognised: refused rather than guessed.
  Json other = llama3;
  other["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
  ExpectError([&] { TokenizerSpecFromHfJson(SmallTokenizerJson(other), "", "t.json"); },
              StatusCode::kUnimplemented, "t.json: pre_tokenizer");
  Json prefix = byte_level;
  prefix["add_prefix_space"] = true;
  ExpectError([&] { TokenizerSpecFromHfJson(SmallTokenizerJson(prefix), "", "t"); },
              StatusCode::kUnimplemented, "pre_tokenizer");
  ExpectError([&] { TokenizerSpecFromHfJson(SmallTokenizerJson(nullptr), "", "t"); },
              StatusCode::kUnimplemented, "pre_tokenizer null");
  ExpectError(
      [&] {
        TokenizerSpecFromHfJson(SmallTokenizerJson(byte_level, {{"byte_fallback", true}}), "", "t");
      },
      StatusCode::kUnimplemented, "byte_fallback");
  ExpectError(
      [&] { TokenizerSpecFromHfJson(SmallTokenizerJson(byte_level, {{"type", "Unigram"}}), "", "t"); },
      StatusCode::kUnimplemented, "model.type 'Unigram'");
}

TEST(HfTokenizerJsonTest, SpecialTokens) {
  const Json bl = {{"type", "ByteLevel"}};
  const Json added = {{{"id", 6}, {"content", "<s>"}, {"special", true}},
                      {{"id", 7}, {"content", "</s>"}, {"special", true}},
                      {{"id", 8}, {"content", "<|im_end|>"}, {"special", true}},
                      {{"id", 9}, {"content", "<user>"}, {"special", false}}};
  const std::string tj = SmallTokenizerJson(bl, Json::object(), added);
  const TokenizerSpec s = TokenizerSpecFromHfJson(
      tj, R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
             "unk_token": null, "add_bos_token": true})",
      "t");
  ASSERT_EQ(s.tokens.size(), 10u);
  EXPECT_EQ(s.bos_id, 6);
  EXPECT_EQ(s.eos_id, 7);
  EXPECT_EQ(s.eot_id, 8);
  EXPECT_EQ(s.unk_id, -1);
  EXPECT_TRUE(s.add_bos);
  EXPECT_EQ(s.types[6], TokenType::kControl);
  EXPECT_EQ(s.types[8], TokenType::kControl);
  EXPECT_EQ(s.types[9], TokenType::kUserDefined);
  EXPECT_EQ(s.types[0], TokenType::kNormal);
  const Tokenizer tok(s);
  EXPECT_EQ(tok.Encode("ab", true), (Ids{6, 3}));

  // A TemplateProcessing post-processor that starts with BOS turns add_bos on.
  Json with_pp = Json::parse(tj);
  with_pp["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  EXPECT_TRUE(TokenizerSpecFromHfJson(with_pp.dump(), R"({"bos_token": "<s>"})", "t").add_bos);
  EXPECT_FALSE(TokenizerSpecFromHfJson(tj, R"({"bos_token": "<s>"})", "t").add_bos);

  ExpectError([&] { TokenizerSpecFromHfJson(tj, R"({"bos_token": "<nope>"})", "t"); },
              StatusCode::kDataLoss, "bos_token '<nope>' is not in the vocabulary");
  ExpectError([&] { TokenizerSpecFromHfJson(tj, R"({"bos_token": 5})", "t"); },
              StatusCode::kDataLoss, "\"bos_token\" must be a string");
  ExpectError([&] { TokenizerSpecFromHfJson(tj, R"({"add_bos_token": "yes"})", "t"); },
              StatusCode::kDataLoss, "\"add_bos_token\" must be a boolean");
  ExpectError([&] { TokenizerSpecFromHfJson(tj, "{", "t"); }, StatusCode::kDataLoss,
              "malformed JSON");
}

TEST(HfTokenizerJsonTest, MalformedVocabAndMerges) {
  const Json bl = {{"type", "ByteLevel"}};
  const auto spec_of = [&](const Json& model_patch, const Json& added = Json::array()) {
    return TokenizerSpecFromHfJson(SmallTokenizerJson(bl, model_patch, added), "", "tk.json");
  };
  ExpectError([&] { TokenizerSpecFromHfJson("[", "", "tk.json"); }, StatusCode::kDataLoss,
              "tk.json: malformed JSON");
  ExpectError([&] { TokenizerSpecFromHfJson("{}", "", "tk.json"); }, StatusCode::kDataLoss,
              "\"model\" object");
  ExpectError([&] { spec_of({{"vocab", {{"a", 0}, {"b", 2}}}}); }, StatusCode::kDataLoss,
              "no token has id 1");
  ExpectError([&] { spec_of({{"vocab", {{"a", 0}, {"b", 0}}}}); }, StatusCode::kDataLoss,
              "two");
  ExpectError([&] { spec_of({{"vocab", {{"a", -1}}}}); }, StatusCode::kDataLoss, "has id -1");
  ExpectError([&] { spec_of({{"vocab", {{"a", "0"}}}}); }, StatusCode::kDataLoss,
              "expected an integer id");
  ExpectError([&] { spec_of({{"vocab", {{"a", 1 << 30}}}}); }, StatusCode::kDataLoss,
              "has id 1073741824");
  ExpectError([&] { spec_of({{"vocab", Json::array()}}); }, StatusCode::kDataLoss,
              "expected an object piece -> id");
  ExpectError([&] { spec_of({{"vocab", Json::object()}}); }, StatusCode::kDataLoss,
              "vocabulary is empty");
  ExpectError([&] { spec_of({{"merges", Json::array({"ab"})}}); }, StatusCode::kDataLoss,
              "model.merges[0] 'ab' has no space");
  ExpectError([&] { spec_of({{"merges", Json::array({Json::array({"a b", "c"})})}}); }, StatusCode::kDataLoss,
              "without spaces");
  ExpectError([&] { spec_of({{"merges", Json::array({5})}}); }, StatusCode::kDataLoss,
              "must be a string \"a b\" or a pair");
  ExpectError([&] { spec_of({{"merges", nullptr}}); }, StatusCode::kDataLoss,
              "missing model.merges");
  ExpectError([&] { spec_of(Json::object(), {{{"id", 3}, {"content", "zz"}}}); }, StatusCode::kDataLoss,
              "id 3 is given to two tokens: 'ab' and 'zz'");
  ExpectError([&] { spec_of(Json::object(), {{{"content", "zz"}}}); }, StatusCode::kDataLoss,
              "added_tokens[0] needs an integer \"id\"");
}

TEST_F(HfTokenizerTest, MissingAndMalformedFiles) {
  ExpectError([&] { TokenizerSpecFromHf(Path("nothing")); }, StatusCode::kNotFound,
              "no such tokenizer directory or file");
  ExpectError([&] { TokenizerSpecFromHf(dir_.string()); }, StatusCode::kNotFound,
              "no tokenizer.json, vocab.json + merges.txt");
  Write("vocab.json", R"({"a": 0, "b": 1, "ab": 2})");
  ExpectError([&] { TokenizerSpecFromHf(dir_.string()); }, StatusCode::kNotFound,
              Path("merges.txt"));
  Write("merges.txt", "#version: 0.2\na b\n\n");
  const TokenizerSpec s = TokenizerSpecFromHf(dir_.string());
  EXPECT_EQ(s.merges, (std::vector<std::string>{"a b"}));
  EXPECT_EQ(s.bos_id, -1);  // no <|endoftext|>, no config
  Write("merges.txt", "a b\r\nab\r\n");
  ExpectError([&] { TokenizerSpecFromHf(dir_.string()); }, StatusCode::kDataLoss,
              Path("merges.txt") + ": line 2: 'ab' is not a merge");
  Write("merges.txt", "#version: 0.2\n");
  ExpectError([&] { TokenizerSpecFromHf(dir_.string()); }, StatusCode::kDataLoss, "no merges");
  Write("merges.txt", "a b\n");
  Write("vocab.json", R"({"a": 0, "b": 1, "ab": 2)");
  ExpectError([&] { TokenizerSpecFromHf(dir_.string()); }, StatusCode::kDataLoss,
              Path("vocab.json") + ": malformed JSON");
  Write("vocab.json", R"({"a": 0, "b": 1, "ab": 2})");
  Write("tokenizer_config.json", R"({"eos_token": "ab", "bos_token": "a"})");
  Write("special_tokens_map.json", R"({"eos_token": "b", "unk_token": "b"})");
  const TokenizerSpec c = TokenizerSpecFromHf(dir_.string());
  EXPECT_EQ(c.eos_id, 2);  // tokenizer_config.json wins
  EXPECT_EQ(c.bos_id, 0);
  EXPECT_EQ(c.unk_id, 1);  // filled in from special_tokens_map.json
  EXPECT_EQ(c.types[1], TokenType::kUnknown);
  Write("special_tokens_map.json", "nope");
  ExpectError([&] { TokenizerSpecFromHf(dir_.string()); }, StatusCode::kDataLoss,
              Path("special_tokens_map.json") + ": malformed JSON");
  fs::remove(dir_ / "special_tokens_map.json");
  Write("tokenizer.json", "{\"model\": 1}");
  ExpectError([&] { TokenizerSpecFromHf(dir_.string()); }, StatusCode::kDataLoss,
              Path("tokenizer.json") + ": expected a JSON object with a \"model\"");
}

// Fields of the wrong JSON type are malformed input (kDataLoss naming the
// field), not nlohmann's type_error escaping the reader (a fuzzer finding).
TEST(HfTokenizerJsonTest, WrongTypedFieldIsDataLoss) {
  const std::string cases[] = {
      R"({"model": {"type": 5, "vocab": {"a": 0}, "merges": []}})",
      R"({"model": {"type": "BPE", "byte_fallback": "no", "vocab": {"a": 0}, "merges": []}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "pre_tokenizer": {"type": ["ByteLevel"]}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
          "added_tokens": [{"id": 0, "content": "a", "special": 1}]})",
  };
  for (const std::string& json : cases) {
    try {
      (void)TokenizerSpecFromHfJson(json, "", "t.json");
      ADD_FAILURE() << "accepted: " << json;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), StatusCode::kDataLoss) << json;
      EXPECT_NE(std::string(e.what()).find("tokenizer field"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kvinfer
