// llama2.c's tokenizer.bin (the vocabulary file beside a llama2.c
// checkpoint, io/llama2c.h) as a TokenizerSpec.
#pragma once

#include <cstdint>
#include <string>

#include "core/mapped_file.h"
#include "tokenizer/tokenizer.h"

namespace kvinfer {

// llama2.c's tokenizer.bin: int32 max_token_length, then per token f32
// score, int32 byte length, the bytes. `vocab_size` tokens are read (0: read
// to the end of the file); the file must end exactly after them. llama2.c's
// exporter wrote "▁" as " " and BOS/EOS as "\n<s>\n" / "\n</s>\n"; the spec
// restores SentencePiece's pieces ("▁", "<s>", "</s>") so it matches the
// same vocabulary in a GGUF. kind kSpm; "<unk>" unknown, "<s>" "</s>"
// control, "<0xXX>" byte, the rest normal; unk 0, bos 1, eos 2, add_bos,
// add_space_prefix. Throws Error(kNotFound / kDataLoss).
TokenizerSpec Llama2cTokenizerSpec(const std::string& path, int32_t vocab_size = 0);
TokenizerSpec Llama2cTokenizerSpecFromBytes(const MappedFile& file, int32_t vocab_size = 0);

}  // namespace kvinfer
