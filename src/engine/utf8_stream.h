// Turns a stream of token bytes into valid UTF-8: a token may end in the
// middle of a multi-byte character (byte-level BPE, byte fallback), and a
// streamed client (a terminal, a JSON string) must never see half a
// character or a byte that is not UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace kvinfer {

class Utf8Stream {
 public:
  // Appends bytes; returns the complete characters among the pending bytes,
  // holding back a sequence that may still be completed. A byte that cannot
  // start or continue a valid sequence (Unicode's well-formed table:
  // no overlong forms, surrogates or code points past U+10FFFF) becomes
  // U+FFFD.
  std::string Push(std::string_view bytes);
  // At the end of a stream: U+FFFD for a character the stream ended inside,
  // else "".
  std::string Flush();

 private:
  std::string pending_;
};

}  // namespace kvinfer
