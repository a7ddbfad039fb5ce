// The prefix cache's kv-layer parts without a model: block hashes (chained,
// stable, sensitive to every extra key), the radix index (scripted and
// randomized against a brute-force longest-prefix search), and the
// KvManager as a block manager with a prefix cache, in vLLM's style: exact
// block ids, reference counts, evictable order and hashes after scripted
// allocate / fill / free / lookup steps, and an invariant walk after random
// workloads drain.
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kv/block_hash.h"
#include "kv/kv_manager.h"
#include "kv/kv_storage.h"
#include "kv/prefix_index.h"

namespace kvinfer {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<int32_t> Iota(int32_t n, int32_t first = 1) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = first + i;
  return v;
}

// ------------------------------------------------------------ hashes

// The XXH3-128 chain of BlockHash.ChainOfAFixedTokenListIsStable.
constexpr char kStableChainHex[] = "f7746b2ac04c395d88046137761c6a56";

TEST(BlockHash, KnownDigestsOfTheTwoAlgorithms) {
  // Fixed vectors: the hashes of a token list are the same in every process
  // and on every host (no seed, canonical byte order).
  const std::vector<uint8_t> abc = {'a', 'b', 'c'};
  EXPECT_EQ(BlockHasher(BlockHashAlgorithm::kSha256).Digest(abc).Hex(BlockHashAlgorithm::kSha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const BlockHash x = BlockHasher(BlockHashAlgorithm::kXxh3_128).Digest(abc);
  EXPECT_EQ(x.Hex(BlockHashAlgorithm::kXxh3_128), "06b05ab6733a618578af5f94892f3950");
  EXPECT_TRUE(std::all_of(x.bytes.begin() + 16, x.bytes.end(), [](uint8_t b) { return b == 0; }));
}

TEST(BlockHash, ChainOfAFixedTokenListIsStable) {
  const BlockHasher h(BlockHashAlgorithm::kXxh3_128);
  const BlockHash root = h.Root(std::vector<std::string>{"model=m", "kv_dtype=f32"});
  std::vector<BlockHash> chain;
  h.Chain(root, Iota(10), 4, chain);
  ASSERT_EQ(chain.size(), 2u);  // the partial third block is not hashed
  EXPECT_EQ(chain[0], h.Next(root, Iota(4)));
  EXPECT_EQ(chain[1], h.Next(chain[0], Iota(4, 5)));
  // Recorded once from this implementation: another process, build or run
  // must produce the same digest.
  EXPECT_EQ(chain[1].Hex(BlockHashAlgorithm::kXxh3_128), kStableChainHex);
}

TEST(BlockHash, ChainChangesWithAnyEarlierTokenAndEveryExtraKey) {
  for (BlockHashAlgorithm a : {BlockHashAlgorithm::kXxh3_128, BlockHashAlgorithm::kSha256}) {
    const BlockHasher h(a);
    auto last = [&](const std::vector<std::string>& keys, const std::vector<int32_t>& tokens,
                    int32_t bs) {
      std::vector<BlockHash> chain;
      h.Chain(h.Root(keys), tokens, bs, chain);
      return chain.back();
    };
    const std::vector<std::string> keys = {"model=a", "kv_dtype=f32", "block_size=4",
                                           "cache_salt="};
    const std::vector<int32_t> tokens = Iota(12);
    const BlockHash base = last(keys, tokens, 4);
    EXPECT_EQ(base, last(keys, tokens, 4));
    // Any earlier token.
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::vector<int32_t> t = tokens;
      t[i] += 1;
      EXPECT_NE(last(keys, t, 4), base) << "token " << i;
    }
    // Each extra key: model, KV type, block size, salt.
    for (size_t k = 0; k < keys.size(); ++k) {
      std::vector<std::string> changed = keys;
      changed[k] += "x";
      EXPECT_NE(last(changed, tokens, 4), base) << keys[k];
    }
    // Key boundaries are part of the hash.
    EXPECT_NE(h.Root(std::vector<std::string>{"ab", "c"}),
              h.Root(std::vector<std::string>{"a", "bc"}));
  }
  // And the algorithm.
  const std::vector<std::string> keys = {"k"};
  EXPECT_NE(BlockHasher(BlockHashAlgorithm::kXxh3_128).Root(keys),
            BlockHasher(BlockHashAlgorithm::kSha256).Root(keys));
}

TEST(BlockHash, ManagerRootsDifferByBlockSizeAndSalt) {
  KvManager a(4, 8), b(8, 8);
  a.EnablePrefixCache({.extra_keys = {"m"}});
  b.EnablePrefixCache({.extra_keys = {"m"}});
  EXPECT_NE(a.PrefixRoot(""), b.PrefixRoot(""));
  EXPECT_NE(a.PrefixRoot(""), a.PrefixRoot("tenant-1"));
  EXPECT_NE(a.PrefixRoot("tenant-1"), a.PrefixRoot("tenant-2"));
  EXPECT_EQ(a.PrefixRoot("tenant-1"), a.PrefixRoot("tenant-1"));
}

// ------------------------------------------------------------ radix index

BlockHash H(int i) {
  BlockHash h;
  h.bytes[0] = static_cast<uint8_t>(i);
  h.bytes[1] = static_cast<uint8_t>(i >> 8);
  h.bytes[31] = 1;
  return h;
}

TEST(PrefixIndex, InsertMatchEraseSubtreeAndLeaves) {
  PrefixIndex idx;
  EXPECT_TRUE(idx.Insert(std::nullopt, H(1), 10));
  EXPECT_TRUE(idx.Insert(H(1), H(2), 20));
  EXPECT_TRUE(idx.Insert(H(2), H(3), 30));
  EXPECT_TRUE(idx.Insert(H(1), H(4), 40));  // a branch after the first block
  EXPECT_FALSE(idx.Insert(H(1), H(2), 99)) << "present";
  EXPECT_FALSE(idx.Insert(H(7), H(8), 80)) << "parent missing";
  EXPECT_EQ(idx.size(), 4);
  EXPECT_EQ(idx.Find(H(2)), 20);
  EXPECT_EQ(idx.MatchLength(std::vector<BlockHash>{H(1), H(2), H(3), H(5)}), 3);
  EXPECT_EQ(idx.MatchLength(std::vector<BlockHash>{H(1), H(4), H(3)}), 2) << "3 is not under 4";
  EXPECT_EQ(idx.MatchLength(std::vector<BlockHash>{H(2)}), 0) << "2 is not a first block";
  std::vector<int32_t> leaves = idx.LeafValues();
  std::sort(leaves.begin(), leaves.end());
  EXPECT_THAT(leaves, ElementsAre(30, 40));
  std::vector<int32_t> removed;
  EXPECT_EQ(idx.Erase(H(2), &removed), 2);
  EXPECT_THAT(removed, ElementsAre(20, 30));
  EXPECT_TRUE(idx.IsLeaf(H(4)));
  EXPECT_FALSE(idx.IsLeaf(H(1)));
  EXPECT_EQ(idx.Erase(H(2)), 0);
  EXPECT_EQ(idx.Erase(H(1), &removed), 2);
  EXPECT_EQ(idx.size(), 0);
}

// Random trees of chains against a brute force: the set of inserted chains
// (as full hash paths), longest common prefix computed by scanning them all.
TEST(PrefixIndex, RandomizedAgainstBruteForceLongestPrefix) {
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    PrefixIndex idx;
    std::map<BlockHash, std::vector<BlockHash>> paths;  // node -> its path from the top
    std::vector<BlockHash> nodes;
    int next = 1;
    for (int op = 0; op < 400; ++op) {
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 6 || nodes.empty()) {
        // Insert under a random node or at the top.
        const bool top = nodes.empty() || rng() % 4 == 0;
        const BlockHash h = H(next++);
        std::vector<BlockHash> path;
        std::optional<BlockHash> parent;
        if (!top) {
          parent = nodes[rng() % nodes.size()];
          path = paths[*parent];
        }
        ASSERT_TRUE(idx.Insert(parent, h, next));
        path.push_back(h);
        paths[h] = path;
        nodes.push_back(h);
      } else if (kind < 8) {
        // Erase a random node: its subtree goes with it.
        const BlockHash victim = nodes[rng() % nodes.size()];
        std::vector<int32_t> removed;
        const int32_t n = idx.Erase(victim, &removed);
        int32_t expect = 0;
        for (auto it = paths.begin(); it != paths.end();) {
          const std::vector<BlockHash>& p = it->second;
          if (std::find(p.begin(), p.end(), victim) != p.end()) {
            ++expect;
            nodes.erase(std::find(nodes.begin(), nodes.end(), it->first));
            it = paths.erase(it);
          } else {
            ++it;
          }
        }
        ASSERT_EQ(n, expect);
        ASSERT_EQ(static_cast<int32_t>(removed.size()), expect);
      } else {
        // Query: a random node's path, cut, with random garbage appended.
        std::vector<BlockHash> q;
        if (!nodes.empty()) q = paths[nodes[rng() % nodes.size()]];
        if (!q.empty() && rng() % 2) q.resize(1 + rng() % q.size());
        for (int g = static_cast<int>(rng() % 3); g > 0; --g) q.push_back(H(100000 + g));
        if (rng() % 3 == 0 && !q.empty()) q[rng() % q.size()] = H(200000);
        size_t best = 0;
        for (const auto& [node, p] : paths) {
          size_t k = 0;
          while (k < p.size() && k < q.size() && p[k] == q[k]) ++k;
          if (k == p.size()) best = std::max(best, k);  // the whole path of a node matches
        }
        ASSERT_EQ(idx.MatchLength(q), static_cast<int32_t>(best));
      }
      ASSERT_EQ(idx.size(), static_cast<int32_t>(paths.size()));
    }
    // Leaves: nodes no other node's path passes through.
    std::set<int32_t> expect_leaves;
    for (const auto& [node, p] : paths) {
      bool leaf = true;
      for (const auto& [other, q] : paths) {
        if (q.size() > p.size() && q[p.size() - 1] == node) leaf = false;
      }
      if (leaf) expect_leaves.insert(*idx.Find(node));
    }
    const std::vector<int32_t> leaves = idx.LeafValues();
    EXPECT_EQ(std::set<int32_t>(leaves.begin(), leaves.end()), expect_leaves);
  }
}

