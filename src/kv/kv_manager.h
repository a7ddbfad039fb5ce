// KvManager: the bookkeeping of the KV cache, with no tensors.
//
// It owns the sequences (block tables and token counts), the BlockPool
// (block identity, reference counts, allocation and free order) and the
// copy-on-write decisions. The bytes live in KvStorage; the manager never
// touches them. Where a block's contents must be duplicated (a write to a
// block shared by forked sequences), PrepareWrite reports "copy block a to
// b" and the owner of the storage carries the copy out.
//
// Prefix cache (EnablePrefixCache): a sequence given a chain root
// (SetPrefixRoot) has each block hashed when it fills (kv/block_hash.h:
// hash = H(parent hash, the block's token ids), the root carrying the extra
// keys) and indexed in a radix tree (kv/prefix_index.h) under its parent.
// A released block that is indexed stays in the pool as cached and
// evictable (BlockPool's cached list, least recently released first; a
// sequence releases its tail before its head, so a chain is evicted from
// its end). A later sequence with the same chain takes those blocks instead
// of computing them (MatchPrefix / AttachPrefix): a free cached block is
// taken off the list, a block in use gains a holder. Allocation evicts a
// cached block only when no blank block is left; the evicted block's
// subtree leaves the index with it. Invariants (CheckInvariants): an indexed
// block has the pool hash of its node and vice versa; a free block is
// cached exactly when it is indexed; a block about to be overwritten
// (PrepareWrite into a private full block) leaves the index first.
//
// Every change that an external index would track is reported to an
// optional event sink: a block filled (all block_size positions written), a
// block freed (its reference count reached zero), and all blocks cleared.
// The sink is called synchronously from the operation that caused the
// event; the manager does no I/O itself.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kv/block_hash.h"
#include "kv/block_pool.h"
#include "kv/prefix_index.h"

namespace kvinfer {

// One observable change of the manager's blocks.
struct KvEvent {
  enum class Kind {
    kBlockFilled,  // `block` at logical `index` of `seq` holds block_size tokens
    kBlockFreed,   // `block`'s reference count reached zero
    kAllCleared,   // every sequence and block released at once (Clear)
  };
  Kind kind = Kind::kBlockFilled;
  int32_t block = -1;
  int32_t seq = -1;    // kBlockFilled only
  int32_t index = -1;  // kBlockFilled: the block's position in seq's table
  // kBlockFilled: the token ids of the block's positions when the manager
  // knows them (SetTokenIds), else empty. Valid only during the call.
  std::span<const int32_t> tokens;
};

using KvEventSink = std::function<void(const KvEvent&)>;

// "Copy block src's K/V to block dst", for the storage: the whole block
// (copy-on-write) or its first num_tokens positions (a cached prefix).
struct KvBlockCopy {
  int32_t src = -1;
  int32_t dst = -1;
  int32_t num_tokens = -1;  // -1: the whole block
  bool operator==(const KvBlockCopy&) const = default;
};

struct PrefixCacheConfig {
  BlockHashAlgorithm algorithm = BlockHashAlgorithm::kXxh3_128;
  // Whole sequences instead of blocks, for one block per sequence
  // (contiguous): a freed sequence with a chain root leaves its block cached
  // with its token ids, and a new sequence copies the longest common prefix
  // out of such a block (FindCachedSequencePrefix) instead of sharing it.
  bool whole_sequences = false;
  // What makes K/V differ for equal tokens (model identity, KV element
  // type, ...); the block size is added by the manager, a request's cache
  // salt by PrefixRoot.
  std::vector<std::string> extra_keys;
};

// Prefix-cache counters since the manager was created.
struct PrefixCacheCounters {
  int64_t queries = 0;         // tokens looked up (CountPrefixQuery)
  int64_t hits = 0;            // of those, found cached
  int64_t blocks_evicted = 0;  // cached blocks whose contents were dropped for reuse
};

class KvManager {
 public:
  KvManager(int32_t block_size_tokens, int32_t num_blocks);
  KvManager(const KvManager&) = delete;
  KvManager& operator=(const KvManager&) = delete;

  // Receives every KvEvent from now on (an empty function: none).
  void SetEventSink(KvEventSink sink) { sink_ = std::move(sink); }
  bool has_event_sink() const { return static_cast<bool>(sink_); }
  // Tests only: called with the sequence before each block the manager
  // allocates for it (growth or copy-on-write). The hook may throw (e.g.
  // std::bad_alloc) to simulate a failed allocation; the manager's state is
  // then as if the operation had stopped before that block.
  void SetAllocateHookForTest(std::function<void(int32_t seq)> hook) {
    allocate_hook_ = std::move(hook);
  }

  // A new, empty sequence; returns its id (ids of freed sequences are reused).
  int32_t CreateSequence();
  // Releases the sequence's blocks (last first) and its id.
  void FreeSequence(int32_t seq);
  // Drops every sequence and block at once: the pool returns to its
  // initial state (all blocks free in id order, no hashes). Reports one
  // kAllCleared event and no per-block events.
  void Clear();
  // Makes positions [0, n_tokens) addressable, allocating blocks as needed.
  // Returns false, changing nothing, if the pool cannot supply them.
  [[nodiscard]] bool Reserve(int32_t seq, int32_t n_tokens);
  // Blocks needed to grow `seq` to n_tokens (0 if already reserved).
  int32_t BlocksNeeded(int32_t seq, int32_t n_tokens) const;
  // Records that K/V of positions [0, n) are written. n <= reserved
  // capacity. Blocks that become full report kBlockFilled.
  void SetNumTokens(int32_t seq, int32_t n);
  // Records the token ids that positions [begin, begin + ids.size()) of seq
  // hold (or are about to hold), so that kBlockFilled can carry them. Ids
  // past `begin` recorded earlier are dropped.
  void SetTokenIds(int32_t seq, int32_t begin, std::span<const int32_t> ids);
  // Room for n token ids of seq, so that recording them as they are
  // computed (SetTokenIds) does not allocate in a decode loop.
  void ReserveTokenIds(int32_t seq, size_t n) { seqs_[seq].token_ids.reserve(n); }
  // Keeps the first n tokens and releases the blocks past them (last first).
  void Truncate(int32_t seq, int32_t n);

  // A new sequence sharing every block of `parent` (each block's reference
  // count goes up by one); no K/V is copied until one of them writes.
  int32_t Fork(int32_t parent);
  // Makes the blocks holding positions [begin, end) of `seq` private to it:
  // a block shared with another sequence is replaced by a fresh one, and
  // "copy old -> new" is appended to `copies` for the storage to carry out
  // (before anything writes to the new block). Positions must already be
  // reserved. Returns false if the pool has no block for a copy; the copies
  // already appended stand and must still be carried out.
  [[nodiscard]] bool PrepareWrite(int32_t seq, int32_t begin, int32_t end,
                                  std::vector<KvBlockCopy>& copies);
  // Free blocks PrepareWrite would need for [begin, end).
  int32_t CopiesNeeded(int32_t seq, int32_t begin, int32_t end) const;

  // --- Prefix cache (see the file comment). Enable before creating
  // sequences; Clear keeps it enabled.
  void EnablePrefixCache(const PrefixCacheConfig& config);
  bool prefix_cache_enabled() const { return prefix_enabled_; }
  const BlockHasher& hasher() const { return hasher_; }
  // The chain root for requests with this cache salt ("" = none).
  BlockHash PrefixRoot(std::string_view cache_salt) const;
  // Hashes seq's blocks as they fill, starting from `root`. Only sequences
  // with a root are cached; set it while the sequence is empty.
  void SetPrefixRoot(int32_t seq, const BlockHash& root);
  // How many leading blocks of `chain` are cached.
  int32_t MatchPrefix(std::span<const BlockHash> chain) const {
    return prefix_index_.MatchLength(chain);
  }
  // Free blocks that AttachPrefix(chain) would take off the free list (hits
  // on cached blocks no sequence holds).
  int32_t FreeBlocksTakenByPrefix(std::span<const BlockHash> chain) const;
  // Gives the empty sequence `seq` (with a root) the cached blocks of
  // `chain` (every one cached: MatchPrefix(chain) == chain.size()) as its
  // first blocks, their positions computed. The caller records their token
  // ids (SetTokenIds).
  void AttachPrefix(int32_t seq, std::span<const BlockHash> chain);
  void CountPrefixQuery(int64_t tokens, int64_t hit_tokens) {
    prefix_counters_.queries += tokens;
    prefix_counters_.hits += hit_tokens;
  }
  const PrefixCacheCounters& prefix_counters() const { return prefix_counters_; }
  const PrefixIndex& prefix_index() const { return prefix_index_; }
  // The hashes of seq's full blocks hashed so far.
  std::span<const BlockHash> block_hashes(int32_t seq) const { return seqs_[seq].hashes; }
  // Blocks in the prefix index (held by a sequence or cached free); in
  // whole-sequence mode the blocks holding a cached sequence.
  int32_t num_blocks_cached() const;
  // Checks every invariant of blocks, tables and the index; returns "" or
  // what is wrong (tests).
  std::string CheckInvariants() const;

