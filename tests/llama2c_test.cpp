// llama2.c checkpoint and tokenizer.bin reader: stories260K.bin against the
// same model's GGUF (every tensor bit-identical, same config, same
// tokenizer), synthetic checkpoints (shared and separate classifier), and
// malformed headers and sizes.
#include "io/llama2c.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "model/config.h"
#include "test_util.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace kvinfer {
namespace {

using Bytes = std::vector<uint8_t>;

const std::string kStoriesDir = testing::SharedModels() + "/stories260K";
const std::string kStoriesBin = kStoriesDir + "/stories260K.bin";
const std::string kStoriesTok = kStoriesDir + "/tok512.bin";

// A checkpoint whose k-th tensor (file order, freq_cis included) is filled
// with the value k, so a view landing on the wrong tensor shows.
Bytes MakeCheckpoint(std::vector<int32_t> h, bool shared) {
  if (!shared) h[5] = -h[5];
  const int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv = h[4];
  const int64_t vocab = shared ? h[5] : -h[5], seq = h[6];
  const int64_t hs = dim / heads, kv_dim = hs * kv;
  const std::vector<int64_t> sizes = {vocab * dim,          layers * dim,
                                      layers * dim * dim,   layers * kv_dim * dim,
                                      layers * kv_dim * dim, layers * dim * dim,
                                      layers * dim,         layers * hidden * dim,
                                      layers * dim * hidden, layers * hidden * dim,
                                      dim,                  seq * hs / 2,
                                      seq * hs / 2};
  std::vector<float> f;
  for (size_t k = 0; k < sizes.size(); ++k) f.insert(f.end(), static_cast<size_t>(sizes[k]), static_cast<float>(k));
  if (!shared) f.insert(f.end(), static_cast<size_t>(vocab * dim), 13.0f);
  Bytes b(28 + f.size() * 4);
  std::memcpy(b.data(), h.data(), 28);
  std::memcpy(b.data() + 28, f.data(), f.size() * 4);
  return b;
}

const std::vector<int32_t> kSmall = {8, 12, 2, 4, 2, 10, 6};  // head size 2, kv_dim 4

float First(const WeightView& w) {
  float v;
  std::memcpy(&v, w.data, 4);
  return v;
}
float Last(const WeightView& w) {
  float v;
  std::memcpy(&v, w.row(w.rows - 1) + w.row_bytes - 4, 4);
  return v;
}

std::string ParseError(const Bytes& b) {
  try {
    Llama2cCheckpoint::Parse(MappedFile::FromBytes(b));
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kDataLoss) << e.what();
    return e.what();
  }
}

