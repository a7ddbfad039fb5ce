// One line of `kvinfer batch`'s input: a JSON object naming a prompt and its
// sampling parameters. Kept apart from the command so the fuzzer drives the
// same reader.
#pragma once

#include <string>
#include <string_view>

#include "kvinfer/kvinfer.h"

namespace kvinfer::cli {

struct BatchRequest {
  std::string prompt;
  bool chat = false;
  SamplingParams params;
};

// Strict: bad JSON, a non-object, unknown keys, wrong types and values out
// of range are errors whose message names the key. `defaults` supplies what
// the line leaves out.
StatusOr<BatchRequest> ParseBatchRequest(std::string_view line, const SamplingParams& defaults);

}  // namespace kvinfer::cli
