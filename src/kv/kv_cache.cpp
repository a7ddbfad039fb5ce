#include "kv/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace kvinfer {

KvCache::KvCache(const KvShape& shape, int32_t block_size_tokens, int32_t num_blocks,
                 KvPrecision precision)
    : n_layers_(shape.n_layers),
      n_kv_heads_(shape.n_kv_heads),
      head_dim_(shape.head_dim),
      block_size_(block_size_tokens),
      precision_(precision),
      code_row_bytes_(KvCodeRowBytes(precision, shape.head_dim)),
      row_bytes_(KvRowBytes(precision, shape.head_dim)),
      q8_blocks_(KvQ8Blocks(shape.head_dim)),
      bytes_per_token_(KvBytesPerToken(shape, precision)),
      pool_(num_blocks) {
  KVINFER_CHECK(block_size_tokens > 0 && num_blocks >= 0);
  KVINFER_CHECK(precision != KvPrecision::kQ4_0 || head_dim_ % 2 == 0);
  const size_t bytes = static_cast<size_t>(num_blocks) * block_size_tokens * bytes_per_token_;
  // Uninitialised: pages cost memory only once a block is first written, so
  // resident memory follows the tokens cached, not the pool size.
  storage_ = AlignedBuffer(bytes, AlignedBuffer::Init::kUninitialized);
  data_ = storage_.data();
}