// ------------------------------------------------------------ block manager

std::vector<int32_t> Table(const KvManager& m, int32_t seq) {
  return {m.block_table(seq).begin(), m.block_table(seq).end()};
}

std::vector<int32_t> RefCounts(const KvManager& m) {
  std::vector<int32_t> out;
  for (int32_t b = 0; b < m.num_blocks(); ++b) out.push_back(m.pool().ref_count(b));
  return out;
}

// A sequence with a root and `tokens` computed (reserved, ids recorded,
// positions written), after attaching the cached prefix it can hit (at most
// (n - 1) / block_size blocks). Returns the sequence; *hit the blocks hit.
int32_t RunSeq(KvManager& m, const std::vector<int32_t>& tokens, int32_t* hit = nullptr,
               const std::string& salt = "") {
  const int32_t seq = m.CreateSequence();
  m.SetPrefixRoot(seq, m.PrefixRoot(salt));
  std::vector<BlockHash> chain;
  m.hasher().Chain(m.PrefixRoot(salt), tokens, m.block_size(), chain);
  chain.resize(std::min(chain.size(), (tokens.size() - 1) / m.block_size()));
  const int32_t n = m.MatchPrefix(chain);
  m.AttachPrefix(seq, std::span<const BlockHash>(chain).first(static_cast<size_t>(n)));
  m.SetTokenIds(seq, 0, tokens);
  EXPECT_TRUE(m.Reserve(seq, static_cast<int32_t>(tokens.size())));
  m.SetNumTokens(seq, static_cast<int32_t>(tokens.size()));
  if (hit != nullptr) *hit = n;
  return seq;
}

