// Pre-tokenizers for byte-level BPE: split text into the chunks that BPE
// merges never cross. Each pattern is a hand-written scanner equivalent to
// the regular expression named below (checked against the Python `regex`
// module), over Unicode classes from ICU.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace kvinfer {

enum class PreTokenizerKind {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // Every \p{N} code point is its own chunk; then kGpt2 on each run between
  // them (llama.cpp's pre-type "smollm", also used by "starcoder" & co.).
  kDigitsThenGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
};

// Maps a GGUF tokenizer.ggml.pre name to its pre-tokenizer; nullopt if this
// build does not know it. "default" is taken as GPT-2's pattern.
std::optional<PreTokenizerKind> PreTokenizerFromName(std::string_view name);

// Appends the chunks of `text` to `chunks` in order: views into `text` that
// are non-empty and concatenate to exactly `text`. Invalid UTF-8 bytes are
// single characters of no class (like punctuation).
void PreTokenize(PreTokenizerKind kind, std::string_view text,
                 std::vector<std::string_view>& chunks);

}  // namespace kvinfer
