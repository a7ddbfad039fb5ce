// libFuzzer target for the llama2.c readers: the checkpoint (io/llama2c.h)
// and tokenizer.bin (tokenizer/llama2c_tokenizer.h). The first input byte
// picks the reader (even: checkpoint, odd: tokenizer); the rest is the file.
// Either reader must succeed or throw Error(kDataLoss) with a message; a
// checkpoint's views must lie inside the file, a tokenizer spec must build a
// Tokenizer or be rejected by it with Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/llama2c.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

void CheckView(const kvinfer::WeightView& w, const uint8_t* begin, const uint8_t* end) {
  if (w.rows <= 0 || w.cols <= 0 || w.data == nullptr) std::abort();
  const auto* p = static_cast<const uint8_t*>(w.data);
  const size_t bytes = static_cast<size_t>(w.rows) * w.row_bytes;
  if (p < begin || p > end || bytes > static_cast<size_t>(end - p)) std::abort();
  volatile uint8_t first = p[0];
  volatile uint8_t last = p[bytes - 1];
  (void)first;
  (void)last;
}

void Checkpoint(std::span<const uint8_t> file) {
  const kvinfer::Llama2cCheckpoint c =
      kvinfer::Llama2cCheckpoint::Parse(kvinfer::MappedFile::FromBytes(file));
  const kvinfer::Llama2cHeader& h = c.header();
  if (h.dim <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.vocab_size == 0) std::abort();
  if (c.layers().size() != static_cast<size_t>(h.n_layers)) std::abort();
  // FromBytes wraps the input itself, so every view must lie inside it.
  const auto named = c.NamedTensors();
  if (named.empty()) std::abort();
  for (const auto& [name, w] : named) {
    if (name.empty()) std::abort();
    CheckView(w, file.data(), file.data() + file.size());
  }
}

void TokenizerFile(std::span<const uint8_t> file) {
  kvinfer::TokenizerSpec spec =
      kvinfer::Llama2cTokenizerSpecFromBytes(kvinfer::MappedFile::FromBytes(file));
  if (spec.tokens.empty() || spec.scores.size() != spec.tokens.size()) std::abort();
  if (spec.tokens.size() > 4096) return;  // bounded work per input
  try {
    const kvinfer::Tokenizer tok(std::move(spec));
    const std::vector<int32_t> ids = tok.Encode("Hello world <s> x", true);
    for (int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    }
    volatile size_t n = tok.Decode(ids).size();
    (void)n;
  } catch (const kvinfer::Error& e) {
    if (e.what()[0] == '\0') std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> file(data + 1, size - 1);
  const bool tokenizer = (data[0] & 1) != 0;
  try {
    if (tokenizer) {
      TokenizerFile(file);
    } else {
      Checkpoint(file);
    }
  } catch (const kvinfer::Error& e) {
    if (e.code() != kvinfer::StatusCode::kDataLoss || e.what()[0] == '\0') std::abort();
  }
  return 0;
}
