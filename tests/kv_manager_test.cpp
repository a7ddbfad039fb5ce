// KvManager alone (no storage): exact block ids, reference counts and
// free-list order after scripted sequences of allocate / append / fork /
// copy-on-write / truncate / free, and the events its sink receives.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kv/kv_manager.h"

namespace kvinfer {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<int32_t> Table(const KvManager& m, int32_t seq) {
  return {m.block_table(seq).begin(), m.block_table(seq).end()};
}

std::vector<int32_t> RefCounts(const KvManager& m) {
  std::vector<int32_t> out;
  for (int32_t b = 0; b < m.num_blocks(); ++b) out.push_back(m.pool().ref_count(b));
  return out;
}

// Events rendered as short strings: "fill b@s[i]:t0,t1,..", "free b", "clear".
struct Recorder {
  std::vector<std::string> events;
  KvEventSink Sink() {
    return [this](const KvEvent& e) {
      switch (e.kind) {
        case KvEvent::Kind::kBlockFilled: {
          std::string s = "fill " + std::to_string(e.block) + "@" + std::to_string(e.seq) + "[" +
                          std::to_string(e.index) + "]";
          for (size_t i = 0; i < e.tokens.size(); ++i) {
            s += (i == 0 ? ":" : ",") + std::to_string(e.tokens[i]);
          }
          events.push_back(s);
          break;
        }
        case KvEvent::Kind::kBlockFreed: events.push_back("free " + std::to_string(e.block)); break;
        case KvEvent::Kind::kAllCleared: events.push_back("clear"); break;
      }
    };
  }
};

TEST(KvManager, AllocateAppendForkCopyOnWriteFree) {
  KvManager m(/*block_size_tokens=*/4, /*num_blocks=*/8);
  // a: 6 tokens -> blocks 0, 1.
  const int32_t a = m.CreateSequence();
  EXPECT_EQ(a, 0);
  EXPECT_EQ(m.BlocksNeeded(a, 6), 2);
  ASSERT_TRUE(m.Reserve(a, 6));
  m.SetNumTokens(a, 6);
  EXPECT_THAT(Table(m, a), ElementsAre(0, 1));
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(2, 3, 4, 5, 6, 7));

  // b = fork(a): shares 0 and 1.
  const int32_t b = m.Fork(a);
  EXPECT_EQ(b, 1);
  EXPECT_THAT(Table(m, b), ElementsAre(0, 1));
  EXPECT_EQ(m.num_tokens(b), 6);
  EXPECT_THAT(RefCounts(m), ElementsAre(2, 2, 0, 0, 0, 0, 0, 0));
  EXPECT_EQ(m.num_blocks_shared(), 2);

  // b appends position 6 (block 1): one copy 1 -> 2; block 0 stays shared.
  EXPECT_EQ(m.CopiesNeeded(b, 6, 7), 1);
  ASSERT_TRUE(m.Reserve(b, 7));
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(m.PrepareWrite(b, 6, 7, copies));
  EXPECT_THAT(copies, ElementsAre(KvBlockCopy{1, 2}));
  m.SetNumTokens(b, 7);
  EXPECT_THAT(Table(m, b), ElementsAre(0, 2));
  EXPECT_THAT(Table(m, a), ElementsAre(0, 1));
  EXPECT_THAT(RefCounts(m), ElementsAre(2, 1, 1, 0, 0, 0, 0, 0));
  EXPECT_EQ(m.num_cow_copies(), 1);

  // a appends positions 6..9: block 1 is private now (no copy), block 3 new.
  copies.clear();
  ASSERT_TRUE(m.Reserve(a, 10));
  ASSERT_TRUE(m.PrepareWrite(a, 6, 10, copies));
  EXPECT_THAT(copies, IsEmpty());
  m.SetNumTokens(a, 10);
  EXPECT_THAT(Table(m, a), ElementsAre(0, 1, 3));
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(4, 5, 6, 7));

  // c = fork(b), then b is freed: its blocks go back last first, but only
  // those whose count reaches zero.
  const int32_t c = m.Fork(b);
  EXPECT_EQ(c, 2);
  m.FreeSequence(b);
  EXPECT_THAT(RefCounts(m), ElementsAre(2, 1, 1, 1, 0, 0, 0, 0));
  // a truncated to 4 tokens drops blocks 3 then 1 (to the free list's tail).
  m.Truncate(a, 4);
  EXPECT_THAT(Table(m, a), ElementsAre(0));
  EXPECT_EQ(m.num_tokens(a), 4);
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(4, 5, 6, 7, 3, 1));
  // c frees 2 then 0 (0 is still a's).
  m.FreeSequence(c);
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(4, 5, 6, 7, 3, 1, 2));
  EXPECT_THAT(RefCounts(m), ElementsAre(1, 0, 0, 0, 0, 0, 0, 0));
  // A new sequence reuses the last freed id and takes the free list's head.
  const int32_t d = m.CreateSequence();
  EXPECT_EQ(d, c);
  ASSERT_TRUE(m.Reserve(d, 5));
  EXPECT_THAT(Table(m, d), ElementsAre(4, 5));
  m.FreeSequence(a);
  m.FreeSequence(d);
  EXPECT_EQ(m.num_free_blocks(), 8);
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(6, 7, 3, 1, 2, 0, 5, 4));
  EXPECT_EQ(m.num_sequences(), 0);
}

