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
  std::optional<BlockHash> evicted;
  const std::optional<int32_t> b = pool_.Allocate(&evicted);
  if (evicted) {
    if (whole_sequences_) {
      cached_seqs_[static_cast<size_t>(*b)].tokens.clear();
      ++prefix_counters_.blocks_evicted;
    } else {
      Uncache(*evicted);
    }
  }
  return b;
}

void KvManager::RecordSequence(const Sequence& s) {
  if (!s.root || s.blocks.size() != 1 || s.num_tokens <= 0) return;
  const int32_t b = s.blocks[0];
  if (pool_.ref_count(b) != 1 || s.token_ids.size() < static_cast<size_t>(s.num_tokens)) return;
  CachedSequence& c = cached_seqs_[static_cast<size_t>(b)];
  c.root = *s.root;
  c.tokens.assign(s.token_ids.begin(), s.token_ids.begin() + s.num_tokens);
  // The root marks the block as cached: released, it joins the LRU list.
  pool_.set_hash(b, *s.root);
}

KvManager::CachedPrefix KvManager::FindCachedSequencePrefix(const BlockHash& root,
                                                            std::span<const int32_t> tokens,
                                                            int32_t max_tokens) const {
  CachedPrefix best;
  const size_t limit = std::min(tokens.size(), static_cast<size_t>(std::max(0, max_tokens)));
  for (size_t b = 0; b < cached_seqs_.size(); ++b) {
    const CachedSequence& c = cached_seqs_[b];
    if (c.tokens.empty() || c.root != root) continue;
    const size_t n = std::min(limit, c.tokens.size());
    size_t k = 0;
    while (k < n && c.tokens[k] == tokens[k]) ++k;
    if (static_cast<int32_t>(k) > best.num_tokens)
      best = {static_cast<int32_t>(b), static_cast<int32_t>(k)};
  }
  return best;
}

void KvManager::AdoptCachedSequence(int32_t seq, int32_t block, int32_t num_tokens) {
  KVINFER_CHECK(is_live(seq) && whole_sequences_);
  Sequence& s = seqs_[seq];
  CachedSequence& c = cached_seqs_[static_cast<size_t>(block)];
  KVINFER_CHECK_MSG(s.root && s.blocks.empty() && pool_.is_free(block) && !c.tokens.empty() &&
                        num_tokens <= static_cast<int32_t>(c.tokens.size()) &&
                        num_tokens <= block_size_,
                    "sequence {} cannot adopt cached block {}", seq, block);
  pool_.Take(block);
  pool_.clear_hash(block);
  c.tokens.clear();
  s.blocks.push_back(block);
  s.num_tokens = num_tokens;
  peak_blocks_used_ = std::max<int64_t>(peak_blocks_used_, pool_.num_used());
}

void KvManager::Pin(int32_t block) {
  if (pool_.is_free(block)) {
    pool_.Take(block);
  } else {
    pool_.IncRef(block);
  }
  peak_blocks_used_ = std::max<int64_t>(peak_blocks_used_, pool_.num_used());
}

int32_t KvManager::num_blocks_cached() const {
  if (!whole_sequences_) return prefix_index_.size();
  int32_t n = 0;
  for (const CachedSequence& c : cached_seqs_) n += c.tokens.empty() ? 0 : 1;
  return n;
}

void KvManager::Uncache(const BlockHash& hash) {
  removed_.clear();
  prefix_index_.Erase(hash, &removed_);
  for (int32_t b : removed_) pool_.clear_hash(b);
  prefix_counters_.blocks_evicted += static_cast<int64_t>(removed_.size());
}

void KvManager::EnablePrefixCache(const PrefixCacheConfig& config) {
  KVINFER_CHECK_MSG(num_sequences() == 0, "enable the prefix cache before creating sequences");
  prefix_enabled_ = true;
  whole_sequences_ = config.whole_sequences;
  if (whole_sequences_) cached_seqs_.assign(static_cast<size_t>(pool_.num_blocks()), {});
  hasher_ = BlockHasher(config.algorithm);
  prefix_extra_keys_ = config.extra_keys;
  prefix_extra_keys_.push_back(fmt::format("block_size={}", block_size_));
}

