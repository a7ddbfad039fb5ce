// GGUF writer (version 3, or 2 on request; both share one little-endian
// layout). Builds the file in memory or streams it to a path.
//
// Used by tests to make valid and deliberately malformed files, and by tools
// that write random-weight models. The writer checks what a caller can get
// wrong by mistake (tensor byte sizes, dims, duplicate tensor names) and
// throws Error(kInvalidArgument); it does not stop a caller from writing odd
// but well-formed metadata (e.g. a bogus general.alignment value), which is
// how tests make malformed files.
//
//   GgufWriter w;
//   w.SetString("general.architecture", "llama");
//   w.SetU32("llama.block_count", 5);
//   w.SetStringArray("tokenizer.ggml.tokens", tokens);
//   w.AddTensor("token_embd.weight", {64, 512}, DType::kF32, bytes);
//   w.WriteFile("model.gguf");
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"

namespace kvinfer {

// One encoded metadata value: its type and the bytes that follow the type
// tag in the file. Build nested arrays from these:
//   GgufWriteValue::Array(GgufType::kArray, {GgufWriteValue::Array(...), ...})
class GgufWriteValue {
 public:
  static GgufWriteValue U8(uint8_t v);
  static GgufWriteValue I8(int8_t v);
  static GgufWriteValue U16(uint16_t v);
  static GgufWriteValue I16(int16_t v);
  static GgufWriteValue U32(uint32_t v);
  static GgufWriteValue I32(int32_t v);
  static GgufWriteValue U64(uint64_t v);
  static GgufWriteValue I64(int64_t v);
  static GgufWriteValue F32(float v);
  static GgufWriteValue F64(double v);
  static GgufWriteValue Bool(bool v);
  static GgufWriteValue String(std::string_view v);
  // All elements must have type `elem_type` (for nested arrays: kArray, and
  // the inner arrays may differ in element type and length).
  static GgufWriteValue Array(GgufType elem_type, const std::vector<GgufWriteValue>& elems);

  GgufType type() const { return type_; }
  // The encoding after the u32 type tag.
  const std::vector<uint8_t>& payload() const { return payload_; }

 private:
  friend class GgufWriter;
  GgufWriteValue(GgufType type, std::vector<uint8_t> payload)
      : type_(type), payload_(std::move(payload)) {}

  GgufType type_;
  std::vector<uint8_t> payload_;
};

// Where things landed in the serialized file (byte offsets from its start).
// Tests use it to corrupt specific fields.
struct GgufWriterLayout {
  std::vector<uint64_t> kv_offsets;           // start of each key (its u64 length), in order
  uint64_t tensor_infos_offset = 0;           // start of the tensor info table
  std::vector<uint64_t> tensor_info_offsets;  // start of each tensor info (its name length)
  uint64_t data_offset = 0;                   // start of the data section (aligned)
  std::vector<uint64_t> tensor_data_offsets;  // each tensor's data, relative to data_offset
  uint64_t file_size = 0;
};

class GgufWriter {
 public:
  GgufWriter() = default;

  // 2 or 3 (default 3).
  void SetVersion(uint32_t version);
  // Nonzero power of two (default 32). A value other than 32 also sets the
  // metadata key general.alignment (uint32), as readers require.
  void SetAlignment(uint32_t alignment);
  uint32_t alignment() const { return alignment_; }

