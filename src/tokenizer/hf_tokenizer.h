// Hugging Face tokenizer files -> TokenizerSpec (byte-level BPE only).
//
// Accepted inputs:
//   - tokenizer.json with model.type "BPE" (merges as "a b" strings or as
//     [a, b] pairs; added_tokens with "special": true become control
//     tokens, the others user-defined) and a byte-level pre-tokenizer that
//     maps onto one of kvinfer's: ByteLevel alone -> "gpt-2";
//     Sequence[Digits(individual), ByteLevel] -> "smollm";
//     Sequence[Split(Llama 3's regex), ByteLevel(use_regex=false)] -> "llama3".
//     Anything else (SentencePiece-style byte_fallback BPE, normalizers,
//     other regexes, Unigram/WordPiece) is refused with kUnimplemented
//     rather than tokenized wrongly.
//   - vocab.json + merges.txt (GPT-2's original names encoder.json +
//     vocab.bpe too); merges.txt may start with a "#version" line.
//     Pre-tokenizer "gpt-2".
// Special tokens: bos/eos/unk/pad token strings (plain, or {"content": ...})
// and add_bos_token/add_eos_token from tokenizer_config.json, then
// special_tokens_map.json, when present beside the files. Without them
// "<|endoftext|>" (GPT-2: 50256) is BOS and EOS. BOS, EOS and PAD are
// control tokens; add_bos defaults to false unless tokenizer.json's
// post-processor is a TemplateProcessing that starts with the BOS token.
//
// Errors name the file: kNotFound (missing), kDataLoss (malformed),
// kUnimplemented (unsupported tokenizer kind).
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace kvinfer {

// `dir_or_file`: a directory holding tokenizer.json (preferred) or
// vocab.json + merges.txt (or encoder.json + vocab.bpe); or the path of a
// tokenizer.json; or the path of a vocab.json / encoder.json whose merges
// file sits beside it.
TokenizerSpec TokenizerSpecFromHf(const std::string& dir_or_file);

// The same from file contents (tests). `config_json` is
// tokenizer_config.json's (or special_tokens_map.json's) text, may be
// empty. `label` names the source in messages.
TokenizerSpec TokenizerSpecFromHfJson(std::string_view tokenizer_json, std::string_view config_json,
                                      const std::string& label);
TokenizerSpec TokenizerSpecFromVocabMerges(std::string_view vocab_json, std::string_view merges_txt,
                                           std::string_view config_json, const std::string& label);

}  // namespace kvinfer
