#include "kv/block_pool.h"

#include "core/error.h"

namespace kvinfer {

BlockPool::BlockPool(int32_t num_blocks)
    : ref_count_(num_blocks, 0),
      prev_(num_blocks + 2),
      next_(num_blocks + 2),
      hash_(num_blocks),
      has_hash_(num_blocks, 0) {
  KVINFER_CHECK(num_blocks >= 0);
  for (int32_t s : {blank_list(), cached_list()}) prev_[s] = next_[s] = s;
  for (int32_t i = 0; i < num_blocks; ++i) PushBack(blank_list(), i);
  num_free_ = num_blocks;
}

void BlockPool::Unlink(int32_t id) {
  next_[prev_[id]] = next_[id];
  prev_[next_[id]] = prev_[id];
  prev_[id] = next_[id] = -1;
}

void BlockPool::PushBack(int32_t list, int32_t id) {
  const int32_t last = prev_[list];
  next_[last] = id;
  prev_[id] = last;
  next_[id] = list;
  prev_[list] = id;
}

void BlockPool::PushFront(int32_t list, int32_t id) {
  const int32_t first = next_[list];
  prev_[first] = id;
  next_[id] = first;
  prev_[id] = list;
  next_[list] = id;
}

std::optional<int32_t> BlockPool::Allocate(std::optional<BlockHash>* evicted) {
  if (evicted != nullptr) evicted->reset();
  int32_t id = next_[blank_list()];
  if (id == blank_list()) {
    id = next_[cached_list()];
    if (id == cached_list()) return std::nullopt;
    if (evicted != nullptr) *evicted = hash_[id];
    --num_cached_free_;
  }
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
    if (has_hash_[id]) {
      PushBack(cached_list(), id);
      ++num_cached_free_;
    } else {
      PushBack(blank_list(), id);
    }
    ++num_free_;
  }
}

void BlockPool::Take(int32_t id) {
  KVINFER_CHECK_MSG(id >= 0 && id < num_blocks() && ref_count_[id] == 0,
                    "Take of block {} that is not free", id);
  Unlink(id);
  if (has_hash_[id]) --num_cached_free_;
  ref_count_[id] = 1;
  --num_free_;
}

void BlockPool::set_hash(int32_t id, const BlockHash& h) {
  hash_[id] = h;
  if (ref_count_[id] == 0 && !has_hash_[id]) {
    Unlink(id);
    PushBack(cached_list(), id);
    ++num_cached_free_;
  }
  has_hash_[id] = 1;
}

void BlockPool::clear_hash(int32_t id) {
  if (!has_hash_[id]) return;
  has_hash_[id] = 0;
  if (ref_count_[id] == 0) {
    Unlink(id);
    PushFront(blank_list(), id);
    --num_cached_free_;
  }
}

void BlockPool::AppendList(int32_t list, std::vector<int32_t>& out) const {
  for (int32_t id = next_[list]; id != list; id = next_[id]) out.push_back(id);
}

std::vector<int32_t> BlockPool::FreeListForTest() const {
  std::vector<int32_t> out;
  AppendList(blank_list(), out);
  AppendList(cached_list(), out);
  return out;
}

std::vector<int32_t> BlockPool::CachedListForTest() const {
  std::vector<int32_t> out;
  AppendList(cached_list(), out);
  return out;
}

}  // namespace kvinfer
