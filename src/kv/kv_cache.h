// KvCache: K/V storage for many sequences, addressed through block tables.
//
// All strategies are this one class with different block sizes: `paged`
// uses small blocks (16 tokens), `contiguous` one block of max_seq_len per
// sequence, `none` a block that is filled and dropped within one step. So
// attention has one code path and strategies differ only in what they
// really change (recomputation and reserved-but-unused memory).
//
// Storage is one aligned allocation (element type KvPrecision), addressed as
//   [layer][block][k|v][kv_head] -> one head's rows of block_size tokens
// so one head's keys in a block are a contiguous [block_size, head_dim]
// matrix (what attention streams over), and a block's bytes across layers
// are at a fixed stride (what a block copy touches). f32 / f16: the rows are
// head_dim elements each. q8_0: the head's int8 codes [block_size, head_dim]
// come first, then its f16 scales [block_size, ceil(head_dim / 32)], so code
// rows stay 64-byte aligned for head_dim 64. q4_0: the same with rows of
// head_dim / 2 bytes of packed 4-bit codes (QuantizeKvQ4). Row formats:
// kv/kv_format.h.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/aligned_buffer.h"
#include "kv/block_pool.h"
#include "kv/kv_format.h"
#include "kvinfer/kvinfer.h"

namespace kvinfer {

class KvCache {
 public:
  KvCache(const KvShape& shape, int32_t block_size_tokens, int32_t num_blocks,
          KvPrecision precision = KvPrecision::kF32);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // A new, empty sequence; returns its id (ids of freed sequences are reused).
  int32_t CreateSequence();
  // Releases the sequence's blocks and its id.
  void FreeSequence(int32_t seq);
  // Makes positions [0, n_tokens) addressable, allocating blocks as needed.
  // Returns false, changing nothing, if the pool cannot supply them.
  [[nodiscard]] bool Reserve(int32_t seq, int32_t n_tokens);
  // Blocks needed to grow `seq` to n_tokens (0 if already reserved).
  int32_t BlocksNeeded(int32_t seq, int32_t n_tokens) const;
  // Records that K/V of positions [0, n) are written. n <= reserved capacity.
  void SetNumTokens(int32_t seq, int32_t n);
  // Keeps the first n tokens and releases the blocks past them.
  void Truncate(int32_t seq, int32_t n);

  // A new sequence sharing every block of `parent` (each block's reference
  // count goes up by one); no K/V is copied until one of them writes.
  int32_t Fork(int32_t parent);
  // Makes the blocks holding positions [begin, end) of `seq` private to it:
  // a block shared with another sequence is copied first (copy-on-write).
  // Positions must already be reserved. Returns false if the pool has no
  // block for a copy (blocks already copied stay copied; nothing is lost).
  [[nodiscard]] bool PrepareWrite(int32_t seq, int32_t begin, int32_t end);
  // Free blocks PrepareWrite would need for [begin, end).
  int32_t CopiesNeeded(int32_t seq, int32_t begin, int32_t end) const;

  int32_t num_tokens(int32_t seq) const { return seqs_[seq].num_tokens; }
  int32_t capacity_tokens(int32_t seq) const {
    return static_cast<int32_t>(seqs_[seq].blocks.size()) * block_size_;
  }
  std::span<const int32_t> block_table(int32_t seq) const { return seqs_[seq].blocks; }
  bool is_live(int32_t seq) const {
    return seq >= 0 && seq < static_cast<int32_t>(seqs_.size()) && seqs_[seq].live;
  }

  // [block_size, head_dim] keys / values of one head in one block, as
  // elements of precision() (q8_0: the int8 codes; q4_0: rows of head_dim / 2
  // bytes of packed codes), from token `slot` of the block on.
  const void* Keys(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return Row(layer, block, 0, kv_head, slot);
  }
  const void* Values(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return Row(layer, block, 1, kv_head, slot);
  }
  // q8_0 and q4_0 only: the f16 scales [block_size, ceil(head_dim / 32)] of those
  // codes, from token `slot` on.
  const uint16_t* KeyScales(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return Scales(layer, block, 0, kv_head, slot);
  }
  const uint16_t* ValueScales(int layer, int32_t block, int kv_head, int32_t slot = 0) const {
    return Scales(layer, block, 1, kv_head, slot);
  }
  // Stores one token's K and V (k, v: [kv_heads, head_dim] f32) at offset
  // `slot` of `block` in `layer`, converting to precision().
  void WriteToken(int layer, int32_t block, int32_t slot, const float* k, const float* v);
  // The element at (layer, block, k|v, head, slot, i) as f32 (tests).
  float ReadElement(int layer, int32_t block, int kv, int kv_head, int32_t slot, int i) const;

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  const BlockPool& pool() const { return pool_; }
  int64_t bytes_per_token() const { return bytes_per_token_; }
  KvPrecision precision() const { return precision_; }
  int num_layers() const { return n_layers_; }
  int num_kv_heads() const { return n_kv_heads_; }
  int head_dim() const { return head_dim_; }

  // Fills everything but `strategy` and `sequences` (the engine knows which
  // request holds which sequence).
  KvCacheStats Stats() const;
  KvSequenceStats SequenceStats(int32_t seq) const;
  int64_t num_cow_copies() const { return num_cow_copies_; }

 private:
  struct Sequence {
    std::vector<int32_t> blocks;  // logical block i -> physical block id
    int32_t num_tokens = 0;
    bool live = false;
  };

  // First byte of token `slot`'s head_dim elements (kv: 0 = K, 1 = V).
  std::byte* Row(int layer, int32_t block, int kv, int head, int32_t slot) const {
    return data_ + Offset(layer, block, kv, head) + static_cast<size_t>(slot) * code_row_bytes_;
  }
  uint16_t* Scales(int layer, int32_t block, int kv, int head, int32_t slot) const {
    return reinterpret_cast<uint16_t*>(data_ + Offset(layer, block, kv, head) +
                                             static_cast<size_t>(block_size_) * code_row_bytes_) +
           static_cast<size_t>(slot) * q8_blocks_;
  }
  // Byte offset of one head's rows in one block.
  size_t Offset(int layer, int32_t block, int kv, int head) const {
    return ((((static_cast<size_t>(layer) * num_blocks() + block) * 2 + kv) * n_kv_heads_ + head) *
            block_size_) * row_bytes_;
  }

  int n_layers_;
  int n_kv_heads_;
  int head_dim_;
  int32_t block_size_;
  KvPrecision precision_;
  size_t code_row_bytes_;  // KvCodeRowBytes
  size_t row_bytes_;       // KvRowBytes
  int q8_blocks_;          // scales per q8_0 / q4_0 row
  int64_t bytes_per_token_;
  BlockPool pool_;
  AlignedBuffer storage_;  // [layers, blocks, 2, kv_heads] x block_size rows
  std::byte* data_ = nullptr;
  std::vector<Sequence> seqs_;
  std::vector<int32_t> free_seq_ids_;
  void CopyBlock(int32_t src, int32_t dst);

  int64_t peak_blocks_used_ = 0;
  int64_t num_cow_copies_ = 0;
};

}  // namespace kvinfer
