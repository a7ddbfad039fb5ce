// BlockPool: the metadata of a fixed pool of KV blocks (no tensors here).
//
// A block is a plain int32 id in [0, num_blocks). Each has a reference count
// (0 = free; >1 = shared by forked sequences or prefix-cache hits), an
// optional content hash (set by whoever can name the block's contents:
// the prefix cache, for a full block it has indexed), and free-list links.
//
// Free blocks sit in one of two intrusive doubly linked lists:
//   * blank:  free blocks without a hash, holding nothing worth keeping;
//   * cached: free blocks with a hash, whose K/V a later request may reuse,
//             in LRU order (head: released longest ago).
// Allocate takes the blank list's head first (least recently freed), and
// only when no blank block is left evicts the cached list's head, dropping
// its hash (reported through `evicted`, so the index can forget it).
// Release appends at the tail of the list its hash selects. Take removes a
// given free block from the middle in O(1): a prefix-cache hit reclaims a
// cached block, contents and hash intact, before Allocate reuses it.
// Metadata is structure-of-arrays; no operation allocates memory.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "kv/block_hash.h"

namespace kvinfer {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  // A free block with ref count 1 and no hash, or nullopt when none is free
  // (an expected result: the caller preempts or stops). A cached block
  // handed out has its hash dropped; `evicted`, if given, receives it
  // (nullopt when the block was blank).
  std::optional<int32_t> Allocate(std::optional<BlockHash>* evicted = nullptr);
  // Another holder of an allocated block (fork / sharing).
  void IncRef(int32_t id);
  // Drops one reference; at zero the block goes to the tail of the cached
  // list if it has a hash, else of the blank list.
  void Release(int32_t id);
  // Removes a specific free block from its free list (ref count 0 -> 1),
  // keeping its hash.
  void Take(int32_t id);
  // The content hash of a block (nullopt: none recorded).
  std::optional<BlockHash> hash(int32_t id) const {
    return has_hash_[id] ? std::optional<BlockHash>(hash_[id]) : std::nullopt;
  }
  bool has_hash(int32_t id) const { return has_hash_[id] != 0; }
  // Sets a block's hash. A free block moves to the cached list's tail.
  void set_hash(int32_t id, const BlockHash& h);
  // Drops a block's hash. A free cached block moves to the blank list's
  // head (it is the first to be reused).
  void clear_hash(int32_t id);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_count_.size()); }
  // Free blocks, blank and cached.
  int32_t num_free() const { return num_free_; }
  // Free blocks with a hash (evictable cached blocks).
  int32_t num_cached_free() const { return num_cached_free_; }
  int32_t num_used() const { return num_blocks() - num_free_; }
  int32_t ref_count(int32_t id) const { return ref_count_[id]; }
  bool is_free(int32_t id) const { return ref_count_[id] == 0; }
  // Free block ids in the order Allocate hands them out: the blank list
  // from head to tail, then the cached list from head to tail; for tests.
  std::vector<int32_t> FreeListForTest() const;
  // The cached (evictable) list alone, head (next to evict) to tail.
  std::vector<int32_t> CachedListForTest() const;

 private:
  void Unlink(int32_t id);
  void PushBack(int32_t list, int32_t id);
  void PushFront(int32_t list, int32_t id);
  int32_t blank_list() const { return num_blocks(); }
  int32_t cached_list() const { return num_blocks() + 1; }
  void AppendList(int32_t list, std::vector<int32_t>& out) const;

  // Sentinels num_blocks() (blank) and num_blocks() + 1 (cached) close the
  // two circular free lists.
  std::vector<int32_t> ref_count_;  // [num_blocks]
  std::vector<int32_t> prev_;       // [num_blocks + 2]
  std::vector<int32_t> next_;       // [num_blocks + 2]
  std::vector<BlockHash> hash_;     // [num_blocks], valid where has_hash_
  std::vector<uint8_t> has_hash_;   // [num_blocks]
  int32_t num_free_ = 0;
  int32_t num_cached_free_ = 0;
};

}  // namespace kvinfer
