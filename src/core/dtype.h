// Element types of weights and caches, numbered as GGML numbers them (the
// GGUF tensor table stores these ids). Every id GGML defines is listed so a
// reader can size any tensor; only some are computable (IsSupportedWeight).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kvinfer {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
};

struct DTypeInfo {
  DType type;
  std::string_view name;     // "q4_1"
  uint32_t block_elems;      // elements per block (1 for plain types)
  uint32_t block_bytes;      // bytes per block
};

// nullopt for ids GGML does not define (or has removed).
std::optional<DTypeInfo> LookupDType(uint32_t id);
const DTypeInfo& GetDTypeInfo(DType t);
std::string_view DTypeName(DType t);
std::optional<DType> ParseDType(std::string_view name);  // "f16", "Q8_0" (case-insensitive)

// Types kvinfer has kernels for as weights: F32, F16, BF16, Q8_0, Q4_0, Q4_1.
bool IsSupportedWeight(DType t);

// Bytes of a row of `n` elements; n must be a multiple of block_elems.
inline size_t RowBytes(const DTypeInfo& info, uint64_t n) {
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes;
}

// GGML block layouts (little-endian, packed).
inline constexpr int kQK = 32;  // elements per Q4_0 / Q4_1 / Q8_0 block
struct BlockQ4_0 {
  uint16_t d;            // fp16 scale
  uint8_t qs[kQK / 2];   // element j in low nibble of qs[j], element j+16 in high nibble
};
struct BlockQ4_1 {
  uint16_t d;            // fp16 scale
  uint16_t m;            // fp16 minimum
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;            // fp16 scale
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_0) == 34);

}  // namespace kvinfer
