// Turns a stream of token bytes into complete UTF-8 characters: a token may
// end in the middle of a multi-byte character (byte-level BPE, byte
// fallback), and a streamed client must never see half a character.
#pragma once

#include <string>
#include <string_view>

namespace kvinfer {

class Utf8Stream {
 public:
  // Appends bytes; returns the longest prefix of pending bytes that ends on
  // a character boundary. Invalid bytes pass through once it is clear they
  // cannot start or continue a valid sequence.
  std::string Push(std::string_view bytes);
  // Everything still pending (at the end of a stream).
  std::string Flush();

 private:
  std::string pending_;
};

}  // namespace kvinfer
