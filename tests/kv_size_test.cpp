// The KV-cache memory calculator (src/model/kv_size.h) and `kvinfer kv-size`.
// Every expected number is worked out by hand in the comment beside it:
// bytes/token = 2 (K and V) x layers x kv_heads x head_dim x bytes/element.
#include "model/kv_size.h"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "kv/kv_cache.h"
#include "test_util.h"

namespace kvinfer {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

KvSizeResult Size(std::string_view preset, int64_t seq_len, KvDtype dtype = KvDtype::kF16,
                  int64_t batch = 1, int64_t block_size = 1) {
  return ComputeKvSize(
      KvSizeSpecFromPreset(preset),
      {.seq_len = seq_len, .batch = batch, .dtype = dtype, .block_size = block_size});
}

// Runs `fn` and returns the kvinfer::Error it throws (fails if none).
template <typename Fn>
Error Thrown(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a kvinfer::Error";
  return Error(StatusCode::kOk, "");
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// --- The seeds' figures ------------------------------------------------------

TEST(KvSize, SeedFiguresLlama2) {
  // Llama-2-7B FP16: 2 x 32 layers x 32 heads x 128 x 2 B = 524,288 B/token.
  KvSizeResult r = Size("llama-2-7b", 2048);
  EXPECT_EQ(r.bytes_per_token, 524288u);
  // 524,288 x 2048 = 2^19 x 2^11 = 2^30 = 1 GiB.
  EXPECT_EQ(r.total_bytes, kGiB);
  // Llama-2-70B (GQA, 8 KV heads): 2 x 80 x 8 x 128 x 2 = 327,680 B/token;
  // x 4096 tokens = 1,342,177,280 B.
  KvSizeResult r70 = Size("llama-2-70b", 4096);
  EXPECT_EQ(r70.bytes_per_token, 327680u);
  EXPECT_EQ(r70.total_bytes, 1342177280u);
}

// --- Every preset --------------------------------------------------------------

TEST(KvSize, EveryPresetAtItsContext) {
  struct Case {
    const char* name;
    KvAttention attention;
    uint64_t bytes_per_token;  // f16
    int64_t context;
    uint64_t total_at_context;  // f16, batch 1
  };
  const Case cases[] = {
      // 2 x 12 x 12 x 64 x 2 = 36,864; x 1024 = 37,748,736.
      {"gpt2", KvAttention::kMHA, 36864, 1024, 37748736},
      // 2 x 30 x 3 x 64 x 2 = 23,040; x 8192 = 188,743,680.
      {"smollm2-135m", KvAttention::kGQA, 23040, 8192, 188743680},
      // 2 x 32 x 32 x 128 x 2 = 524,288; x 4096 = 2 GiB = 2,147,483,648.
      {"llama-2-7b", KvAttention::kMHA, 524288, 4096, 2147483648},
      // 2 x 80 x 8 x 128 x 2 = 327,680; x 4096 = 1,342,177,280.
      {"llama-2-70b", KvAttention::kGQA, 327680, 4096, 1342177280},
      // 2 x 32 x 8 x 128 x 2 = 131,072; x 8192 = 1 GiB.
      {"llama-3-8b", KvAttention::kGQA, 131072, 8192, 1073741824},
      // 2 x 80 x 8 x 128 x 2 = 327,680; x 8192 = 2,684,354,560.
      {"llama-3-70b", KvAttention::kGQA, 327680, 8192, 2684354560},
      // 131,072/token but a 4096 window on every layer: 131,072 x 4096 = 512 MiB
      // even at 32768 tokens.
      {"mistral-7b", KvAttention::kGQA, 131072, 32768, 536870912},
      // Same attention as Mistral, no window: 131,072 x 32768 = 4 GiB.
      {"mixtral-8x7b", KvAttention::kGQA, 131072, 32768, 4294967296},
      // MLA: (512 + 64) x 61 x 2 = 70,272; x 163,840 = 11,513,364,480.
      {"deepseek-v3", KvAttention::kMLA, 70272, 163840, 11513364480},
  };
  ASSERT_EQ(KvSizePresetNames().size(), std::size(cases));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    KvSizeSpec spec = KvSizeSpecFromPreset(c.name);
    EXPECT_EQ(spec.attention(), c.attention);
    EXPECT_EQ(spec.context_length, c.context);
    KvSizeResult r = Size(c.name, c.context);
    EXPECT_EQ(r.bytes_per_token, c.bytes_per_token);
    EXPECT_EQ(r.total_bytes, c.total_at_context);
    EXPECT_FALSE(r.exceeds_context);
    EXPECT_EQ(r.breakdown.k_bytes + r.breakdown.v_bytes + r.breakdown.latent_bytes +
                  r.breakdown.scale_bytes,
              r.total_bytes);
  }
}

TEST(KvSize, PresetNamesAreCaseInsensitiveAndUnknownListsKnown) {
  EXPECT_EQ(KvSizeSpecFromPreset("Llama-2-7B").n_layers, 32);
  Error e = Thrown([] { KvSizeSpecFromPreset("llama-9-900b"); });
  EXPECT_EQ(e.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(e.what(), "llama-9-900b")) << e.what();
  EXPECT_TRUE(Contains(e.what(), "mistral-7b")) << e.what();
  EXPECT_TRUE(Contains(e.what(), "deepseek-v3")) << e.what();
}

// --- Element types -------------------------------------------------------------

TEST(KvSize, DtypeOverheads) {
  // Llama-2-7B, per token: 32 layers x 32 heads x 2 (K, V) = 2048 vectors of 128.
  EXPECT_EQ(Size("llama-2-7b", 1, KvDtype::kF32).bytes_per_token, 2048u * 128 * 4);  // 1,048,576
  EXPECT_EQ(Size("llama-2-7b", 1, KvDtype::kBF16).bytes_per_token, 524288u);
  EXPECT_EQ(Size("llama-2-7b", 1, KvDtype::kFP8).bytes_per_token, 262144u);  // 2048 x 128
  // int8: 128 B + one f16 scale per vector = 130 B; 2048 x 130 = 266,240.
  KvSizeResult i8 = Size("llama-2-7b", 1, KvDtype::kInt8);
  EXPECT_EQ(i8.bytes_per_token, 266240u);
  EXPECT_EQ(i8.breakdown.scale_bytes, 2048u * 2);
  // q8_0: 128 = 4 blocks x 34 B = 136; 2048 x 136 = 278,528 (scales 4 x 2 x 2048).
  KvSizeResult q8 = Size("llama-2-7b", 1, KvDtype::kQ8_0);
  EXPECT_EQ(q8.bytes_per_token, 278528u);
  EXPECT_EQ(q8.breakdown.scale_bytes, 16384u);
  // q4_0: 4 blocks x 18 B = 72; 2048 x 72 = 147,456.
  KvSizeResult q4 = Size("llama-2-7b", 1, KvDtype::kQ4_0);
  EXPECT_EQ(q4.bytes_per_token, 147456u);
  EXPECT_EQ(q4.breakdown.k_bytes, q4.breakdown.v_bytes);
  EXPECT_EQ(q4.breakdown.k_bytes, 1024u * 64);  // 1024 K vectors x 4 blocks x 16 B of nibbles
}

TEST(KvSize, ShortVectorsInBlockTypes) {
  // head_dim 8 < 32. q8_0 and q4_0 count what kvinfer's caches store: 8
  // codes (4 bytes of them for q4_0) + one f16 scale, the engine's own
  // KvRowBytes.
  KvSizeSpec s{
      .name = "tiny", .n_layers = 5, .n_heads = 8, .n_kv_heads = 4, .head_dim = 8, .v_head_dim = 8};
  KvSizeResult q8 = ComputeKvSize(s, {.seq_len = 1, .dtype = KvDtype::kQ8_0});
  EXPECT_EQ(q8.bytes_per_token, 2u * 5 * 4 * (8 + 2));  // 400
  EXPECT_EQ(q8.bytes_per_token, 2u * 5 * 4 * KvRowBytes(KvPrecision::kQ8_0, 8));
  KvSizeResult q4 = ComputeKvSize(s, {.seq_len = 1, .dtype = KvDtype::kQ4_0});
  EXPECT_EQ(q4.bytes_per_token, 2u * 5 * 4 * (4 + 2));  // 240
  EXPECT_EQ(q4.bytes_per_token, 2u * 5 * 4 * KvRowBytes(KvPrecision::kQ4_0, 8));
  // 100 = 3 full blocks + 4 elements: 100 codes + 4 scales.
  s.head_dim = s.v_head_dim = 100;
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 1, .dtype = KvDtype::kQ8_0}).bytes_per_token,
            2u * 5 * 4 * KvRowBytes(KvPrecision::kQ8_0, 100));
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 1, .dtype = KvDtype::kQ4_0}).bytes_per_token,
            2u * 5 * 4 * KvRowBytes(KvPrecision::kQ4_0, 100));  // 50 + 8 per row
}