BlockHash KvManager::PrefixRoot(std::string_view cache_salt) const {
  std::vector<std::string> keys = prefix_extra_keys_;
  keys.push_back(fmt::format("cache_salt={}", cache_salt));
  return hasher_.Root(keys);
}

void KvManager::SetPrefixRoot(int32_t seq, const BlockHash& root) {
  KVINFER_CHECK(is_live(seq) && prefix_enabled_);
  Sequence& s = seqs_[seq];
  KVINFER_CHECK_MSG(s.blocks.empty(), "the chain root of sequence {} is set after it has blocks",
                    seq);
  s.root = root;
  s.hashes.clear();
}

int32_t KvManager::FreeBlocksTakenByPrefix(std::span<const BlockHash> chain) const {
  int32_t n = 0;
  for (const BlockHash& h : chain) {
    const std::optional<int32_t> b = prefix_index_.Find(h);
    KVINFER_CHECK(b.has_value());
    n += pool_.is_free(*b) ? 1 : 0;
  }
  return n;
}

void KvManager::AttachPrefix(int32_t seq, std::span<const BlockHash> chain) {
  KVINFER_CHECK(is_live(seq));
  Sequence& s = seqs_[seq];
  KVINFER_CHECK_MSG(s.root && s.blocks.empty() && s.num_tokens == 0,
                    "a cached prefix is attached to sequence {} that is not empty or has no root",
                    seq);
  KVINFER_CHECK(prefix_index_.MatchLength(chain) == static_cast<int32_t>(chain.size()));
  s.blocks.reserve(chain.size());
  s.hashes.reserve(chain.size());
  for (const BlockHash& h : chain) {
    const int32_t b = *prefix_index_.Find(h);
    if (pool_.is_free(b)) {
      pool_.Take(b);
    } else {
      pool_.IncRef(b);
    }
    s.blocks.push_back(b);
    s.hashes.push_back(h);
  }
  s.num_tokens = static_cast<int32_t>(chain.size()) * block_size_;
  peak_blocks_used_ = std::max<int64_t>(peak_blocks_used_, pool_.num_used());
}

void KvManager::HashFilledBlock(Sequence& s, int32_t i) {
  if (whole_sequences_ || !s.root || static_cast<int32_t>(s.hashes.size()) != i) return;
  const size_t end = static_cast<size_t>(i + 1) * block_size_;
  if (s.token_ids.size() < end) return;  // ids unknown: the chain stops here
  const std::optional<BlockHash> parent =
      i == 0 ? std::nullopt : std::optional<BlockHash>(s.hashes[i - 1]);
  const BlockHash h =
      hasher_.Next(i == 0 ? *s.root : s.hashes[i - 1],
                   std::span<const int32_t>(s.token_ids).subspan(end - block_size_, block_size_));
  s.hashes.push_back(h);
  const int32_t b = s.blocks[i];
  // A block equal to one already cached (computed twice) stays private; the
  // chain goes on through the hash, which the index knows.
  if (!pool_.has_hash(b) && prefix_index_.Insert(parent, h, b)) pool_.set_hash(b, h);
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
  s.root.reset();
  s.hashes.clear();
  s.num_tokens = 0;
  s.live = true;
  return id;
}

void KvManager::FreeSequence(int32_t seq) {
  KVINFER_CHECK(is_live(seq));
  if (whole_sequences_) RecordSequence(seqs_[seq]);
  Truncate(seq, 0);
  seqs_[seq].live = false;
  seqs_[seq].token_ids.clear();
  seqs_[seq].hashes.clear();
  seqs_[seq].root.reset();
  free_seq_ids_.push_back(seq);
}

