// KV metadata and storage: exact block ids, ref counts and free counts after
// every operation, and a randomized check against a simple model.
#include <cmath>
#include <map>
#include <random>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kv/block_pool.h"
#include "kv/kv_cache.h"
#include "kv/kv_storage.h"
#include "model/config.h"

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
  KvCache cache(TinyConfig().kv_shape(), 4, 8);
  // 2 (K and V) x layers x kv_heads x head_dim x 4 bytes
  EXPECT_EQ(cache.bytes_per_token(), 2 * 2 * 2 * 4 * 4);
  EXPECT_EQ(cache.Stats().bytes_total, 8 * 4 * cache.bytes_per_token());
}

TEST(KvCache, ReserveAllocatesBlocksOnlyWhenTheLastIsFull) {
  KvCache cache(TinyConfig().kv_shape(), 4, 8);
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
  KvCache cache(TinyConfig().kv_shape(), 4, 8);
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
  KvCache cache(TinyConfig().kv_shape(), 4, 8);
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

// Writes one token slot of `block` in `layer`: K of head h = kval(h), V = vval(h).
template <class FK, class FV>
void WriteSlot(KvCache& cache, int layer, int32_t block, int32_t slot, FK kval, FV vval) {
  const int hd = cache.head_dim();
  std::vector<float> k(static_cast<size_t>(cache.num_kv_heads()) * hd), v(k.size());
  for (int h = 0; h < cache.num_kv_heads(); ++h) {
    for (int i = 0; i < hd; ++i) {
      k[static_cast<size_t>(h) * hd + i] = kval(h);
      v[static_cast<size_t>(h) * hd + i] = vval(h);
    }
  }
  cache.WriteToken(layer, block, slot, k.data(), v.data());
}

class KvCachePrecision : public ::testing::TestWithParam<KvPrecision> {
 protected:
  // How far a stored element may come back from x when all elements of its
  // head's vector are x: f32 exact; f16 within half an ulp (2^-11 relative);
  // q8_0 stores code 127 with scale f16(x / 127), q4_0 code -8 with scale
  // f16(x / -8), so within the scale's f16 rounding, 2^-11 of |x| as well.
  float Tol(float x) const { return GetParam() == KvPrecision::kF32 ? 0.0f : std::abs(x) / 2048; }
};

TEST_P(KvCachePrecision, BlocksOfDifferentSequencesDoNotOverlap) {
  ModelConfig c = TinyConfig();
  KvCache cache(c.kv_shape(), 4, 6, GetParam());
  const int32_t a = cache.CreateSequence();
  const int32_t b = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(a, 8));
  ASSERT_TRUE(cache.Reserve(b, 8));
  // Fill a's storage with 1s and b's with 2s token by token; read back.
  for (int l = 0; l < c.n_layers; ++l) {
    for (int32_t seq : {a, b}) {
      for (int32_t blk : cache.block_table(seq)) {
        for (int32_t slot = 0; slot < 4; ++slot) {
          WriteSlot(cache, l, blk, slot, [&](int) { return static_cast<float>(seq + 1); },
                    [&](int) { return static_cast<float>(-(seq + 1)); });
        }
      }
    }
  }
  for (int l = 0; l < c.n_layers; ++l) {
    for (int32_t seq : {a, b}) {
      for (int32_t blk : cache.block_table(seq)) {
        for (int h = 0; h < c.n_kv_heads; ++h) {
          for (int32_t slot = 0; slot < 4; ++slot) {
            for (int i = 0; i < c.head_dim; ++i) {
              const float x = static_cast<float>(seq + 1);
              ASSERT_NEAR(cache.ReadElement(l, blk, 0, h, slot, i), x, Tol(x));
              ASSERT_NEAR(cache.ReadElement(l, blk, 1, h, slot, i), -x, Tol(x));
            }
          }
        }
      }
    }
  }
}

TEST_P(KvCachePrecision, BytesPerTokenAndRounding) {
  ModelConfig c = TinyConfig();
  KvCache cache(c.kv_shape(), 4, 6, GetParam());
  // Bytes of one head's K (or V) vector: f32 4 per element, f16 2, q8_0 one
  // code per element and an f16 scale per 32 (head_dim 4: one scale), q4_0
  // half a byte per element and the scale.
  const int64_t row = GetParam() == KvPrecision::kF32    ? 4 * c.head_dim
                      : GetParam() == KvPrecision::kF16  ? 2 * c.head_dim
                      : GetParam() == KvPrecision::kQ8_0 ? c.head_dim + 2
                                                         : c.head_dim / 2 + 2;
  EXPECT_EQ(cache.bytes_per_token(), 2 * c.n_layers * c.n_kv_heads * row);
  EXPECT_EQ(cache.bytes_per_token(), KvBytesPerToken(c.kv_shape(), GetParam()));
  EXPECT_EQ(cache.Stats().bytes_per_token, cache.bytes_per_token());
  EXPECT_EQ(cache.Stats().precision, KvPrecisionName(GetParam()));
  // f16 rounds to nearest: 1/3 comes back within half an f16 ulp; q8_0
  // (code 127, scale f16(1/381)) and q4_0 (code -8, scale f16(-1/24)) within
  // the scale's rounding.
  const int32_t s = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(s, 1));
  WriteSlot(cache, 0, cache.block_table(s)[0], 0, [](int) { return 1.0f / 3.0f; },
            [](int) { return -1.0f / 3.0f; });
  const float back = cache.ReadElement(0, cache.block_table(s)[0], 0, 0, 0, 0);
  if (GetParam() == KvPrecision::kF32) {
    EXPECT_EQ(back, 1.0f / 3.0f);
  } else {
    EXPECT_NE(back, 1.0f / 3.0f);
    EXPECT_NEAR(back, 1.0f / 3.0f, Tol(1.0f / 3.0f));
  }
}

}  // namespace
}  // namespace kvinfer

