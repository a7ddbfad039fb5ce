// UTF-8 and Unicode helpers for the tokenizers (private to src/tokenizer).
//
// Decoding is lenient: tokenizer input is untrusted and may be invalid UTF-8
// (a truncated sequence, a stray continuation byte, an overlong form, a
// surrogate). Such bytes are reported one at a time as kInvalidCodepoint so
// that callers can treat each one as an opaque single-byte "character".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvinfer::unicode {

// Returned for a byte that does not start a valid UTF-8 sequence.
inline constexpr uint32_t kInvalidCodepoint = 0xFFFFFFFFu;

struct DecodedChar {
  uint32_t cp;   // the code point, or kInvalidCodepoint
  uint32_t len;  // bytes consumed: 1..4 (1 for an invalid byte)
};

// Decodes the character starting at text[pos]; pos < text.size().
DecodedChar DecodeAt(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of cp (cp <= 0x10FFFF, not a surrogate).
void AppendUtf8(uint32_t cp, std::string& out);

// Character classes with the meaning the Python `regex` module gives them
// (verified equal over all code points with ICU 72): \s is the Unicode
// White_Space property, \p{L} is general category L*, \p{N} is N*.
// kInvalidCodepoint is none of them (it behaves like punctuation).
enum CharClass : uint8_t {
  kClassOther = 0,
  kClassLetter = 1,
  kClassNumber = 2,
  kClassSpace = 3,
};
CharClass Classify(uint32_t cp);

// GPT-2's reversible byte -> printable code point table: printable Latin-1
// bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
const std::array<uint32_t, 256>& ByteToCodepoint();
// Inverse of ByteToCodepoint(); -1 for a code point not in its image.
int CodepointToByte(uint32_t cp);

}  // namespace kvinfer::unicode
