// libFuzzer target for the safetensors reader: any input must parse or throw
// Error(kDataLoss); every tensor view must stay inside the input, and
// tensors must not overlap.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const kvinfer::SafetensorsFile f = kvinfer::SafetensorsFile::Parse(
        kvinfer::MappedFile::FromBytes(std::span<const uint8_t>(data, size)));
    uint64_t sum = 0;
    std::vector<std::pair<const uint8_t*, const uint8_t*>> ranges;
    for (const kvinfer::SafetensorsTensor& t : f.tensors()) {
      if (t.data < data + f.data_offset() || t.data + t.num_bytes > data + size) std::abort();
      if (t.num_bytes != t.num_elements * t.elem_bytes) std::abort();
      if (t.num_bytes > 0) {
        sum += t.data[0] + t.data[t.num_bytes - 1];
        ranges.emplace_back(t.data, t.data + t.num_bytes);
      }
      if (f.FindTensor(t.name) != &t) std::abort();
      try {
        const kvinfer::WeightView w = kvinfer::AsWeightView(t);
        if (w.rows > 0 && w.cols > 0) sum += *w.row(w.rows - 1);
      } catch (const kvinfer::Error& e) {
        if (e.code() != kvinfer::StatusCode::kDataLoss &&
            e.code() != kvinfer::StatusCode::kUnimplemented) {
          std::abort();
        }
      }
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) {
      if (ranges[i].first < ranges[i - 1].second) std::abort();
    }
    for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const kvinfer::Error& e) {
    if (e.code() != kvinfer::StatusCode::kDataLoss || e.what()[0] == '\0') std::abort();
  }
  return 0;
}
