// Tokenizer: special-token partitioning, SentencePiece-style BPE (merge by
// score) and GPT-2 byte-level BPE (merge by rank), and decoding. Behaviour
// follows llama.cpp's llama-vocab.cpp so that its vocabulary test vectors
// match exactly (see tests/tokenizer_test.cpp).
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <functional>
#include <optional>
#include <queue>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"

namespace kvinfer {
namespace {

// "▁" (U+2581), SentencePiece's visible space.
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

int32_t Lookup(const PieceMap& map, std::string_view piece) {
  const auto it = map.find(piece);
  return it == map.end() ? -1 : it->second;
}

// "<0xAB>" -> 0xAB; -1 if the piece is not of that form.
int ParseByteToken(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]);
  const int lo = hex(piece[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

std::string ByteTokenText(int byte) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>'};
}

// A piece of the input after special-token partitioning: either raw text
// [offset, offset + length) or one special token.
struct Fragment {
  int32_t token;  // -1 for raw text
  size_t offset;
  size_t length;
};

// Symbols of a word being merged: a doubly linked list over byte ranges of
// the word; a merged-away symbol has length 0.
struct Symbol {
  int32_t id;      // BPE: symbol id (token id, or >= vocab size for a non-token string)
  int32_t prev;    // -1 at the start
  int32_t next;    // -1 at the end
  uint32_t start;  // byte offset in the word
  uint32_t length;
};

// Merges symbol `left` with its right neighbour: `left` grows over it and
// the neighbour is unlinked (length 0 marks it merged away).
void MergeWithNext(std::vector<Symbol>& symbols, int32_t left) {
  Symbol& l = symbols[static_cast<size_t>(left)];
  Symbol& r = symbols[static_cast<size_t>(l.next)];
  l.length += r.length;
  r.length = 0;
  l.next = r.next;
  if (r.next >= 0) symbols[static_cast<size_t>(r.next)].prev = left;
}

struct SpmBigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t length;  // left.length + right.length when the bigram was made
};
struct SpmBigramOrder {
  // Highest score first; ties: leftmost first.
  bool operator()(const SpmBigram& a, const SpmBigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

struct BpeBigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
};
struct BpeBigramOrder {
  // Lowest rank first; ties: leftmost first.
  bool operator()(const BpeBigram& a, const BpeBigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

struct BpeMerge {
  int32_t rank;
  int32_t result;  // symbol id of the concatenation
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

struct Tokenizer::Impl {
  TokenizerSpec spec;
  int32_t n_vocab = 0;
  PieceMap token_to_id;           // last id wins for a duplicated piece, as in llama.cpp
  std::vector<std::string> text;  // id -> bytes in running text (control: the piece)
  std::vector<bool> end_of_generation;
  // Tokens that partition the input before BPE, longest text first.
  std::vector<int32_t> special_tokens;

  // SPM
  std::array<int32_t, 256> byte_token{};  // "<0xXX>" ids, -1 if absent

  // BPE. Symbols are token ids, extended past n_vocab with the strings that
  // merges produce or consume but that are not tokens.
  PreTokenizerKind pre_kind = PreTokenizerKind::kGpt2;
  bool ignore_merges = false;                     // a chunk that is a whole token is kept (Llama 3)
  std::unordered_map<uint64_t, BpeMerge> merges;  // PairKey(left, right) -> merge
  std::array<int32_t, 256> byte_symbol{};  // symbol of each byte's mapped character, -1 if none

  TokenType Type(int32_t id) const {
    return spec.types.empty() ? TokenType::kNormal : spec.types[static_cast<size_t>(id)];
  }
  float Score(int32_t id) const {
    return spec.scores.empty() ? 0.0f : spec.scores[static_cast<size_t>(id)];
  }

  void Validate();
  void BuildCommon();
  void BuildBpe();
  std::string RenderToken(int32_t id) const;

  std::vector<Fragment> Partition(std::string_view input, bool parse_special) const;
  void EncodeSpm(std::string_view word, std::vector<int32_t>& out) const;
  void EncodeBpeChunk(std::string_view chunk, std::vector<Symbol>& symbols,
                      std::vector<BpeBigram>& heap, std::vector<int32_t>& out) const;
  void PushBytesSpm(std::string_view bytes, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::Validate() {
  const size_t n = spec.tokens.size();
  if (n == 0) Fail(StatusCode::kDataLoss, "tokenizer: the vocabulary is empty");
  if (n > static_cast<size_t>(INT32_MAX / 2)) {
    Fail(StatusCode::kDataLoss, "tokenizer: vocabulary of {} tokens is too large", n);
  }
  n_vocab = static_cast<int32_t>(n);
  if (!spec.scores.empty() && spec.scores.size() != n) {
    Fail(StatusCode::kDataLoss, "tokenizer: {} scores for {} tokens (expected one per token)",
         spec.scores.size(), n);
  }
  if (!spec.types.empty() && spec.types.size() != n) {
    Fail(StatusCode::kDataLoss, "tokenizer: {} token types for {} tokens (expected one per token)",
         spec.types.size(), n);
  }
  for (size_t i = 0; i < spec.types.size(); ++i) {
    const auto t = static_cast<int32_t>(spec.types[i]);
    if (t < 0 || t > static_cast<int32_t>(TokenType::kByte)) {
      Fail(StatusCode::kDataLoss, "tokenizer: token {} has type {} (expected 0..6)", i, t);
    }
  }
  const std::pair<const char*, int32_t> ids[] = {{"bos", spec.bos_id},
                                                 {"eos", spec.eos_id},
                                                 {"eot", spec.eot_id},
                                                 {"unknown", spec.unk_id},
                                                 {"padding", spec.pad_id}};
  for (const auto& [name, id] : ids) {
    if (id < -1 || id >= n_vocab) {
      Fail(StatusCode::kDataLoss, "tokenizer: {} token id {} is outside the vocabulary [0, {})",
           name, id, n_vocab);
    }
  }
  if (spec.kind == TokenizerKind::kBpe) {
    const auto kind = PreTokenizerFromName(spec.pre);
    if (!kind) {
      Fail(StatusCode::kUnimplemented, "tokenizer: pre-tokenizer '{}' is not supported", spec.pre);
    }
    pre_kind = *kind;
    ignore_merges = pre_kind == PreTokenizerKind::kLlama3;
  }
}

std::string Tokenizer::Impl::RenderToken(int32_t id) const {
  const std::string& piece = spec.tokens[static_cast<size_t>(id)];
  switch (Type(id)) {
    case TokenType::kControl:
    case TokenType::kUnknown:
    case TokenType::kUserDefined:
      return piece;
    case TokenType::kUnused:
      return {};  // llama.cpp suppresses these like control tokens
    case TokenType::kByte: {
      const int byte = ParseByteToken(piece);
      if (byte >= 0) return std::string(1, static_cast<char>(byte));
      break;  // a malformed byte token: render it as a normal one
    }
    case TokenType::kUndefined:
    case TokenType::kNormal:
      break;
  }
  std::string out;
  if (spec.kind == TokenizerKind::kSpm) {
    out.reserve(piece.size());
    for (size_t pos = 0; pos < piece.size();) {
      if (piece.compare(pos, kSpmSpace.size(), kSpmSpace) == 0) {
        out += ' ';
        pos += kSpmSpace.size();
      } else {
        out += piece[pos++];
      }
    }
    return out;
  }
  // Byte-level BPE: each character of the piece stands for one byte.
  for (size_t pos = 0; pos < piece.size();) {
    const unicode::DecodedChar d = unicode::DecodeAt(piece, pos);
    const int byte = d.cp == unicode::kInvalidCodepoint ? -1 : unicode::CodepointToByte(d.cp);
    if (byte >= 0) {
      out += static_cast<char>(byte);
    } else {
      out.append(piece, pos, d.len);  // not from the byte alphabet: keep as is
    }
    pos += d.len;
  }
  return out;
}

void Tokenizer::Impl::BuildCommon() {
  token_to_id.reserve(static_cast<size_t>(n_vocab));
  for (int32_t id = 0; id < n_vocab; ++id) token_to_id[spec.tokens[static_cast<size_t>(id)]] = id;

  text.resize(static_cast<size_t>(n_vocab));
  for (int32_t id = 0; id < n_vocab; ++id) text[static_cast<size_t>(id)] = RenderToken(id);

  for (int32_t id = 0; id < n_vocab; ++id) {
    const TokenType t = Type(id);
    const bool special =
        t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
    if (special && !spec.tokens[static_cast<size_t>(id)].empty()) special_tokens.push_back(id);
  }
  std::stable_sort(special_tokens.begin(), special_tokens.end(), [&](int32_t a, int32_t b) {
    return spec.tokens[static_cast<size_t>(a)].size() > spec.tokens[static_cast<size_t>(b)].size();
  });

  // End of generation: EOS, EOT, and the special tokens chat models end a
  // turn with (the list llama.cpp uses).
  end_of_generation.assign(static_cast<size_t>(n_vocab), false);
  if (spec.eos_id >= 0) end_of_generation[static_cast<size_t>(spec.eos_id)] = true;
  if (spec.eot_id >= 0) end_of_generation[static_cast<size_t>(spec.eot_id)] = true;
  for (std::string_view piece : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                 "<|endoftext|>", "<|eom_id|>", "<EOT>"}) {
    const int32_t id = Lookup(token_to_id, piece);
    if (id >= 0 && Type(id) != TokenType::kNormal)
      end_of_generation[static_cast<size_t>(id)] = true;
  }

  for (int b = 0; b < 256; ++b) {
    int32_t id = Lookup(token_to_id, ByteTokenText(b));
    if (id < 0) {
      std::string lower = ByteTokenText(b);
      std::transform(lower.begin() + 3, lower.end(), lower.begin() + 3,
                     [](char c) { return (c >= 'A' && c <= 'F') ? static_cast<char>(c + 32) : c; });
      id = Lookup(token_to_id, lower);
    }
    byte_token[static_cast<size_t>(b)] = id;
  }
}

void Tokenizer::Impl::BuildBpe() {
  // Strings that merges mention but that are not tokens get symbol ids
  // from n_vocab up; they can take part in merges but never be output.
  PieceMap extra;
  int32_t next_symbol = n_vocab;
  const auto intern = [&](std::string_view s) -> int32_t {
    if (const int32_t id = Lookup(token_to_id, s); id >= 0) return id;
    const auto [it, inserted] = extra.try_emplace(std::string(s), next_symbol);
    if (inserted) ++next_symbol;
    return it->second;
  };
  if (spec.merges.size() > static_cast<size_t>(INT32_MAX / 4)) {
    Fail(StatusCode::kDataLoss, "tokenizer: {} merges is too many", spec.merges.size());
  }
  merges.reserve(spec.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string& m = spec.merges[rank];
    // The separator is the first space after the first character, so that a
    // left part may itself start with a space (as in llama.cpp).
    const size_t sep = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sep == std::string::npos || sep + 1 >= m.size()) {
      Fail(StatusCode::kDataLoss, "tokenizer: merge {} '{}' is not of the form 'left right'", rank,
           m);
    }
    const std::string_view left(m.data(), sep);
    const std::string_view right(m.data() + sep + 1, m.size() - sep - 1);
    joined.assign(left);
    joined.append(right);
    const int32_t l = intern(left);
    const int32_t r = intern(right);
    const int32_t result = intern(joined);
    merges.try_emplace(PairKey(l, r), BpeMerge{static_cast<int32_t>(rank), result});  // first wins
  }
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::AppendUtf8(unicode::ByteToCodepoint()[static_cast<size_t>(b)], ch);
    int32_t sym = Lookup(token_to_id, ch);
    if (sym < 0) sym = Lookup(extra, ch);
    byte_symbol[static_cast<size_t>(b)] = sym;
  }
}

std::vector<Fragment> Tokenizer::Impl::Partition(std::string_view input, bool parse_special) const {
  std::vector<Fragment> frags;
  if (input.empty()) return frags;
  frags.push_back({-1, 0, input.size()});
  std::vector<Fragment> next;
  // As llama.cpp: each special token in turn (longest first) splits every
  // remaining raw fragment at its occurrences. User-defined tokens are split
  // out even without parse_special (Hugging Face does the same).
  for (const int32_t id : special_tokens) {
    if (!parse_special && Type(id) != TokenType::kUserDefined) continue;
    const std::string& piece = spec.tokens[static_cast<size_t>(id)];
    if (input.find(piece) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const std::string_view raw = input.substr(f.offset, f.length);
      size_t start = 0;
      for (size_t hit; (hit = raw.find(piece, start)) != std::string_view::npos;) {
        if (hit > start) next.push_back({-1, f.offset + start, hit - start});
        next.push_back({id, f.offset + hit, piece.size()});
        start = hit + piece.size();
      }
      if (start < raw.size()) next.push_back({-1, f.offset + start, raw.size() - start});
    }
    frags.swap(next);
  }
  return frags;
}

void Tokenizer::Impl::PushBytesSpm(std::string_view bytes, std::vector<int32_t>& out) const {
  for (const char c : bytes) {
    const int32_t id = byte_token[static_cast<uint8_t>(c)];
    if (id >= 0) {
      out.push_back(id);
    } else if (spec.unk_id >= 0) {
      out.push_back(spec.unk_id);
    }
    // else: the vocabulary cannot represent this byte at all; it is dropped.
  }
}

void Tokenizer::Impl::EncodeSpm(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() > static_cast<size_t>(INT32_MAX)) {
    Fail(StatusCode::kInvalidArgument, "tokenizer: text of {} bytes is too long", word.size());
  }
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < word.size();) {
    const uint32_t len = unicode::DecodeAt(word, pos).len;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({-1, index - 1, index + 1, static_cast<uint32_t>(pos), len});
    pos += len;
  }
  symbols.back().next = -1;

