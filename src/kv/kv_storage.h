// KvStorage: the bytes of the KV cache, addressed by (layer, block, K|V,
// head, slot). No bookkeeping: which sequence holds which block is
// KvManager's business; the storage only stores, reads and copies blocks.
//
// One aligned allocation (element type KvPrecision), addressed as
//   [layer][block][k|v][kv_head] -> one head's rows of block_size tokens
// so one head's keys in a block are a contiguous [block_size, head_dim]
// matrix (what attention streams over), and a block's bytes across layers
// are at a fixed stride (what a block copy touches). f32 / f16: the rows are
// head_dim elements each. q8_0: the head's int8 codes [block_size, head_dim]
// come first, then its f16 scales [block_size, ceil(head_dim / 32)], so code
// rows stay 64-byte aligned for head_dim 64. q4_0: the same with rows of
// head_dim / 2 bytes of packed 4-bit codes (QuantizeKvQ4 in kv/kv_format.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/aligned_buffer.h"
#include "kv/kv_format.h"
#include "kvinfer/kvinfer.h"

namespace kvinfer {

struct KvBlockCopy;

class KvStorage {
 public:
  KvStorage(const KvShape& shape, int32_t block_size_tokens, int32_t num_blocks,
            KvPrecision precision = KvPrecision::kF32);
  KvStorage(const KvStorage&) = delete;
  // Writes every page of the pool once (zeros), so the memory is resident
  // from now on: no step pays the page faults of a block's first use, and a
  // pool the host cannot hold fails here rather than mid-request.
  void MakeResident();
  KvStorage& operator=(const KvStorage&) = delete;

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
  // Copies every layer's K and V (scales included) of block src to dst.
  void CopyBlock(int32_t src, int32_t dst);
  // Copies every layer's K and V (scales included) of the first n_tokens
  // positions of block src to the same positions of dst.
  void CopyTokens(int32_t src, int32_t dst, int32_t n_tokens);
  // Carries out copies in order: copy-on-write (KvManager::PrepareWrite;
  // whole blocks) and cached prefixes (num_tokens positions).
  void CopyBlocks(std::span<const KvBlockCopy> copies);

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return num_blocks_; }
  int64_t bytes_per_token() const { return bytes_per_token_; }
  KvPrecision precision() const { return precision_; }
  int num_layers() const { return n_layers_; }
  int num_kv_heads() const { return n_kv_heads_; }
  int head_dim() const { return head_dim_; }

 private:
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
    return ((((static_cast<size_t>(layer) * num_blocks_ + block) * 2 + kv) * n_kv_heads_ + head) *
            block_size_) * row_bytes_;
  }

  int n_layers_;
  int n_kv_heads_;
  int head_dim_;
  int32_t block_size_;
  int32_t num_blocks_;
  KvPrecision precision_;
  size_t code_row_bytes_;  // KvCodeRowBytes
  size_t row_bytes_;       // KvRowBytes
  int q8_blocks_;          // scales per q8_0 / q4_0 row
  int64_t bytes_per_token_;
  AlignedBuffer storage_;  // [layers, blocks, 2, kv_heads] x block_size rows
  std::byte* data_ = nullptr;
};

}  // namespace kvinfer
