#include "kv/block_pool.h"

#include "core/error.h"

namespace kvinfer {

BlockPool::BlockPool(int32_t num_blocks)
    : ref_count_(num_blocks, 0),
      prev_(num_blocks + 1),
      next_(num_blocks + 1),
      hash_(num_blocks, 0),
      has_hash_(num_blocks, 0) {
  KVINFER_CHECK(num_blocks >= 0);
  const int32_t sentinel = num_blocks;
  prev_[sentinel] = next_[sentinel] = sentinel;
  for (int32_t i = 0; i < num_blocks; ++i) PushBack(i);
  num_free_ = num_blocks;
}

void BlockPool::Unlink(int32_t id) {
  next_[prev_[id]] = next_[id];
  prev_[next_[id]] = prev_[id];
  prev_[id] = next_[id] = -1;
}

void BlockPool::PushBack(int32_t id) {
  const int32_t sentinel = num_blocks();
  const int32_t last = prev_[sentinel];
  next_[last] = id;
  prev_[id] = last;
  next_[id] = sentinel;
  prev_[sentinel] = id;
}

std::optional<int32_t> BlockPool::Allocate() {
  const int32_t sentinel = num_blocks();
  const int32_t id = next_[sentinel];
  if (id == sentinel) return std::nullopt;
  Unlink(id);
  ref_count_[id] = 1;
  has_hash_[id] = 0;
  --num_free_;
  return id;
}

void BlockPool::IncRef(int32_t id) {
  KVINFER_CHECK_MSG(id >= 0 && id < num_blocks() && ref_count_[id] > 0,
                    "IncRef of block {} that is not allocated", id);
  ++ref_count_[id];
}

void BlockPool::Release(int32_t id) {
  KVINFER_CHECK_MSG(id >= 0 && id < num_blocks() && ref_count_[id] > 0,
                    "Release of block {} that is not allocated (double free?)", id);
  if (--ref_count_[id] == 0) {
    PushBack(id);
    ++num_free_;
  }
}

void BlockPool::Take(int32_t id) {
  KVINFER_CHECK_MSG(id >= 0 && id < num_blocks() && ref_count_[id] == 0,
                    "Take of block {} that is not free", id);
  Unlink(id);
  ref_count_[id] = 1;
  --num_free_;
}

std::vector<int32_t> BlockPool::FreeListForTest() const {
  std::vector<int32_t> out;
  const int32_t sentinel = num_blocks();
  for (int32_t id = next_[sentinel]; id != sentinel; id = next_[id]) out.push_back(id);
  return out;
}

}  // namespace kvinfer
