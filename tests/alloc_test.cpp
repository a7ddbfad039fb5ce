// The forward pass allocates nothing once its scratch is warm: a decode
// step, a batched decode step and a prefill of a size seen before run
// without a single operator new (no allocation per token). Every allocation
// of this test binary is counted by the replaced global operator new below;
// the count is read around the steps under test only.
#include <algorithm>
#include <atomic>
#include <memory>
#include <cstdlib>
#include <new>
#include <vector>

#include <gtest/gtest.h>

#include "core/thread_pool.h"
#include "engine/model_access.h"
#include "kv/kv_cache.h"
#include "kvinfer/kvinfer.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "test_util.h"

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

// Every unaligned form, so that memory from any of them is released by the
// matching replaced delete (under AddressSanitizer a mix of the runtime's new
// and a replaced delete would be reported as a mismatch). The aligned forms
// stay the library's, paired with its aligned deletes.
namespace {
void* CountedAlloc(std::size_t size) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
// Not inlined: GCC would otherwise see free() applied to what `operator new`
// returned where a delete is inlined into its caller and flag the pair
// (-Wmismatched-new-delete), though here both sides are malloc and free.
[[gnu::noinline]] void CountedFree(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(std::size_t size) {
  if (void* p = CountedAlloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* p = CountedAlloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return CountedAlloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return CountedAlloc(size); }
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { CountedFree(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { CountedFree(p); }

namespace kvinfer {
namespace {

// Tokens [first, first + n) of sequence `seq`, all at consecutive positions
// from `pos`, the last one's logits wanted.
void AddTokens(ForwardBatch& batch, int32_t seq_index, int32_t pos, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    batch.tokens.push_back(1 + (pos + i) % 100);
    batch.positions.push_back(pos + i);
    batch.seq_index.push_back(seq_index);
  }
  batch.logit_rows.push_back(batch.size() - 1);
}

TEST(NoAllocationPerToken, DecodeBatchedDecodeAndPrefill) {
  KVINFER_REQUIRE_FILE(testing::DefaultModel());
  StatusOr<Model> model = Model::Load(testing::DefaultModel());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelImpl& m = ImplOf(*model);
  ThreadPool pool(2);
  for (KvPrecision precision : {KvPrecision::kF32, KvPrecision::kQ8_0, KvPrecision::kQ4_0}) {
    SCOPED_TRACE(KvPrecisionName(precision));
    constexpr int32_t kSeqs = 4, kPrompt = 300, kSteps = 8;
    KvCache cache(m.config().kv_shape(), 16, kSeqs * ((kPrompt + kSteps + 15) / 16 + 1),
                  precision);
    ModelRunner runner(m.config(), m.weights(), &pool);
    std::vector<int32_t> seqs;
    for (int32_t s = 0; s < kSeqs; ++s) {
      seqs.push_back(cache.CreateSequence());
      ASSERT_TRUE(cache.Reserve(seqs.back(), kPrompt + kSteps));
    }
    std::vector<float> logits;
    ForwardBatch batch;
    // Prefills (parallel norms, rope, attention across (token, head)
    // pairs), each sequence's once; the second of the same size is counted.
    for (int32_t s = 0; s < kSeqs; ++s) {
      batch.Clear();
      batch.seq_ids = {seqs[static_cast<size_t>(s)]};
      AddTokens(batch, 0, 0, kPrompt);
      const int64_t before = g_allocations.load();
      runner.Forward(batch, cache, &logits);
      if (s > 0) {
        EXPECT_EQ(g_allocations.load() - before, 0) << "prefill of sequence " << s;
      }
    }
    // One sequence's decode (attention split by chunks across threads),
    // then all four at once (one task per (token, KV head)).
    for (int32_t step = 0; step < kSteps / 2; ++step) {
      batch.Clear();
      batch.seq_ids = {seqs[0]};
      AddTokens(batch, 0, kPrompt + step, 1);
      const int64_t before = g_allocations.load();
      runner.Forward(batch, cache, &logits);
      if (step > 0) {
        EXPECT_EQ(g_allocations.load() - before, 0) << "decode step " << step;
      }
    }
    for (int32_t step = kSteps / 2; step < kSteps; ++step) {
      batch.Clear();
      batch.seq_ids = seqs;
      for (int32_t s = 0; s < kSeqs; ++s) AddTokens(batch, s, kPrompt + step - (s == 0 ? 0 : kSteps / 2), 1);
      const int64_t before = g_allocations.load();
      runner.Forward(batch, cache, &logits);
      if (step > kSteps / 2) {
        EXPECT_EQ(g_allocations.load() - before, 0) << "batched step " << step;
      }
    }
  }
}

// Through the public engine, a decode step allocates only for what it
// returns — the vector of outputs, each output's token vector and text —
// and for bookkeeping of a fixed size, never per layer or per position: a
// greedy decode step of one request, then of four at once, after warm-up.
TEST(NoAllocationPerToken, EngineStepAllocatesOnlyItsOutputs) {
  KVINFER_REQUIRE_FILE(testing::DefaultModel());
  StatusOr<Model> model = Model::Load(testing::DefaultModel());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  for (int requests : {1, 4}) {
    SCOPED_TRACE(::testing::Message() << requests << " request(s)");
    EngineOptions options;
    options.num_threads = 2;
    StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model, options);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    SamplingParams params;
    params.max_tokens = 40;
    params.ignore_eos = true;
    for (int r = 0; r < requests; ++r) {
      ASSERT_TRUE((*engine)->AddRequest("The cache keeps keys and values", params).ok());
    }
    for (int step = 0; step < 8; ++step) (*engine)->Step();  // prefill and warm-up
    int64_t most = 0;
    for (int step = 0; step < 16; ++step) {
      const int64_t before = g_allocations.load();
      const std::vector<RequestOutput> out = (*engine)->Step();
      most = std::max(most, g_allocations.load() - before);
      ASSERT_EQ(out.size(), static_cast<size_t>(requests));
    }
    // The outputs: their vector (regrown as it fills: 1, 2, 4, ...) and per
    // request a token vector; a one-token text delta fits std::string's
    // inline buffer. Measured: 2 allocations for one request, 8 for four.
    EXPECT_LE(most, 1 + 2 * requests) << "a decode step allocated " << most << " times";
  }
}

}  // namespace
}  // namespace kvinfer
