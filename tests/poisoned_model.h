// stories260K with chosen weights replaced by NaN or Inf, as a corrupt
// model file would hold them: for the tests of non-finite logits (the
// engine's and the command line's).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/dtype.h"
#include "io/gguf.h"
#include "test_util.h"

namespace kvinfer::testing {

struct Poison {
  std::string tensor;  // GGUF tensor name, an F32 tensor of stories260K
  int64_t begin = 0;   // elements [begin, end) of it (row-major: row r of token_embd is r * 64..)
  int64_t end = 0;
  float value = 0.0f;
};

// Writes stories260K to `path` with each poison applied.
inline void WritePoisonedStories(const std::string& path, const std::vector<Poison>& poisons) {
  const std::string src = StoriesGguf();
  std::string bytes = ReadFile(src);
  ASSERT_FALSE(bytes.empty()) << "cannot read " << src;
  const GgufFile gguf = GgufFile::Open(src);
  for (const Poison& p : poisons) {
    const GgufTensorInfo* t = gguf.FindTensor(p.tensor);
    ASSERT_NE(t, nullptr) << p.tensor;
    ASSERT_EQ(t->type, DType::kF32) << p.tensor;
    ASSERT_TRUE(p.begin >= 0 && p.begin < p.end && static_cast<uint64_t>(p.end) <= t->num_elements)
        << p.tensor;
    for (int64_t i = p.begin; i < p.end; ++i) {
      const uint64_t at = gguf.data_offset() + t->offset + static_cast<uint64_t>(i) * sizeof(float);
      std::memcpy(bytes.data() + at, &p.value, sizeof(float));
    }
  }
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  out.close();
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// stories260K's embedding width: token t's row of token_embd is elements
// [t * kStoriesDim, (t + 1) * kStoriesDim).
constexpr int64_t kStoriesDim = 64;

inline Poison EmbeddingRow(int32_t token, float value) {
  return {"token_embd.weight", token * kStoriesDim, (token + 1) * kStoriesDim, value};
}

}  // namespace kvinfer::testing