TEST(KvManager, ReserveFailsWithoutChangingAnything) {
  KvManager m(4, 3);
  const int32_t a = m.CreateSequence();
  ASSERT_TRUE(m.Reserve(a, 8));
  EXPECT_FALSE(m.Reserve(a, 13));
  EXPECT_THAT(Table(m, a), ElementsAre(0, 1));
  EXPECT_EQ(m.num_free_blocks(), 1);
  EXPECT_EQ(m.peak_blocks_used(), 2);
}

TEST(KvManager, CopyOnWriteStopsCleanlyWhenThePoolIsEmpty) {
  KvManager m(4, 3);
  const int32_t a = m.CreateSequence();
  ASSERT_TRUE(m.Reserve(a, 8));
  m.SetNumTokens(a, 8);
  const int32_t b = m.Fork(a);
  ASSERT_TRUE(m.Reserve(b, 9));  // block 2
  // b rewrites positions 0..8: blocks 0 and 1 need copies, one block is free.
  EXPECT_EQ(m.CopiesNeeded(b, 0, 9), 2);
  std::vector<KvBlockCopy> copies;
  EXPECT_FALSE(m.PrepareWrite(b, 0, 9, copies));
  EXPECT_TRUE(copies.empty());  // the pool was already empty
  EXPECT_THAT(RefCounts(m), ElementsAre(2, 2, 1));
  m.FreeSequence(a);
  // Now 0 and 1 are b's alone: nothing to copy.
  EXPECT_EQ(m.CopiesNeeded(b, 0, 9), 0);
  EXPECT_TRUE(m.PrepareWrite(b, 0, 9, copies));
  EXPECT_TRUE(copies.empty());
}

TEST(KvManager, PartialCopyOnWriteReportsTheCopiesMade) {
  KvManager m(2, 5);
  const int32_t a = m.CreateSequence();
  ASSERT_TRUE(m.Reserve(a, 6));  // 0, 1, 2
  m.SetNumTokens(a, 6);
  const int32_t b = m.Fork(a);
  std::vector<KvBlockCopy> copies;
  // Three shared blocks, two free: two copies happen, then it stops.
  EXPECT_FALSE(m.PrepareWrite(b, 0, 6, copies));
  EXPECT_THAT(copies, ElementsAre(KvBlockCopy{0, 3}, KvBlockCopy{1, 4}));
  EXPECT_THAT(Table(m, b), ElementsAre(3, 4, 2));
  EXPECT_THAT(RefCounts(m), ElementsAre(1, 1, 2, 1, 1));
}