TEST(KvSize, DtypeNames) {
  EXPECT_EQ(ParseKvDtype("f16"), KvDtype::kF16);
  EXPECT_EQ(ParseKvDtype("FP16"), KvDtype::kF16);
  EXPECT_EQ(ParseKvDtype("bf16"), KvDtype::kBF16);
  EXPECT_EQ(ParseKvDtype("Q8_0"), KvDtype::kQ8_0);
  EXPECT_EQ(ParseKvDtype("q4_0"), KvDtype::kQ4_0);
  EXPECT_EQ(ParseKvDtype("int8"), KvDtype::kInt8);
  EXPECT_EQ(ParseKvDtype("fp8"), KvDtype::kFP8);
  Error e = Thrown([] { ParseKvDtype("f12"); });
  EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "f12") && Contains(e.what(), "q4_0")) << e.what();
}

// --- MLA -------------------------------------------------------------------------

TEST(KvSize, MlaCachesOneLatentPlusRopeKey) {
  // DeepSeek-V3 f16: (512 latent + 64 rope) x 61 layers x 2 B = 70,272 B/token,
  // independent of its 128 heads.
  KvSizeResult r = Size("deepseek-v3", 1000);
  EXPECT_EQ(r.bytes_per_token, 70272u);
  EXPECT_EQ(r.breakdown.latent_bytes, 512u * 61 * 2 * 1000);
  EXPECT_EQ(r.breakdown.k_bytes, 64u * 61 * 2 * 1000);
  EXPECT_EQ(r.breakdown.v_bytes, 0u);
  // int8: (512 + 2) + (64 + 2) = 580 per layer; x 61 = 35,380.
  EXPECT_EQ(Size("deepseek-v3", 1, KvDtype::kInt8).bytes_per_token, 35380u);
  // q8_0: 16 blocks + 2 blocks = 18 x 34 = 612 per layer; x 61 = 37,332.
  EXPECT_EQ(Size("deepseek-v3", 1, KvDtype::kQ8_0).bytes_per_token, 37332u);
  // An MHA cache with the same heads would be 2 x 61 x 128 x 128 x 2 = 3,997,696 B/token,
  // 56.9x more.
}

