#include "tokenizer/unicode.h"

#include <unicode/uchar.h>

namespace kvinfer::unicode {

DecodedChar DecodeAt(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) return {b0, 1};
  uint32_t len;
  uint32_t cp;
  uint32_t min_cp;  // smallest code point allowed for this length (no overlong forms)
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1Fu, min_cp = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0Fu, min_cp = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07u, min_cp = 0x10000;
  } else {
    return {kInvalidCodepoint, 1};  // continuation byte or 0xF8..0xFF
  }
  if (text.size() - pos < len) return {kInvalidCodepoint, 1};
  for (uint32_t i = 1; i < len; ++i) {
    const uint8_t b = byte(pos + i);
    if ((b & 0xC0) != 0x80) return {kInvalidCodepoint, 1};
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return {kInvalidCodepoint, 1};
  }
  return {cp, len};
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

CharClass ClassifySlow(uint32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_WHITE_SPACE)) return kClassSpace;
  const uint32_t mask = U_GET_GC_MASK(c);
  if (mask & U_GC_L_MASK) return kClassLetter;
  if (mask & U_GC_N_MASK) return kClassNumber;
  return kClassOther;
}

// ASCII and Latin-1 dominate real text: answer those from a table.
struct Latin1Table {
  std::array<CharClass, 256> cls;
  Latin1Table() {
    for (uint32_t cp = 0; cp < 256; ++cp) cls[cp] = ClassifySlow(cp);
  }
};

}  // namespace

CharClass Classify(uint32_t cp) {
  static const Latin1Table table;
  if (cp < 256) return table.cls[cp];
  if (cp > 0x10FFFF) return kClassOther;  // includes kInvalidCodepoint
  return ClassifySlow(cp);
}

namespace {

struct ByteTables {
  std::array<uint32_t, 256> to_cp;
  std::array<int16_t, 512> to_byte;  // every image code point is < 512
  ByteTables() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? b : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& Tables() {
  static const ByteTables tables;
  return tables;
}

}  // namespace

const std::array<uint32_t, 256>& ByteToCodepoint() { return Tables().to_cp; }

int CodepointToByte(uint32_t cp) { return cp < 512 ? Tables().to_byte[cp] : -1; }

}  // namespace kvinfer::unicode
