#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace kvinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

struct DTypeEntry {
  std::string_view name;
  uint32_t bytes;
  std::optional<DType> dtype;
  bool compute;
};

// Every dtype the safetensors format defines.
constexpr DTypeEntry kDTypes[] = {
    {"F32", 4, DType::kF32, true},     {"F16", 2, DType::kF16, true},
    {"BF16", 2, DType::kBF16, true},   {"F64", 8, DType::kF64, false},
    {"I64", 8, DType::kI64, false},    {"I32", 4, DType::kI32, false},
    {"I16", 2, DType::kI16, false},    {"I8", 1, DType::kI8, false},
    {"U64", 8, std::nullopt, false},   {"U32", 4, std::nullopt, false},
    {"U16", 2, std::nullopt, false},   {"U8", 1, std::nullopt, false},
    {"BOOL", 1, std::nullopt, false},  {"F8_E4M3", 1, std::nullopt, false},
    {"F8_E5M2", 1, std::nullopt, false},
};

const DTypeEntry* FindDType(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// A JSON value's type for messages, never its (possibly huge) contents.
std::string_view JsonKind(const Json& j) {
  if (j.is_number_unsigned()) return "unsigned integer";
  if (j.is_number_integer()) return "negative integer";
  return j.type_name();
}

// The header must be a JSON object with unique keys at every level.
// nlohmann keeps the last of duplicate keys silently, so the parse callback
// tracks the keys of each open object.
Json ParseHeaderJson(const std::string& path, const uint8_t* begin, uint64_t n) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  const auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty() && duplicate.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second) {
          duplicate = parsed.get<std::string>();
        }
        break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(begin, begin + n, callback, /*allow_exceptions=*/true,
                    /*ignore_comments=*/false);
  } catch (const Json::parse_error& e) {
    // e.byte is 1-based within the header; report the file offset.
    Fail(StatusCode::kDataLoss,
         "{}: safetensors header (JSON, bytes 8..{}) is malformed at file byte {}: {}", path,
         8 + n, 8 + (e.byte > 0 ? e.byte - 1 : 0), e.what());
  } catch (const Json::exception& e) {
    Fail(StatusCode::kDataLoss, "{}: safetensors header (JSON, bytes 8..{}) is malformed: {}",
         path, 8 + n, e.what());
  }
  if (!duplicate.empty()) {
    Fail(StatusCode::kDataLoss, "{}: safetensors header has the key '{}' twice in one object",
         path, Printable(duplicate));
  }
  if (!j.is_object()) {
    Fail(StatusCode::kDataLoss, "{}: safetensors header is a JSON {} (expected an object)", path,
         JsonKind(j));
  }
  return j;
}

uint64_t CheckedMul(uint64_t a, uint64_t b, bool& overflow) {
  uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) overflow = true;
  return r;
}