TEST(KvSize, MqaIsOneKvHead) {
  KvSizeSpec s{.name = "mqa",
               .n_layers = 10,
               .n_heads = 16,
               .n_kv_heads = 1,
               .head_dim = 64,
               .v_head_dim = 64};
  EXPECT_EQ(s.attention(), KvAttention::kMQA);
  // 2 x 10 x 1 x 64 x 2 = 2560.
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 1}).bytes_per_token, 2560u);
}

// --- Sliding windows and paging ------------------------------------------------

TEST(KvSize, SlidingWindowPlateaus) {
  // Mistral-7B keeps the last 4096 tokens: 8192 tokens cost what 4096 do.
  KvSizeResult at4k = Size("mistral-7b", 4096);
  KvSizeResult at8k = Size("mistral-7b", 8192);
  EXPECT_EQ(at8k.total_bytes, at4k.total_bytes);
  EXPECT_EQ(at8k.total_bytes, 131072u * 4096);
  EXPECT_EQ(at8k.window_tokens_per_sequence, 4096);
  EXPECT_EQ(at8k.bytes_per_token, 131072u);  // per token at full attention, unchanged
  // Below the window it grows linearly.
  EXPECT_EQ(Size("mistral-7b", 1000).total_bytes, 131072u * 1000);
  // Mixtral has no window and keeps growing.
  EXPECT_EQ(Size("mixtral-8x7b", 8192).total_bytes, 2 * Size("mixtral-8x7b", 4096).total_bytes);
}

TEST(KvSize, PagedRounding) {
  // seq 100, block 16 -> 7 blocks = 112 slots; 112 x 524,288 = 58,720,256.
  KvSizeResult r = Size("llama-2-7b", 100, KvDtype::kF16, 1, 16);
  EXPECT_EQ(r.tokens_per_sequence, 112);
  EXPECT_EQ(r.total_bytes, 112u * 524288);
  // Exact multiples are not rounded.
  EXPECT_EQ(Size("llama-2-7b", 128, KvDtype::kF16, 1, 16).tokens_per_sequence, 128);
  // Batch multiplies: 8 x 2048 tokens = 8 GiB.
  EXPECT_EQ(Size("llama-2-7b", 2048, KvDtype::kF16, 8).total_bytes, 8 * kGiB);
}