TEST(Llama2cTest, SyntheticShared) {
  const Bytes file = MakeCheckpoint(kSmall, /*shared=*/true);
  const Llama2cCheckpoint c = Llama2cCheckpoint::Parse(MappedFile::FromBytes(file));
  const ModelConfig cfg = ConfigFromLlama2c(c.header());
  EXPECT_EQ(cfg.arch, Arch::kLlama);
  EXPECT_EQ(cfg.arch_name, "llama");
  EXPECT_EQ(cfg.d_model, 8);
  EXPECT_EQ(cfg.d_ff, 12);
  EXPECT_EQ(cfg.n_layers, 2);
  EXPECT_EQ(cfg.n_heads, 4);
  EXPECT_EQ(cfg.n_kv_heads, 2);
  EXPECT_EQ(cfg.head_dim, 2);
  EXPECT_EQ(cfg.rope_dims, 2);
  EXPECT_EQ(cfg.vocab_size, 10);
  EXPECT_EQ(cfg.context_length, 6);
  EXPECT_FLOAT_EQ(cfg.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(cfg.norm_eps, 1e-5f);
  EXPECT_TRUE(cfg.tied_output);
  EXPECT_TRUE(c.shared_classifier());

  EXPECT_EQ(c.token_embedding().rows, 10);
  EXPECT_EQ(c.token_embedding().cols, 8);
  EXPECT_EQ(First(c.token_embedding()), 0.0f);
  ASSERT_EQ(c.layers().size(), 2u);
  for (const auto& L : c.layers()) {
    const std::pair<const WeightView*, float> expect[] = {
        {&L.attn_norm, 1}, {&L.wq, 2}, {&L.wk, 3}, {&L.wv, 4}, {&L.wo, 5},
        {&L.ffn_norm, 6},  {&L.w1, 7}, {&L.w2, 8}, {&L.w3, 9}};
    for (const auto& [w, k] : expect) {
      EXPECT_EQ(First(*w), k);
      EXPECT_EQ(Last(*w), k);
      EXPECT_EQ(w->type, DType::kF32);
      EXPECT_EQ(w->row_bytes, static_cast<size_t>(w->cols) * 4);
    }
    EXPECT_EQ(L.wk.rows, 4);
    EXPECT_EQ(L.wk.cols, 8);
    EXPECT_EQ(L.w1.rows, 12);
    EXPECT_EQ(L.w2.rows, 8);
    EXPECT_EQ(L.w2.cols, 12);
    EXPECT_EQ(L.attn_norm.rows, 1);
  }
  // The second layer's views follow the first's.
  EXPECT_EQ(static_cast<const uint8_t*>(c.layers()[1].wq.data),
            static_cast<const uint8_t*>(c.layers()[0].wq.data) + 8 * 8 * 4);
  EXPECT_EQ(First(c.output_norm()), 10.0f);
  EXPECT_EQ(c.output().data, c.token_embedding().data);
  const auto named = c.NamedTensors();
  EXPECT_EQ(named.size(), 1u + 2 * 9 + 1);
  EXPECT_EQ(named[0].first, "token_embd.weight");
  EXPECT_EQ(named[7].first, "blk.0.ffn_gate.weight");
  EXPECT_EQ(named.back().first, "output_norm.weight");
}

TEST(Llama2cTest, SyntheticSeparateClassifier) {
  const Bytes file = MakeCheckpoint(kSmall, /*shared=*/false);
  const Llama2cCheckpoint c = Llama2cCheckpoint::Parse(MappedFile::FromBytes(file));
  EXPECT_FALSE(c.shared_classifier());
  EXPECT_FALSE(ConfigFromLlama2c(c.header()).tied_output);
  EXPECT_EQ(ConfigFromLlama2c(c.header()).vocab_size, 10);
  EXPECT_EQ(c.header().vocab_size, -10);
  EXPECT_EQ(First(c.output()), 13.0f);
  EXPECT_EQ(Last(c.output()), 13.0f);
  EXPECT_EQ(c.output().rows, 10);
  const auto named = c.NamedTensors();
  EXPECT_EQ(named.back().first, "output.weight");
}

TEST(Llama2cTest, SizeMismatch) {
  const Bytes file = MakeCheckpoint(kSmall, true);
  // Every truncation and trailing bytes are rejected with both sizes named.
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes prefix(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(ParseError(prefix), "") << n;
  }
  const std::string expected_size = std::to_string(file.size());
  {
    Bytes b(file.begin(), file.end() - 4);
    const std::string msg = ParseError(b);
    EXPECT_NE(msg.find("is " + std::to_string(b.size()) + " bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("needs exactly " + expected_size + " bytes (truncated)"), std::string::npos)
        << msg;
  }
  {
    Bytes b = file;
    b.push_back(0);
    const std::string msg = ParseError(b);
    EXPECT_NE(msg.find("(trailing bytes)"), std::string::npos) << msg;
  }
  // A shared file read as separate: too short by the classifier.
  {
    Bytes b = file;
    const int32_t neg = -10;
    std::memcpy(b.data() + 20, &neg, 4);
    EXPECT_NE(ParseError(b).find("truncated"), std::string::npos);
  }
  EXPECT_NE(ParseError(Bytes(27)).find("too short for the llama2.c header"), std::string::npos);
}

TEST(Llama2cTest, BadHeaders) {
  const auto with = [](size_t field, int32_t v) {
    std::vector<int32_t> h = kSmall;
    Bytes b = MakeCheckpoint(h, true);
    std::memcpy(b.data() + 4 * field, &v, 4);
    return ParseError(b);
  };
  EXPECT_NE(with(0, 0).find("dim = 0 is out of range"), std::string::npos);
  EXPECT_NE(with(0, -8).find("dim = -8"), std::string::npos);
  EXPECT_NE(with(1, 0).find("hidden_dim = 0"), std::string::npos);
  EXPECT_NE(with(2, 1 << 30).find("n_layers"), std::string::npos);
  EXPECT_NE(with(3, 0).find("n_heads = 0"), std::string::npos);
  EXPECT_NE(with(4, -1).find("n_kv_heads = -1"), std::string::npos);
  EXPECT_NE(with(5, 0).find("|vocab_size| = 0"), std::string::npos);
  EXPECT_NE(with(5, INT32_MIN).find("|vocab_size|"), std::string::npos);
  EXPECT_NE(with(6, 0).find("seq_len = 0"), std::string::npos);
  EXPECT_NE(with(0, INT32_MAX).find("dim = 2147483647 is out of range"), std::string::npos);
  EXPECT_NE(with(3, 3).find("dim 8 is not a multiple of n_heads 3"), std::string::npos);
  EXPECT_NE(with(4, 3).find("n_heads 4 is not a multiple of n_kv_heads 3"), std::string::npos);
  EXPECT_NE(with(3, 8).find("head size 1 (dim / n_heads) must be even"), std::string::npos);
  // Large but in-range values: the size check rejects them without overflow.
  EXPECT_NE(with(1, 1 << 20).find("needs exactly"), std::string::npos);
}

TEST(Llama2cTest, Stories260KMatchesGguf) {
  KVINFER_REQUIRE_FILE(kStoriesBin);
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const Llama2cCheckpoint c = Llama2cCheckpoint::Open(kStoriesBin);
  const GgufFile g = GgufFile::Open(testing::StoriesGguf());
  const ModelConfig gc = ConfigFromGguf(g);
  const ModelConfig lc = ConfigFromLlama2c(c.header());
  EXPECT_EQ(lc.n_layers, 5);
  EXPECT_EQ(lc.d_model, 64);
  EXPECT_EQ(lc.context_length, 512);
  EXPECT_EQ(lc.n_layers, gc.n_layers);
  EXPECT_EQ(lc.d_model, gc.d_model);
  EXPECT_EQ(lc.n_heads, gc.n_heads);
  EXPECT_EQ(lc.n_kv_heads, gc.n_kv_heads);
  EXPECT_EQ(lc.head_dim, gc.head_dim);
  EXPECT_EQ(lc.d_ff, gc.d_ff);
  EXPECT_EQ(lc.vocab_size, gc.vocab_size);
  EXPECT_EQ(lc.rope_dims, gc.rope_dims);
  EXPECT_FLOAT_EQ(lc.rope_theta, gc.rope_theta);
  EXPECT_FLOAT_EQ(lc.norm_eps, gc.norm_eps);
  EXPECT_TRUE(c.shared_classifier());

  // Every tensor bit-identical: same (out, in) orientation, no RoPE
  // permutation. The GGUF stores the shared classifier as output.weight.
  auto named = c.NamedTensors();
  named.emplace_back("output.weight", c.output());
  size_t compared = 0;
  for (const auto& [name, w] : named) {
    const GgufTensorInfo* t = g.FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    ASSERT_EQ(t->type, DType::kF32) << name;
    // GGUF dims {cols, rows}; 1-D norms {n}.
    const uint64_t rows = t->dims.size() == 2 ? t->dims[1] : 1;
    ASSERT_EQ(t->dims[0], static_cast<uint64_t>(w.cols)) << name;
    ASSERT_EQ(rows, static_cast<uint64_t>(w.rows)) << name;
    ASSERT_EQ(t->num_bytes, static_cast<uint64_t>(w.rows) * w.row_bytes) << name;
    EXPECT_EQ(std::memcmp(t->data, w.data, t->num_bytes), 0) << name << " differs";
    ++compared;
  }
  EXPECT_EQ(compared, g.tensors().size());
}

TEST(Llama2cTokenizerTest, Tok512MatchesGguf) {
  KVINFER_REQUIRE_FILE(kStoriesTok);
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const TokenizerSpec spec = Llama2cTokenizerSpec(kStoriesTok, 512);
  EXPECT_EQ(Llama2cTokenizerSpec(kStoriesTok).tokens, spec.tokens);  // read to the end
  const GgufFile g = GgufFile::Open(testing::StoriesGguf());
  const auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
  const auto scores = g.GetFloatArray("tokenizer.ggml.scores");
  const auto types = g.GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(tokens && scores && types);
  ASSERT_EQ(spec.tokens.size(), tokens->size());
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    EXPECT_EQ(spec.tokens[i], (*tokens)[i]) << i;
    EXPECT_EQ(spec.scores[i], (*scores)[i]) << i;
    EXPECT_EQ(static_cast<int64_t>(spec.types[i]), (*types)[i]) << i;
  }
  EXPECT_EQ(spec.kind, TokenizerKind::kSpm);
  EXPECT_EQ(spec.bos_id, 1);
  EXPECT_EQ(spec.eos_id, 2);
  EXPECT_EQ(spec.unk_id, 0);
  EXPECT_TRUE(spec.add_bos);
  EXPECT_TRUE(spec.add_space_prefix);

  const Tokenizer mine(spec);
  const Tokenizer ref = Tokenizer::FromGguf(g);
  EXPECT_EQ(mine.Encode("Once upon a time", true), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  for (const std::string text :
       {"Once upon a time", "", " ", "Lily and Tom went to the park.\nThey saw a big dog!",
        "  two  spaces", "caf\xC3\xA9 \xE2\x98\x95 \xF0\x9F\x98\x80", "<s> not special </s>",
        "1234567890 {}[]()", "\t\ttabs\n\nnewlines\r\n"}) {
    for (bool add_special : {false, true}) {
      const auto ids = mine.Encode(text, add_special);
      EXPECT_EQ(ids, ref.Encode(text, add_special)) << text;
      EXPECT_EQ(mine.Decode(ids), ref.Decode(ids)) << text;
      EXPECT_EQ(mine.Decode(ids), text) << text;
    }
  }
}

TEST(Llama2cTokenizerTest, Malformed) {
  // A valid 4-token file: max_len 6, "<unk>", "\n<s>\n", "\n</s>\n", " a".
  Bytes file;
  const auto put_i32 = [&](int32_t v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    file.insert(file.end(), p, p + 4);
  };
  const auto put_tok = [&](float score, const std::string& s) {
    int32_t bits;
    std::memcpy(&bits, &score, 4);
    put_i32(bits);
    put_i32(static_cast<int32_t>(s.size()));
    file.insert(file.end(), s.begin(), s.end());
  };
  put_i32(6);
  put_tok(0, "<unk>");
  put_tok(0, "\n<s>\n");
  put_tok(0, "\n</s>\n");
  put_tok(-1, " a");
  const auto parse = [](const Bytes& b, int32_t n) {
    return Llama2cTokenizerSpecFromBytes(MappedFile::FromBytes(b), n);
  };
  const TokenizerSpec spec = parse(file, 0);
  ASSERT_EQ(spec.tokens.size(), 4u);
  EXPECT_EQ(spec.tokens[1], "<s>");
  EXPECT_EQ(spec.tokens[3], "\xE2\x96\x81" "a");
  EXPECT_EQ(spec.types[0], TokenType::kUnknown);
  EXPECT_EQ(spec.types[2], TokenType::kControl);
  EXPECT_EQ(spec.types[3], TokenType::kNormal);
  EXPECT_EQ(spec.scores[3], -1.0f);

  const auto error = [&](const Bytes& b, int32_t n) -> std::string {
    try {
      parse(b, n);
      return "";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), StatusCode::kDataLoss) << e.what();
      return e.what();
    }
  };
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes prefix(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(error(prefix, 4), "") << n;
    // Read-to-the-end accepts a prefix that ends between tokens (n = 44:
    // three whole tokens), nothing else.
    EXPECT_EQ(error(prefix, 0) == "", n == 44) << n;
  }
  EXPECT_NE(error(file, 3).find("10 trailing bytes after 3 tokens"), std::string::npos);  // 3 tokens, then junk
  EXPECT_NE(error(file, 5).find("truncated"), std::string::npos);
  {
    Bytes b = file;
    const int32_t neg = -3;
    std::memcpy(b.data() + 4 + 4, &neg, 4);  // length of token 0
    EXPECT_NE(error(b, 0).find("token 0 length -3"), std::string::npos);
    const int32_t big = 7;  // > max_token_length
    std::memcpy(b.data() + 4 + 4, &big, 4);
    EXPECT_NE(error(b, 0).find("token 0 length 7"), std::string::npos);
  }
  {
    Bytes b = file;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data() + 4, &nan, 4);
    EXPECT_NE(error(b, 0).find("non-finite score"), std::string::npos);
    const int32_t zero = 0;
    std::memcpy(b.data(), &zero, 4);
    EXPECT_NE(error(b, 0).find("max_token_length 0"), std::string::npos);
  }
  try {
    Llama2cTokenizerSpec("/nonexistent/tok.bin");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kNotFound);
  }
}

}  // namespace
}  // namespace kvinfer