namespace kvinfer {
namespace {

// Thousands of mixed sequence operations (create, grow, fork, write with
// copy-on-write, truncate, free) against a plain model of who holds which
// block: after each, every block's ref count equals the number of block
// tables holding it, free blocks are held by nobody, and a block is written
// only while exactly one table holds it.
TEST(KvCache, RandomizedForksAndCopyOnWriteKeepRefCountsExact) {
  ModelConfig c = TinyConfig();
  constexpr int32_t kBlocks = 48;
  constexpr int32_t kBlockSize = 4;
  KvCache cache(c.kv_shape(), kBlockSize, kBlocks);
  std::vector<int32_t> live;
  std::mt19937 rng(11);
  int64_t copies = 0;
  for (int step = 0; step < 5000; ++step) {
    const int op = static_cast<int>(rng() % 6);
    if (op == 0 || live.empty()) {
      live.push_back(cache.CreateSequence());
    } else {
      const size_t pick = rng() % live.size();
      const int32_t seq = live[pick];
      if (op == 1) {  // grow and write the new tokens
        const int32_t n = cache.num_tokens(seq);
        const int32_t add = 1 + static_cast<int32_t>(rng() % 9);
        if (cache.Reserve(seq, n + add)) {
          const int32_t need = cache.CopiesNeeded(seq, n, n + add);
          const int32_t free_before = cache.pool().num_free();
          if (cache.PrepareWrite(seq, n, n + add)) {
            EXPECT_EQ(cache.pool().num_free(), free_before - need);
            copies += need;
            for (int32_t p = n; p < n + add; ++p) {
              const int32_t block = cache.block_table(seq)[p / kBlockSize];
              ASSERT_EQ(cache.pool().ref_count(block), 1) << "writing a shared block";
              WriteSlot(cache, 0, block, p % kBlockSize, [&](int) { return static_cast<float>(seq); },
                        [](int) { return 0.0f; });
            }
            cache.SetNumTokens(seq, n + add);
          }
        }
      } else if (op == 2) {
        live.push_back(cache.Fork(seq));
      } else if (op == 3) {
        cache.Truncate(seq, static_cast<int32_t>(rng() % (cache.num_tokens(seq) + 1)));
      } else {
        cache.FreeSequence(seq);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(pick));
      }
    }
    // The model: count table references per block.
    std::vector<int32_t> holders(kBlocks, 0);
    for (int32_t s : live) {
      for (int32_t b : cache.block_table(s)) ++holders[b];
      ASSERT_LE(cache.num_tokens(s), cache.capacity_tokens(s));
    }
    int32_t free_count = 0;
    for (int32_t b = 0; b < kBlocks; ++b) {
      ASSERT_EQ(cache.pool().ref_count(b), holders[b]) << "block " << b << " at step " << step;
      free_count += holders[b] == 0;
    }
    ASSERT_EQ(cache.pool().num_free(), free_count);
  }
  EXPECT_EQ(cache.num_cow_copies(), copies);
  EXPECT_GT(copies, 0);
  for (int32_t s : live) cache.FreeSequence(s);
  EXPECT_EQ(cache.pool().num_free(), kBlocks);
}

TEST_P(KvCachePrecision, ForkSharesBlocksAndCopyOnWriteCopiesTheContents) {
  ModelConfig c = TinyConfig();
  KvCache cache(c.kv_shape(), 4, 8, GetParam());
  const int32_t a = cache.CreateSequence();
  ASSERT_TRUE(cache.Reserve(a, 6));
  ASSERT_TRUE(cache.PrepareWrite(a, 0, 6));
  for (int l = 0; l < c.n_layers; ++l) {  // position 4 = block 1, slot 0
    WriteSlot(cache, l, 1, 0, [&](int h) { return 10.0f + l + h; },
              [&](int h) { return -10.0f - l - h; });
  }
  cache.SetNumTokens(a, 6);
  const int32_t b = cache.Fork(a);
  EXPECT_EQ(cache.num_tokens(b), 6);
  EXPECT_EQ(cache.pool().ref_count(0), 2);
  EXPECT_EQ(cache.pool().ref_count(1), 2);
  EXPECT_EQ(cache.pool().num_used(), 2);
  // b writes position 6 (in block 1): block 1 is copied for b, block 0 stays shared.
  EXPECT_EQ(cache.CopiesNeeded(b, 6, 7), 1);
  ASSERT_TRUE(cache.Reserve(b, 7));
  ASSERT_TRUE(cache.PrepareWrite(b, 6, 7));
  const int32_t copy = cache.block_table(b)[1];
  EXPECT_EQ(copy, 2);
  EXPECT_EQ(cache.block_table(a)[1], 1);
  EXPECT_EQ(cache.pool().ref_count(1), 1);
  EXPECT_EQ(cache.pool().ref_count(2), 1);
  EXPECT_EQ(cache.pool().ref_count(0), 2);
  for (int l = 0; l < c.n_layers; ++l) {
    for (int h = 0; h < c.n_kv_heads; ++h) {
      const float x = 10.0f + l + h;
      EXPECT_NEAR(cache.ReadElement(l, copy, 0, h, 0, 0), x, Tol(x));
      EXPECT_NEAR(cache.ReadElement(l, copy, 1, h, 0, 0), -x, Tol(x));
      // The copy carries the scales along with the codes: bit-identical.
      EXPECT_EQ(cache.ReadElement(l, copy, 0, h, 0, 0), cache.ReadElement(l, 1, 0, h, 0, 0));
    }
  }
  // a writes position 6 too: its block 1 is now private, no copy.
  EXPECT_EQ(cache.CopiesNeeded(a, 6, 7), 0);
  KvCacheStats st = cache.Stats();
  EXPECT_EQ(st.num_blocks_used, 3);
  EXPECT_EQ(st.num_blocks_shared, 1);
  EXPECT_EQ(st.bytes_logical, 4 * 4 * cache.bytes_per_token());
  EXPECT_EQ(st.bytes_saved_by_sharing, 1 * 4 * cache.bytes_per_token());
  EXPECT_EQ(st.num_cow_copies, 1);
  // With no free block, a copy-on-write fails cleanly.
  KvCache tight(c.kv_shape(), 4, 1);
  const int32_t x = tight.CreateSequence();
  ASSERT_TRUE(tight.Reserve(x, 2));
  tight.SetNumTokens(x, 2);
  const int32_t y = tight.Fork(x);
  EXPECT_FALSE(tight.PrepareWrite(y, 2, 3));
  EXPECT_EQ(tight.pool().ref_count(0), 2);
}

// KvStorage alone, with no manager: CopyBlock duplicates every layer's K
// and V of one block (scales included) and touches no other block.
TEST_P(KvCachePrecision, StorageCopiesOneBlockAcrossAllLayers) {
  const KvShape shape{.n_layers = 3, .n_kv_heads = 2, .head_dim = 8};
  KvStorage st(shape, 2, 3, GetParam());
  EXPECT_EQ(st.bytes_per_token(), static_cast<int64_t>(2 * 3 * 2 * KvRowBytes(GetParam(), 8)));
  std::vector<float> k(static_cast<size_t>(shape.n_kv_heads) * shape.head_dim);
  std::vector<float> v(k.size());
  auto fill = [&](int32_t block, float base) {
    for (int l = 0; l < shape.n_layers; ++l) {
      for (int32_t slot = 0; slot < 2; ++slot) {
        for (size_t i = 0; i < k.size(); ++i) {
          k[i] = base + 0.25f * static_cast<float>(i) + l + 0.5f * slot;
          v[i] = -k[i];
        }
        st.WriteToken(l, block, slot, k.data(), v.data());
      }
    }
  };
  fill(0, 1.0f);
  fill(1, 7.0f);
  fill(2, 50.0f);
  st.CopyBlock(0, 2);
  for (int l = 0; l < shape.n_layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int h = 0; h < shape.n_kv_heads; ++h) {
        for (int32_t slot = 0; slot < 2; ++slot) {
          for (int i = 0; i < shape.head_dim; ++i) {
            const float x0 = st.ReadElement(l, 0, kv, h, slot, i);
            EXPECT_EQ(st.ReadElement(l, 2, kv, h, slot, i), x0);
            const float want1 = (kv == 0 ? 1.0f : -1.0f) *
                                (7.0f + 0.25f * static_cast<float>(h * shape.head_dim + i) + l +
                                 0.5f * slot);
            EXPECT_NEAR(st.ReadElement(l, 1, kv, h, slot, i), want1,
                        GetParam() == KvPrecision::kF32 ? 0.0f
                        : GetParam() == KvPrecision::kF16 ? std::abs(want1) / 2048
                                                          : std::abs(want1) / 4);
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, KvCachePrecision,
                         ::testing::Values(KvPrecision::kF32, KvPrecision::kF16, KvPrecision::kQ8_0,
                                           KvPrecision::kQ4_0),
                         [](const ::testing::TestParamInfo<KvPrecision>& i) {
                           return std::string(KvPrecisionName(i.param));
                         });

}  // namespace
}  // namespace kvinfer
