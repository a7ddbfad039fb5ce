// GGUF reader (versions 2 and 3): a pure parser over a memory-mapped file.
//
// Nothing read from the file is trusted: every count, length, offset and
// size is checked against the file size before it is used, and a malformed
// file throws Error(kDataLoss) naming what was wrong, where (byte offset, key
// or tensor name) and what was expected. String values are views into the
// mapping (zero-copy); the GgufFile must outlive them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace kvinfer {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view GgufTypeName(GgufType t);

// One metadata value. Scalars live in the matching field; arrays (possibly
// nested) in `array`, whose elements all have type `array_type`.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  uint64_t u = 0;         // kUint8/16/32/64, kBool
  int64_t i = 0;          // kInt8/16/32/64
  double f = 0;           // kFloat32/64
  std::string_view str;   // kString
  GgufType array_type = GgufType::kUint8;
  std::vector<GgufValue> array;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;   // GGML order: dims[0] is the contiguous (fastest) dimension
  DType type = DType::kF32;
  uint64_t offset = 0;          // relative to the start of the data section
  uint64_t num_elements = 0;
  uint64_t num_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping; [num_bytes]
};

struct GgufLimits {
  // Refuse absurd counts before allocating anything for them.
  uint64_t max_tensors = 1u << 20;
  uint64_t max_kv = 1u << 20;
  // Each parsed element costs a GgufValue (~80 bytes): 16M elements bound a
  // hostile array to ~1.3 GB while leaving 60x headroom over the largest real
  // vocabularies (256K tokens).
  uint64_t max_array_elems = 1u << 24;
  uint32_t max_nesting = 8;
  uint32_t max_dims = 4;
};

class GgufFile {
 public:
  // Throws Error: kNotFound (cannot open), kDataLoss (malformed).
  static GgufFile Open(const std::string& path, const GgufLimits& limits = {});
  // Parses bytes owned by the caller (they must outlive the GgufFile).
  static GgufFile Parse(MappedFile file, const GgufLimits& limits = {});

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return file_.path(); }
  size_t file_size() const { return file_.size(); }
  uint64_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string_view, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* Find(std::string_view key) const;

  // Typed getters. Absent key -> nullopt. Present with a type that cannot
  // represent the request (e.g. a string asked as an integer, a negative
  // number asked as unsigned) -> Error(kDataLoss) naming the key.
  std::optional<uint64_t> GetUint(std::string_view key) const;   // any integer type, >= 0
  std::optional<int64_t> GetInt(std::string_view key) const;     // any integer type
  std::optional<double> GetFloat(std::string_view key) const;    // float or integer types
  std::optional<bool> GetBool(std::string_view key) const;
  std::optional<std::string_view> GetString(std::string_view key) const;
  // Arrays: the element type must match (ints: any integer type; floats:
  // float types) or Error(kDataLoss).
  std::optional<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  std::optional<std::vector<float>> GetFloatArray(std::string_view key) const;
  std::optional<std::vector<int64_t>> GetIntArray(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;

 private:
  GgufFile() = default;

  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string_view, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace kvinfer
