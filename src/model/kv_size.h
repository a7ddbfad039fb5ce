// The KV-cache memory calculator (types and the public, non-throwing entry
// points: include/kvinfer/kv_size.h), with the throwing functions the
// library and its tests use. The attention shape of a file comes from the
// one reader of model metadata, model/config.h (ConfigUse::kShape).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvinfer/kv_size.h"
#include "model/config.h"

namespace kvinfer {

class GgufFile;

// Throws Error(kInvalidArgument) listing the known names.
KvDtype ParseKvDtype(std::string_view name);

// Throws Error(kInvalidArgument) naming the first inconsistent field.
void ValidateKvSizeSpec(const KvSizeSpec& spec);

// Throws Error(kNotFound) listing the known presets.
KvSizeSpec KvSizeSpecFromPreset(std::string_view name);
// The attention shape of a config read with ConfigUse::kShape, named `name`.
// Throws Error(kInvalidArgument) naming the first inconsistent field.
KvSizeSpec KvSizeSpecFromConfig(const ModelConfig& config, std::string name);
// A Hugging Face config.json (its text). Throws Error(kInvalidArgument) for
// malformed JSON or a missing/invalid key, naming the key.
KvSizeSpec KvSizeSpecFromHfConfig(std::string_view json_text, std::string name = "config.json");
// GGUF metadata only (no weights, no tensors needed). Throws Error(kDataLoss)
// naming the file and key.
KvSizeSpec KvSizeSpecFromGguf(const GgufFile& file);

// Throws Error(kInvalidArgument) for non-positive options or an invalid spec,
// Error(kOutOfRange) when the total does not fit in 64 bits.
KvSizeResult ComputeKvSize(const KvSizeSpec& spec, const KvSizeOptions& options);

// Slots a windowed layer holds for a sequence of `seq_len` tokens: the
// blocks that overlap the last `window` positions [seq_len - window, seq_len)
// (blocks wholly outside the window are freed), times block_size.
int64_t WindowTokens(int64_t seq_len, int64_t window, int64_t block_size);

}  // namespace kvinfer