TEST(KvSize, PagedWindowCountsBlocksTouchingTheWindow) {
  // Live positions [5000 - 4096, 5000) = [904, 5000) touch blocks 904/16 = 56
  // .. 4999/16 = 312: 257 blocks = 4112 slots.
  EXPECT_EQ(WindowTokens(5000, 4096, 16), 4112);
  EXPECT_EQ(WindowTokens(8192, 4096, 16), 4096);  // aligned: 256 blocks exactly
  EXPECT_EQ(WindowTokens(100, 4096, 16), 112);    // window not yet full
  EXPECT_EQ(WindowTokens(5000, 4096, 1), 4096);
  KvSizeResult r = Size("mistral-7b", 5000, KvDtype::kF16, 1, 16);
  EXPECT_EQ(r.window_tokens_per_sequence, 4112);
  EXPECT_EQ(r.total_bytes, 131072u * 4112);
}

TEST(KvSize, BadOptionsAndOverflow) {
  KvSizeSpec s = KvSizeSpecFromPreset("llama-2-7b");
  for (KvSizeOptions o :
       {KvSizeOptions{.seq_len = 0}, KvSizeOptions{.batch = -1}, KvSizeOptions{.block_size = 0}}) {
    Error e = Thrown([&] { ComputeKvSize(s, o); });
    EXPECT_EQ(e.code(), StatusCode::kInvalidArgument) << e.what();
  }
  // 70,272 x 2^40 x 2^32 bytes does not fit in 64 bits.
  Error e = Thrown([] {
    ComputeKvSize(KvSizeSpecFromPreset("deepseek-v3"),
                  {.seq_len = int64_t{1} << 40, .batch = int64_t{1} << 32});
  });
  EXPECT_EQ(e.code(), StatusCode::kOutOfRange);
  // A sequence past the trained context is computed but flagged.
  EXPECT_TRUE(Size("gpt2", 2048).exceeds_context);
  // An inconsistent spec is named.
  KvSizeSpec bad = s;
  bad.n_kv_heads = 5;  // 32 % 5 != 0
  Error e2 = Thrown([&] { ComputeKvSize(bad, {}); });
  EXPECT_TRUE(Contains(e2.what(), "n_kv_heads")) << e2.what();
}

TEST(KvSize, FormatBytes) {
  EXPECT_EQ(FormatBytes(900), "900 B");
  EXPECT_EQ(FormatBytes(524288), "512 KiB");
  EXPECT_EQ(FormatBytes(kGiB), "1.00 GiB");
  EXPECT_EQ(FormatBytes(1342177280), "1.25 GiB");
  EXPECT_EQ(FormatBytes(11513364480), "10.7 GiB");
}

// --- Hugging Face config.json ----------------------------------------------------

TEST(KvSizeHfConfig, Llama) {
  // meta-llama/Llama-2-70b-hf (abridged).
  const char* cfg = R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 8192, "intermediate_size": 28672, "max_position_embeddings": 4096,
    "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "torch_dtype": "float16", "vocab_size": 32000})";
  KvSizeSpec s = KvSizeSpecFromHfConfig(cfg, "llama-2-70b/config.json");
  EXPECT_EQ(s.n_layers, 80);
  EXPECT_EQ(s.n_kv_heads, 8);
  EXPECT_EQ(s.head_dim, 128);
  EXPECT_EQ(s.context_length, 4096);
  EXPECT_EQ(s.attention(), KvAttention::kGQA);
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 4096}).total_bytes, 1342177280u);
  // num_key_value_heads absent -> MHA.
  KvSizeSpec mha = KvSizeSpecFromHfConfig(
      R"({"num_hidden_layers": 32, "num_attention_heads": 32, "hidden_size": 4096})");
  EXPECT_EQ(mha.n_kv_heads, 32);
  EXPECT_EQ(ComputeKvSize(mha, {.seq_len = 1}).bytes_per_token, 524288u);
  // An explicit head_dim wins over hidden_size / heads (Gemma: 256 with hidden 3072, 16 heads).
  KvSizeSpec hd = KvSizeSpecFromHfConfig(
      R"({"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16,
          "hidden_size": 3072, "head_dim": 256})");
  EXPECT_EQ(hd.head_dim, 256);
}

TEST(KvSizeHfConfig, Gpt2) {
  // openai-community/gpt2 (abridged): GPT-2 spells the keys n_layer / n_head / n_embd.
  const char* cfg = R"({"model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
                        "n_layer": 12, "n_positions": 1024, "vocab_size": 50257})";
  KvSizeSpec s = KvSizeSpecFromHfConfig(cfg);
  EXPECT_EQ(s.n_layers, 12);
  EXPECT_EQ(s.n_heads, 12);
  EXPECT_EQ(s.n_kv_heads, 12);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_EQ(s.context_length, 1024);
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 1}).bytes_per_token, 36864u);
}

