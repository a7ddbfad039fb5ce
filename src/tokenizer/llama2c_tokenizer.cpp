#include "tokenizer/llama2c_tokenizer.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <string_view>
#include <utility>

#include "core/error.h"

namespace kvinfer {
namespace {

// Far above any llama2.c vocabulary (Llama 2's is 32000).
constexpr int64_t kMaxVocab = 1 << 22;

}  // namespace

TokenizerSpec Llama2cTokenizerSpec(const std::string& path, int32_t vocab_size) {
  return Llama2cTokenizerSpecFromBytes(MappedFile::Open(path), vocab_size);
}

TokenizerSpec Llama2cTokenizerSpecFromBytes(const MappedFile& file, int32_t vocab_size) {
  const std::string& path = file.path();
  const uint8_t* d = file.data();
  const uint64_t size = file.size();
  if (vocab_size < 0 || vocab_size > kMaxVocab) {
    Fail(StatusCode::kInvalidArgument, "{}: vocab_size {} is out of range (0..{})", path,
         vocab_size, kMaxVocab);
  }
  uint64_t pos = 0;
  const auto read_i32 = [&](const char* what, size_t id) {
    if (size - pos < 4) {
      Fail(StatusCode::kDataLoss,
           "{}: llama2.c tokenizer truncated: {} of token {} at byte {} needs 4 bytes, {} remain",
           path, what, id, pos, size - pos);
    }
    int32_t v;
    std::memcpy(&v, d + pos, 4);
    pos += 4;
    return v;
  };
  const int32_t max_len = read_i32("max_token_length", 0);
  if (max_len < 1 || max_len > (1 << 16)) {
    Fail(StatusCode::kDataLoss, "{}: llama2.c tokenizer max_token_length {} (expected 1..65536)",
         path, max_len);
  }
  TokenizerSpec spec;
  spec.kind = TokenizerKind::kSpm;
  constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  for (size_t id = 0; vocab_size == 0 ? pos < size : id < static_cast<size_t>(vocab_size); ++id) {
    if (id >= static_cast<size_t>(kMaxVocab)) {
      Fail(StatusCode::kDataLoss, "{}: llama2.c tokenizer holds more than {} tokens", path,
           kMaxVocab);
    }
    const int32_t score_bits = read_i32("score", id);
    float score;
    std::memcpy(&score, &score_bits, 4);
    if (!std::isfinite(score)) {
      Fail(StatusCode::kDataLoss, "{}: llama2.c tokenizer: token {} has a non-finite score", path,
           id);
    }
    const uint64_t len_at = pos;
    const int32_t len = read_i32("length", id);
    if (len < 0 || len > max_len || static_cast<uint64_t>(len) > size - pos) {
      Fail(StatusCode::kDataLoss,
           "{}: llama2.c tokenizer: token {} length {} at byte {} is invalid (expected 0..{}, "
           "{} bytes remain)",
           path, id, len, len_at, max_len, size - pos);
    }
    std::string raw(reinterpret_cast<const char*>(d + pos), static_cast<size_t>(len));
    pos += static_cast<uint64_t>(len);
    std::string piece;
    if (raw == "\n<s>\n") {
      piece = "<s>";
    } else if (raw == "\n</s>\n") {
      piece = "</s>";
    } else {
      for (char ch : raw) {
        if (ch == ' ') {
          piece += kSpace;
        } else {
          piece += ch;
        }
      }
    }
    TokenType type = TokenType::kNormal;
    if (piece == "<unk>") {
      type = TokenType::kUnknown;
    } else if (piece == "<s>" || piece == "</s>") {
      type = TokenType::kControl;
    } else if (piece.size() == 6 && piece.starts_with("<0x") && piece[5] == '>' &&
               std::isxdigit(static_cast<unsigned char>(piece[3])) &&
               std::isxdigit(static_cast<unsigned char>(piece[4]))) {
      type = TokenType::kByte;
    }
    spec.tokens.push_back(std::move(piece));
    spec.scores.push_back(score);
    spec.types.push_back(type);
  }
  if (pos != size) {
    Fail(StatusCode::kDataLoss,
         "{}: llama2.c tokenizer has {} trailing bytes after {} tokens (file size {})", path,
         size - pos, spec.tokens.size(), size);
  }
  if (spec.tokens.size() < 3) {
    Fail(StatusCode::kDataLoss,
         "{}: llama2.c tokenizer has {} tokens (expected at least <unk>, <s>, </s>)", path,
         spec.tokens.size());
  }
  spec.unk_id = 0;
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.add_bos = true;
  spec.add_eos = false;
  spec.add_space_prefix = true;
  return spec;
}

}  // namespace kvinfer
