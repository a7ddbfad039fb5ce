#include "kv/kv_manager.h"

#include <algorithm>

#include "core/error.h"

namespace kvinfer {

KvManager::KvManager(int32_t block_size_tokens, int32_t num_blocks)
    : block_size_(block_size_tokens), pool_(num_blocks) {
  KVINFER_CHECK(block_size_tokens > 0 && num_blocks >= 0);
}

std::optional<int32_t> KvManager::AllocateFor(int32_t seq) {
  if (allocate_hook_) allocate_hook_(seq);
  return pool_.Allocate();
}

void KvManager::ReleaseBlock(int32_t block) {
  pool_.Release(block);
  if (pool_.is_free(block)) Emit({.kind = KvEvent::Kind::kBlockFreed, .block = block});
}

int32_t KvManager::CreateSequence() {
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
  s.token_ids.clear();
  s.num_tokens = 0;
  s.live = true;
  return id;
}

void KvManager::FreeSequence(int32_t seq) {
  KVINFER_CHECK(is_live(seq));
  Truncate(seq, 0);
  seqs_[seq].live = false;
  seqs_[seq].token_ids.clear();
  free_seq_ids_.push_back(seq);
}

void KvManager::Clear() {
  pool_ = BlockPool(pool_.num_blocks());
  seqs_.clear();
  free_seq_ids_.clear();
  Emit({.kind = KvEvent::Kind::kAllCleared});
}

int32_t KvManager::BlocksNeeded(int32_t seq, int32_t n_tokens) const {
  const int32_t want = (n_tokens + block_size_ - 1) / block_size_;
  return std::max<int32_t>(0, want - static_cast<int32_t>(seqs_[seq].blocks.size()));
}

bool KvManager::Reserve(int32_t seq, int32_t n_tokens) {
  KVINFER_CHECK(is_live(seq));
  const int32_t need = BlocksNeeded(seq, n_tokens);
  if (need > pool_.num_free()) return false;
  Sequence& s = seqs_[seq];
  // Grow the table first so that no block is held outside it if this throws.
  s.blocks.reserve(s.blocks.size() + static_cast<size_t>(need));
  for (int32_t i = 0; i < need; ++i) {
    const std::optional<int32_t> b = AllocateFor(seq);
    KVINFER_CHECK(b.has_value());
    s.blocks.push_back(*b);
  }
  peak_blocks_used_ = std::max<int64_t>(peak_blocks_used_, pool_.num_used());
  return true;
}

void KvManager::SetNumTokens(int32_t seq, int32_t n) {
  KVINFER_CHECK(is_live(seq));
  KVINFER_CHECK_MSG(n >= 0 && n <= capacity_tokens(seq), "{} tokens exceed the reserved {}", n,
                    capacity_tokens(seq));
  Sequence& s = seqs_[seq];
  const int32_t before = s.num_tokens;
  s.num_tokens = n;
  if (!sink_) return;
  // Blocks whose last position lies in [before, n) just became full.
  for (int32_t i = before / block_size_; (i + 1) * block_size_ <= n; ++i) {
    KvEvent e{.kind = KvEvent::Kind::kBlockFilled, .block = s.blocks[i], .seq = seq, .index = i};
    const size_t end = static_cast<size_t>(i + 1) * block_size_;
    if (s.token_ids.size() >= end) {
      e.tokens = std::span<const int32_t>(s.token_ids).subspan(end - block_size_, block_size_);
    }
    Emit(e);
  }
}

void KvManager::SetTokenIds(int32_t seq, int32_t begin, std::span<const int32_t> ids) {
  KVINFER_CHECK(is_live(seq));
  std::vector<int32_t>& t = seqs_[seq].token_ids;
  if (begin < 0 || static_cast<size_t>(begin) > t.size()) return;  // the ids before are unknown
  t.resize(static_cast<size_t>(begin));
  t.insert(t.end(), ids.begin(), ids.end());
}

void KvManager::Truncate(int32_t seq, int32_t n) {
  KVINFER_CHECK(is_live(seq));
  KVINFER_CHECK(n >= 0);
  Sequence& s = seqs_[seq];
  s.num_tokens = std::min(s.num_tokens, n);
  if (s.token_ids.size() > static_cast<size_t>(n)) s.token_ids.resize(static_cast<size_t>(n));
  const size_t keep = static_cast<size_t>((n + block_size_ - 1) / block_size_);
  while (s.blocks.size() > keep) {
    const int32_t b = s.blocks.back();
    s.blocks.pop_back();
    ReleaseBlock(b);
  }
}

int32_t KvManager::Fork(int32_t parent) {
  KVINFER_CHECK(is_live(parent));
  const int32_t child = CreateSequence();
  Sequence& c = seqs_[child];
  const Sequence& p = seqs_[parent];  // after CreateSequence: seqs_ may have grown
  try {
    c.blocks = p.blocks;
    c.token_ids = p.token_ids;
  } catch (...) {
    c.blocks.clear();
    FreeSequence(child);
    throw;
  }
  c.num_tokens = p.num_tokens;
  for (int32_t b : c.blocks) pool_.IncRef(b);
  return child;
}

int32_t KvManager::CopiesNeeded(int32_t seq, int32_t begin, int32_t end) const {
  const Sequence& s = seqs_[seq];
  int32_t n = 0;
  for (int32_t i = begin / block_size_;
       i < static_cast<int32_t>(s.blocks.size()) && i * block_size_ < end; ++i) {
    if (pool_.ref_count(s.blocks[i]) > 1) ++n;
  }
  return n;
}

bool KvManager::PrepareWrite(int32_t seq, int32_t begin, int32_t end,
                             std::vector<KvBlockCopy>& copies) {
  KVINFER_CHECK(is_live(seq));
  KVINFER_CHECK_MSG(end <= capacity_tokens(seq), "write to [{}, {}) beyond the {} reserved tokens",
                    begin, end, capacity_tokens(seq));
  // Room for every copy first, so that no block is held outside a table if
  // this throws.
  copies.reserve(copies.size() + static_cast<size_t>(CopiesNeeded(seq, begin, end)));
  Sequence& s = seqs_[seq];
  for (int32_t i = begin / block_size_; i * block_size_ < end; ++i) {
    const int32_t shared = s.blocks[i];
    if (pool_.ref_count(shared) == 1) continue;
    const std::optional<int32_t> copy = AllocateFor(seq);
    if (!copy) return false;
    copies.push_back({shared, *copy});
    // The shared block keeps another holder, so this never frees it.
    pool_.Release(shared);
    s.blocks[i] = *copy;
    ++num_cow_copies_;
  }
  peak_blocks_used_ = std::max<int64_t>(peak_blocks_used_, pool_.num_used());
  return true;
}

int32_t KvManager::num_sequences() const {
  int32_t n = 0;
  for (const Sequence& s : seqs_) n += s.live ? 1 : 0;
  return n;
}

int64_t KvManager::tokens_held() const {
  int64_t n = 0;
  for (const Sequence& s : seqs_) n += s.live ? s.num_tokens : 0;
  return n;
}

int64_t KvManager::logical_blocks() const {
  int64_t n = 0;
  for (const Sequence& s : seqs_) n += s.live ? static_cast<int64_t>(s.blocks.size()) : 0;
  return n;
}

int32_t KvManager::num_blocks_shared() const {
  int32_t n = 0;
  for (int32_t b = 0; b < pool_.num_blocks(); ++b) n += pool_.ref_count(b) > 1 ? 1 : 0;
  return n;
}

}  // namespace kvinfer