TEST(KvSizeHfConfig, DeepSeekMla) {
  // deepseek-ai/DeepSeek-V3 (abridged).
  const char* cfg = R"({"model_type": "deepseek_v3", "hidden_size": 7168,
    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
    "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "max_position_embeddings": 163840,
    "n_routed_experts": 256})";
  KvSizeSpec s = KvSizeSpecFromHfConfig(cfg);
  EXPECT_TRUE(s.mla);
  EXPECT_EQ(s.attention(), KvAttention::kMLA);
  EXPECT_EQ(s.kv_lora_rank, 512);
  EXPECT_EQ(s.qk_rope_head_dim, 64);
  EXPECT_EQ(s.head_dim, 192);
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 1}).bytes_per_token, 70272u);
  // MLA without its rank is named.
  Error e = Thrown([] {
    KvSizeSpecFromHfConfig(
        R"({"model_type": "deepseek_v2", "num_hidden_layers": 27, "num_attention_heads": 16,
            "qk_rope_head_dim": 64})");
  });
  EXPECT_TRUE(Contains(e.what(), "kv_lora_rank")) << e.what();
}

TEST(KvSizeHfConfig, SlidingWindows) {
  // mistralai/Mistral-7B-v0.1: window on every layer.
  KvSizeSpec m = KvSizeSpecFromHfConfig(
      R"({"model_type": "mistral", "num_hidden_layers": 32, "num_attention_heads": 32,
          "num_key_value_heads": 8, "hidden_size": 4096, "sliding_window": 4096,
          "max_position_embeddings": 32768})");
  EXPECT_EQ(m.sliding_window, 4096);
  EXPECT_EQ(m.n_window_layers, 32);
  // sliding_window: null (Mixtral, Mistral v0.2) -> no window.
  KvSizeSpec n = KvSizeSpecFromHfConfig(
      R"({"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
          "hidden_size": 4096, "sliding_window": null})");
  EXPECT_EQ(n.sliding_window, 0);
  // Qwen2 carries a window that use_sliding_window switches off.
  KvSizeSpec q = KvSizeSpecFromHfConfig(
      R"({"model_type": "qwen2", "num_hidden_layers": 28, "num_attention_heads": 28,
          "num_key_value_heads": 4, "hidden_size": 3584, "sliding_window": 131072,
          "use_sliding_window": false, "max_window_layers": 28})");
  EXPECT_EQ(q.sliding_window, 0);
  EXPECT_EQ(q.n_window_layers, 0);
  // Gemma-2: every other layer is local. 26 layers, 4 KV heads of 256, window 4096.
  KvSizeSpec g = KvSizeSpecFromHfConfig(
      R"({"model_type": "gemma2", "num_hidden_layers": 26, "num_attention_heads": 8,
          "num_key_value_heads": 4, "hidden_size": 2304, "head_dim": 256,
          "sliding_window": 4096, "max_position_embeddings": 8192})");
  EXPECT_EQ(g.n_window_layers, 13);
  // Per layer per token 2 x 4 x 256 x 2 = 4096 B; at 8192 tokens:
  // 13 global x 8192 + 13 local x 4096 = 159,744 slots x 4096 = 654,311,424.
  EXPECT_EQ(ComputeKvSize(g, {.seq_len = 8192}).total_bytes, 654311424u);
  // layer_types lists each layer.
  KvSizeSpec lt = KvSizeSpecFromHfConfig(
      R"({"num_hidden_layers": 4, "num_attention_heads": 4, "hidden_size": 256,
          "sliding_window": 512, "layer_types": ["sliding_attention", "sliding_attention",
          "sliding_attention", "full_attention"]})");
  EXPECT_EQ(lt.n_window_layers, 3);
}

TEST(KvSizeHfConfig, ErrorsNameTheProblem) {
  struct Case {
    const char* json;
    const char* expect;  // substring of the message
  };
  const Case cases[] = {
      {R"({"num_hidden_layers": 32, "num_attention_heads": )", "not valid JSON"},
      {"", "not valid JSON"},
      {"[1, 2, 3]", "JSON object"},
      {R"({"num_attention_heads": 32, "hidden_size": 4096})", "num_hidden_layers"},
      {R"({"num_hidden_layers": 32, "hidden_size": 4096})", "num_attention_heads"},
      {R"({"num_hidden_layers": 32, "num_attention_heads": 32})", "hidden_size"},
      {R"({"num_hidden_layers": "32", "num_attention_heads": 32, "hidden_size": 4096})",
       "must be an integer"},
      {R"({"num_hidden_layers": -1, "num_attention_heads": 32, "hidden_size": 4096})",
       "out of range"},
      {R"({"num_hidden_layers": 32, "num_attention_heads": 32, "hidden_size": 4001})",
       "not a multiple"},
      {R"({"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 5,
           "hidden_size": 4096})",
       "n_kv_heads"},
      {R"({"num_hidden_layers": 1e300, "num_attention_heads": 32, "hidden_size": 4096})",
       "num_hidden_layers"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    Error e = Thrown([&] { KvSizeSpecFromHfConfig(c.json, "cfg.json"); });
    EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(e.what(), c.expect)) << e.what();
    EXPECT_TRUE(Contains(e.what(), "cfg.json")) << e.what();
  }
}

// --- GGUF --------------------------------------------------------------------------

TEST(KvSizeGguf, Stories260K) {
  const std::string path = testing::StoriesGguf();
  KVINFER_REQUIRE_FILE(path);
  GgufFile f = GgufFile::Open(path);
  KvSizeSpec s = KvSizeSpecFromGguf(f);
  EXPECT_EQ(s.n_layers, 5);
  EXPECT_EQ(s.n_kv_heads, 4);
  EXPECT_EQ(s.head_dim, 8);
  EXPECT_EQ(s.attention(), KvAttention::kGQA);
  // f32: 2 x 5 layers x 4 KV heads x 8 x 4 B = 1280 B/token.
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 1, .dtype = KvDtype::kF32}).bytes_per_token, 1280u);
}

std::string WriteTempGguf(const GgufWriter& w, const std::string& name) {
  const std::string path = ::testing::TempDir() + "/" + name;
  w.WriteFile(path);
  return path;
}

TEST(KvSizeGguf, MetadataOnlyMlaAndWindow) {
  // A metadata-only DeepSeek-V3 header (no tensors at all).
  GgufWriter w;
  w.SetString("general.architecture", "deepseek2");
  w.SetU32("deepseek2.block_count", 61);
  w.SetU32("deepseek2.attention.head_count", 128);
  w.SetU32("deepseek2.attention.head_count_kv", 128);
  w.SetU32("deepseek2.embedding_length", 7168);
  w.SetU32("deepseek2.attention.key_length", 192);
  w.SetU32("deepseek2.attention.value_length", 128);
  w.SetU32("deepseek2.attention.kv_lora_rank", 512);
  w.SetU32("deepseek2.rope.dimension_count", 64);
  w.SetU32("deepseek2.context_length", 163840);
  GgufFile f = GgufFile::Open(WriteTempGguf(w, "kv_size_deepseek.gguf"));
  KvSizeSpec s = KvSizeSpecFromGguf(f);
  EXPECT_TRUE(s.mla);
  EXPECT_EQ(ComputeKvSize(s, {.seq_len = 1}).bytes_per_token, 70272u);

  GgufWriter m;
  m.SetString("general.architecture", "llama");
  m.SetString("general.name", "mistral-ish");
  m.SetU32("llama.block_count", 32);
  m.SetU32("llama.attention.head_count", 32);
  m.SetU32("llama.attention.head_count_kv", 8);
  m.SetU32("llama.embedding_length", 4096);
  m.SetU32("llama.attention.sliding_window", 4096);
  GgufFile fm = GgufFile::Open(WriteTempGguf(m, "kv_size_mistral.gguf"));
  KvSizeSpec sm = KvSizeSpecFromGguf(fm);
  EXPECT_EQ(sm.name, "mistral-ish");
  EXPECT_EQ(sm.sliding_window, 4096);
  EXPECT_EQ(ComputeKvSize(sm, {.seq_len = 8192}).total_bytes, 131072u * 4096);
}

TEST(KvSizeGguf, MissingKeyIsNamed) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.block_count", 32);
  GgufFile f = GgufFile::Open(WriteTempGguf(w, "kv_size_missing.gguf"));
  Error e = Thrown([&] { KvSizeSpecFromGguf(f); });
  EXPECT_EQ(e.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(e.what(), "llama.attention.head_count")) << e.what();
  EXPECT_TRUE(Contains(e.what(), "kv_size_missing.gguf")) << e.what();
}

// --- One reader of model metadata (model/config.h) ---------------------------------

