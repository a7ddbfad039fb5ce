// Tokenizers built from a model's vocabulary: SentencePiece-style BPE
// (GGUF tokenizer.ggml.model = "llama": merge by score, byte fallback,
// leading-space prefix) and GPT-2-style byte-level BPE ("gpt2": ranked
// merges over the byte-to-unicode alphabet, after a regex pre-tokenizer
// chosen by tokenizer.ggml.pre).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvinfer {

class GgufFile;

enum class TokenizerKind { kSpm, kBpe };

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Everything a tokenizer is built from; filled from GGUF metadata, from
// Hugging Face files (vocab.json + merges.txt / tokenizer.json), or by tests.
struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::kSpm;
  std::string pre = "default";           // pre-tokenizer name (BPE only)
  std::vector<std::string> tokens;       // id -> piece, as stored in the vocab
  std::vector<float> scores;             // SPM merge scores (empty = all 0)
  std::vector<TokenType> types;          // empty = all normal
  std::vector<std::string> merges;       // BPE merges "left right", rank = index
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;                   // end of turn (e.g. <|im_end|>), -1 if none
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;          // SPM: prepend " " to the text
};

class Tokenizer {
 public:
  // Throws Error(kDataLoss / kUnimplemented) for inconsistent specs or an
  // unknown pre-tokenizer, naming the problem.
  explicit Tokenizer(TokenizerSpec spec);
  static Tokenizer FromGguf(const GgufFile& file);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_special: prepend BOS / append EOS as the vocabulary asks
  // (add_bos/add_eos). parse_special: text such as "<|im_start|>" that
  // spells a control (or unknown) token becomes that token; otherwise it is
  // tokenized as plain text. User-defined tokens are split out either way,
  // as llama.cpp and Hugging Face do. SPM: the space prefix goes before the
  // first raw text and before raw text that follows a special token
  // (llama.cpp's behaviour).
  std::vector<int32_t> Encode(std::string_view text, bool add_special,
                              bool parse_special = false) const;

  // Concatenated bytes of the tokens. Control tokens (BOS, EOS...) decode to
  // nothing unless render_special. SPM: "▁" becomes " " and the leading space
  // added by add_space_prefix is removed from the first token.
  std::string Decode(std::span<const int32_t> ids, bool render_special = false) const;
  // The bytes of one token as it appears in running text (not necessarily
  // valid UTF-8 on its own: a byte-fallback token is one raw byte).
  std::string TokenBytes(int32_t id) const;

  int32_t vocab_size() const;
  TokenizerKind kind() const;
  const std::string& pre() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t eot_id() const;
  bool add_bos() const;
  // True for EOS, EOT and any other token generation stops at.
  bool IsEndOfGeneration(int32_t id) const;
  bool IsControl(int32_t id) const;
  // The id of a piece, or -1.
  int32_t FindToken(std::string_view piece) const;
  const std::string& Piece(int32_t id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvinfer
