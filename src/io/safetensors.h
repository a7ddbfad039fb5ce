// safetensors reader (single files and sharded Hugging Face checkpoints) and
// a small writer for tests and tools.
//
// Layout of a .safetensors file:
//   u64 little-endian N | N bytes of JSON header | data section
// The header is a JSON object: "__metadata__" (optional, string -> string)
// and one entry per tensor: {"dtype": "F32", "shape": [d0, d1, ...],
// "data_offsets": [begin, end]}, offsets relative to the first byte after
// the header. shape[0] is the slowest dimension (row-major, C order), so a
// torch nn.Linear weight [out, in] is a row-major matrix whose rows are the
// output units.
//
// Nothing read from the file is trusted: the header length, the JSON, every
// dtype, shape (element count overflow-checked) and offset range is
// validated against the file size, tensors may not overlap, and a malformed
// file throws Error(kDataLoss) naming the file, the tensor or field and what
// was expected. Tensor data are views into the mapping (zero-copy); the file
// object must outlive them. Note the data section starts at 8 + N, which the
// format does not align: views may be unaligned for their element type
// (writers, including WriteSafetensors, pad N to a multiple of 8).
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
#include "core/weight_view.h"

namespace kvinfer {

struct SafetensorsLimits {
  uint64_t max_header_bytes = 100ull << 20;  // 100 MB of JSON
  uint64_t max_tensors = 1u << 20;
  uint32_t max_dims = 8;
};

struct SafetensorsTensor {
  std::string name;
  std::string dtype_name;        // as the file spells it: "F32", "BF16", "I64"
  // kvinfer's id for the element type, when it has one (F32, F16, BF16, F64,
  // I8, I16, I32, I64); nullopt for the rest (U8, BOOL, F8_*, U16...).
  std::optional<DType> dtype;
  bool compute_supported = false;  // F32, F16 or BF16: usable as a weight
  uint32_t elem_bytes = 0;
  std::vector<uint64_t> shape;   // HF order: shape[0] slowest
  uint64_t num_elements = 0;
  uint64_t begin = 0;            // data_offsets, relative to the data section
  uint64_t num_bytes = 0;
  const uint8_t* data = nullptr; // into the mapping; [num_bytes] (may be unaligned)
};

// The tensor as a row-major matrix: 2-D [rows, cols] = [shape[0], shape[1]],
// 1-D [n] as [1, n]. Throws Error(kUnimplemented) for a dtype kvinfer cannot
// compute with, Error(kDataLoss) for other ranks, naming the tensor.
WeightView AsWeightView(const SafetensorsTensor& t, const std::string& path = {});

class SafetensorsFile {
 public:
  // Throws Error: kNotFound (cannot open), kDataLoss (malformed).
  static SafetensorsFile Open(const std::string& path, const SafetensorsLimits& limits = {});
  // Parses bytes owned by the caller (they must outlive the object).
  static SafetensorsFile Parse(MappedFile file, const SafetensorsLimits& limits = {});

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

  const std::string& path() const { return file_.path(); }
  size_t file_size() const { return file_.size(); }
  uint64_t header_bytes() const { return header_bytes_; }
  uint64_t data_offset() const { return 8 + header_bytes_; }

  const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }
  // Tensors sorted by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* FindTensor(std::string_view name) const;

 private:
  SafetensorsFile() = default;

  MappedFile file_;
  uint64_t header_bytes_ = 0;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::vector<SafetensorsTensor> tensors_;
};

// A checkpoint: one .safetensors file, or several shards listed by a
// model.safetensors.index.json ({"weight_map": {tensor: shard file}}).
class SafetensorsModel {
 public:
  // `path` is a .safetensors file, an index .json, or a directory holding
  // model.safetensors.index.json or model.safetensors (the index wins).
  // Each shard is opened once. Errors: kNotFound (no checkpoint / missing
  // shard), kDataLoss (malformed index or shard, a tensor in two shards, a
  // weight_map entry its shard does not hold).
  static SafetensorsModel Open(const std::string& path, const SafetensorsLimits& limits = {});

  SafetensorsModel(SafetensorsModel&&) noexcept = default;
  SafetensorsModel& operator=(SafetensorsModel&&) noexcept = default;

  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // Every tensor of every shard, sorted by name.
  std::vector<const SafetensorsTensor*> tensors() const;
  const SafetensorsTensor* FindTensor(std::string_view name) const;
  // Throws Error(kDataLoss) naming the tensor and the checkpoint if absent.
  const SafetensorsTensor& GetTensor(std::string_view name) const;
  // The file a tensor came from (for messages).
  const std::string& PathOf(std::string_view name) const;
  const std::string& path() const { return path_; }

 private:
  SafetensorsModel() = default;
  struct Entry {
    size_t shard;
    size_t index;
  };
  std::string path_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, Entry, std::less<>> index_;
};

// ---- writer ----

struct SafetensorsWriteTensor {
  std::string name;
  std::string dtype;              // "F32", "F16", "BF16", "I64", ...
  std::vector<uint64_t> shape;
  std::span<const uint8_t> bytes; // must be product(shape) * element size
};

// Element size of a safetensors dtype name, or 0 if unknown.
uint32_t SafetensorsDTypeBytes(std::string_view dtype);

// Tensors are laid out in the order given; the header is padded with spaces
// to a multiple of 8 bytes. Throws Error(kInvalidArgument) on a size
// mismatch, duplicate or reserved name, unknown dtype.
std::vector<uint8_t> SerializeSafetensors(const std::vector<SafetensorsWriteTensor>& tensors,
                                          const std::map<std::string, std::string>& metadata = {});
// Throws Error(kInternal) on I/O failure.
void WriteSafetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace kvinfer
