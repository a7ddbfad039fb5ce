#include "kv/kv_storage.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kv/kv_format.h"
#include "kv/kv_manager.h"

namespace kvinfer {

KvStorage::KvStorage(const KvShape& shape, int32_t block_size_tokens, int32_t num_blocks,
                     KvPrecision precision)
    : n_layers_(shape.n_layers),
      n_kv_heads_(shape.n_kv_heads),
      head_dim_(shape.head_dim),
      block_size_(block_size_tokens),
      num_blocks_(num_blocks),
      precision_(precision),
      code_row_bytes_(KvCodeRowBytes(precision, shape.head_dim)),
      row_bytes_(KvRowBytes(precision, shape.head_dim)),
      q8_blocks_(KvQ8Blocks(shape.head_dim)),
      bytes_per_token_(2 * static_cast<int64_t>(shape.n_layers) * shape.n_kv_heads *
                       static_cast<int64_t>(row_bytes_)) {
  KVINFER_CHECK(block_size_tokens > 0 && num_blocks >= 0);
  KVINFER_CHECK(shape.n_layers > 0 && shape.n_kv_heads > 0 && shape.head_dim > 0);
  KVINFER_CHECK(precision != KvPrecision::kQ4_0 || head_dim_ % 2 == 0);
  const size_t bytes = static_cast<size_t>(num_blocks) * block_size_tokens * bytes_per_token_;
  // Uninitialised: pages cost memory only once a block is first written, so
  // resident memory follows the tokens cached, not the pool size.
  storage_ = AlignedBuffer(bytes, AlignedBuffer::Init::kUninitialized);
  data_ = storage_.data();
}

void KvStorage::MakeResident() {
  if (storage_.size() > 0) std::memset(storage_.data(), 0, storage_.size());
}

void KvStorage::WriteToken(int layer, int32_t block, int32_t slot, const float* k, const float* v) {
  KVINFER_CHECK(slot >= 0 && slot < block_size_);
  for (int kv = 0; kv < 2; ++kv) {
    const float* src = kv == 0 ? k : v;
    for (int h = 0; h < n_kv_heads_; ++h) {
      std::byte* dst = Row(layer, block, kv, h, slot);
      const float* s = src + static_cast<size_t>(h) * head_dim_;
      if (precision_ == KvPrecision::kF32) {
        std::memcpy(dst, s, sizeof(float) * head_dim_);
      } else if (precision_ == KvPrecision::kF16) {
        F32ToF16Row(s, head_dim_, reinterpret_cast<uint16_t*>(dst));
      } else if (precision_ == KvPrecision::kQ8_0) {
        QuantizeKvQ8(s, head_dim_, reinterpret_cast<int8_t*>(dst),
                          Scales(layer, block, kv, h, slot));
      } else {
        QuantizeKvQ4(s, head_dim_, reinterpret_cast<uint8_t*>(dst),
                          Scales(layer, block, kv, h, slot));
      }
    }
  }
}

float KvStorage::ReadElement(int layer, int32_t block, int kv, int kv_head, int32_t slot,
                             int i) const {
  const std::byte* row = Row(layer, block, kv, kv_head, slot);
  if (precision_ == KvPrecision::kQ4_0) {
    const uint16_t d = Scales(layer, block, kv, kv_head, slot)[i / kKvQ8Block];
    return F16ToF32(d) * static_cast<float>(KvQ4Code(reinterpret_cast<const uint8_t*>(row),
                                                          head_dim_, i));
  }
  const std::byte* p = row + static_cast<size_t>(i) * (code_row_bytes_ / head_dim_);
  if (precision_ == KvPrecision::kF32) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return f;
  }
  if (precision_ == KvPrecision::kQ8_0) {
    const uint16_t d = Scales(layer, block, kv, kv_head, slot)[i / kKvQ8Block];
    return F16ToF32(d) * static_cast<float>(static_cast<int8_t>(*p));
  }
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return F16ToF32(h);
}

void KvStorage::CopyBlock(int32_t src, int32_t dst) {
  KVINFER_CHECK(src >= 0 && src < num_blocks_ && dst >= 0 && dst < num_blocks_);
  // K and V of all heads of one block in one layer (scales included) are
  // contiguous.
  const size_t bytes = static_cast<size_t>(2) * n_kv_heads_ * block_size_ * row_bytes_;
  for (int l = 0; l < n_layers_; ++l) {
    std::memcpy(Row(l, dst, 0, 0, 0), Row(l, src, 0, 0, 0), bytes);
  }
}

void KvStorage::CopyTokens(int32_t src, int32_t dst, int32_t n_tokens) {
  KVINFER_CHECK(src >= 0 && src < num_blocks_ && dst >= 0 && dst < num_blocks_);
  KVINFER_CHECK(n_tokens >= 0 && n_tokens <= block_size_);
  const size_t codes = static_cast<size_t>(n_tokens) * code_row_bytes_;
  // q8_0 / q4_0 rows keep their f16 scales after the block's codes.
  const size_t scales = row_bytes_ > code_row_bytes_
                            ? static_cast<size_t>(n_tokens) * q8_blocks_ * sizeof(uint16_t)
                            : 0;
  for (int l = 0; l < n_layers_; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int h = 0; h < n_kv_heads_; ++h) {
        std::memcpy(Row(l, dst, kv, h, 0), Row(l, src, kv, h, 0), codes);
        if (scales > 0) std::memcpy(Scales(l, dst, kv, h, 0), Scales(l, src, kv, h, 0), scales);
      }
    }
  }
}

void KvStorage::CopyBlocks(std::span<const KvBlockCopy> copies) {
  for (const KvBlockCopy& c : copies) {
    if (c.num_tokens < 0) {
      CopyBlock(c.src, c.dst);
    } else {
      CopyTokens(c.src, c.dst, c.num_tokens);
    }
  }
}

}  // namespace kvinfer
