#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "core/error.h"

namespace kvinfer {
namespace {

constexpr uint64_t kDefaultAlignment = 32;
// GGUF keys are short ASCII identifiers; the spec caps them at 65535 bytes.
constexpr uint64_t kMaxKeyBytes = 65535;
// Fewest bytes one element of each kind can occupy, used to refuse counts the
// rest of the file cannot possibly hold before anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;  // key len, 1-byte key, type, u8
constexpr uint64_t kMinTensorInfoBytes =
    8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, 1 dim, type, offset

// Size in bytes of a scalar GGUF type; 0 for string and array.
uint64_t ScalarBytes(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

// Smallest encoding of one array element of type t (a string is at least its
// u64 length, an array at least its u32 type and u64 count).
uint64_t MinElemBytes(GgufType t) {
  switch (t) {
    case GgufType::kString:
      return 8;
    case GgufType::kArray:
      return 12;
    default:
      return ScalarBytes(t);
  }
}

bool IsValidType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

bool IsIntegerType(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

bool IsSignedType(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}

bool IsFloatType(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

// Bounds-checked little-endian reads over the mapping. Every read names what
// it reads so a truncated file says which field ran past the end.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

  // `what` names the field; `name` (a key or tensor name, may be empty) is
  // appended quoted. Messages are built only on failure: this runs per token.
  void Need(uint64_t n, std::string_view what, std::string_view name = {}) const {
    if (n > remaining()) [[unlikely]] {
      Fail(StatusCode::kDataLoss,
           "{}: truncated file: {}{} at byte {} needs {} bytes but only {} remain (file size {})",
           path_, what, Quoted(name), pos_, n, remaining(), size_);
    }
  }

  template <typename T>
  T Read(std::string_view what, std::string_view name = {}) {
    Need(sizeof(T), what, name);
    T v;
    std::memcpy(&v, data_ + pos_,
                sizeof(T));  // files are little-endian, as is every host we run on
    pos_ += sizeof(T);
    return v;
  }

  // A GGUF string: u64 byte length, then the bytes (no terminator). The view
  // points into the mapping.
  std::string_view ReadString(std::string_view what, std::string_view name = {}) {
    const uint64_t at = pos_;
    const uint64_t len = Read<uint64_t>(what, name);
    if (len > remaining()) [[unlikely]] {
      Fail(StatusCode::kDataLoss,
           "{}: string length {} of {}{} at byte {} runs past the end of the file ({} bytes "
           "remain, file size {})",
           path_, len, what, Quoted(name), at, remaining(), size_);
    }
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

 private:
  static std::string Quoted(std::string_view name) {
    return name.empty() ? std::string() : fmt::format(" '{}'", Printable(name));
  }

  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

constexpr std::string_view kValueOf = "value of metadata";

class Parser {
 public:
  Parser(Cursor& cur, const GgufLimits& limits) : cur_(cur), limits_(limits) {}

  // Reads one value of type `type` (already read). `key` names the metadata
  // entry for messages; `depth` counts enclosing arrays.
  void ReadValue(GgufType type, std::string_view key, uint32_t depth, GgufValue& out) {
    out.type = type;
    switch (type) {
      case GgufType::kUint8:
        out.u = cur_.Read<uint8_t>(kValueOf, key);
        return;
      case GgufType::kInt8:
        out.i = cur_.Read<int8_t>(kValueOf, key);
        return;
      case GgufType::kUint16:
        out.u = cur_.Read<uint16_t>(kValueOf, key);
        return;
      case GgufType::kInt16:
        out.i = cur_.Read<int16_t>(kValueOf, key);
        return;
      case GgufType::kUint32:
        out.u = cur_.Read<uint32_t>(kValueOf, key);
        return;
      case GgufType::kInt32:
        out.i = cur_.Read<int32_t>(kValueOf, key);
        return;
      case GgufType::kUint64:
        out.u = cur_.Read<uint64_t>(kValueOf, key);
        return;
      case GgufType::kInt64:
        out.i = cur_.Read<int64_t>(kValueOf, key);
        return;
      case GgufType::kFloat32:
        out.f = cur_.Read<float>(kValueOf, key);
        return;
      case GgufType::kFloat64:
        out.f = cur_.Read<double>(kValueOf, key);
        return;
      case GgufType::kBool: {
        const uint64_t at = cur_.pos();
        const uint8_t b = cur_.Read<uint8_t>(kValueOf, key);
        if (b > 1) {
          Fail(StatusCode::kDataLoss, "{}: metadata '{}': bool at byte {} is {} (expected 0 or 1)",
               cur_.path(), Printable(key), at, b);
        }
        out.u = b;
        return;
      }
      case GgufType::kString:
        out.str = cur_.ReadString(kValueOf, key);
        return;
      case GgufType::kArray:
        ReadArray(key, depth, out);
        return;
    }
    Fail(StatusCode::kInternal, "unreachable GGUF type {}", static_cast<uint32_t>(type));
  }

  GgufType ReadType(std::string_view key, std::string_view role) {
    const uint64_t at = cur_.pos();
    const uint32_t t = cur_.Read<uint32_t>(kValueOf, key);
    if (!IsValidType(t)) {
      Fail(StatusCode::kDataLoss,
           "{}: metadata '{}': unknown {} type {} at byte {} (expected 0..12)", cur_.path(),
           Printable(key), role, t, at);
    }
    return static_cast<GgufType>(t);
  }

 private:
  void ReadArray(std::string_view key, uint32_t depth, GgufValue& out) {
    if (depth >= limits_.max_nesting) {
      Fail(StatusCode::kDataLoss,
           "{}: metadata '{}': arrays nested deeper than {} levels at byte {}", cur_.path(),
           Printable(key), limits_.max_nesting, cur_.pos());
    }
    const GgufType elem = ReadType(key, "array element");
    const uint64_t count_at = cur_.pos();
    const uint64_t count = cur_.Read<uint64_t>(kValueOf, key);
    if (count > limits_.max_array_elems) {
      Fail(StatusCode::kDataLoss,
           "{}: metadata '{}': array count {} at byte {} exceeds the limit of {} elements",
           cur_.path(), Printable(key), count, count_at, limits_.max_array_elems);
    }
    const uint64_t min_elem = MinElemBytes(elem);
    if (count > cur_.remaining() / min_elem) {
      Fail(StatusCode::kDataLoss,
           "{}: metadata '{}': array of {} {} elements at byte {} needs at least {} bytes but only "
           "{} remain in the file",
           cur_.path(), Printable(key), count, GgufTypeName(elem), count_at, count * min_elem,
           cur_.remaining());
    }
    out.array_type = elem;
    out.array.resize(static_cast<size_t>(count));
    for (GgufValue& v : out.array) ReadValue(elem, key, depth + 1, v);
  }

  Cursor& cur_;
  const GgufLimits& limits_;
};

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

std::string_view GgufTypeName(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
      return "uint8";
    case GgufType::kInt8:
      return "int8";
    case GgufType::kUint16:
      return "uint16";
    case GgufType::kInt16:
      return "int16";
    case GgufType::kUint32:
      return "uint32";
    case GgufType::kInt32:
      return "int32";
    case GgufType::kFloat32:
      return "float32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "uint64";
    case GgufType::kInt64:
      return "int64";
    case GgufType::kFloat64:
      return "float64";
  }
  return "unknown";
}

GgufFile GgufFile::Open(const std::string& path, const GgufLimits& limits) {
  return Parse(MappedFile::Open(path), limits);
}

GgufFile GgufFile::Parse(MappedFile file, const GgufLimits& limits) {
  GgufFile g;
  g.file_ = std::move(file);
  const std::string& path = g.file_.path();
  const uint64_t size = g.file_.size();
  Cursor cur(g.file_.data(), size, path);
  Parser parser(cur, limits);

  // --- Header: magic, version, counts.
  if (size < 4 || std::memcmp(g.file_.data(), "GGUF", 4) != 0) {
    std::string_view head(reinterpret_cast<const char*>(g.file_.data()),
                          static_cast<size_t>(std::min<uint64_t>(size, 4)));
    Fail(StatusCode::kDataLoss, "{}: not a GGUF file: magic at byte 0 is '{}' (expected 'GGUF')",
         path, Printable(head));
  }
  cur.Read<uint32_t>("magic");
  const uint32_t version = cur.Read<uint32_t>("version");
  if (version != 2 && version != 3) {
    if (version == 1) {
      Fail(StatusCode::kDataLoss,
           "{}: GGUF version 1 is not supported (expected version 2 or 3; re-convert the model)",
           path);
    }
    const uint32_t swapped = __builtin_bswap32(version);
    if (swapped >= 1 && swapped <= 3) {
      Fail(StatusCode::kDataLoss,
           "{}: GGUF version field is {:#x}: this looks like a big-endian GGUF file, which is not "
           "supported (expected little-endian version 2 or 3)",
           path, version);
    }
    Fail(StatusCode::kDataLoss, "{}: unsupported GGUF version {} (expected 2 or 3)", path, version);
  }
  g.version_ = version;
  const uint64_t tensor_count = cur.Read<uint64_t>("tensor count");
  const uint64_t kv_count = cur.Read<uint64_t>("metadata count");
  if (tensor_count > limits.max_tensors) {
    Fail(StatusCode::kDataLoss, "{}: tensor count {} at byte 8 exceeds the limit of {}", path,
         tensor_count, limits.max_tensors);
  }
  if (kv_count > limits.max_kv) {
    Fail(StatusCode::kDataLoss, "{}: metadata count {} at byte 16 exceeds the limit of {}", path,
         kv_count, limits.max_kv);
  }
  if (kv_count > cur.remaining() / kMinKvBytes) {
    Fail(StatusCode::kDataLoss,
         "{}: metadata count {} at byte 16 cannot fit in the {} bytes after the header", path,
         kv_count, cur.remaining());
  }

  // --- Metadata.
  g.kv_.reserve(static_cast<size_t>(kv_count));
  for (uint64_t k = 0; k < kv_count; ++k) {
    const uint64_t key_at = cur.pos();
    const std::string_view key = cur.ReadString("key of a metadata entry");
    if (key.empty()) {
      Fail(StatusCode::kDataLoss, "{}: metadata entry {} at byte {} has an empty key", path, k,
           key_at);
    }
    if (key.size() > kMaxKeyBytes) {
      Fail(StatusCode::kDataLoss,
           "{}: metadata entry {} at byte {} has a key of {} bytes (expected at most {})", path, k,
           key_at, key.size(), kMaxKeyBytes);
    }
    for (char c : key) {
      const auto uc = static_cast<unsigned char>(c);
      if (uc < 0x20 || uc >= 0x7f) {
        Fail(StatusCode::kDataLoss,
             "{}: metadata entry {} at byte {}: key '{}' contains byte {:#04x} (expected printable "
             "ASCII)",
             path, k, key_at, Printable(key), uc);
      }
    }
    auto [it, inserted] = g.kv_index_.emplace(std::string(key), g.kv_.size());
    if (!inserted) {
      Fail(StatusCode::kDataLoss,
           "{}: duplicate metadata key '{}' at byte {} (first defined as entry {})", path,
           Printable(key), key_at, it->second);
    }
    const GgufType type = parser.ReadType(key, "value");
    g.kv_.emplace_back(key, GgufValue{});
    parser.ReadValue(type, key, 0, g.kv_.back().second);
  }

  // general.alignment: a u32, nonzero power of two (GGUF spec); default 32.
  if (const GgufValue* a = g.Find("general.alignment")) {
    if (a->type != GgufType::kUint32) {
      Fail(StatusCode::kDataLoss, "{}: metadata 'general.alignment' has type {} (expected uint32)",
           path, GgufTypeName(a->type));
    }
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) {
      Fail(StatusCode::kDataLoss,
           "{}: metadata 'general.alignment' is {} (expected a nonzero power of two)", path, a->u);
    }
    g.alignment_ = a->u;
  } else {
    g.alignment_ = kDefaultAlignment;
  }

  // --- Tensor infos.
  if (tensor_count > cur.remaining() / kMinTensorInfoBytes) {
    Fail(StatusCode::kDataLoss,
         "{}: tensor count {} cannot fit in the {} bytes left after the metadata (byte {})", path,
         tensor_count, cur.remaining(), cur.pos());
  }
  g.tensors_.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t t = 0; t < tensor_count; ++t) {
    const uint64_t info_at = cur.pos();
    const std::string_view name = cur.ReadString("name of a tensor");
    if (name.empty()) {
      Fail(StatusCode::kDataLoss, "{}: tensor {} at byte {} has an empty name", path, t, info_at);
    }
    const std::string shown = Printable(name);
    auto [it, inserted] = g.tensor_index_.emplace(std::string(name), g.tensors_.size());
    if (!inserted) {
      Fail(StatusCode::kDataLoss,
           "{}: duplicate tensor name '{}' at byte {} (first defined as tensor {})", path, shown,
           info_at, it->second);
    }
    GgufTensorInfo info;
    info.name = std::string(name);

    const uint64_t ndims_at = cur.pos();
    const uint32_t n_dims = cur.Read<uint32_t>("tensor", name);
    if (n_dims == 0 || n_dims > limits.max_dims) {
      Fail(StatusCode::kDataLoss, "{}: tensor '{}': n_dims {} at byte {} (expected 1..{})", path,
           shown, n_dims, ndims_at, limits.max_dims);
    }
    info.dims.resize(n_dims);
    uint64_t num_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim_at = cur.pos();
      const uint64_t dim = cur.Read<uint64_t>("tensor", name);
      if (dim == 0) {
        Fail(StatusCode::kDataLoss, "{}: tensor '{}': dim {} at byte {} is 0 (expected >= 1)", path,
             shown, d, dim_at);
      }
      // GGML stores element counts as int64, so the product must fit one.
      if (num_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim) {
        Fail(StatusCode::kDataLoss,
             "{}: tensor '{}': element count overflows at dim {} = {} (byte {})", path, shown, d,
             dim, dim_at);
      }
      num_elements *= dim;
      info.dims[d] = dim;
    }
    info.num_elements = num_elements;

    const uint64_t type_at = cur.pos();
    const uint32_t type_id = cur.Read<uint32_t>("tensor", name);
    const std::optional<DTypeInfo> dtype = LookupDType(type_id);
    if (!dtype) {
      Fail(StatusCode::kDataLoss, "{}: tensor '{}': unknown ggml type id {} at byte {}", path,
           shown, type_id, type_at);
    }
    info.type = dtype->type;
    if (info.dims[0] % dtype->block_elems != 0) {
      Fail(StatusCode::kDataLoss,
           "{}: tensor '{}': first dim {} is not a multiple of the {} block size {}", path, shown,
           info.dims[0], dtype->name, dtype->block_elems);
    }
    // num_elements < 2^63 and block_bytes/block_elems <= 4 or so, but check.
    const uint64_t blocks = num_elements / dtype->block_elems;
    if (blocks > std::numeric_limits<uint64_t>::max() / dtype->block_bytes) {
      Fail(StatusCode::kDataLoss, "{}: tensor '{}': byte size overflows ({} blocks of {} bytes)",
           path, shown, blocks, dtype->block_bytes);
    }
    info.num_bytes = blocks * dtype->block_bytes;

    const uint64_t offset_at = cur.pos();
    info.offset = cur.Read<uint64_t>("tensor", name);
    if (info.offset % g.alignment_ != 0) {
      Fail(StatusCode::kDataLoss,
           "{}: tensor '{}': data offset {} at byte {} is not a multiple of the alignment {}", path,
           shown, info.offset, offset_at, g.alignment_);
    }
    g.tensors_.push_back(std::move(info));
  }

  // --- Data section: starts at the next multiple of the alignment. A file
  // without tensors may end right after the metadata (vocab-only files do).
  g.data_offset_ = AlignUp(cur.pos(), g.alignment_);
  if (!g.tensors_.empty() && g.data_offset_ > size) {
    Fail(StatusCode::kDataLoss,
         "{}: truncated file: data section starts at byte {} (after padding to {}) but the file "
         "size is {}",
         path, g.data_offset_, g.alignment_, size);
  }
  const uint64_t data_size = g.tensors_.empty() ? 0 : size - g.data_offset_;
  for (GgufTensorInfo& info : g.tensors_) {
    if (info.offset > data_size || info.num_bytes > data_size - info.offset) {
      Fail(StatusCode::kDataLoss,
           "{}: tensor '{}': data [offset {}, {} bytes] runs past the end of the file (size {}, "
           "data section starts at byte {})",
           path, Printable(info.name), info.offset, info.num_bytes, size, g.data_offset_);
    }
    info.data = g.file_.data() + g.data_offset_ + info.offset;
  }

  // Tensors must not share bytes. Sort indices by offset and compare neighbours.
  std::vector<size_t> order(g.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return g.tensors_[a].offset < g.tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& prev = g.tensors_[order[i - 1]];
    const GgufTensorInfo& cur_t = g.tensors_[order[i]];
    if (cur_t.offset < prev.offset + prev.num_bytes) {
      Fail(StatusCode::kDataLoss,
           "{}: tensor '{}' data [offset {}, {} bytes] overlaps tensor '{}' [offset {}, {} bytes]",
           path, Printable(cur_t.name), cur_t.offset, cur_t.num_bytes, Printable(prev.name),
           prev.offset, prev.num_bytes);
    }
  }
  return g;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

[[noreturn]] void TypeError(const std::string& path, std::string_view key, const GgufValue& v,
                            std::string_view expected) {
  if (v.type == GgufType::kArray) {
    Fail(StatusCode::kDataLoss, "{}: metadata '{}' is an array of {} (expected {})", path,
         Printable(key), GgufTypeName(v.array_type), expected);
  }
  Fail(StatusCode::kDataLoss, "{}: metadata '{}' has type {} (expected {})", path, Printable(key),
       GgufTypeName(v.type), expected);
}

// Integer value as int64; false if it is an unsigned value above INT64_MAX.
bool IntAsI64(const GgufValue& v, int64_t* out) {
  if (IsSignedType(v.type)) {
    *out = v.i;
    return true;
  }
  if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = static_cast<int64_t>(v.u);
  return true;
}

const GgufValue* FindArray(const GgufFile& g, std::string_view key) {
  const GgufValue* v = g.Find(key);
  if (v != nullptr && v->type != GgufType::kArray) TypeError(g.path(), key, *v, "an array");
  return v;
}

}  // namespace

std::optional<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (!IsIntegerType(v->type)) TypeError(path(), key, *v, "an unsigned integer");
  if (IsSignedType(v->type)) {
    if (v->i < 0) {
      Fail(StatusCode::kDataLoss, "{}: metadata '{}' is {} (expected a non-negative integer)",
           path(), Printable(key), v->i);
    }
    return static_cast<uint64_t>(v->i);
  }
  return v->u;
}

std::optional<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (!IsIntegerType(v->type)) TypeError(path(), key, *v, "an integer");
  int64_t out = 0;
  if (!IntAsI64(*v, &out)) {
    Fail(StatusCode::kDataLoss, "{}: metadata '{}' is {} (expected an integer that fits int64)",
         path(), Printable(key), v->u);
  }
  return out;
}

