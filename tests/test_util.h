// Paths to model files used by tests, and skipping when they are absent.
#pragma once

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace kvinfer::testing {

inline std::string SharedModels() { return std::string(KVINFER_SOURCE_DIR) + "/../shared/models"; }
inline std::string StoriesGguf() { return SharedModels() + "/stories260K/stories260K.gguf"; }
inline std::string DefaultModel() {
  return std::string(KVINFER_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}
inline std::string GoldenDir() { return std::string(KVINFER_SOURCE_DIR) + "/tests/goldens"; }

}  // namespace kvinfer::testing

// Skips the test, saying how to get the file, when `path` does not exist.
#define KVINFER_REQUIRE_FILE(path)                                                          \
  do {                                                                                      \
    if (!std::filesystem::exists(path)) {                                                   \
      GTEST_SKIP() << "missing " << (path)                                                  \
                   << " — run ./scripts/setup.sh (default model) or check out ../shared/ " \
                      "beside the repository";                                              \
    }                                                                                       \
  } while (0)
