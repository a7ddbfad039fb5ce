// libFuzzer target for the GGUF reader: any input must parse or throw
// Error(kDataLoss); every view the reader hands out must stay in bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"

namespace {

// Reads every byte a value's views point at, so ASan checks them all.
uint64_t TouchValue(const kvinfer::GgufValue& v) {
  uint64_t sum = v.u + static_cast<uint64_t>(v.i) + (v.f != v.f ? 1 : 0);
  for (char c : v.str) sum += static_cast<unsigned char>(c);
  for (const kvinfer::GgufValue& e : v.array) sum += TouchValue(e);
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const kvinfer::GgufFile g = kvinfer::GgufFile::Parse(
        kvinfer::MappedFile::FromBytes(std::span<const uint8_t>(data, size)));
    uint64_t sum = 0;
    for (const auto& [key, value] : g.metadata()) {
      if (key.empty()) std::abort();
      for (char c : key) sum += static_cast<unsigned char>(c);
      sum += TouchValue(value);
      if (g.Find(key) != &value) std::abort();
    }
    for (const kvinfer::GgufTensorInfo& t : g.tensors()) {
      if (t.num_bytes == 0 || t.data == nullptr) std::abort();
      if (t.data < data || t.data + t.num_bytes > data + size) std::abort();
      sum += t.data[0] + t.data[t.num_bytes - 1];
      if (g.FindTensor(t.name) != &t) std::abort();
    }
    // Exercise the typed getters on whatever keys exist; type errors throw.
    for (const auto& [key, value] : g.metadata()) {
      try {
        sum += g.GetUint(key).value_or(0);
      } catch (const kvinfer::Error&) {
      }
      try {
        sum += static_cast<uint64_t>(g.GetInt(key).value_or(0));
      } catch (const kvinfer::Error&) {
      }
      try {
        sum += g.GetFloat(key).value_or(0) > 0;
      } catch (const kvinfer::Error&) {
      }
      try {
        sum += g.GetStringArray(key).value_or(std::vector<std::string_view>{}).size();
      } catch (const kvinfer::Error&) {
      }
      try {
        sum += g.GetFloatArray(key).value_or(std::vector<float>{}).size();
      } catch (const kvinfer::Error&) {
      }
      try {
        sum += g.GetIntArray(key).value_or(std::vector<int64_t>{}).size();
      } catch (const kvinfer::Error&) {
      }
    }
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const kvinfer::Error& e) {
    if (e.code() != kvinfer::StatusCode::kDataLoss || e.what()[0] == '\0') std::abort();
  }
  return 0;
}
