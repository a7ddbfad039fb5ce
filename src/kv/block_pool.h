// BlockPool: the metadata of a fixed pool of KV blocks (no tensors here).
//
// A block is a plain int32 id in [0, num_blocks). Each has a reference count
// (0 = free; >1 = shared by forked sequences). Free blocks sit in an
// intrusive doubly linked list ordered for LRU eviction: Allocate takes the
// head (least recently freed), Release appends at the tail, and Take removes
// a block from the middle in O(1) (a prefix-cache hit reviving a freed
// block). Metadata is structure-of-arrays; no operation allocates memory.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace kvinfer {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  // A free block with ref count 1, or nullopt when none is free (an expected
  // result: the caller preempts or stops).
  std::optional<int32_t> Allocate();
  // Another holder of an allocated block (fork / sharing).
  void IncRef(int32_t id);
  // Drops one reference; at zero the block returns to the free list's tail.
  void Release(int32_t id);
  // Removes a specific free block from the free list (ref count 0 -> 1).
  void Take(int32_t id);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_count_.size()); }
  int32_t num_free() const { return num_free_; }
  int32_t num_used() const { return num_blocks() - num_free_; }
  int32_t ref_count(int32_t id) const { return ref_count_[id]; }
  bool is_free(int32_t id) const { return ref_count_[id] == 0; }
  // Free block ids from head (next to allocate) to tail; for tests.
  std::vector<int32_t> FreeListForTest() const;

 private:
  void Unlink(int32_t id);
  void PushBack(int32_t id);

  // Sentinel index num_blocks() closes the circular free list.
  std::vector<int32_t> ref_count_;  // [num_blocks]
  std::vector<int32_t> prev_;       // [num_blocks + 1]
  std::vector<int32_t> next_;       // [num_blocks + 1]
  int32_t num_free_ = 0;
};

}  // namespace kvinfer
