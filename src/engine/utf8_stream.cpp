#include "engine/utf8_stream.h"

#include <utility>

namespace kvinfer {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Valid range of the second byte after lead byte c (Unicode Table 3-7), so
// overlong forms, surrogates and code points past U+10FFFF are rejected.
bool SecondByteOk(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return (b & 0xC0) == 0x80;
  }
}

// Bytes the sequence led by c has (0: c cannot lead one).
size_t SequenceLength(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// How many leading bytes of s form a valid sequence prefix starting at s[0]:
// the full length when complete, fewer when s ends inside a sequence that
// could still be completed, and 0 when s[0] starts no valid sequence.
enum class Scan { kComplete, kIncomplete, kInvalid };
Scan ScanOne(std::string_view s, size_t* len) {
  const auto lead = static_cast<unsigned char>(s[0]);
  *len = SequenceLength(lead);
  if (*len == 0) return Scan::kInvalid;
  for (size_t k = 1; k < *len; ++k) {
    if (k >= s.size()) return Scan::kIncomplete;
    const auto b = static_cast<unsigned char>(s[k]);
    if (k == 1 ? !SecondByteOk(lead, b) : (b & 0xC0) != 0x80) return Scan::kInvalid;
  }
  return Scan::kComplete;
}

}  // namespace

std::string Utf8Stream::Push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    size_t len = 0;
    const Scan scan = ScanOne(std::string_view(pending_).substr(i), &len);
    if (scan == Scan::kIncomplete) break;  // held back until more bytes come
    if (scan == Scan::kInvalid) {
      out += kReplacement;
      ++i;
      continue;
    }
    out.append(pending_, i, len);
    i += len;
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8Stream::Flush() {
  // What is pending is the start of a character the stream ended inside.
  std::string out = pending_.empty() ? std::string() : std::string(kReplacement);
  pending_.clear();
  return out;
}

}  // namespace kvinfer
