#include "io/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include "core/error.h"

namespace kvinfer {
namespace {

// Appends the little-endian bytes of a trivially copyable value.
template <typename T>
void Put(std::vector<uint8_t>& out, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void PutString(std::vector<uint8_t>& out, std::string_view s) {
  Put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void PutPadding(std::vector<uint8_t>& out, uint64_t alignment) {
  const size_t rem = out.size() % alignment;
  if (rem != 0) out.resize(out.size() + (alignment - rem), 0);
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

#define KVINFER_GGUF_SCALAR(Name, CType, Tag)           \
  GgufWriteValue GgufWriteValue::Name(CType v) {        \
    std::vector<uint8_t> p;                             \
    Put<CType>(p, v);                                   \
    return GgufWriteValue(GgufType::Tag, std::move(p)); \
  }
KVINFER_GGUF_SCALAR(U8, uint8_t, kUint8)
KVINFER_GGUF_SCALAR(I8, int8_t, kInt8)
KVINFER_GGUF_SCALAR(U16, uint16_t, kUint16)
KVINFER_GGUF_SCALAR(I16, int16_t, kInt16)
KVINFER_GGUF_SCALAR(U32, uint32_t, kUint32)
KVINFER_GGUF_SCALAR(I32, int32_t, kInt32)
KVINFER_GGUF_SCALAR(U64, uint64_t, kUint64)
KVINFER_GGUF_SCALAR(I64, int64_t, kInt64)
KVINFER_GGUF_SCALAR(F32, float, kFloat32)
KVINFER_GGUF_SCALAR(F64, double, kFloat64)
#undef KVINFER_GGUF_SCALAR

GgufWriteValue GgufWriteValue::Bool(bool v) {
  return GgufWriteValue(GgufType::kBool, {static_cast<uint8_t>(v ? 1 : 0)});
}

GgufWriteValue GgufWriteValue::String(std::string_view v) {
  std::vector<uint8_t> p;
  PutString(p, v);
  return GgufWriteValue(GgufType::kString, std::move(p));
}

GgufWriteValue GgufWriteValue::Array(GgufType elem_type, const std::vector<GgufWriteValue>& elems) {
  std::vector<uint8_t> p;
  size_t total = 12;
  for (const GgufWriteValue& e : elems) total += e.payload_.size();
  p.reserve(total);
  Put<uint32_t>(p, static_cast<uint32_t>(elem_type));
  Put<uint64_t>(p, elems.size());
  for (size_t i = 0; i < elems.size(); ++i) {
    if (elems[i].type_ != elem_type) {
      Fail(StatusCode::kInvalidArgument,
           "GgufWriteValue::Array: element {} has type {} but the array holds {}", i,
           GgufTypeName(elems[i].type_), GgufTypeName(elem_type));
    }
    p.insert(p.end(), elems[i].payload_.begin(), elems[i].payload_.end());
  }
  return GgufWriteValue(GgufType::kArray, std::move(p));
}

void GgufWriter::SetVersion(uint32_t version) {
  if (version != 2 && version != 3) {
    Fail(StatusCode::kInvalidArgument, "GgufWriter: version {} (expected 2 or 3)", version);
  }
  version_ = version;
}

void GgufWriter::SetAlignment(uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    Fail(StatusCode::kInvalidArgument, "GgufWriter: alignment {} (expected a nonzero power of two)",
         alignment);
  }
  alignment_ = alignment;
  if (alignment == 32) {
    Remove("general.alignment");
  } else {
    SetU32("general.alignment", alignment);
  }
}

void GgufWriter::Set(std::string_view key, GgufWriteValue value) {
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(std::string(key), std::move(value));
}

bool GgufWriter::Has(std::string_view key) const {
  for (const auto& kv : kv_) {
    if (kv.first == key) return true;
  }
  return false;
}

void GgufWriter::Remove(std::string_view key) {
  for (auto it = kv_.begin(); it != kv_.end(); ++it) {
    if (it->first == key) {
      kv_.erase(it);
      return;
    }
  }
}

void GgufWriter::SetArrayRaw(std::string_view key, GgufType elem_type, uint64_t count,
                             const void* data, size_t elem_bytes) {
  std::vector<uint8_t> p(12 + count * elem_bytes);
  const uint32_t t = static_cast<uint32_t>(elem_type);
  std::memcpy(p.data(), &t, 4);
  std::memcpy(p.data() + 4, &count, 8);
  if (count > 0) std::memcpy(p.data() + 12, data, count * elem_bytes);
  Set(key, GgufWriteValue(GgufType::kArray, std::move(p)));
}

void GgufWriter::SetBoolArray(std::string_view key, const std::vector<bool>& values) {
  std::vector<uint8_t> bytes(values.size());
  for (size_t i = 0; i < values.size(); ++i) bytes[i] = values[i] ? 1 : 0;
  SetArrayRaw(key, GgufType::kBool, bytes.size(), bytes.data(), 1);
}

namespace {
template <typename S>
std::vector<uint8_t> EncodeStringArray(std::span<const S> values) {
  size_t total = 12;
  for (const S& s : values) total += 8 + s.size();
  std::vector<uint8_t> p;
  p.reserve(total);
  Put<uint32_t>(p, static_cast<uint32_t>(GgufType::kString));
  Put<uint64_t>(p, values.size());
  for (const S& s : values) PutString(p, s);
  return p;
}
}  // namespace

void GgufWriter::SetStringArray(std::string_view key, std::span<const std::string> values) {
  Set(key, GgufWriteValue(GgufType::kArray, EncodeStringArray(values)));
}

void GgufWriter::SetStringArray(std::string_view key, std::span<const std::string_view> values) {
  Set(key, GgufWriteValue(GgufType::kArray, EncodeStringArray(values)));
}

GgufWriter::Tensor& GgufWriter::NewTensor(std::string_view name, std::vector<uint64_t>& dims,
                                          DType type, size_t num_bytes) {
  if (name.empty()) Fail(StatusCode::kInvalidArgument, "GgufWriter: empty tensor name");
  for (const Tensor& t : tensors_) {
    if (t.name == name) {
      Fail(StatusCode::kInvalidArgument, "GgufWriter: duplicate tensor '{}'", name);
    }
  }
  if (dims.empty() || dims.size() > 4) {
    Fail(StatusCode::kInvalidArgument, "GgufWriter: tensor '{}' has {} dims (expected 1..4)", name,
         dims.size());
  }
  const DTypeInfo& info = GetDTypeInfo(type);
  uint64_t n = 1;
  for (uint64_t d : dims) {
    if (d == 0 || n > std::numeric_limits<uint64_t>::max() / d / info.block_bytes) {
      Fail(StatusCode::kInvalidArgument, "GgufWriter: tensor '{}' has a bad dim {}", name, d);
    }
    n *= d;
  }
  if (dims[0] % info.block_elems != 0) {
    Fail(StatusCode::kInvalidArgument,
         "GgufWriter: tensor '{}': first dim {} is not a multiple of the {} block size {}", name,
         dims[0], info.name, info.block_elems);
  }
  const uint64_t expected = n / info.block_elems * info.block_bytes;
  if (expected != num_bytes) {
    Fail(StatusCode::kInvalidArgument,
         "GgufWriter: tensor '{}' ({}, {} elements) needs {} bytes, got {}", name, info.name, n,
         expected, num_bytes);
  }
  Tensor& t = tensors_.emplace_back();
  t.name = std::string(name);
  t.dims = std::move(dims);
  t.type = type;
  return t;
}

void GgufWriter::AddTensor(std::string_view name, std::vector<uint64_t> dims, DType type,
                           std::span<const uint8_t> bytes) {
  Tensor& t = NewTensor(name, dims, type, bytes.size());
  t.bytes.assign(bytes.begin(), bytes.end());
}

void GgufWriter::AddTensor(std::string_view name, std::vector<uint64_t> dims, DType type,
                           std::vector<uint8_t>&& bytes) {
  Tensor& t = NewTensor(name, dims, type, bytes.size());
  t.bytes = std::move(bytes);
}

std::vector<uint8_t> GgufWriter::SerializeHeader(GgufWriterLayout* layout) const {
  std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
  Put<uint32_t>(out, version_);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, kv_.size());
  for (const auto& [key, value] : kv_) {
    if (layout) layout->kv_offsets.push_back(out.size());
    PutString(out, key);
    Put<uint32_t>(out, static_cast<uint32_t>(value.type()));
    out.insert(out.end(), value.payload().begin(), value.payload().end());
  }
  if (layout) layout->tensor_infos_offset = out.size();
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    if (layout) {
      layout->tensor_info_offsets.push_back(out.size());
      layout->tensor_data_offsets.push_back(offset);
    }
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) Put<uint64_t>(out, d);
    Put<uint32_t>(out, static_cast<uint32_t>(t.type));
    Put<uint64_t>(out, offset);
    offset = AlignUp(offset + t.bytes.size(), alignment_);
  }
  // Vocab-only files (no tensors) end right after the metadata, as
  // llama.cpp writes them; otherwise pad to the data section.
  if (!tensors_.empty()) PutPadding(out, alignment_);
  if (layout) {
    layout->data_offset = AlignUp(out.size(), alignment_);
    layout->file_size = out.size() + offset;
  }
  return out;
}

std::vector<uint8_t> GgufWriter::Serialize(GgufWriterLayout* layout) const {
  if (layout) *layout = GgufWriterLayout{};
  std::vector<uint8_t> out = SerializeHeader(layout);
  for (const Tensor& t : tensors_) {
    out.insert(out.end(), t.bytes.begin(), t.bytes.end());
    PutPadding(out, alignment_);
  }
  if (layout) layout->file_size = out.size();
  return out;
}

void GgufWriter::WriteFile(const std::string& path) const {
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> f(std::fopen(path.c_str(), "wb"));
  if (!f) {
    Fail(StatusCode::kInternal, "cannot create '{}': {}", path, std::strerror(errno));
  }
  auto write = [&](const void* p, size_t n) {
    if (n > 0 && std::fwrite(p, 1, n, f.get()) != n) {
      Fail(StatusCode::kInternal, "cannot write '{}': {}", path, std::strerror(errno));
    }
  };
  const std::vector<uint8_t> header = SerializeHeader(nullptr);
  write(header.data(), header.size());
  static constexpr uint8_t kZeros[256] = {};
  for (const Tensor& t : tensors_) {
    write(t.bytes.data(), t.bytes.size());
    size_t pad = (alignment_ - t.bytes.size() % alignment_) % alignment_;
    while (pad > 0) {
      const size_t n = std::min(pad, sizeof(kZeros));
      write(kZeros, n);
      pad -= n;
    }
  }
  if (std::fclose(f.release()) != 0) {
    Fail(StatusCode::kInternal, "cannot write '{}': {}", path, std::strerror(errno));
  }
}

}  // namespace kvinfer
