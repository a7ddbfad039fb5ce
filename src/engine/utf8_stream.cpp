#include "engine/utf8_stream.h"

#include <utility>

namespace kvinfer {
namespace {

// Length a lead byte announces (1 for ASCII and for bytes that cannot lead).
size_t SequenceLength(unsigned char c) {
  if (c >= 0xF0 && c <= 0xF4) return 4;
  if (c >= 0xE0) return c <= 0xEF ? 3 : 1;
  if (c >= 0xC2) return 2;
  return 1;
}

}  // namespace

std::string Utf8Stream::Push(std::string_view bytes) {
  pending_.append(bytes);
  // Find where the last (possibly incomplete) sequence starts: scan back over
  // at most 3 continuation bytes.
  size_t n = pending_.size();
  size_t start = n;
  for (size_t back = 0; back < 4 && back < n; ++back) {
    const unsigned char c = static_cast<unsigned char>(pending_[n - 1 - back]);
    if ((c & 0xC0) != 0x80) {
      start = n - 1 - back;
      break;
    }
  }
  size_t cut = n;
  if (start < n) {
    const size_t need = SequenceLength(static_cast<unsigned char>(pending_[start]));
    if (need > 1 && n - start < need) cut = start;  // incomplete: hold it back
  }
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string Utf8Stream::Flush() { return std::exchange(pending_, std::string()); }

}  // namespace kvinfer