  // --- Whole-sequence mode (PrefixCacheConfig::whole_sequences).
  bool whole_sequence_cache() const { return whole_sequences_; }
  struct CachedPrefix {
    int32_t block = -1;
    int32_t num_tokens = 0;  // 0: nothing cached
  };
  // The cached block (free, or pinned) whose tokens share the longest
  // prefix with `tokens`, at most max_tokens of it, among those cached under
  // `root`.
  CachedPrefix FindCachedSequencePrefix(const BlockHash& root, std::span<const int32_t> tokens,
                                        int32_t max_tokens) const;
  // Gives the empty sequence `seq` (with a root) the free cached block
  // itself, its first num_tokens positions computed; the block stops being
  // cached (its later positions will be overwritten). For a pool with no
  // room for a copy.
  void AdoptCachedSequence(int32_t seq, int32_t block, int32_t num_tokens);
  // Holds a block (a free one is taken off its list, contents and hash
  // intact) while its K/V are copied; Unpin releases it.
  void Pin(int32_t block);
  void Unpin(int32_t block) { ReleaseBlock(block); }

  int32_t num_tokens(int32_t seq) const { return seqs_[seq].num_tokens; }
  int32_t capacity_tokens(int32_t seq) const {
    return static_cast<int32_t>(seqs_[seq].blocks.size()) * block_size_;
  }
  std::span<const int32_t> block_table(int32_t seq) const { return seqs_[seq].blocks; }
  // The recorded token ids of seq (SetTokenIds), at most num positions known.
  std::span<const int32_t> token_ids(int32_t seq) const { return seqs_[seq].token_ids; }
  bool is_live(int32_t seq) const {
    return seq >= 0 && seq < static_cast<int32_t>(seqs_.size()) && seqs_[seq].live;
  }

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  int32_t num_free_blocks() const { return pool_.num_free(); }
  const BlockPool& pool() const { return pool_; }
  BlockPool& pool() { return pool_; }

  int32_t num_sequences() const;
  int64_t tokens_held() const;
  int64_t logical_blocks() const;  // sum of block table lengths
  int32_t num_blocks_shared() const;
  int64_t peak_blocks_used() const { return peak_blocks_used_; }
  int64_t num_cow_copies() const { return num_cow_copies_; }

 private:
  struct Sequence {
    std::vector<int32_t> blocks;     // logical block i -> physical block id
    std::vector<int32_t> token_ids;  // ids of positions [0, size), when known
    std::optional<BlockHash> root;   // prefix-cache chain root (none: not cached)
    std::vector<BlockHash> hashes;   // hashes of blocks [0, size), all full
    int32_t num_tokens = 0;
    bool live = false;
  };

  // A fresh block for seq: the test hook, then the pool (nullopt if empty).
  // A cached block taken for it leaves the index (with its subtree).
  std::optional<int32_t> AllocateFor(int32_t seq);
  void ReleaseBlock(int32_t block);
  // Hashes seq's block i (just filled) and indexes it when it can.
  void HashFilledBlock(Sequence& s, int32_t i);
  // Removes `hash`'s subtree from the index and the blocks' hashes.
  void Uncache(const BlockHash& hash);
  // Whole-sequence mode: keeps s's block and tokens as cached on free.
  void RecordSequence(const Sequence& s);
  void Emit(const KvEvent& e) const {
    if (sink_) sink_(e);
  }

  int32_t block_size_;
  BlockPool pool_;
  std::vector<Sequence> seqs_;
  std::vector<int32_t> free_seq_ids_;
  int64_t peak_blocks_used_ = 0;
  int64_t num_cow_copies_ = 0;
  KvEventSink sink_;
  std::function<void(int32_t)> allocate_hook_;
  bool prefix_enabled_ = false;
  BlockHasher hasher_;
  std::vector<std::string> prefix_extra_keys_;  // config's, then the block size
  PrefixIndex prefix_index_;
  PrefixCacheCounters prefix_counters_;
  std::vector<int32_t> removed_;  // Uncache scratch
  bool whole_sequences_ = false;
  // Whole-sequence mode, per block: the chain root and token ids of the
  // sequence it holds while cached (empty tokens: not cached).
  struct CachedSequence {
    BlockHash root;
    std::vector<int32_t> tokens;
  };
  std::vector<CachedSequence> cached_seqs_;  // [num_blocks]
};

}  // namespace kvinfer