// The loader (kRun) and the calculator (kShape) read one config the same way,
// and kv-size's bytes per token for it are the cache's own.
TEST(ConfigReader, LoaderAndCalculatorAgree) {
  // HuggingFaceTB/SmolLM2-135M (abridged).
  const char* cfg = R"({"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 8192, "vocab_size": 49152, "rms_norm_eps": 1e-05,
    "rope_theta": 100000.0, "tie_word_embeddings": true})";
  const ModelConfig run = ConfigFromHfJson(cfg, "c.json", ConfigUse::kRun);
  const ModelConfig shape = ConfigFromHfJson(cfg, "c.json", ConfigUse::kShape);
  EXPECT_EQ(run.n_layers, 30);
  EXPECT_EQ(run.n_kv_heads, 3);
  EXPECT_EQ(run.head_dim, 64);
  EXPECT_EQ(run.d_ff, 1536);
  EXPECT_FLOAT_EQ(run.rope_theta, 100000.0f);
  EXPECT_EQ(shape.n_layers, run.n_layers);
  EXPECT_EQ(shape.n_heads, run.n_heads);
  EXPECT_EQ(shape.n_kv_heads, run.n_kv_heads);
  EXPECT_EQ(shape.head_dim, run.head_dim);
  EXPECT_EQ(shape.v_head_dim, run.head_dim);
  EXPECT_EQ(shape.context_length, run.context_length);
  const KvSizeSpec spec = KvSizeSpecFromHfConfig(cfg);
  for (auto [dtype, precision] : {std::pair{KvDtype::kF32, KvPrecision::kF32},
                                  std::pair{KvDtype::kF16, KvPrecision::kF16},
                                  std::pair{KvDtype::kQ8_0, KvPrecision::kQ8_0},
                                  std::pair{KvDtype::kQ4_0, KvPrecision::kQ4_0}}) {
    EXPECT_EQ(ComputeKvSize(spec, {.seq_len = 1, .dtype = dtype}).bytes_per_token,
              static_cast<uint64_t>(KvBytesPerToken(run.kv_shape(), precision)))
        << KvDtypeName(dtype);
  }
}

// What kv-size can size but the forward pass does not compute is read for
// the shape and refused for running, naming the key.
TEST(ConfigReader, RunRefusesAttentionItDoesNotCompute) {
  const std::string base = R"({"model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "max_position_embeddings": 32768, "vocab_size": 32000, )";
  const std::string window = base + R"("sliding_window": 4096})";
  EXPECT_EQ(ConfigFromHfJson(window, "w.json", ConfigUse::kShape).sliding_window, 4096);
  Error e = Thrown([&] { ConfigFromHfJson(window, "w.json"); });
  EXPECT_EQ(e.code(), StatusCode::kUnimplemented);
  EXPECT_TRUE(Contains(e.what(), "sliding_window")) << e.what();
  const std::string mla = base + R"("kv_lora_rank": 512, "qk_rope_head_dim": 64})";
  EXPECT_TRUE(ConfigFromHfJson(mla, "m.json", ConfigUse::kShape).mla);
  e = Thrown([&] { ConfigFromHfJson(mla, "m.json"); });
  EXPECT_EQ(e.code(), StatusCode::kUnimplemented);
  EXPECT_TRUE(Contains(e.what(), "kv_lora_rank")) << e.what();

  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.block_count", 32);
  w.SetU32("llama.embedding_length", 4096);
  w.SetU32("llama.attention.head_count", 32);
  w.SetU32("llama.attention.head_count_kv", 8);
  w.SetU32("llama.feed_forward_length", 14336);
  w.SetU32("llama.context_length", 32768);
  w.SetU32("llama.attention.sliding_window", 4096);
  GgufFile f = GgufFile::Open(WriteTempGguf(w, "config_window.gguf"));
  EXPECT_EQ(ConfigFromGguf(f, ConfigUse::kShape).sliding_window, 4096);
  e = Thrown([&] { ConfigFromGguf(f); });
  EXPECT_EQ(e.code(), StatusCode::kUnimplemented);
  EXPECT_TRUE(Contains(e.what(), "llama.attention.sliding_window")) << e.what();
}

// --- The command line, end to end --------------------------------------------------

using testing::CmdResult;

CmdResult RunKvSize(const std::string& args) { return testing::RunKvinfer("kv-size " + args); }

