// GGUF models (stories260K, the tiny GPT-2) with chosen weights replaced by
// NaN or Inf, as a corrupt model file would hold them: for the tests of
// non-finite logits (the engine's and the command line's).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/dtype.h"
#include "core/half.h"
#include "io/gguf.h"
#include "test_util.h"

namespace kvinfer::testing {

struct Poison {
  std::string tensor;  // GGUF tensor name, of an F32 or F16 tensor
  int64_t begin = 0;   // elements [begin, end) of it (row-major: row r of token_embd is r * 64..)
  int64_t end = 0;
  float value = 0.0f;
};

// Writes the GGUF file `src` to `path` with each poison applied.
inline void WritePoisonedCopy(const std::string& src, const std::string& path,
                              const std::vector<Poison>& poisons) {
  std::string bytes = ReadFile(src);
  ASSERT_FALSE(bytes.empty()) << "cannot read " << src;
  const GgufFile gguf = GgufFile::Open(src);
  for (const Poison& p : poisons) {
    const GgufTensorInfo* t = gguf.FindTensor(p.tensor);
    ASSERT_NE(t, nullptr) << p.tensor;
    ASSERT_TRUE(t->type == DType::kF32 || t->type == DType::kF16) << p.tensor;
    ASSERT_TRUE(p.begin >= 0 && p.begin < p.end && static_cast<uint64_t>(p.end) <= t->num_elements)
        << p.tensor;
    const size_t size = t->type == DType::kF32 ? sizeof(float) : sizeof(uint16_t);
    const uint16_t half = F32ToF16(p.value);
    for (int64_t i = p.begin; i < p.end; ++i) {
      char* at = bytes.data() + gguf.data_offset() + t->offset + static_cast<uint64_t>(i) * size;
      if (t->type == DType::kF32) {
        std::memcpy(at, &p.value, sizeof(float));
      } else {
        std::memcpy(at, &half, sizeof(half));
      }
    }
  }
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  out.close();
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline void WritePoisonedStories(const std::string& path, const std::vector<Poison>& poisons) {
  WritePoisonedCopy(StoriesGguf(), path, poisons);
}

// stories260K's embedding width: token t's row of token_embd is elements
// [t * kStoriesDim, (t + 1) * kStoriesDim).
constexpr int64_t kStoriesDim = 64;

inline Poison EmbeddingRow(int32_t token, float value) {
  return {"token_embd.weight", token * kStoriesDim, (token + 1) * kStoriesDim, value};
}

}  // namespace kvinfer::testing