TEST(PrefixCacheManager, ScriptedAllocateFillFreeLookupEvict) {
  KvManager m(/*block_size_tokens=*/4, /*num_blocks=*/8);
  m.EnablePrefixCache({.extra_keys = {"model"}});
  const BlockHash root = m.PrefixRoot("");
  // a: 10 tokens = blocks 0, 1 (full, hashed) and 2 (partial).
  const std::vector<int32_t> ta = Iota(10);
  int32_t hit = -1;
  const int32_t a = RunSeq(m, ta, &hit);
  EXPECT_EQ(hit, 0);
  EXPECT_THAT(Table(m, a), ElementsAre(0, 1, 2));
  const BlockHash h0 = m.hasher().Next(root, Iota(4));
  const BlockHash h1 = m.hasher().Next(h0, Iota(4, 5));
  EXPECT_EQ(m.pool().hash(0), h0);
  EXPECT_EQ(m.pool().hash(1), h1);
  EXPECT_EQ(m.pool().hash(2), std::nullopt) << "a partial block is never cached";
  EXPECT_EQ(m.num_blocks_cached(), 2);

  // b shares a's first 8 tokens while a runs: it holds blocks 0 and 1 too.
  std::vector<int32_t> tb = Iota(8);
  tb.push_back(77);
  const int32_t b = RunSeq(m, tb, &hit);
  EXPECT_EQ(hit, 2);
  EXPECT_THAT(Table(m, b), ElementsAre(0, 1, 3));
  EXPECT_THAT(RefCounts(m), ElementsAre(2, 2, 1, 1, 0, 0, 0, 0));

  // a finishes: its blocks are released tail first; 0 and 1 are still held
  // by b, 2 (unhashed) goes back to the blank list.
  m.FreeSequence(a);
  EXPECT_THAT(RefCounts(m), ElementsAre(1, 1, 0, 1, 0, 0, 0, 0));
  EXPECT_THAT(m.pool().CachedListForTest(), IsEmpty());
  // b finishes: 3 is blank; 1 then 0 become cached (tail evicted first).
  m.FreeSequence(b);
  EXPECT_THAT(m.pool().CachedListForTest(), ElementsAre(1, 0));
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(4, 5, 6, 7, 2, 3, 1, 0));
  EXPECT_EQ(m.pool().num_free(), 8);
  EXPECT_EQ(m.pool().num_cached_free(), 2);

  // c: the same 10 tokens: hits both cached blocks, computes only the rest.
  const int32_t c = RunSeq(m, ta, &hit);
  EXPECT_EQ(hit, 2);
  EXPECT_THAT(Table(m, c), ElementsAre(0, 1, 4));
  EXPECT_EQ(m.num_tokens(c), 10);
  EXPECT_THAT(m.pool().CachedListForTest(), IsEmpty());
  m.FreeSequence(c);
  EXPECT_THAT(m.pool().CachedListForTest(), ElementsAre(1, 0));

  // An exactly block-aligned prompt of 8 tokens hits only 1 block: its last
  // token is computed (so it has logits), in a block of its own.
  const int32_t d = RunSeq(m, Iota(8), &hit);
  EXPECT_EQ(hit, 1);
  EXPECT_THAT(Table(m, d), ElementsAre(0, 5));
  EXPECT_EQ(m.pool().hash(5), std::nullopt) << "a block equal to a cached one stays private";
  m.FreeSequence(d);
  EXPECT_THAT(m.pool().CachedListForTest(), ElementsAre(1, 0));

  // Pressure: e needs 8 blocks of new tokens. The 6 blank blocks go first,
  // then the least recently used cached block (1, the tail of the chain),
  // then 0.
  const int32_t e = RunSeq(m, Iota(32, 100), &hit);
  EXPECT_EQ(hit, 0);
  EXPECT_THAT(Table(m, e), ElementsAre(6, 7, 2, 3, 4, 5, 1, 0));
  EXPECT_EQ(m.prefix_counters().blocks_evicted, 2);
  EXPECT_FALSE(m.prefix_index().Contains(h0));
  EXPECT_FALSE(m.prefix_index().Contains(h1));
  EXPECT_EQ(m.num_blocks_cached(), 8) << "e's 8 full blocks";
  m.FreeSequence(e);
  EXPECT_THAT(m.pool().CachedListForTest(), ElementsAre(0, 1, 5, 4, 3, 2, 7, 6));
  EXPECT_EQ(m.CheckInvariants(), "");
}