TEST(KvSizeCli, JsonSingleModel) {
  CmdResult r = RunKvSize("--preset llama-2-70b --seq-len 4096 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("bytes_per_token").get<uint64_t>(), 327680u);
  EXPECT_EQ(j.at("total_bytes").get<uint64_t>(), 1342177280u);
  ASSERT_EQ(j.at("models").size(), 1u);
  EXPECT_EQ(j.at("models")[0].at("attention"), "GQA");
  EXPECT_EQ(j.at("models")[0].at("n_kv_heads"), 8);
}

TEST(KvSizeCli, JsonSeveralModelsAndOptions) {
  CmdResult r = RunKvSize(
      "--preset llama-2-7b --preset deepseek-v3,mistral-7b --seq-len 2048 --batch 2 "
      "--dtype q8_0 --block-size 16 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.at("models").size(), 3u);
  EXPECT_FALSE(j.contains("total_bytes"));  // only per model when several
  EXPECT_EQ(j.at("dtype"), "q8_0");
  // llama-2-7b q8_0: 278,528 B/token x 2048 x 2 sequences.
  EXPECT_EQ(j.at("models")[0].at("total_bytes").get<uint64_t>(), 278528u * 2048 * 2);
  EXPECT_EQ(j.at("models")[1].at("attention"), "MLA");
  EXPECT_EQ(j.at("models")[1].at("bytes_per_token").get<uint64_t>(), 37332u);
}

TEST(KvSizeCli, TableAndGguf) {
  CmdResult r = RunKvSize("--preset llama-2-7b --seq-len 2048");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "524,288")) << r.out;
  EXPECT_TRUE(Contains(r.out, "1.00 GiB")) << r.out;
  EXPECT_TRUE(Contains(r.out, "MHA")) << r.out;
  const std::string path = testing::StoriesGguf();
  KVINFER_REQUIRE_FILE(path);
  CmdResult g = RunKvSize("--model " + path + " --dtype f32 --json");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(nlohmann::json::parse(g.out).at("bytes_per_token").get<uint64_t>(), 1280u);
}

TEST(KvSizeCli, ConfigFile) {
  const std::string dir = ::testing::TempDir() + "/kv_size_cfg";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json")
      << R"({"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024})";
  CmdResult r = RunKvSize("--config " + dir + " --seq-len 1024 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("name"), "kv_size_cfg");
  EXPECT_EQ(j.at("total_bytes").get<uint64_t>(), 37748736u);  // 36,864 x 1024
  std::ofstream(dir + "/bad.json") << R"({"n_layer": 12})";
  CmdResult bad = RunKvSize("--config " + dir + "/bad.json");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(Contains(bad.err, "n_head")) << bad.err;
}

// A number no double holds is malformed JSON: a clear error naming the file
// and the number, not an abort.
TEST(KvSizeCli, NumberTooLargeForADouble) {
  const std::string path = ::testing::TempDir() + "/kv_size_huge.json";
  std::ofstream(path) << R"({"num_hidden_layers": 1e400, "num_attention_heads": 32,
                             "hidden_size": 4096})";
  CmdResult r = RunKvSize("-c " + path);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(Contains(r.err, "kv_size_huge.json")) << r.err;
  EXPECT_TRUE(Contains(r.err, "not valid JSON")) << r.err;
  EXPECT_TRUE(Contains(r.err, "1e400")) << r.err;
  Error e = Thrown([] { KvSizeSpecFromHfConfig(R"({"num_hidden_layers": 1e400})", "huge.json"); });
  EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "1e400")) << e.what();
}

TEST(KvSizeCli, BadInputIsAClearError) {
  CmdResult flag = RunKvSize("--preset gpt2 --bogus-flag 3");
  EXPECT_NE(flag.exit_code, 0);
  EXPECT_TRUE(Contains(flag.err, "bogus-flag")) << flag.err;
  CmdResult preset = RunKvSize("--preset gpt-7");
  EXPECT_EQ(preset.exit_code, 1);
  EXPECT_TRUE(Contains(preset.err, "gpt-7") && Contains(preset.err, "llama-3-8b")) << preset.err;
  CmdResult dtype = RunKvSize("--preset gpt2 --dtype f12");
  EXPECT_EQ(dtype.exit_code, 1);
  EXPECT_TRUE(Contains(dtype.err, "f12")) << dtype.err;
  CmdResult seq = RunKvSize("--preset gpt2 --seq-len 0");
  EXPECT_NE(seq.exit_code, 0);
  EXPECT_TRUE(Contains(seq.err, "seq-len")) << seq.err;
  CmdResult none = RunKvSize("");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_TRUE(Contains(none.err, "--preset")) << none.err;
  CmdResult missing = RunKvSize("--model /nonexistent/x.gguf");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(Contains(missing.err, "/nonexistent/x.gguf")) << missing.err;
}

TEST(KvSizeCli, Plot) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") != 0) {
    GTEST_FAIL() << "needs /usr/bin/python3 with matplotlib: run ./scripts/setup.sh (it installs "
                    "python3-matplotlib)";
  }
  const std::string png = ::testing::TempDir() + "/kv_size_test.png";
  std::filesystem::remove(png);
  CmdResult r = RunKvSize("--preset llama-2-7b,mistral-7b --plot " + png + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(nlohmann::json::accept(r.out)) << r.out;  // stdout stays pure JSON
  ASSERT_TRUE(std::filesystem::exists(png));
  const std::string bytes = testing::ReadFile(png);
  ASSERT_GT(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");
}

}  // namespace
}  // namespace kvinfer