  // Metadata. Setting an existing key replaces its value in place (the file
  // never holds duplicate keys; tests make those by patching bytes).
  void Set(std::string_view key, GgufWriteValue value);
  void SetU8(std::string_view key, uint8_t v) { Set(key, GgufWriteValue::U8(v)); }
  void SetI8(std::string_view key, int8_t v) { Set(key, GgufWriteValue::I8(v)); }
  void SetU16(std::string_view key, uint16_t v) { Set(key, GgufWriteValue::U16(v)); }
  void SetI16(std::string_view key, int16_t v) { Set(key, GgufWriteValue::I16(v)); }
  void SetU32(std::string_view key, uint32_t v) { Set(key, GgufWriteValue::U32(v)); }
  void SetI32(std::string_view key, int32_t v) { Set(key, GgufWriteValue::I32(v)); }
  void SetU64(std::string_view key, uint64_t v) { Set(key, GgufWriteValue::U64(v)); }
  void SetI64(std::string_view key, int64_t v) { Set(key, GgufWriteValue::I64(v)); }
  void SetF32(std::string_view key, float v) { Set(key, GgufWriteValue::F32(v)); }
  void SetF64(std::string_view key, double v) { Set(key, GgufWriteValue::F64(v)); }
  void SetBool(std::string_view key, bool v) { Set(key, GgufWriteValue::Bool(v)); }
  void SetString(std::string_view key, std::string_view v) { Set(key, GgufWriteValue::String(v)); }
  // Arrays of scalars: T is one of uint8_t..int64_t, float, double, bool.
  template <typename T>
  void SetArray(std::string_view key, std::span<const T> values);
  template <typename T>
  void SetArray(std::string_view key, const std::vector<T>& values) {
    SetArray<T>(key, std::span<const T>(values));
  }
  void SetBoolArray(std::string_view key, const std::vector<bool>& values);
  void SetStringArray(std::string_view key, std::span<const std::string> values);
  void SetStringArray(std::string_view key, std::span<const std::string_view> values);
  bool Has(std::string_view key) const;
  void Remove(std::string_view key);

  // Tensors, laid out in the order added, each at the next aligned offset.
  // dims are GGML order (dims[0] contiguous), 1..4 of them, each >= 1,
  // dims[0] a multiple of the type's block size; bytes.size() must equal
  // the tensor's byte size.
  void AddTensor(std::string_view name, std::vector<uint64_t> dims, DType type,
                 std::span<const uint8_t> bytes);
  // Same, taking ownership (no copy of large random weights).
  void AddTensor(std::string_view name, std::vector<uint64_t> dims, DType type,
                 std::vector<uint8_t>&& bytes);
  size_t num_tensors() const { return tensors_.size(); }

  std::vector<uint8_t> Serialize(GgufWriterLayout* layout = nullptr) const;
  // Streams the file to `path`. Throws Error(kInternal) on I/O failure.
  void WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    DType type;
    std::vector<uint8_t> bytes;
  };

  // Header, metadata, tensor infos and the padding up to the data section.
  std::vector<uint8_t> SerializeHeader(GgufWriterLayout* layout) const;
  void SetArrayRaw(std::string_view key, GgufType elem_type, uint64_t count, const void* data,
                   size_t elem_bytes);
  Tensor& NewTensor(std::string_view name, std::vector<uint64_t>& dims, DType type,
                    size_t num_bytes);

  uint32_t version_ = 3;
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufWriteValue>> kv_;
  std::vector<Tensor> tensors_;
};

namespace gguf_writer_internal {
template <typename T>
constexpr GgufType ScalarType() {
  if constexpr (std::is_same_v<T, uint8_t>)
    return GgufType::kUint8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return GgufType::kInt8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return GgufType::kUint16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return GgufType::kInt16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return GgufType::kUint32;
  else if constexpr (std::is_same_v<T, int32_t>)
    return GgufType::kInt32;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return GgufType::kUint64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return GgufType::kInt64;
  else if constexpr (std::is_same_v<T, float>)
    return GgufType::kFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return GgufType::kFloat64;
  else if constexpr (std::is_same_v<T, bool>)
    return GgufType::kBool;
  else
    static_assert(sizeof(T) == 0, "unsupported GGUF array element type");
}
}  // namespace gguf_writer_internal

template <typename T>
void GgufWriter::SetArray(std::string_view key, std::span<const T> values) {
  static_assert(sizeof(bool) == 1);
  SetArrayRaw(key, gguf_writer_internal::ScalarType<T>(), values.size(), values.data(), sizeof(T));
}

}  // namespace kvinfer