TEST(PrefixCacheManager, DifferentSaltsShareNoBlock) {
  KvManager m(4, 8);
  m.EnablePrefixCache({.extra_keys = {"model"}});
  const int32_t a = RunSeq(m, Iota(9), nullptr, "alice");
  m.FreeSequence(a);
  int32_t hit = -1;
  const int32_t b = RunSeq(m, Iota(9), &hit, "bob");
  EXPECT_EQ(hit, 0);
  m.FreeSequence(b);
  const int32_t c = RunSeq(m, Iota(9), &hit, "alice");
  EXPECT_EQ(hit, 2);
  m.FreeSequence(c);
  EXPECT_EQ(m.CheckInvariants(), "");
}

TEST(PrefixCacheManager, WritingIntoAPrivateCachedBlockUncachesIt) {
  KvManager m(4, 8);
  m.EnablePrefixCache({.extra_keys = {"model"}});
  const int32_t a = RunSeq(m, Iota(10));
  EXPECT_EQ(m.num_blocks_cached(), 2);
  // Truncating into block 1 and rewriting it: block 1 (and anything after
  // it in the index) leaves the cache; block 0 stays.
  m.Truncate(a, 6);
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(m.PrepareWrite(a, 6, 7, copies));
  EXPECT_THAT(copies, IsEmpty());
  EXPECT_EQ(m.num_blocks_cached(), 1);
  EXPECT_EQ(m.pool().hash(1), std::nullopt);
  EXPECT_EQ(m.CheckInvariants(), "");
  // A shared cached block is copied instead, and stays cached.
  const int32_t b = m.Fork(a);
  ASSERT_TRUE(m.PrepareWrite(b, 3, 4, copies));
  EXPECT_THAT(copies, ElementsAre(KvBlockCopy{0, 3}));
  EXPECT_TRUE(m.pool().hash(0).has_value());
  EXPECT_EQ(m.CheckInvariants(), "");
  m.FreeSequence(a);
  m.FreeSequence(b);
  EXPECT_EQ(m.CheckInvariants(), "");
}

// Random workloads: prompts drawn from a few shared prefixes, run, grown,
// forked, truncated and freed in random order under a small pool, each
// lookup checked against a brute-force search of the cached blocks' token
// prefixes; after the drain every block is free, blank or cached.
TEST(PrefixCacheManager, RandomWorkloadsKeepInvariantsAndMatchBruteForce) {
  for (int bs : {1, 3, 4}) {
    std::mt19937 rng(static_cast<unsigned>(bs));
    KvManager m(bs, 24);
    m.EnablePrefixCache({.extra_keys = {"model"}});
    std::vector<std::vector<int32_t>> prefixes;
    for (int p = 0; p < 4; ++p) prefixes.push_back(Iota(static_cast<int32_t>(rng() % 12), 10 * p));
    std::vector<int32_t> live;
    // Brute force: scan every block's hash for each block of the chain in
    // turn (no tree).
    auto brute = [&](const std::vector<int32_t>& tokens) {
      std::vector<BlockHash> chain;
      m.hasher().Chain(m.PrefixRoot(""), tokens, bs, chain);
      int32_t n = 0;
      // A prefix of k blocks is cached when a block carries the hash of
      // block k-1 and every shorter prefix is cached too.
      for (size_t k = 0; k < chain.size(); ++k) {
        bool found = false;
        for (int32_t b = 0; b < m.num_blocks() && !found; ++b) found = m.pool().hash(b) == chain[k];
        if (!found) break;
        ++n;
      }
      return n;
    };
    for (int op = 0; op < 3000; ++op) {
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 4 && live.size() < 5) {
        std::vector<int32_t> t = prefixes[rng() % prefixes.size()];
        for (int k = static_cast<int>(rng() % 8); k >= 0; --k)
          t.push_back(static_cast<int32_t>(rng() % 3));
        std::vector<BlockHash> chain;
        m.hasher().Chain(m.PrefixRoot(""), t, bs, chain);
        chain.resize(std::min(chain.size(), (t.size() - 1) / static_cast<size_t>(bs)));
        const int32_t n = m.MatchPrefix(chain);
        ASSERT_EQ(n, std::min<int32_t>(brute(t), static_cast<int32_t>(chain.size())));
        const int32_t seq = m.CreateSequence();
        m.SetPrefixRoot(seq, m.PrefixRoot(""));
        const std::span<const BlockHash> hits = std::span<const BlockHash>(chain).first(n);
        const int32_t need = m.BlocksNeeded(seq, static_cast<int32_t>(t.size())) - n +
                             m.FreeBlocksTakenByPrefix(hits);
        if (need > m.num_free_blocks()) {
          m.FreeSequence(seq);
          continue;
        }
        m.AttachPrefix(seq, hits);
        m.SetTokenIds(seq, 0, t);
        ASSERT_TRUE(m.Reserve(seq, static_cast<int32_t>(t.size())));
        std::vector<KvBlockCopy> copies;
        ASSERT_TRUE(m.PrepareWrite(seq, n * bs, static_cast<int32_t>(t.size()), copies));
        m.SetNumTokens(seq, static_cast<int32_t>(t.size()));
        live.push_back(seq);
      } else if (kind < 6 && !live.empty()) {
        // Grow by a generated token.
        const int32_t seq = live[rng() % live.size()];
        const int32_t n = m.num_tokens(seq);
        if (!m.Reserve(seq, n + 1)) continue;
        std::vector<KvBlockCopy> copies;
        if (!m.PrepareWrite(seq, n, n + 1, copies)) continue;
        const int32_t tok = static_cast<int32_t>(rng() % 3);
        m.SetTokenIds(seq, n, std::span<const int32_t>(&tok, 1));
        m.SetNumTokens(seq, n + 1);
      } else if (kind == 6 && !live.empty() && live.size() < 5) {
        live.push_back(m.Fork(live[rng() % live.size()]));
      } else if (kind == 7 && !live.empty()) {
        const int32_t seq = live[rng() % live.size()];
        m.Truncate(seq, static_cast<int32_t>(rng() % (m.num_tokens(seq) + 1)));
      } else if (!live.empty()) {
        const size_t i = rng() % live.size();
        m.FreeSequence(live[i]);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      }
      ASSERT_EQ(m.CheckInvariants(), "") << "op " << op;
    }
    for (int32_t seq : live) m.FreeSequence(seq);
    EXPECT_EQ(m.CheckInvariants(), "");
    EXPECT_EQ(m.pool().num_free(), m.num_blocks()) << "no block leaks";
    EXPECT_EQ(m.pool().num_cached_free(), m.num_blocks_cached());
  }
}