  std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmBigramOrder> heap;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[static_cast<size_t>(left)];
    const Symbol& r = symbols[static_cast<size_t>(right)];
    const int32_t id = Lookup(token_to_id, word.substr(l.start, l.length + r.length));
    if (id < 0) return;
    heap.push({Score(id), left, right, l.length + r.length});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    const SpmBigram top = heap.top();
    heap.pop();
    Symbol& l = symbols[static_cast<size_t>(top.left)];
    Symbol& r = symbols[static_cast<size_t>(top.right)];
    // Stale if either side was merged since (lengths only grow).
    if (l.length == 0 || r.length == 0 || l.next != top.right ||
        l.length + r.length != top.length) {
      continue;
    }
    MergeWithNext(symbols, top.left);
    try_add(l.prev, top.left);
    try_add(top.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const Symbol& s = symbols[static_cast<size_t>(i)];
    const std::string_view piece = word.substr(s.start, s.length);
    const int32_t id = Lookup(token_to_id, piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      PushBytesSpm(piece, out);  // only single characters can be missing
    }
  }
}

void Tokenizer::Impl::EncodeBpeChunk(std::string_view chunk, std::vector<Symbol>& symbols,
                                     std::vector<BpeBigram>& heap,
                                     std::vector<int32_t>& out) const {
  if (chunk.size() > static_cast<size_t>(INT32_MAX)) {
    Fail(StatusCode::kInvalidArgument, "tokenizer: text of {} bytes is too long", chunk.size());
  }
  if (ignore_merges) {
    // A chunk that is a token is taken whole. The lookup is on the mapped
    // form, so map first.
    std::string mapped;
    for (const char c : chunk) {
      unicode::AppendUtf8(unicode::ByteToCodepoint()[static_cast<uint8_t>(c)], mapped);
    }
    if (const int32_t id = Lookup(token_to_id, mapped); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  // One initial symbol per byte: each byte is one character of the
  // byte-level alphabet.
  symbols.clear();
  const auto n = static_cast<int32_t>(chunk.size());
  for (int32_t i = 0; i < n; ++i) {
    symbols.push_back({byte_symbol[static_cast<uint8_t>(chunk[static_cast<size_t>(i)])], i - 1,
                       i + 1 < n ? i + 1 : -1, static_cast<uint32_t>(i), 1});
  }
  heap.clear();
  const BpeBigramOrder order;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t lid = symbols[static_cast<size_t>(left)].id;
    const int32_t rid = symbols[static_cast<size_t>(right)].id;
    if (lid < 0 || rid < 0) return;
    const auto it = merges.find(PairKey(lid, rid));
    if (it == merges.end()) return;
    heap.push_back({it->second.rank, left, right, lid, rid});
    std::push_heap(heap.begin(), heap.end(), order);
  };
  for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), order);
    const BpeBigram top = heap.back();
    heap.pop_back();
    Symbol& l = symbols[static_cast<size_t>(top.left)];
    Symbol& r = symbols[static_cast<size_t>(top.right)];
    // Stale unless both sides are still alive, adjacent and unchanged.
    if (l.length == 0 || r.length == 0 || l.next != top.right || l.id != top.left_id ||
        r.id != top.right_id) {
      continue;
    }
    l.id = merges.find(PairKey(top.left_id, top.right_id))->second.result;
    MergeWithNext(symbols, top.left);
    try_add(l.prev, top.left);
    try_add(top.left, l.next);
  }

