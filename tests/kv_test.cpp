// KV metadata and storage: exact block ids, ref counts and free counts after
// every operation, and a randomized check against a simple model.
#include <map>
#include <random>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kv/block_pool.h"
#include "kv/kv_cache.h"

namespace kvinfer {
namespace {

using ::testing::ElementsAre;

TEST(BlockPool, AllocatesInOrderAndReturnsNoneWhenEmpty) {
  BlockPool pool(3);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.Allocate(), 0);
  EXPECT_EQ(pool.Allocate(), 1);
  EXPECT_EQ(pool.Allocate(), 2);
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.Allocate(), std::nullopt);
  EXPECT_EQ(pool.num_used(), 3);
}

TEST(BlockPool, ReleasedBlocksGoToTheTailInLruOrder) {
  BlockPool pool(4);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(pool.Allocate(), i);
  pool.Release(2);
  pool.Release(0);
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(2, 0));
  EXPECT_EQ(pool.Allocate(), 2);  // least recently freed first
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(0));
}

TEST(BlockPool, RefCountsKeepSharedBlocksAllocated) {
  BlockPool pool(2);
  ASSERT_EQ(pool.Allocate(), 0);
  pool.IncRef(0);
  EXPECT_EQ(pool.ref_count(0), 2);
  pool.Release(0);
  EXPECT_EQ(pool.ref_count(0), 1);
  EXPECT_EQ(pool.num_free(), 1);
  pool.Release(0);
  EXPECT_EQ(pool.ref_count(0), 0);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(1, 0));
}

TEST(BlockPool, TakeRemovesFromTheMiddle) {
  BlockPool pool(5);
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(0, 1, 2, 3, 4));
  pool.Take(3);
  EXPECT_EQ(pool.ref_count(3), 1);
  EXPECT_THAT(pool.FreeListForTest(), ElementsAre(0, 1, 2, 4));
  EXPECT_EQ(pool.num_free(), 4);
}

TEST(BlockPoolDeathTest, DoubleFreeIsCaught) {
  BlockPool pool(1);
  ASSERT_EQ(pool.Allocate(), 0);
  pool.Release(0);
  EXPECT_DEATH(pool.Release(0), "double free");
}

TEST(BlockPool, RandomizedAgainstAModel) {
  constexpr int kBlocks = 37;
  BlockPool pool(kBlocks);
  std::map<int32_t, int> model;  // allocated id -> ref count
  std::mt19937 rng(7);
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 3);
    if (op == 0) {
      std::optional<int32_t> id = pool.Allocate();
      if (static_cast<int>(model.size()) == kBlocks) {
        ASSERT_FALSE(id.has_value());
      } else {
        ASSERT_TRUE(id.has_value());
        ASSERT_FALSE(model.count(*id)) << "block " << *id << " handed out twice";
        model[*id] = 1;
      }
    } else if (!model.empty()) {
      auto it = model.begin();
      std::advance(it, rng() % model.size());
      if (op == 1) {
        pool.IncRef(it->first);
        ++it->second;
      } else {
        pool.Release(it->first);
        if (--it->second == 0) model.erase(it);
      }
    }
    ASSERT_EQ(pool.num_used(), static_cast<int>(model.size()));
    for (const auto& [id, refs] : model) ASSERT_EQ(pool.ref_count(id), refs);
    const std::vector<int32_t> free_list = pool.FreeListForTest();
    ASSERT_EQ(static_cast<int>(free_list.size()), pool.num_free());
    std::set<int32_t> unique(free_list.begin(), free_list.end());
    ASSERT_EQ(unique.size(), free_list.size()) << "a block is on the free list twice";
    for (int32_t id : free_list) ASSERT_FALSE(model.count(id));
  }
}

ModelConfig TinyConfig() {
  ModelConfig c;
  c.n_layers = 2;
  c.d_model = 16;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.d_ff = 32;
  c.vocab_size = 10;
  c.context_length = 64;
  return c;
}

TEST(KvCache, BytesPerTokenFollowsTheFormula) {
  KvCache cache(TinyConfig(), 4, 8);
  // 2 (K and V) x layers x kv_heads x head_dim x 4 bytes
  EXPECT_EQ(cache.bytes_per_token(), 2 * 2 * 2 * 4 * 4);
  EXPECT_EQ(cache.Stats().bytes_total, 8 * 4 * cache.bytes_per_token());
}