// ------------------------------------------------------------ whole sequences

TEST(PrefixCacheManager, WholeSequencesAreCachedPinnedAndEvicted) {
  KvManager m(/*block_size_tokens=*/32, /*num_blocks=*/3);
  m.EnablePrefixCache({.whole_sequences = true, .extra_keys = {"model"}});
  const BlockHash root = m.PrefixRoot("");
  auto run = [&](const std::vector<int32_t>& t) {
    const int32_t seq = m.CreateSequence();
    m.SetPrefixRoot(seq, root);
    EXPECT_TRUE(m.Reserve(seq, 32));
    m.SetTokenIds(seq, 0, t);
    m.SetNumTokens(seq, static_cast<int32_t>(t.size()));
    return seq;
  };
  const int32_t a = run(Iota(20));
  EXPECT_EQ(m.num_blocks_cached(), 0) << "cached when freed";
  m.FreeSequence(a);
  EXPECT_EQ(m.num_blocks_cached(), 1);
  EXPECT_THAT(m.pool().CachedListForTest(), ElementsAre(0));
  std::vector<int32_t> t = Iota(12);
  t.push_back(99);
  KvManager::CachedPrefix hit = m.FindCachedSequencePrefix(root, t, 100);
  EXPECT_EQ(hit.block, 0);
  EXPECT_EQ(hit.num_tokens, 12);
  EXPECT_EQ(m.FindCachedSequencePrefix(root, t, 5).num_tokens, 5) << "capped";
  EXPECT_EQ(m.FindCachedSequencePrefix(m.PrefixRoot("salt"), t, 100).num_tokens, 0);
  // Pinned while copied: the next allocations cannot take it.
  m.Pin(0);
  const int32_t b = run(t);
  const int32_t c = run(Iota(5, 200));
  EXPECT_THAT(Table(m, b), ElementsAre(1));
  EXPECT_THAT(Table(m, c), ElementsAre(2));
  m.Unpin(0);
  EXPECT_THAT(m.pool().CachedListForTest(), ElementsAre(0));
  m.FreeSequence(b);
  EXPECT_THAT(m.pool().CachedListForTest(), ElementsAre(0, 1));
  EXPECT_EQ(m.FindCachedSequencePrefix(root, t, 100).block, 1) << "13 tokens beat 12";
  // A new sequence evicts the least recently used cached block.
  const int32_t d = run(Iota(3, 300));
  EXPECT_THAT(Table(m, d), ElementsAre(0));
  EXPECT_EQ(m.prefix_counters().blocks_evicted, 1);
  EXPECT_EQ(m.num_blocks_cached(), 1);
  EXPECT_EQ(m.CheckInvariants(), "");
  m.FreeSequence(c);
  m.FreeSequence(d);
  EXPECT_EQ(m.num_blocks_cached(), 3);
  EXPECT_EQ(m.CheckInvariants(), "");
}