std::optional<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (IsFloatType(v->type)) return v->f;
  if (IsIntegerType(v->type)) {
    return IsSignedType(v->type) ? static_cast<double>(v->i) : static_cast<double>(v->u);
  }
  TypeError(path(), key, *v, "a number");
}

std::optional<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::kBool) TypeError(path(), key, *v, "bool");
  return v->u != 0;
}

std::optional<std::string_view> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::kString) TypeError(path(), key, *v, "string");
  return v->str;
}

std::optional<std::vector<std::string_view>> GgufFile::GetStringArray(std::string_view key) const {
  const GgufValue* v = FindArray(*this, key);
  if (v == nullptr) return std::nullopt;
  if (v->array_type != GgufType::kString) TypeError(path(), key, *v, "an array of string");
  std::vector<std::string_view> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(e.str);
  return out;
}

std::optional<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* v = FindArray(*this, key);
  if (v == nullptr) return std::nullopt;
  if (!IsFloatType(v->array_type)) TypeError(path(), key, *v, "an array of float32 or float64");
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(static_cast<float>(e.f));
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const GgufValue* v = FindArray(*this, key);
  if (v == nullptr) return std::nullopt;
  if (!IsIntegerType(v->array_type)) TypeError(path(), key, *v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (size_t i = 0; i < v->array.size(); ++i) {
    int64_t x = 0;
    if (!IntAsI64(v->array[i], &x)) {
      Fail(StatusCode::kDataLoss,
           "{}: metadata '{}': element {} is {} (expected an integer that fits int64)", path(),
           Printable(key), i, v->array[i].u);
    }
    out.push_back(x);
  }
  return out;
}

}  // namespace kvinfer