// Reads one tensor entry of the header (everything but the data pointer).
SafetensorsTensor ParseTensorEntry(const std::string& path, const std::string& name,
                                   const Json& entry, uint64_t data_size,
                                   const SafetensorsLimits& limits) {
  const std::string where = fmt::format("{}: tensor '{}'", path, Printable(name));
  if (!entry.is_object()) {
    Fail(StatusCode::kDataLoss, "{}: entry is a JSON {} (expected an object with dtype, shape, "
         "data_offsets)", where, JsonKind(entry));
  }
  SafetensorsTensor t;
  t.name = name;

  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) Fail(StatusCode::kDataLoss, "{}: missing \"dtype\"", where);
  if (!dtype_it->is_string()) {
    Fail(StatusCode::kDataLoss, "{}: \"dtype\" is a JSON {} (expected a string)", where,
         JsonKind(*dtype_it));
  }
  t.dtype_name = dtype_it->get<std::string>();
  const DTypeEntry* dt = FindDType(t.dtype_name);
  if (dt == nullptr) {
    Fail(StatusCode::kDataLoss,
         "{}: unknown dtype '{}' (expected one of F32 F16 BF16 F64 I64 I32 I16 I8 U64 U32 U16 U8 "
         "BOOL F8_E4M3 F8_E5M2)",
         where, Printable(t.dtype_name));
  }
  t.dtype = dt->dtype;
  t.compute_supported = dt->compute;
  t.elem_bytes = dt->bytes;

  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) Fail(StatusCode::kDataLoss, "{}: missing \"shape\"", where);
  if (!shape_it->is_array()) {
    Fail(StatusCode::kDataLoss, "{}: \"shape\" is a JSON {} (expected an array)", where,
         JsonKind(*shape_it));
  }
  if (shape_it->size() > limits.max_dims) {
    Fail(StatusCode::kDataLoss, "{}: shape has {} dimensions (at most {} supported)", where,
         shape_it->size(), limits.max_dims);
  }
  bool overflow = false;
  t.num_elements = 1;
  for (size_t i = 0; i < shape_it->size(); ++i) {
    const Json& d = (*shape_it)[i];
    if (!d.is_number_unsigned()) {
      Fail(StatusCode::kDataLoss, "{}: shape[{}] is a JSON {} (expected a non-negative integer)",
           where, i, JsonKind(d));
    }
    t.shape.push_back(d.get<uint64_t>());
    t.num_elements = CheckedMul(t.num_elements, t.shape.back(), overflow);
  }
  const uint64_t expected_bytes = CheckedMul(t.num_elements, t.elem_bytes, overflow);
  if (overflow) {
    Fail(StatusCode::kDataLoss, "{}: shape {} x {} bytes overflows 64 bits", where,
         fmt::join(t.shape, "x"), t.elem_bytes);
  }

  const auto off_it = entry.find("data_offsets");
  if (off_it == entry.end()) Fail(StatusCode::kDataLoss, "{}: missing \"data_offsets\"", where);
  if (!off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
      !(*off_it)[1].is_number_unsigned()) {
    Fail(StatusCode::kDataLoss,
         "{}: \"data_offsets\" must be an array of two non-negative integers [begin, end]", where);
  }
  const uint64_t begin = (*off_it)[0].get<uint64_t>();
  const uint64_t end = (*off_it)[1].get<uint64_t>();
  if (begin > end) {
    Fail(StatusCode::kDataLoss, "{}: data_offsets [{}, {}] has begin > end", where, begin, end);
  }
  if (end > data_size) {
    Fail(StatusCode::kDataLoss,
         "{}: data_offsets [{}, {}] run past the end of the data section ({} bytes; truncated "
         "file?)",
         where, begin, end, data_size);
  }
  if (end - begin != expected_bytes) {
    Fail(StatusCode::kDataLoss,
         "{}: data_offsets [{}, {}] span {} bytes but {} shape [{}] needs {} bytes", where, begin,
         end, end - begin, t.dtype_name, fmt::join(t.shape, ", "), expected_bytes);
  }
  t.begin = begin;
  t.num_bytes = expected_bytes;
  return t;
}

std::string ShardLabel(const SafetensorsFile& f) { return f.path(); }

}  // namespace

WeightView AsWeightView(const SafetensorsTensor& t, const std::string& path) {
  const std::string where =
      path.empty() ? fmt::format("tensor '{}'", Printable(t.name))
                   : fmt::format("{}: tensor '{}'", path, Printable(t.name));
  if (!t.compute_supported || !t.dtype) {
    Fail(StatusCode::kUnimplemented, "{}: dtype {} is not supported for weights (F32, F16, BF16)",
         where, t.dtype_name);
  }
  WeightView w;
  w.type = *t.dtype;
  if (t.shape.size() == 2) {
    w.rows = static_cast<int64_t>(t.shape[0]);
    w.cols = static_cast<int64_t>(t.shape[1]);
  } else if (t.shape.size() == 1) {
    w.rows = 1;
    w.cols = static_cast<int64_t>(t.shape[0]);
  } else {
    Fail(StatusCode::kDataLoss, "{}: has {} dimensions (expected a 1-D or 2-D weight)", where,
         t.shape.size());
  }
  w.data = t.data;
  w.row_bytes = static_cast<size_t>(w.cols) * t.elem_bytes;
  return w;
}

SafetensorsFile SafetensorsFile::Open(const std::string& path, const SafetensorsLimits& limits) {
  return Parse(MappedFile::Open(path), limits);
}