TEST(PrefixCacheManager, AdoptingACachedRegionTakesItOutOfTheCache) {
  KvManager m(/*block_size_tokens=*/32, /*num_blocks=*/1);
  m.EnablePrefixCache({.whole_sequences = true, .extra_keys = {"model"}});
  const int32_t a = m.CreateSequence();
  m.SetPrefixRoot(a, m.PrefixRoot(""));
  ASSERT_TRUE(m.Reserve(a, 32));
  m.SetTokenIds(a, 0, Iota(20));
  m.SetNumTokens(a, 20);
  m.FreeSequence(a);
  ASSERT_EQ(m.num_blocks_cached(), 1);
  const int32_t b = m.CreateSequence();
  m.SetPrefixRoot(b, m.PrefixRoot(""));
  m.AdoptCachedSequence(b, 0, 12);
  EXPECT_THAT(Table(m, b), ElementsAre(0));
  EXPECT_EQ(m.num_tokens(b), 12);
  EXPECT_EQ(m.num_blocks_cached(), 0) << "its tail is about to be overwritten";
  EXPECT_EQ(m.pool().num_free(), 0);
  EXPECT_EQ(m.CheckInvariants(), "");
  m.SetTokenIds(b, 0, Iota(15));
  m.SetNumTokens(b, 15);
  m.FreeSequence(b);
  EXPECT_EQ(m.FindCachedSequencePrefix(m.PrefixRoot(""), Iota(20), 20).num_tokens, 15);
  EXPECT_EQ(m.CheckInvariants(), "");
}

TEST(KvStorage, CopyTokensCopiesThePrefixOfEveryLayerAndHeadOnly) {
  for (KvPrecision p :
       {KvPrecision::kF32, KvPrecision::kF16, KvPrecision::kQ8_0, KvPrecision::kQ4_0}) {
    const KvShape shape{.n_layers = 2, .n_kv_heads = 2, .head_dim = 64};
    KvStorage st(shape, /*block_size_tokens=*/8, /*num_blocks=*/3, p);
    std::vector<float> k(128), v(128);
    for (int32_t b = 0; b < 3; ++b) {
      for (int l = 0; l < 2; ++l) {
        for (int32_t slot = 0; slot < 8; ++slot) {
          for (int i = 0; i < 128; ++i) {
            k[i] = static_cast<float>(b * 1000 + l * 100 + slot * 10 + i % 10) / 500.0f;
            v[i] = -k[i];
          }
          st.WriteToken(l, b, slot, k.data(), v.data());
        }
      }
    }
    auto elem = [&](int32_t b, int l, int kv, int h, int32_t slot) {
      return st.ReadElement(l, b, kv, h, slot, 5);
    };
    const float untouched_next = elem(2, 0, 0, 0, 0);
    const float dst_tail = elem(1, 1, 1, 1, 5);
    st.CopyTokens(0, 1, 5);
    for (int l = 0; l < 2; ++l) {
      for (int kv = 0; kv < 2; ++kv) {
        for (int h = 0; h < 2; ++h) {
          for (int32_t slot = 0; slot < 5; ++slot) {
            EXPECT_EQ(elem(1, l, kv, h, slot), elem(0, l, kv, h, slot)) << KvPrecisionName(p);
          }
        }
      }
    }
    EXPECT_EQ(elem(1, 1, 1, 1, 5), dst_tail) << "positions past the prefix stay";
    EXPECT_EQ(elem(2, 0, 0, 0, 0), untouched_next) << "the next block stays";
  }
}

}  // namespace
}  // namespace kvinfer
