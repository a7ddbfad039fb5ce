#include "tokenizer/pretokenizer.h"

#include <cstdint>

#include "tokenizer/unicode.h"

namespace kvinfer {
namespace {

using unicode::CharClass;

struct Char {
  uint32_t cp;
  size_t offset;  // byte offset of the character in the text
  CharClass cls;
};

// A view of chars[0, n): scanners never look at or past n (chunk-local
// lookahead, as when each chunk of an earlier split is matched separately).
struct Span {
  const Char* c;
  size_t n;

  bool Is(size_t i, CharClass cls) const { return i < n && c[i].cls == cls; }
  bool IsCp(size_t i, uint32_t cp) const { return i < n && c[i].cp == cp; }
  size_t RunEnd(size_t i, CharClass cls) const {
    while (i < n && c[i].cls == cls) ++i;
    return i;
  }
  // \s+(?!\S)|\s+ starting at a whitespace character i.
  size_t WhitespaceMatch(size_t i) const {
    const size_t j = RunEnd(i, unicode::kClassSpace);
    if (j == n) return j;         // at the end: (?!\S) holds
    if (j - 1 > i) return j - 1;  // leave the last space to prefix the next word
    return j;                     // a single space before a non-space: \s+
  }
};

bool IsNewline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

// 's|'t|'re|'ve|'m|'ll|'d, optionally ASCII-case-insensitive (plus U+017F
// LATIN SMALL LETTER LONG S, which Unicode case folding equates with "s").
size_t MatchContraction(const Span& s, size_t i, bool ignore_case) {
  if (!s.IsCp(i, '\'') || i + 1 >= s.n) return 0;
  const auto fold = [&](size_t k) -> uint32_t {
    if (k >= s.n) return 0;
    uint32_t cp = s.c[k].cp;
    if (!ignore_case) return cp;
    if (cp >= 'A' && cp <= 'Z') return cp + ('a' - 'A');
    if (cp == 0x17F) return 's';
    return cp;
  };
  const uint32_t c1 = fold(i + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  const uint32_t c2 = fold(i + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// Length of the GPT-2 pattern's match at i (always >= 1).
size_t MatchGpt2(const Span& s, size_t i) {
  if (const size_t len = MatchContraction(s, i, /*ignore_case=*/false)) return len;
  // " ?X+" for X in {L, N, other}: the optional space is U+0020 only.
  const size_t k = (s.IsCp(i, ' ') && i + 1 < s.n) ? i + 1 : i;
  const CharClass cls = s.c[k].cls;
  if (cls != unicode::kClassSpace) return s.RunEnd(k, cls) - i;
  // Here c[i] is whitespace (a space before a letter, digit or symbol was
  // taken above).
  return s.WhitespaceMatch(i) - i;
}

// Length of the Llama-3 pattern's match at i (always >= 1).
size_t MatchLlama3(const Span& s, size_t i) {
  if (const size_t len = MatchContraction(s, i, /*ignore_case=*/true)) return len;
  const CharClass cls = s.c[i].cls;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (cls == unicode::kClassLetter) return s.RunEnd(i, cls) - i;
  if (cls != unicode::kClassNumber && !IsNewline(s.c[i].cp) && s.Is(i + 1, unicode::kClassLetter)) {
    return s.RunEnd(i + 1, unicode::kClassLetter) - i;
  }
  // \p{N}{1,3}
  if (cls == unicode::kClassNumber) {
    size_t j = i + 1;
    while (j < i + 3 && s.Is(j, unicode::kClassNumber)) ++j;
    return j - i;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t k = (s.IsCp(i, ' ') && i + 1 < s.n) ? i + 1 : i;
  if (s.c[k].cls == unicode::kClassOther) {
    size_t j = s.RunEnd(k, unicode::kClassOther);
    while (j < s.n && IsNewline(s.c[j].cp)) ++j;
    return j - i;
  }
  // c[i] is whitespace. \s*[\r\n]+ : up to the last newline of the run.
  const size_t run_end = s.RunEnd(i, unicode::kClassSpace);
  for (size_t j = run_end; j > i; --j) {
    if (IsNewline(s.c[j - 1].cp)) return j - i;
  }
  return s.WhitespaceMatch(i) - i;
}

template <typename Matcher>
void Scan(const Span& s, Matcher match, std::string_view text, std::vector<std::string_view>& out) {
  size_t i = 0;
  while (i < s.n) {
    const size_t j = i + match(s, i);
    // s.c[j] exists even for j == s.n: the caller's array ends with a sentinel.
    out.push_back(text.substr(s.c[i].offset, s.c[j].offset - s.c[i].offset));
    i = j;
  }
}

}  // namespace

std::optional<PreTokenizerKind> PreTokenizerFromName(std::string_view name) {
  // Names as llama.cpp's convert script writes them; each group shares one
  // pattern in llama.cpp (llama_vocab::impl::load).
  for (std::string_view n : {"default", "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "roberta-bpe"}) {
    if (name == n) return PreTokenizerKind::kGpt2;
  }
  for (std::string_view n : {"smollm", "starcoder", "refact", "codeshell", "command-r"}) {
    if (name == n) return PreTokenizerKind::kDigitsThenGpt2;
  }
  for (std::string_view n : {"llama3", "llama-v3", "llama-bpe"}) {
    if (name == n) return PreTokenizerKind::kLlama3;
  }
  return std::nullopt;
}

void PreTokenize(PreTokenizerKind kind, std::string_view text,
                 std::vector<std::string_view>& chunks) {
  // Decoded characters plus a sentinel at text.size().
  std::vector<Char> chars;
  chars.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    const unicode::DecodedChar d = unicode::DecodeAt(text, pos);
    chars.push_back({d.cp, pos, unicode::Classify(d.cp)});
    pos += d.len;
  }
  const size_t n = chars.size();
  chars.push_back({0, text.size(), unicode::kClassOther});

  switch (kind) {
    case PreTokenizerKind::kGpt2:
      Scan(Span{chars.data(), n}, MatchGpt2, text, chunks);
      return;
    case PreTokenizerKind::kLlama3:
      Scan(Span{chars.data(), n}, MatchLlama3, text, chunks);
      return;
    case PreTokenizerKind::kDigitsThenGpt2: {
      size_t i = 0;
      while (i < n) {
        if (chars[i].cls == unicode::kClassNumber) {
          chunks.push_back(text.substr(chars[i].offset, chars[i + 1].offset - chars[i].offset));
          ++i;
          continue;
        }
        size_t j = i;
        while (j < n && chars[j].cls != unicode::kClassNumber) ++j;
        // The run [i, j) is matched on its own; chars[j] serves as its sentinel.
        Scan(Span{chars.data() + i, j - i}, MatchGpt2, text, chunks);
        i = j;
      }
      return;
    }
  }
}

}  // namespace kvinfer