  for (int32_t i = 0; i >= 0 && i < n; i = symbols[static_cast<size_t>(i)].next) {
    const Symbol& s = symbols[static_cast<size_t>(i)];
    if (s.id >= 0 && s.id < n_vocab) {
      out.push_back(s.id);
      continue;
    }
    // Not a token (a merge produced a string outside the vocabulary, or the
    // vocabulary lacks a byte): one token per byte character, else UNK.
    for (uint32_t k = 0; k < s.length; ++k) {
      const int32_t sym = byte_symbol[static_cast<uint8_t>(chunk[s.start + k])];
      if (sym >= 0 && sym < n_vocab) {
        out.push_back(sym);
      } else if (spec.unk_id >= 0) {
        out.push_back(spec.unk_id);
      }
    }
  }
}

Tokenizer::Tokenizer(TokenizerSpec spec) : impl_(std::make_unique<Impl>()) {
  impl_->spec = std::move(spec);
  impl_->Validate();
  impl_->BuildCommon();
  if (impl_->spec.kind == TokenizerKind::kBpe) impl_->BuildBpe();
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && m.spec.add_bos && m.spec.bos_id >= 0) out.push_back(m.spec.bos_id);

  const std::vector<Fragment> frags = m.Partition(text, parse_special);
  if (m.spec.kind == TokenizerKind::kSpm) {
    // As llama.cpp: the space prefix goes before the first raw fragment and
    // before every raw fragment that follows a special token.
    bool after_special = true;
    std::string word;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        after_special = true;
        continue;
      }
      word.clear();
      if (m.spec.add_space_prefix && after_special) word += kSpmSpace;
      for (const char c : text.substr(f.offset, f.length)) {
        if (c == ' ') {
          word += kSpmSpace;
        } else {
          word += c;
        }
      }
      m.EncodeSpm(word, out);
      after_special = false;
    }
  } else {
    std::vector<std::string_view> chunks;
    std::vector<Symbol> symbols;
    std::vector<BpeBigram> heap;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      chunks.clear();
      PreTokenize(m.pre_kind, text.substr(f.offset, f.length), chunks);
      for (const std::string_view chunk : chunks) m.EncodeBpeChunk(chunk, symbols, heap, out);
    }
  }

  if (add_special && m.spec.add_eos && m.spec.eos_id >= 0) out.push_back(m.spec.eos_id);
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool render_special) const {
  const Impl& m = *impl_;
  std::string out;
  // SPM: the first text token lost its leading space to add_space_prefix.
  bool strip_space = m.spec.kind == TokenizerKind::kSpm && m.spec.add_space_prefix;
  for (const int32_t id : ids) {
    if (id < 0 || id >= m.n_vocab) {
      Fail(StatusCode::kInvalidArgument, "tokenizer: token id {} is outside the vocabulary [0, {})",
           id, m.n_vocab);
    }
    const std::string& bytes = m.text[static_cast<size_t>(id)];
    if (m.Type(id) == TokenType::kControl) {
      if (render_special) out += bytes;
      continue;
    }
    if (strip_space && !bytes.empty()) {
      out.append(bytes, bytes[0] == ' ' ? 1 : 0);
      strip_space = false;
      continue;
    }
    out += bytes;
  }
  return out;
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= impl_->n_vocab) {
    Fail(StatusCode::kInvalidArgument, "tokenizer: token id {} is outside the vocabulary [0, {})",
         id, impl_->n_vocab);
  }
  return impl_->text[static_cast<size_t>(id)];
}

