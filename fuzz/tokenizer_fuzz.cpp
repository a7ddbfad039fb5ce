// libFuzzer target for the Hugging Face tokenizer readers
// (tokenizer/hf_tokenizer.h). Input: a mode byte, then two files separated
// by the first 0x00 byte. Mode even: tokenizer.json + tokenizer_config.json;
// odd: vocab.json + merges.txt. A reader must return a spec or throw
// kvinfer::Error with a message; a spec either builds a Tokenizer (which
// then encodes and decodes a short string cut from the input, every id in
// range) or is rejected by it with Error.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

// Bounds the work one input can cause: inputs are at most -max_len bytes, but
// a spec that large still builds quickly; these caps keep encode cheap.
constexpr size_t kMaxTokens = 1 << 14;
constexpr size_t kMaxMerges = 1 << 14;
constexpr size_t kMaxText = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool vocab_merges = (data[0] & 1) != 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t sep = rest.find('\0');
  const std::string_view first = rest.substr(0, sep);
  const std::string_view second = sep == std::string_view::npos ? std::string_view() : rest.substr(sep + 1);
  kvinfer::TokenizerSpec spec;
  try {
    spec = vocab_merges ? kvinfer::TokenizerSpecFromVocabMerges(first, second, "", "fuzz")
                        : kvinfer::TokenizerSpecFromHfJson(first, second, "fuzz");
  } catch (const kvinfer::Error& e) {
    if (e.what()[0] == '\0') std::abort();
    return 0;
  }
  if (spec.tokens.size() > kMaxTokens || spec.merges.size() > kMaxMerges) return 0;
  // Text to encode: the input's last bytes (arbitrary, possibly invalid UTF-8).
  const std::string_view text = rest.substr(rest.size() - std::min(rest.size(), kMaxText));
  try {
    const kvinfer::Tokenizer tok(std::move(spec));
    for (bool parse_special : {false, true}) {
      const std::vector<int32_t> ids = tok.Encode(text, true, parse_special);
      for (int32_t id : ids) {
        if (id < 0 || id >= tok.vocab_size()) std::abort();
      }
      volatile size_t n = tok.Decode(ids, parse_special).size();
      (void)n;
    }
  } catch (const kvinfer::Error& e) {
    if (e.what()[0] == '\0') std::abort();
  }
  return 0;
}