SafetensorsFile SafetensorsFile::Parse(MappedFile file, const SafetensorsLimits& limits) {
  SafetensorsFile f;
  f.file_ = std::move(file);
  const std::string& path = f.file_.path();
  const uint64_t size = f.file_.size();
  const uint8_t* bytes = f.file_.data();
  if (size < 8) {
    Fail(StatusCode::kDataLoss,
         "{}: file of {} bytes is too short for a safetensors header length (8 bytes)", path,
         size);
  }
  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);  // little-endian, as is every host we run on
  if (n > size - 8) {
    Fail(StatusCode::kDataLoss,
         "{}: safetensors header length {} runs past the end of the file ({} bytes after the "
         "length field; truncated or not a safetensors file?)",
         path, n, size - 8);
  }
  if (n > limits.max_header_bytes) {
    Fail(StatusCode::kDataLoss, "{}: safetensors header length {} exceeds the limit of {} bytes",
         path, n, limits.max_header_bytes);
  }
  if (n < 2) {
    Fail(StatusCode::kDataLoss, "{}: safetensors header length {} is too short for a JSON object",
         path, n);
  }
  f.header_bytes_ = n;
  const uint64_t data_size = size - 8 - n;
  const uint8_t* data = bytes + 8 + n;

  const Json header = ParseHeaderJson(path, bytes + 8, n);
  if (header.size() > limits.max_tensors + 1) {
    Fail(StatusCode::kDataLoss, "{}: safetensors header has {} entries (limit {})", path,
         header.size(), limits.max_tensors);
  }
  f.tensors_.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      if (!it->is_object()) {
        Fail(StatusCode::kDataLoss, "{}: \"__metadata__\" is a JSON {} (expected an object)",
             path, JsonKind(*it));
      }
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          Fail(StatusCode::kDataLoss,
               "{}: \"__metadata__\" value of '{}' is a JSON {} (expected a string)", path,
               Printable(m.key()), JsonKind(*m));
        }
        f.metadata_.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    f.tensors_.push_back(ParseTensorEntry(path, it.key(), *it, data_size, limits));
    f.tensors_.back().data = data + f.tensors_.back().begin;
  }
  // nlohmann's object is a std::map: the tensors are already sorted by name.

  // No two tensors may share bytes (empty tensors occupy none).
  std::vector<const SafetensorsTensor*> by_offset;
  for (const SafetensorsTensor& t : f.tensors_) {
    if (t.num_bytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
              return a->begin < b->begin;
            });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorsTensor& prev = *by_offset[i - 1];
    const SafetensorsTensor& cur = *by_offset[i];
    if (cur.begin < prev.begin + prev.num_bytes) {
      Fail(StatusCode::kDataLoss,
           "{}: tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap", path,
           Printable(prev.name), prev.begin, prev.begin + prev.num_bytes, Printable(cur.name),
           cur.begin, cur.begin + cur.num_bytes);
    }
  }
  return f;
}

