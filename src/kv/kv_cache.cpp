#include "kv/kv_cache.h"

#include "core/error.h"

namespace kvinfer {

KvCache::KvCache(const KvShape& shape, int32_t block_size_tokens, int32_t num_blocks,
                 KvPrecision precision)
    : manager_(block_size_tokens, num_blocks),
      storage_(shape, block_size_tokens, num_blocks, precision) {}

bool KvCache::PrepareWrite(int32_t seq, int32_t begin, int32_t end) {
  copies_.clear();
  const bool ok = manager_.PrepareWrite(seq, begin, end, copies_);
  storage_.CopyBlocks(copies_);
  return ok;
}

KvSequenceStats KvCache::SequenceStats(int32_t seq) const {
  KVINFER_CHECK(is_live(seq));
  const std::span<const int32_t> blocks = manager_.block_table(seq);
  const int64_t bytes_per_token = storage_.bytes_per_token();
  KvSequenceStats st;
  st.tokens_held = manager_.num_tokens(seq);
  st.num_blocks = static_cast<int64_t>(blocks.size());
  for (int32_t b : blocks) st.num_blocks_shared += pool().ref_count(b) > 1 ? 1 : 0;
  st.capacity_tokens = st.num_blocks * block_size();
  st.bytes_reserved = st.capacity_tokens * bytes_per_token;
  st.bytes_used = st.tokens_held * bytes_per_token;
  return st;
}

KvCacheStats KvCache::Stats() const {
  const BlockPool& p = pool();
  const int64_t bytes_per_token = storage_.bytes_per_token();
  KvCacheStats st;
  st.precision = KvPrecisionName(precision());
  st.block_size_tokens = block_size();
  st.num_blocks_total = p.num_blocks();
  st.num_blocks_used = p.num_used();
  st.num_blocks_free = p.num_free();
  st.num_sequences = manager_.num_sequences();
  st.tokens_held = manager_.tokens_held();
  st.num_blocks_shared = manager_.num_blocks_shared();
  st.capacity_tokens = st.num_blocks_used * block_size();
  st.bytes_per_token = bytes_per_token;
  const int64_t block_bytes = static_cast<int64_t>(block_size()) * bytes_per_token;
  st.bytes_total = st.num_blocks_total * block_bytes;
  st.bytes_reserved = st.num_blocks_used * block_bytes;
  st.bytes_used = st.tokens_held * bytes_per_token;
  st.peak_bytes_reserved = manager_.peak_blocks_used() * block_bytes;
  st.bytes_logical = manager_.logical_blocks() * block_bytes;
  st.bytes_saved_by_sharing = st.bytes_logical - st.bytes_reserved;
  st.num_cow_copies = manager_.num_cow_copies();
  st.usage_ratio = st.capacity_tokens > 0
                       ? static_cast<double>(st.tokens_held) / static_cast<double>(st.capacity_tokens)
                       : 0.0;
  return st;
}

}  // namespace kvinfer