TEST(KvManager, EventSinkReceivesFillsFreesAndClears) {
  KvManager m(2, 6);
  Recorder rec;
  m.SetEventSink(rec.Sink());
  const int32_t a = m.CreateSequence();
  ASSERT_TRUE(m.Reserve(a, 5));  // blocks 0, 1, 2
  const std::vector<int32_t> ids = {10, 11, 12, 13, 14};
  m.SetTokenIds(a, 0, std::span<const int32_t>(ids).first(3));
  m.SetNumTokens(a, 1);  // nothing full yet
  EXPECT_THAT(rec.events, IsEmpty());
  m.SetNumTokens(a, 3);  // block 0 full, with known ids
  m.SetTokenIds(a, 3, std::span<const int32_t>(ids).subspan(3));
  m.SetNumTokens(a, 5);  // block 1 full; block 2 holds one token
  EXPECT_THAT(rec.events, ElementsAre("fill 0@0[0]:10,11", "fill 1@0[1]:12,13"));
  rec.events.clear();

  // A fork shares filled blocks: no events. Its copy-on-write allocates a
  // new block, which is reported once filled; the ids come along.
  const int32_t b = m.Fork(a);
  ASSERT_TRUE(m.Reserve(b, 6));
  std::vector<KvBlockCopy> copies;
  ASSERT_TRUE(m.PrepareWrite(b, 5, 6, copies));
  EXPECT_THAT(copies, ElementsAre(KvBlockCopy{2, 3}));
  const int32_t next = 99;
  m.SetTokenIds(b, 5, std::span<const int32_t>(&next, 1));
  m.SetNumTokens(b, 6);
  EXPECT_THAT(rec.events, ElementsAre("fill 3@1[2]:14,99"));
  rec.events.clear();

  // Without recorded ids a fill carries none.
  const int32_t c = m.CreateSequence();
  ASSERT_TRUE(m.Reserve(c, 2));
  m.SetNumTokens(c, 2);
  EXPECT_THAT(rec.events, ElementsAre("fill 4@2[0]"));
  rec.events.clear();

  // Truncating a drops block 2 (still a's alone): freed. Truncating b to 3
  // drops 3 (freed) and keeps 1 (shared with a, so not freed).
  m.Truncate(a, 4);
  m.Truncate(b, 3);
  EXPECT_THAT(rec.events, ElementsAre("free 2", "free 3"));
  rec.events.clear();
  // Refilling b's block 1 after a truncation reports it again (the copy
  // takes the free list's head: 5, then the freed 2 and 3).
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(5, 2, 3));
  std::vector<KvBlockCopy> more;
  ASSERT_TRUE(m.PrepareWrite(b, 3, 4, more));
  EXPECT_THAT(more, ElementsAre(KvBlockCopy{1, 5}));
  const int32_t again = 13;
  m.SetTokenIds(b, 3, std::span<const int32_t>(&again, 1));
  m.SetNumTokens(b, 4);
  EXPECT_THAT(rec.events, ElementsAre("fill 5@1[1]:12,13"));
  rec.events.clear();

  m.FreeSequence(a);  // blocks 1 (now a's alone) and 0 (shared with b)
  EXPECT_THAT(rec.events, ElementsAre("free 1"));
  rec.events.clear();
  m.Clear();
  EXPECT_THAT(rec.events, ElementsAre("clear"));
  EXPECT_EQ(m.num_free_blocks(), 6);
  EXPECT_EQ(m.num_sequences(), 0);
  EXPECT_THAT(m.pool().FreeListForTest(), ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_EQ(m.CreateSequence(), 0);
}

TEST(KvManager, AllocationFailureInjectedByTheHookLeavesStateConsistent) {
  KvManager m(2, 6);
  const int32_t a = m.CreateSequence();
  int calls = 0;
  m.SetAllocateHookForTest([&](int32_t seq) {
    EXPECT_EQ(seq, a);
    if (++calls == 3) throw std::bad_alloc();
  });
  EXPECT_THROW((void)m.Reserve(a, 8), std::bad_alloc);
  // The two blocks allocated before the failure are in a's table, not lost.
  EXPECT_THAT(Table(m, a), ElementsAre(0, 1));
  EXPECT_EQ(m.num_free_blocks(), 4);
  m.SetAllocateHookForTest(nullptr);
  m.FreeSequence(a);
  EXPECT_EQ(m.num_free_blocks(), 6);
}

BlockHash TestHash(uint8_t v) {
  BlockHash h;
  h.bytes[0] = v;
  return h;
}

TEST(BlockPool, HashIsKeptByTakeAndClearedByAllocate) {
  BlockPool pool(3);
  ASSERT_EQ(pool.Allocate(), 0);
  ASSERT_EQ(pool.Allocate(), 1);
  EXPECT_EQ(pool.hash(0), std::nullopt);
  pool.set_hash(0, TestHash(42));
  pool.set_hash(1, TestHash(7));
  pool.Release(0);
  pool.Release(1);
  EXPECT_EQ(pool.hash(0), TestHash(42));  // a freed block keeps its contents' hash
  EXPECT_EQ(pool.num_cached_free(), 2);
  pool.Take(1);
  EXPECT_EQ(pool.hash(1), TestHash(7));
  std::optional<BlockHash> evicted;
  EXPECT_EQ(pool.Allocate(&evicted), 2);  // blank blocks first
  EXPECT_EQ(evicted, std::nullopt);
  EXPECT_EQ(pool.Allocate(&evicted), 0);  // then a cached one, for new contents
  EXPECT_EQ(evicted, TestHash(42));
  EXPECT_EQ(pool.hash(0), std::nullopt);
  EXPECT_EQ(pool.num_cached_free(), 0);
}

TEST(BlockPool, BlankBlocksBeforeCachedOnesAndHashChangesMoveFreeBlocks) {
  BlockPool pool(4);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(pool.Allocate(), i);
  pool.set_hash(1, TestHash(1));
  pool.set_hash(2, TestHash(2));
  for (int32_t b : {2, 0, 1, 3}) pool.Release(b);
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(0, 3, 2, 1));
  EXPECT_THAT(pool.CachedListForTest(), ElementsAre(2, 1));
  pool.clear_hash(1);  // a forgotten cached block is the next to reuse
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(1, 0, 3, 2));
  pool.set_hash(0, TestHash(9));  // a free block given a hash becomes evictable
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(1, 3, 2, 0));
  EXPECT_EQ(pool.num_cached_free(), 2);
  EXPECT_EQ(pool.num_free(), 4);
}

}  // namespace
}  // namespace kvinfer