const SafetensorsTensor* SafetensorsFile::FindTensor(std::string_view name) const {
  const auto it = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const SafetensorsTensor& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

// ---- sharded checkpoints ----

SafetensorsModel SafetensorsModel::Open(const std::string& path, const SafetensorsLimits& limits) {
  SafetensorsModel m;
  m.path_ = path;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / "model.safetensors.index.json", ec)) {
      file = (dir / "model.safetensors.index.json").string();
    } else if (fs::exists(dir / "model.safetensors", ec)) {
      file = (dir / "model.safetensors").string();
    } else {
      Fail(StatusCode::kNotFound,
           "{}: no model.safetensors.index.json or model.safetensors in this directory", path);
    }
  }

  const auto add_shard_tensors = [&m](size_t shard) {
    const SafetensorsFile& f = m.shards_[shard];
    for (size_t i = 0; i < f.tensors().size(); ++i) {
      const std::string& name = f.tensors()[i].name;
      const auto [it, inserted] = m.index_.emplace(name, Entry{shard, i});
      if (!inserted) {
        Fail(StatusCode::kDataLoss, "{}: tensor '{}' is in two shards: {} and {}", m.path_,
             Printable(name), ShardLabel(m.shards_[it->second.shard]), ShardLabel(f));
      }
    }
  };

  if (!(file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0)) {
    m.shards_.push_back(SafetensorsFile::Open(file, limits));
    add_shard_tensors(0);
    return m;
  }

  // An index: {"metadata": {...}, "weight_map": {"tensor": "shard file"}}.
  const MappedFile index_file = MappedFile::Open(file);
  Json index;
  try {
    index = Json::parse(index_file.data(), index_file.data() + index_file.size());
  } catch (const Json::exception& e) {
    Fail(StatusCode::kDataLoss, "{}: malformed JSON: {}", file, e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    Fail(StatusCode::kDataLoss, "{}: expected a JSON object with a \"weight_map\" object", file);
  }
  const Json& weight_map = index["weight_map"];
  const fs::path dir = fs::path(file).parent_path();
  std::map<std::string, size_t> shard_of_file;
  std::vector<std::pair<std::string, size_t>> wanted;  // tensor -> shard index
  for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
    if (!it->is_string()) {
      Fail(StatusCode::kDataLoss, "{}: weight_map['{}'] is a JSON {} (expected a file name)",
           file, Printable(it.key()), JsonKind(*it));
    }
    const std::string shard_name = it->get<std::string>();
    const fs::path rel(shard_name);
    bool escapes = shard_name.empty() || rel.is_absolute();
    for (const fs::path& part : rel) escapes = escapes || part == "..";
    if (escapes) {
      Fail(StatusCode::kDataLoss,
           "{}: weight_map['{}'] = '{}' is not a file name inside the checkpoint directory", file,
           Printable(it.key()), Printable(shard_name));
    }
    auto [sit, inserted] = shard_of_file.emplace(shard_name, m.shards_.size());
    if (inserted) {
      const std::string shard_path = (dir / rel).string();
      if (!fs::exists(shard_path, ec)) {
        Fail(StatusCode::kNotFound, "{}: shard '{}' (holding tensor '{}') is missing: {}", file,
             Printable(shard_name), Printable(it.key()), shard_path);
      }
      m.shards_.push_back(SafetensorsFile::Open(shard_path, limits));
    }
    wanted.emplace_back(it.key(), sit->second);
  }
  if (m.shards_.empty()) Fail(StatusCode::kDataLoss, "{}: weight_map is empty", file);
  for (size_t s = 0; s < m.shards_.size(); ++s) add_shard_tensors(s);
  for (const auto& [name, shard] : wanted) {
    if (m.shards_[shard].FindTensor(name) == nullptr) {
      const auto it = m.index_.find(name);
      if (it == m.index_.end()) {
        Fail(StatusCode::kDataLoss, "{}: tensor '{}' is listed in weight_map but missing from {}",
             file, Printable(name), m.shards_[shard].path());
      }
      Fail(StatusCode::kDataLoss,
           "{}: weight_map puts tensor '{}' in {} but it is in {}", file, Printable(name),
           m.shards_[shard].path(), m.shards_[it->second.shard].path());
    }
  }
  return m;
}

std::vector<const SafetensorsTensor*> SafetensorsModel::tensors() const {
  std::vector<const SafetensorsTensor*> out;
  out.reserve(index_.size());
  for (const auto& [name, e] : index_) out.push_back(&shards_[e.shard].tensors()[e.index]);
  return out;
}

const SafetensorsTensor* SafetensorsModel::FindTensor(std::string_view name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return nullptr;
  return &shards_[it->second.shard].tensors()[it->second.index];
}

const SafetensorsTensor& SafetensorsModel::GetTensor(std::string_view name) const {
  const SafetensorsTensor* t = FindTensor(name);
  if (t == nullptr) {
    Fail(StatusCode::kDataLoss, "{}: missing tensor '{}'", path_, Printable(name));
  }
  return *t;
}

const std::string& SafetensorsModel::PathOf(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? path_ : shards_[it->second.shard].path();
}

// ---- writer ----

uint32_t SafetensorsDTypeBytes(std::string_view dtype) {
  const DTypeEntry* e = FindDType(dtype);
  return e ? e->bytes : 0;
}

std::vector<uint8_t> SerializeSafetensors(const std::vector<SafetensorsWriteTensor>& tensors,
                                          const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsWriteTensor& t : tensors) {
    const uint32_t eb = SafetensorsDTypeBytes(t.dtype);
    if (eb == 0) Fail(StatusCode::kInvalidArgument, "safetensors writer: unknown dtype '{}'", t.dtype);
    if (t.name == kMetadataKey || header.contains(t.name)) {
      Fail(StatusCode::kInvalidArgument, "safetensors writer: duplicate or reserved name '{}'",
           t.name);
    }
    uint64_t n = eb;
    for (uint64_t d : t.shape) n *= d;
    if (n != t.bytes.size()) {
      Fail(StatusCode::kInvalidArgument,
           "safetensors writer: tensor '{}' has {} bytes, its shape needs {}", t.name,
           t.bytes.size(), n);
    }
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::vector<uint8_t> out(8 + text.size());
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  out.reserve(out.size() + offset);
  for (const SafetensorsWriteTensor& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void WriteSafetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::vector<uint8_t> bytes = SerializeSafetensors(tensors, metadata);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) Fail(StatusCode::kInternal, "cannot write '{}'", path);
}

}  // namespace kvinfer
