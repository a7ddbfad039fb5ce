// libFuzzer target for `kvinfer batch`'s line reader
// (tools/cli/batch_request.h). Every line must parse to in-range values or
// fail with kInvalidArgument and a message; nothing may throw.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "batch_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const kvinfer::SamplingParams defaults;
  const kvinfer::StatusOr<kvinfer::cli::BatchRequest> r =
      kvinfer::cli::ParseBatchRequest(line, defaults);
  if (!r.ok()) {
    if (r.status().code() != kvinfer::StatusCode::kInvalidArgument) std::abort();
    if (r.status().message().empty()) std::abort();
    return 0;
  }
  if (r->prompt.empty()) std::abort();
  const kvinfer::SamplingParams& p = r->params;
  if (p.max_tokens < 0 || p.max_tokens > 16777216) std::abort();
  if (p.top_k < 0 || p.top_k > 1073741824) std::abort();
  if (!std::isfinite(p.temperature) || !std::isfinite(p.top_p)) std::abort();
  return 0;
}
