#include "batch_request.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kvinfer::cli {
namespace {
// The largest value a float holds: a double past it has no float to become.
constexpr double kMaxFloat = 3.4028234663852886e38;
}  // namespace

StatusOr<BatchRequest> ParseBatchRequest(std::string_view line, const SamplingParams& defaults) {
  auto fail = [](std::string what) { return Status(StatusCode::kInvalidArgument, std::move(what)); };
  // Nesting deeper than a request needs is refused before parsing, so a line
  // of a million '[' costs no recursion.
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > 8) return fail("JSON nested deeper than 8 levels");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail("not valid JSON");
  if (!j.is_object()) return fail("expected a JSON object");
  BatchRequest r;
  r.params = defaults;
  for (auto& [key, v] : j.items()) {
    if (key == "prompt") {
      if (!v.is_string()) return fail("\"prompt\" must be a string");
      r.prompt = v.get<std::string>();
    } else if (key == "max_tokens") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 24)) {
        return fail("\"max_tokens\" must be an integer in [0, 16777216]");
      }
      r.params.max_tokens = v.get<int>();
    } else if (key == "temperature") {
      if (!v.is_number() || !(std::abs(v.get<double>()) <= kMaxFloat)) {
        return fail("\"temperature\" must be a finite number");
      }
      r.params.temperature = static_cast<float>(v.get<double>());
    } else if (key == "top_k") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 30)) {
        return fail("\"top_k\" must be an integer in [0, 1073741824]");
      }
      r.params.top_k = v.get<int>();
    } else if (key == "top_p") {
      if (!v.is_number() || !(std::abs(v.get<double>()) <= kMaxFloat)) {
        return fail("\"top_p\" must be a finite number");
      }
      r.params.top_p = static_cast<float>(v.get<double>());
    } else if (key == "seed") {
      if (!v.is_number_unsigned()) return fail("\"seed\" must be a non-negative integer");
      r.params.seed = v.get<uint64_t>();
    } else if (key == "ignore_eos") {
      if (!v.is_boolean()) return fail("\"ignore_eos\" must be true or false");
      r.params.ignore_eos = v.get<bool>();
    } else if (key == "chat") {
      if (!v.is_boolean()) return fail("\"chat\" must be true or false");
      r.chat = v.get<bool>();
    } else {
      return fail(fmt::format("unknown key \"{}\" (known: prompt, max_tokens, temperature, top_k, "
                              "top_p, seed, ignore_eos, chat)",
                              key));
    }
  }
  if (r.prompt.empty()) return fail("\"prompt\" is missing or empty");
  return r;
}

}  // namespace kvinfer::cli
