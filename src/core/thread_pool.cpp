#include "core/thread_pool.h"

#include <algorithm>

#include "core/error.h"

namespace kvinfer {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

constexpr int kSpinIterations = 1 << 14;
constexpr int64_t kTasksPerThread = 4;

}  // namespace

// Equal tasks where the grains allow: 18 grains as 8 tasks of 2 or 3 leave
// one thread idle for up to a 3-grain task at the end; 6 tasks of 3 do not.
int64_t ThreadPool::TaskCount(int64_t chunks, int64_t threads) {
  const int64_t cap = threads * kTasksPerThread;
  if (chunks <= cap) return chunks;
  for (int64_t t = cap; t >= threads; t -= threads) {
    if (chunks % t == 0) return t;
  }
  return chunks <= 4 * cap ? chunks : cap;
}

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunTasks(uint32_t gen, int thread_index) {
  for (;;) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    uint32_t task;
    do {
      if (static_cast<uint32_t>(c >> 32) != gen) return;  // a newer job: not ours
      task = static_cast<uint32_t>(c);
      // Acquire: a num_tasks_ written for a newer job is seen only together
      // with that job's closed claim word, so the CAS below then fails.
      if (task >= num_tasks_.load(std::memory_order_acquire)) return;  // all claimed
    } while (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel));
    // A successful claim means the job is still running: fn_, n_ and grain_
    // are this generation's and stay valid until done_ reaches num_tasks_.
    const int64_t chunks = (n_ + grain_ - 1) / grain_;
    const uint32_t tasks = num_tasks_.load(std::memory_order_relaxed);
    const int64_t c0 = chunks * task / tasks;
    const int64_t c1 = chunks * (task + 1) / tasks;
    const int64_t begin = c0 * grain_;
    const int64_t end = std::min(n_, c1 * grain_);
    if (begin < end) (*fn_)(begin, end, thread_index);
    done_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::WorkerLoop(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    for (int spins = 0; gen == seen; gen = generation_.load(std::memory_order_acquire)) {
      if (++spins < kSpinIterations) {
        CpuRelax();
      } else {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        spins = 0;
      }
    }
    seen = gen;
    if (stop_.load()) return;
    RunTasks(gen, index);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain, Task fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  if (num_threads_ == 1 || chunks == 1) {
    fn(0, n, 0);
    return;
  }
  // Close the previous job's claim word before touching the job fields. A
  // worker still looping in RunTasks for the previous job may hold a stale
  // claim word and compare its task index against num_tasks_; were that the
  // new, larger count, its claim would succeed on the old word, run a task
  // of this job and count it twice (ParallelFor then waits forever). Once the
  // word carries the new generation, such a claim fails and the worker leaves.
  const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;  // only this thread writes it
  claim_.store(Pack(gen, UINT32_MAX), std::memory_order_release);
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  done_.store(0, std::memory_order_relaxed);
  num_tasks_.store(static_cast<uint32_t>(TaskCount(chunks, num_threads_)), std::memory_order_release);
  {
    // The lock orders the publication against a worker about to sleep.
    std::lock_guard<std::mutex> lock(mu_);
    claim_.store(Pack(gen, 0), std::memory_order_release);
    generation_.store(gen, std::memory_order_release);
  }
  cv_.notify_all();
  RunTasks(gen, 0);
  // Only tasks a worker has claimed can still be running.
  const uint32_t tasks = num_tasks_.load(std::memory_order_relaxed);
  while (done_.load(std::memory_order_acquire) != tasks) CpuRelax();
  fn_ = nullptr;
}

}  // namespace kvinfer
