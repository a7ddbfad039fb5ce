// The persistent thread pool: every index of every job runs exactly once,
// whatever the sequence of job sizes, and ParallelFor always returns.
#include "core/thread_pool.h"

#include <atomic>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace kvinfer {
namespace {

TEST(ThreadPool, EveryIndexRunsOnceAcrossBackToBackJobsOfChangingSize) {
  // Small jobs followed by larger ones are what once let a worker still
  // leaving the previous job claim a task of the next one (counted twice:
  // ParallelFor never returned). Alternate sizes and grains quickly.
  for (int threads : {2, 3, 4}) {
    ThreadPool pool(threads);
    std::mt19937 rng(static_cast<uint32_t>(threads));
    std::vector<std::atomic<int>> hits(128);
    for (int job = 0; job < 200000; ++job) {
      // Odd jobs: 2 one-index tasks, so a worker often finishes a job last
      // and is still leaving it when the next, larger job is published.
      const int64_t n = job % 2 == 0 ? 2 : 2 + static_cast<int64_t>(rng() % 64);
      const int64_t grain = job % 2 == 0 ? 1 : 1 + static_cast<int64_t>(rng() % 4);
      for (int64_t i = 0; i < n; ++i) hits[static_cast<size_t>(i)].store(0, std::memory_order_relaxed);
      std::atomic<int> bad_thread{0};
      pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end, int thread) {
        if (thread < 0 || thread >= threads) bad_thread.store(1);
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
      });
      ASSERT_EQ(bad_thread.load(), 0);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "job " << job << " index " << i << " of " << n;
      }
    }
  }
}

TEST(ThreadPool, SingleThreadAndEmptyRangesRunInline) {
  ThreadPool pool(1);
  int calls = 0;
  pool.ParallelFor(10, 1, [&](int64_t b, int64_t e, int t) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
    EXPECT_EQ(t, 0);
    ++calls;
  });
  pool.ParallelFor(0, 1, [&](int64_t, int64_t, int) { ++calls; });
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace kvinfer