void KvCache::WriteToken(int layer, int32_t block, int32_t slot, const float* k, const float* v) {
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

float KvCache::ReadElement(int layer, int32_t block, int kv, int kv_head, int32_t slot, int i) const {
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

int32_t KvCache::CreateSequence() {
  int32_t id;
  if (!free_seq_ids_.empty()) {
    id = free_seq_ids_.back();
    free_seq_ids_.pop_back();
  } else {
    id = static_cast<int32_t>(seqs_.size());
    seqs_.emplace_back();
  }
  Sequence& s = seqs_[id];
  s.blocks.clear();
  s.num_tokens = 0;
  s.live = true;
  return id;
}

void KvCache::FreeSequence(int32_t seq) {
  KVINFER_CHECK(is_live(seq));
  Truncate(seq, 0);
  seqs_[seq].live = false;
  free_seq_ids_.push_back(seq);
}

int32_t KvCache::BlocksNeeded(int32_t seq, int32_t n_tokens) const {
  const int32_t want = (n_tokens + block_size_ - 1) / block_size_;
  return std::max<int32_t>(0, want - static_cast<int32_t>(seqs_[seq].blocks.size()));
}

bool KvCache::Reserve(int32_t seq, int32_t n_tokens) {
  KVINFER_CHECK(is_live(seq));
  const int32_t need = BlocksNeeded(seq, n_tokens);
  if (need > pool_.num_free()) return false;
  Sequence& s = seqs_[seq];
  for (int32_t i = 0; i < need; ++i) s.blocks.push_back(*pool_.Allocate());
  peak_blocks_used_ = std::max<int64_t>(peak_blocks_used_, pool_.num_used());
  return true;
}

void KvCache::SetNumTokens(int32_t seq, int32_t n) {
  KVINFER_CHECK(is_live(seq));
  KVINFER_CHECK_MSG(n >= 0 && n <= capacity_tokens(seq), "{} tokens exceed the reserved {}", n,
                    capacity_tokens(seq));
  seqs_[seq].num_tokens = n;
}

void KvCache::Truncate(int32_t seq, int32_t n) {
  KVINFER_CHECK(is_live(seq));
  Sequence& s = seqs_[seq];
  KVINFER_CHECK(n >= 0);
  s.num_tokens = std::min(s.num_tokens, n);
  const size_t keep = static_cast<size_t>((n + block_size_ - 1) / block_size_);
  while (s.blocks.size() > keep) {
    pool_.Release(s.blocks.back());
    s.blocks.pop_back();
  }
}

int32_t KvCache::Fork(int32_t parent) {
  KVINFER_CHECK(is_live(parent));
  const int32_t child = CreateSequence();
  Sequence& c = seqs_[child];
  const Sequence& p = seqs_[parent];  // after CreateSequence: seqs_ may have grown
  c.blocks = p.blocks;
  c.num_tokens = p.num_tokens;
  for (int32_t b : c.blocks) pool_.IncRef(b);
  return child;
}

int32_t KvCache::CopiesNeeded(int32_t seq, int32_t begin, int32_t end) const {
  const Sequence& s = seqs_[seq];
  int32_t n = 0;
  for (int32_t i = begin / block_size_; i < static_cast<int32_t>(s.blocks.size()) &&
                                        i * block_size_ < end;
       ++i) {
    if (pool_.ref_count(s.blocks[i]) > 1) ++n;
  }
  return n;
}

bool KvCache::PrepareWrite(int32_t seq, int32_t begin, int32_t end) {
  KVINFER_CHECK(is_live(seq));
  KVINFER_CHECK_MSG(end <= capacity_tokens(seq), "write to [{}, {}) beyond the {} reserved tokens",
                    begin, end, capacity_tokens(seq));
  Sequence& s = seqs_[seq];
  for (int32_t i = begin / block_size_; i * block_size_ < end; ++i) {
    const int32_t shared = s.blocks[i];
    if (pool_.ref_count(shared) == 1) continue;
    std::optional<int32_t> copy = pool_.Allocate();
    if (!copy) return false;
    CopyBlock(shared, *copy);
    pool_.Release(shared);
    s.blocks[i] = *copy;
    ++num_cow_copies_;
  }
  peak_blocks_used_ = std::max<int64_t>(peak_blocks_used_, pool_.num_used());
  return true;
}

void KvCache::CopyBlock(int32_t src, int32_t dst) {
  // K and V of all heads of one block in one layer (scales included) are
  // contiguous.
  const size_t bytes = static_cast<size_t>(2) * n_kv_heads_ * block_size_ * row_bytes_;
  for (int l = 0; l < n_layers_; ++l) {
    std::memcpy(Row(l, dst, 0, 0, 0), Row(l, src, 0, 0, 0), bytes);
  }
}

KvSequenceStats KvCache::SequenceStats(int32_t seq) const {
  KVINFER_CHECK(is_live(seq));
  const Sequence& s = seqs_[seq];
  KvSequenceStats st;
  st.tokens_held = s.num_tokens;
  st.num_blocks = static_cast<int64_t>(s.blocks.size());
  for (int32_t b : s.blocks) st.num_blocks_shared += pool_.ref_count(b) > 1 ? 1 : 0;
  st.capacity_tokens = st.num_blocks * block_size_;
  st.bytes_reserved = st.capacity_tokens * bytes_per_token_;
  st.bytes_used = st.tokens_held * bytes_per_token_;
  return st;
}

KvCacheStats KvCache::Stats() const {
  KvCacheStats st;
  st.precision = KvPrecisionName(precision_);
  st.block_size_tokens = block_size_;
  st.num_blocks_total = pool_.num_blocks();
  st.num_blocks_used = pool_.num_used();
  st.num_blocks_free = pool_.num_free();
  int64_t logical_blocks = 0;
  for (int32_t id = 0; id < static_cast<int32_t>(seqs_.size()); ++id) {
    if (!seqs_[id].live) continue;
    ++st.num_sequences;
    st.tokens_held += seqs_[id].num_tokens;
    logical_blocks += static_cast<int64_t>(seqs_[id].blocks.size());
  }
  for (int32_t b = 0; b < pool_.num_blocks(); ++b) st.num_blocks_shared += pool_.ref_count(b) > 1;
  st.capacity_tokens = st.num_blocks_used * block_size_;
  st.bytes_per_token = bytes_per_token_;
  const int64_t block_bytes = static_cast<int64_t>(block_size_) * bytes_per_token_;
  st.bytes_total = st.num_blocks_total * block_bytes;
  st.bytes_reserved = st.num_blocks_used * block_bytes;
  st.bytes_used = st.tokens_held * bytes_per_token_;
  st.peak_bytes_reserved = peak_blocks_used_ * block_bytes;
  st.bytes_logical = logical_blocks * block_bytes;
  st.bytes_saved_by_sharing = st.bytes_logical - st.bytes_reserved;
  st.num_cow_copies = num_cow_copies_;
  st.usage_ratio = st.capacity_tokens > 0
                       ? static_cast<double>(st.tokens_held) / static_cast<double>(st.capacity_tokens)
                       : 0.0;
  return st;
}

}  // namespace kvinfer