TEST(KvCache, ReserveAllocatesBlocksOnlyWhenTheLastIsFull) {
  KvCache cache(TinyConfig(), 4, 8);
  const int32_t a = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(a, 1));
  EXPECT_THAT(std::vector<int32_t>(cache.block_table(a).begin(), cache.block_table(a).end()),
              ElementsAre(0));
  ASSERT_TRUE(cache.Reserve(a, 4));
  EXPECT_EQ(cache.block_table(a).size(), 1u);
  ASSERT_TRUE(cache.Reserve(a, 5));
  EXPECT_EQ(cache.block_table(a).size(), 2u);
  const int32_t b = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(b, 9));
  EXPECT_THAT(std::vector<int32_t>(cache.block_table(b).begin(), cache.block_table(b).end()),
              ElementsAre(2, 3, 4));
  EXPECT_EQ(cache.pool().num_free(), 3);
  // Too many: nothing changes.
  EXPECT_FALSE(cache.Reserve(b, 4 * 7));
  EXPECT_EQ(cache.block_table(b).size(), 3u);
  EXPECT_EQ(cache.pool().num_free(), 3);
}

TEST(KvCache, StatsCountReservedAndUsedBytes) {
  KvCache cache(TinyConfig(), 4, 8);
  const int32_t a = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(a, 6));
  cache.SetNumTokens(a, 6);
  KvCacheStats st = cache.Stats();
  EXPECT_EQ(st.num_blocks_used, 2);
  EXPECT_EQ(st.tokens_held, 6);
  EXPECT_EQ(st.capacity_tokens, 8);
  EXPECT_EQ(st.bytes_reserved, 8 * cache.bytes_per_token());
  EXPECT_EQ(st.bytes_used, 6 * cache.bytes_per_token());
  EXPECT_DOUBLE_EQ(st.usage_ratio, 0.75);
}

TEST(KvCache, TruncateAndFreeReturnBlocks) {
  KvCache cache(TinyConfig(), 4, 8);
  const int32_t a = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(a, 12));
  cache.SetNumTokens(a, 12);
  cache.Truncate(a, 5);
  EXPECT_EQ(cache.num_tokens(a), 5);
  EXPECT_EQ(cache.block_table(a).size(), 2u);
  EXPECT_EQ(cache.pool().num_free(), 6);
  cache.FreeSequence(a);
  EXPECT_EQ(cache.pool().num_free(), 8);
  EXPECT_EQ(cache.Stats().num_sequences, 0);
  // The id is reused and starts empty.
  const int32_t b = cache.CreateSequence();
  EXPECT_EQ(b, a);
  EXPECT_EQ(cache.num_tokens(b), 0);
  EXPECT_TRUE(cache.block_table(b).empty());
}

TEST(KvCache, BlocksOfDifferentSequencesDoNotOverlap) {
  ModelConfig c = TinyConfig();
  KvCache cache(c, 4, 6);
  const int32_t a = cache.CreateSequence();
  const int32_t b = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(a, 8));
  ASSERT_TRUE(cache.Reserve(b, 8));
  // Fill a's storage with 1s and b's with 2s through the views; read back.
  for (int l = 0; l < c.n_layers; ++l) {
    for (int32_t seq : {a, b}) {
      for (int32_t blk : cache.block_table(seq)) {
        for (int h = 0; h < c.n_kv_heads; ++h) {
          for (int i = 0; i < 4 * c.head_dim; ++i) {
            cache.Keys(l, blk, h)[i] = static_cast<float>(seq + 1);
            cache.Values(l, blk, h)[i] = static_cast<float>(-(seq + 1));
          }
        }
      }
    }
  }
  for (int l = 0; l < c.n_layers; ++l) {
    for (int32_t seq : {a, b}) {
      for (int32_t blk : cache.block_table(seq)) {
        for (int h = 0; h < c.n_kv_heads; ++h) {
          for (int i = 0; i < 4 * c.head_dim; ++i) {
            ASSERT_EQ(cache.Keys(l, blk, h)[i], static_cast<float>(seq + 1));
            ASSERT_EQ(cache.Values(l, blk, h)[i], static_cast<float>(-(seq + 1)));
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvinfer
