// Prefetching K/V rows along a chunk's spans (private to ops): shared by the
// attention kernel's portable targets (attention.cpp) and its x86 kernels
// (x86/attention_avx512.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "ops/attention.h"

namespace kvinfer::ops {

// Prefetches K (kv = 0) or V (kv = 1) rows a fixed number of positions
// ahead of a pass over the spans, following the spans rather than the
// memory after the current row: a paged cache's next block lies anywhere in
// the pool, where "the row 32 ahead in memory" misses. Used for q8_0 only:
// for f32 and f16 (4 and 2 cache lines per row) the bursts of hints cost
// more with blocks in order and at short contexts than they gain on
// scattered blocks (bench/attention_bench.cpp, BM_AttentionDecode, compares
// the layouts).
class SpanPrefetcher {
 public:
  SpanPrefetcher(std::span<const KvSpan> spans, int kv, size_t row_bytes, int32_t ahead)
      : spans_(spans), kv_(kv), row_bytes_(row_bytes) {
    Next(ahead, false);
  }
  // Asks for the next `rows` rows (whole rows) and moves past them.
  inline __attribute__((always_inline)) void Next(int32_t rows, bool prefetch = true) {
    while (rows > 0 && si_ < spans_.size()) {
      const KvSpan& sp = spans_[si_];
      const int32_t take = std::min(rows, sp.n - t_);
      if (prefetch) {
        const char* p = static_cast<const char*>(kv_ == 0 ? sp.k : sp.v) +
                        static_cast<size_t>(t_) * row_bytes_;
        const size_t bytes = static_cast<size_t>(take) * row_bytes_;
        for (size_t c = 0; c < bytes; c += 64) __builtin_prefetch(p + c, 0, 3);
      }
      rows -= take;
      t_ += take;
      if (t_ == sp.n) {
        ++si_;
        t_ = 0;
      }
    }
  }

 private:
  std::span<const KvSpan> spans_;
  int kv_;
  size_t row_bytes_;
  size_t si_ = 0;
  int32_t t_ = 0;
};

}  // namespace kvinfer::ops