int32_t Tokenizer::vocab_size() const { return impl_->n_vocab; }
TokenizerKind Tokenizer::kind() const { return impl_->spec.kind; }
const std::string& Tokenizer::pre() const { return impl_->spec.pre; }
int32_t Tokenizer::bos_id() const { return impl_->spec.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->spec.eos_id; }
int32_t Tokenizer::eot_id() const { return impl_->spec.eot_id; }
bool Tokenizer::add_bos() const { return impl_->spec.add_bos; }

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return id >= 0 && id < impl_->n_vocab && impl_->end_of_generation[static_cast<size_t>(id)];
}

bool Tokenizer::IsControl(int32_t id) const {
  return id >= 0 && id < impl_->n_vocab && impl_->Type(id) == TokenType::kControl;
}

int32_t Tokenizer::FindToken(std::string_view piece) const {
  return Lookup(impl_->token_to_id, piece);
}

const std::string& Tokenizer::Piece(int32_t id) const {
  if (id < 0 || id >= impl_->n_vocab) {
    Fail(StatusCode::kInvalidArgument, "tokenizer: token id {} is outside the vocabulary [0, {})",
         id, impl_->n_vocab);
  }
  return impl_->spec.tokens[static_cast<size_t>(id)];
}

Tokenizer Tokenizer::FromGguf(const GgufFile& file) {
  const auto model = file.GetString("tokenizer.ggml.model");
  if (!model) {
    Fail(StatusCode::kDataLoss, "{}: missing key tokenizer.ggml.model (no tokenizer in the file)",
         file.path());
  }
  TokenizerSpec spec;
  if (*model == "llama") {
    spec.kind = TokenizerKind::kSpm;
  } else if (*model == "gpt2") {
    spec.kind = TokenizerKind::kBpe;
  } else {
    Fail(StatusCode::kUnimplemented,
         "{}: tokenizer.ggml.model '{}' is not supported (expected 'llama' or 'gpt2')", file.path(),
         *model);
  }
  const bool spm = spec.kind == TokenizerKind::kSpm;
  spec.pre = std::string(file.GetString("tokenizer.ggml.pre").value_or("default"));

  const auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens) Fail(StatusCode::kDataLoss, "{}: missing key tokenizer.ggml.tokens", file.path());
  spec.tokens.assign(tokens->begin(), tokens->end());
  if (auto scores = file.GetFloatArray("tokenizer.ggml.scores")) spec.scores = std::move(*scores);
  if (const auto types = file.GetIntArray("tokenizer.ggml.token_type")) {
    spec.types.reserve(types->size());
    for (size_t i = 0; i < types->size(); ++i) {
      const int64_t t = (*types)[i];
      if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
        Fail(StatusCode::kDataLoss, "{}: tokenizer.ggml.token_type[{}] = {} (expected 0..6)",
             file.path(), i, t);
      }
      spec.types.push_back(static_cast<TokenType>(t));
    }
  }
  if (const auto merges = file.GetStringArray("tokenizer.ggml.merges")) {
    spec.merges.assign(merges->begin(), merges->end());
  } else if (!spm) {
    Fail(StatusCode::kDataLoss, "{}: missing key tokenizer.ggml.merges (needed by 'gpt2')",
         file.path());
  }

  const auto n_vocab = static_cast<int64_t>(spec.tokens.size());
  const auto get_id = [&](const char* key, int32_t fallback) -> int32_t {
    const auto v = file.GetInt(key);
    if (!v) return fallback;
    // Converters write "no such token" as -1 stored in a uint32.
    if (*v == -1 || *v == int64_t{0xFFFFFFFF}) return -1;
    if (*v < -1 || *v >= n_vocab) {
      Fail(StatusCode::kDataLoss, "{}: {} = {} is outside the vocabulary [0, {})", file.path(), key,
           *v, n_vocab);
    }
    return static_cast<int32_t>(*v);
  };
  // llama.cpp's defaults for SentencePiece vocabularies: <unk>=0, <s>=1, </s>=2.
  const auto default_id = [&](int32_t id) { return spm && id < n_vocab ? id : -1; };
  spec.bos_id = get_id("tokenizer.ggml.bos_token_id", default_id(1));
  spec.eos_id = get_id("tokenizer.ggml.eos_token_id", default_id(2));
  spec.unk_id = get_id("tokenizer.ggml.unknown_token_id", default_id(0));
  spec.pad_id = get_id("tokenizer.ggml.padding_token_id", -1);
  spec.eot_id = get_id("tokenizer.ggml.eot_token_id", -1);
  if (spec.eot_id < 0) {
    for (const std::string_view piece : {"<|im_end|>", "<|eot_id|>", "<|end|>"}) {
      const auto it = std::find(spec.tokens.begin(), spec.tokens.end(), piece);
      if (it != spec.tokens.end()) {
        spec.eot_id = static_cast<int32_t>(it - spec.tokens.begin());
        break;
      }
    }
  }
  spec.add_bos = file.GetBool("tokenizer.ggml.add_bos_token").value_or(spm);
  spec.add_eos = file.GetBool("tokenizer.ggml.add_eos_token").value_or(false);
  spec.add_space_prefix = file.GetBool("tokenizer.ggml.add_space_prefix").value_or(spm);
  return Tokenizer(std::move(spec));
}

}  // namespace kvinfer
