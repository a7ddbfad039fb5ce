// A persistent pool of worker threads for data-parallel loops.
//
// ParallelFor splits [0, n) into tasks (a few per thread) that the caller
// and the workers claim dynamically, so a worker that the OS has not
// scheduled yet (another process holds its core) never stalls the loop: the
// caller runs the tasks itself. Workers spin briefly between jobs (a decode
// step issues hundreds of small jobs, and a futex wake per job would cost
// more than the job), then sleep.
//
// Which thread runs a task never changes a result: tasks write disjoint
// outputs, and `thread_index` only selects per-thread scratch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace kvinfer {

class ThreadPool {
 public:
  // num_threads counts the calling thread: 1 means no workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // A non-owning reference to a callable fn(begin, end, thread_index),
  // valid while the callable lives: passing a lambda costs no allocation
  // (a std::function holding a lambda that captures more than two pointers
  // allocated on every call: ~300 times per decode step).
  class Task {
   public:
    template <class F>
      requires(!std::is_same_v<std::remove_cvref_t<F>, Task>)
    Task(F&& fn)  // NOLINT(google-explicit-constructor): lambdas convert implicitly
        : obj_(const_cast<void*>(static_cast<const void*>(&fn))),
          call_([](void* obj, int64_t begin, int64_t end, int thread) {
            (*static_cast<std::remove_reference_t<F>*>(obj))(begin, end, thread);
          }) {}
    void operator()(int64_t begin, int64_t end, int thread) const { call_(obj_, begin, end, thread); }

   private:
    void* obj_;
    void (*call_)(void*, int64_t, int64_t, int);
  };

  // fn(begin, end, thread_index) over disjoint ranges covering [0, n), each
  // a multiple of `grain` long (the last may be shorter). thread_index is in
  // [0, num_threads). Not reentrant: fn must not call ParallelFor.
  void ParallelFor(int64_t n, int64_t grain, Task fn);

  // How many tasks ParallelFor makes of `grains` grains on `threads`
  // threads (each task a near-equal run of grains): up to 4 per thread, one
  // grain each; beyond that, a multiple of the threads that divides the
  // grains, so threads running at the same speed finish together (18 grains
  // on 2 threads: 6 tasks of 3); failing that, one grain per task up to 32
  // per thread, then 4 per thread.
  static int64_t TaskCount(int64_t grains, int64_t threads);

 private:
  // The claim word: generation in the high 32 bits, next task in the low 32.
  static uint64_t Pack(uint32_t gen, uint32_t task) { return (uint64_t{gen} << 32) | task; }
  void WorkerLoop(int index);
  // Claims and runs tasks of generation `gen` until none are left.
  void RunTasks(uint32_t gen, int thread_index);

  int num_threads_;
  std::vector<std::thread> workers_;
  // The current job; written by the caller before the generation is
  // published, read by workers only after a successful claim.
  const Task* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<uint32_t> num_tasks_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint32_t> done_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kvinfer
