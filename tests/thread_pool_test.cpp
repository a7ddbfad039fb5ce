// The persistent thread pool: every index of every job runs exactly once,
// whatever the sequence of job sizes, and ParallelFor always returns.
#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <utility>
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

TEST(ThreadPool, TaskCountMakesEqualTasksWhereTheGrainsAllow) {
  // Up to 4 per thread: one grain each.
  EXPECT_EQ(ThreadPool::TaskCount(1, 2), 1);
  EXPECT_EQ(ThreadPool::TaskCount(5, 2), 5);
  EXPECT_EQ(ThreadPool::TaskCount(8, 2), 8);
  EXPECT_EQ(ThreadPool::TaskCount(12, 3), 12);
  // Beyond: the largest multiple of the threads (at most 4 per thread)
  // that divides the grains.
  EXPECT_EQ(ThreadPool::TaskCount(18, 2), 6);   // 6 tasks of 3
  EXPECT_EQ(ThreadPool::TaskCount(30, 2), 6);   // 6 of 5 (8 does not divide 30)
  EXPECT_EQ(ThreadPool::TaskCount(64, 2), 8);   // 8 of 8
  EXPECT_EQ(ThreadPool::TaskCount(36, 3), 12);  // 12 of 3
  EXPECT_EQ(ThreadPool::TaskCount(45, 3), 9);   // 9 of 5
  // No multiple divides: one grain per task up to 32 per thread...
  EXPECT_EQ(ThreadPool::TaskCount(17, 2), 17);
  EXPECT_EQ(ThreadPool::TaskCount(31, 2), 31);
  // ... then 4 per thread of near-equal size.
  EXPECT_EQ(ThreadPool::TaskCount(1009, 2), 8);
  for (int64_t threads : {2, 3, 4}) {
    for (int64_t grains = 1; grains <= 300; ++grains) {
      const int64_t t = ThreadPool::TaskCount(grains, threads);
      ASSERT_GE(t, 1);
      ASSERT_LE(t, grains);
      if (grains > 4 * threads && t % threads == 0 && grains % t == 0) continue;  // equal tasks
      if (grains > 4 * threads) {
        // Only when no multiple of the threads up to 4 per thread divides the grains.
        for (int64_t m = threads; m <= 4 * threads; m += threads) ASSERT_NE(grains % m, 0) << grains;
      }
    }
  }
}

TEST(ThreadPool, ParallelForRunsTheTasksTaskCountSays) {
  ThreadPool pool(2);
  for (const auto& [n, grain] : std::vector<std::pair<int64_t, int64_t>>{{18, 1}, {36, 2}, {30, 1}, {1009, 1}}) {
    std::mutex mu;
    std::vector<std::pair<int64_t, int64_t>> ranges;
    pool.ParallelFor(n, grain, [&](int64_t b, int64_t e, int) {
      std::lock_guard<std::mutex> lock(mu);
      ranges.emplace_back(b, e);
    });
    const int64_t grains = (n + grain - 1) / grain;
    const int64_t tasks = ThreadPool::TaskCount(grains, 2);
    ASSERT_EQ(static_cast<int64_t>(ranges.size()), tasks) << n;
    std::sort(ranges.begin(), ranges.end());
    int64_t at = 0;
    for (const auto& [b, e] : ranges) {
      EXPECT_EQ(b, at);
      // Each task a run of floor or ceil(grains / tasks) grains.
      const int64_t g = (e - b + grain - 1) / grain;
      EXPECT_TRUE(g == grains / tasks || g == (grains + tasks - 1) / tasks) << n << ": " << b << ".." << e;
      at = e;
    }
    EXPECT_EQ(at, n);
  }
}

}  // namespace
}  // namespace kvinfer
