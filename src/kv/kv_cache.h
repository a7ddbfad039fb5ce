// KvCache: K/V of many sequences, addressed through block tables. A thin
// pairing of the two halves that the forward pass reads together: the
// KvManager (sequences, block tables, reference counts, copy-on-write
// decisions; no bytes) and the KvStorage (the bytes, their layout and
// element formats; no bookkeeping). Writes that need a copy-on-write go
// through PrepareWrite here, which asks the manager and has the storage copy.
//
// All strategies are this one class with different block sizes: `paged`
// uses small blocks (16 tokens), `contiguous` one block of max_seq_len per
// sequence, `none` a block that is filled and dropped within one step. So
// attention has one code path and strategies differ only in what they
// really change (recomputation and reserved-but-unused memory). Storage
// layout: kv/kv_storage.h; row formats: kv/kv_format.h.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/block_pool.h"
#include "kv/kv_format.h"
#include "kv/kv_manager.h"
#include "kv/kv_storage.h"
#include "kvinfer/kvinfer.h"

namespace kvinfer {

class KvCache {
 public:
  KvCache(const KvShape& shape, int32_t block_size_tokens, int32_t num_blocks,
          KvPrecision precision = KvPrecision::kF32);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  KvManager& manager() { return manager_; }
  void MakeResident() { storage_.MakeResident(); }  // KvStorage::MakeResident
  const KvManager& manager() const { return manager_; }
  KvStorage& storage() { return storage_; }
  const KvStorage& storage() const { return storage_; }

  // Bookkeeping: see KvManager.
  int32_t CreateSequence() { return manager_.CreateSequence(); }
  void FreeSequence(int32_t seq) { manager_.FreeSequence(seq); }
  [[nodiscard]] bool Reserve(int32_t seq, int32_t n_tokens) {
    return manager_.Reserve(seq, n_tokens);
  }
  int32_t BlocksNeeded(int32_t seq, int32_t n_tokens) const {
    return manager_.BlocksNeeded(seq, n_tokens);
  }
  void SetNumTokens(int32_t seq, int32_t n) { manager_.SetNumTokens(seq, n); }
  void Truncate(int32_t seq, int32_t n) { manager_.Truncate(seq, n); }
  int32_t Fork(int32_t parent) { return manager_.Fork(parent); }
  // Makes the blocks holding positions [begin, end) of `seq` private to it,
  // copying the K/V of each shared block into its replacement. Returns false
  // if the pool has no block for a copy (blocks already copied stay copied;
  // nothing is lost).
  [[nodiscard]] bool PrepareWrite(int32_t seq, int32_t begin, int32_t end);
  int32_t CopiesNeeded(int32_t seq, int32_t begin, int32_t end) const {
    return manager_.CopiesNeeded(seq, begin, end);
  }
  int32_t num_tokens(int32_t seq) const { return manager_.num_tokens(seq); }
  int32_t capacity_tokens(int32_t seq) const { return manager_.capacity_tokens(seq); }
  std::span<const int32_t> block_table(int32_t seq) const { return manager_.block_table(seq); }
  bool is_live(int32_t seq) const { return manager_.is_live(seq); }
  const BlockPool& pool() const { return manager_.pool(); }
  int64_t num_cow_copies() const { return manager_.num_cow_copies(); }

  // Bytes: see KvStorage.
  const void* Keys(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return storage_.Keys(layer, block, kv_head, slot);
  }
  const void* Values(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return storage_.Values(layer, block, kv_head, slot);
  }
  const uint16_t* KeyScales(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return storage_.KeyScales(layer, block, kv_head, slot);
  }
  const uint16_t* ValueScales(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return storage_.ValueScales(layer, block, kv_head, slot);
  }
  void WriteToken(int layer, int32_t block, int32_t slot, const float* k, const float* v) {
    storage_.WriteToken(layer, block, slot, k, v);
  }
  float ReadElement(int layer, int32_t block, int kv, int kv_head, int32_t slot, int i) const {
    return storage_.ReadElement(layer, block, kv, kv_head, slot, i);
  }

  int32_t block_size() const { return manager_.block_size(); }
  int32_t num_blocks() const { return manager_.num_blocks(); }
  int64_t bytes_per_token() const { return storage_.bytes_per_token(); }
  KvPrecision precision() const { return storage_.precision(); }
  int num_layers() const { return storage_.num_layers(); }
  int num_kv_heads() const { return storage_.num_kv_heads(); }
  int head_dim() const { return storage_.head_dim(); }

  // Fills everything but `strategy` and `sequences` (the engine knows which
  // request holds which sequence).
  KvCacheStats Stats() const;
  KvSequenceStats SequenceStats(int32_t seq) const;

 private:
  KvManager manager_;
  KvStorage storage_;
  std::vector<KvBlockCopy> copies_;  // PrepareWrite scratch
};

}  // namespace kvinfer
