// One forward pass of a loaded model over a single sequence, for tests that
// compare logits directly (below the engine).
#pragma once

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "core/thread_pool.h"
#include "kv/kv_cache.h"
#include "model/forward.h"
#include "model/model_impl.h"

namespace kvinfer::testing {

// Logits [logit_rows.size(), vocab] of `tokens` (positions 0..n-1) computed
// in one ragged batch on 2 threads, with 16-token blocks of `precision`
// and `activations` precision.
inline std::vector<float> ForwardLogits(const ModelImpl& m, const std::vector<int32_t>& tokens,
                                        const std::vector<int32_t>& logit_rows,
                                        KvPrecision precision = KvPrecision::kF32,
                                        ActivationPrecision activations =
                                            ActivationPrecision::kInt8) {
  ThreadPool pool(2);
  KvCache cache(m.config().kv_shape(), 16, (static_cast<int32_t>(tokens.size()) + 15) / 16,
                precision);
  ModelRunner runner(m.config(), m.weights(), &pool, activations);
  const int32_t seq = cache.CreateSequence();
  EXPECT_TRUE(cache.Reserve(seq, static_cast<int32_t>(tokens.size())));
  ForwardBatch batch;
  batch.seq_ids = {seq};
  for (size_t i = 0; i < tokens.size(); ++i) {
    batch.tokens.push_back(tokens[i]);
    batch.positions.push_back(static_cast<int32_t>(i));
    batch.seq_index.push_back(0);
  }
  batch.logit_rows = logit_rows;
  std::vector<float> logits;
  runner.Forward(batch, cache, &logits);
  return logits;
}

}  // namespace kvinfer::testing