void KvManager::Clear() {
  pool_ = BlockPool(pool_.num_blocks());
  prefix_index_.Clear();
  for (CachedSequence& c : cached_seqs_) c.tokens.clear();
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
  if (!sink_ && !s.root) return;
  // Blocks whose last position lies in [before, n) just became full.
  for (int32_t i = before / block_size_; (i + 1) * block_size_ <= n; ++i) {
    HashFilledBlock(s, i);
    if (!sink_) continue;
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
  if (s.hashes.size() > static_cast<size_t>(n / block_size_)) {
    s.hashes.resize(static_cast<size_t>(n / block_size_));
  }
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
    c.hashes = p.hashes;
    c.root = p.root;
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
  // Blocks from begin's on change: the chain's hashes stop before them.
  if (s.hashes.size() > static_cast<size_t>(begin / block_size_)) {
    s.hashes.resize(static_cast<size_t>(begin / block_size_));
  }
  for (int32_t i = begin / block_size_; i * block_size_ < end; ++i) {
    const int32_t shared = s.blocks[i];
    if (pool_.ref_count(shared) == 1) {
      // The block's contents change: a cached hash would name the old ones.
      if (const std::optional<BlockHash> h = pool_.hash(shared)) Uncache(*h);
      continue;
    }
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

std::string KvManager::CheckInvariants() const {
  const int32_t nb = pool_.num_blocks();
  std::vector<int32_t> holders(static_cast<size_t>(nb), 0);
  for (size_t q = 0; q < seqs_.size(); ++q) {
    const Sequence& s = seqs_[q];
    if (!s.live) continue;
    if (s.num_tokens > static_cast<int32_t>(s.blocks.size()) * block_size_) {
      return fmt::format("seq {} holds {} tokens in {} blocks", q, s.num_tokens, s.blocks.size());
    }
    if (s.hashes.size() > s.blocks.size()) return fmt::format("seq {} has too many hashes", q);
    for (size_t i = 0; i < s.blocks.size(); ++i) {
      const int32_t b = s.blocks[i];
      if (b < 0 || b >= nb) return fmt::format("seq {} holds block {} out of range", q, b);
      ++holders[static_cast<size_t>(b)];
      if (i < s.hashes.size() && pool_.has_hash(b) && *pool_.hash(b) != s.hashes[i]) {
        return fmt::format("seq {} block {} (#{}) has a hash other than its chain's", q, b, i);
      }
    }
  }
  int32_t free = 0, cached_free = 0, hashed = 0;
  for (int32_t b = 0; b < nb; ++b) {
    if (pool_.ref_count(b) != holders[static_cast<size_t>(b)]) {
      return fmt::format("block {} has ref count {} but {} holders", b, pool_.ref_count(b),
                         holders[static_cast<size_t>(b)]);
    }
    free += pool_.is_free(b) ? 1 : 0;
    const std::optional<BlockHash> h = pool_.hash(b);
    if (!h) continue;
    ++hashed;
    cached_free += pool_.is_free(b) ? 1 : 0;
    if (whole_sequences_) {
      if (cached_seqs_[static_cast<size_t>(b)].tokens.empty()) {
        return fmt::format("block {} is marked cached but holds no cached sequence", b);
      }
      continue;
    }
    if (prefix_index_.Find(*h) != b) return fmt::format("block {}'s hash is not indexed to it", b);
    const std::optional<BlockHash> parent = prefix_index_.Parent(*h);
    if (parent && !prefix_index_.Contains(*parent)) {
      return fmt::format("block {}'s parent is not indexed", b);
    }
  }
  if (hashed != num_blocks_cached()) {
    return fmt::format("{} blocks have hashes but the index has {} nodes", hashed,
                       prefix_index_.size());
  }
  if (free != pool_.num_free() || cached_free != pool_.num_cached_free()) {
    return fmt::format("{} free ({} cached) blocks, the pool counts {} ({})", free, cached_free,
                       pool_.num_free(), pool_.num_cached_free());
  }
  const std::vector<int32_t> lists = pool_.FreeListForTest();
  if (static_cast<int32_t>(lists.size()) != free) return "the free lists lose or repeat blocks";
  const std::vector<int32_t> cached = pool_.CachedListForTest();
  if (static_cast<int32_t>(cached.size()) != cached_free) return "the cached list is miscounted";
  for (int32_t b : cached) {
    if (!pool_.is_free(b) || !pool_.has_hash(b)) {
      return fmt::format("block {} on the cached list is not free and hashed", b);
    }
  }
  return "";
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
