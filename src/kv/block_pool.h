// BlockPool: the metadata of a fixed pool of KV blocks (no tensors here).
//
// A block is a plain int32 id in [0, num_blocks). Each has a reference count
// (0 = free; >1 = shared by forked sequences), an optional content hash (set
// by whoever can name the block's contents, cleared when Allocate hands the
// block out for new contents), and free-list links. Free blocks sit in an
// intrusive doubly linked list in LRU order: Allocate takes the head (least
// recently freed), Release appends at the tail, and Take removes a given
// free block from the middle in O(1), so a freed block whose contents are
// still wanted can be reclaimed, contents and hash intact, before Allocate
// reuses it. Metadata is structure-of-arrays; no operation allocates memory.
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
  // Removes a specific free block from the free list (ref count 0 -> 1),
  // keeping its hash.
  void Take(int32_t id);
  // The content hash of a block (nullopt: none recorded).
  std::optional<uint64_t> hash(int32_t id) const {
    return has_hash_[id] ? std::optional<uint64_t>(hash_[id]) : std::nullopt;
  }
  void set_hash(int32_t id, uint64_t h) {
    hash_[id] = h;
    has_hash_[id] = 1;
  }
  void clear_hash(int32_t id) { has_hash_[id] = 0; }

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
  std::vector<uint64_t> hash_;      // [num_blocks], valid where has_hash_
  std::vector<uint8_t> has_hash_;   // [num_blocks]
  int32_t num_free_ = 0;
};

}  // namespace kvinfer
