// Hugging Face checkpoint directories: Llama q/k rotary order, dtypes,
// shards, and the errors a bad directory gets. (GPT-2 directories are
// checked against NumPy goldens in golden_test.cpp.)
//
// The Llama checks write one random model twice — as a GGUF whose q/k rows
// are permuted the way llama.cpp's converter does it (convert_hf_to_gguf's
// permute: reshape(n_head, 2, head_dim / 2, in).swapaxes(1, 2)), and as an
// HF directory in HF's own order — and require the same logits from both:
// the GGUF Llama path is itself checked against goldens.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "core/half.h"
#include "core/thread_pool.h"
#include "engine/model_access.h"
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "kv/kv_cache.h"
#include "kvinfer/kvinfer.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "forward_util.h"
#include "test_util.h"

namespace kvinfer {
namespace {

namespace fs = std::filesystem;

constexpr int kDim = 64, kHeads = 4, kKvHeads = 2, kHeadDim = 16, kFf = 96, kLayers = 2;
constexpr int kVocab = 300, kCtx = 128;

struct Tensor {
  std::string hf_name;
  std::string gguf_name;
  std::vector<int64_t> shape;  // HF order [rows, cols] or [n]
  std::vector<float> values;   // already rounded to the HF dtype
  int rotary_heads = 0;        // q/k: heads whose rows GGUF permutes
};

float Round(float v, const std::string& dtype) {
  if (dtype == "F16") return F16ToF32(F32ToF16(v));
  if (dtype == "BF16") return BF16ToF32(F32ToBF16(v));
  return v;
}

std::vector<Tensor> RandomLlama(const std::string& dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<Tensor> out;
  auto add = [&](std::string hf, std::string gg, std::vector<int64_t> shape, float mean, float std,
                 int rotary_heads = 0) {
    Tensor t{std::move(hf), std::move(gg), shape, {}, rotary_heads};
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    for (int64_t i = 0; i < n; ++i) t.values.push_back(Round(mean + std * normal(rng), dtype));
    out.push_back(std::move(t));
  };
  add("model.embed_tokens.weight", "token_embd.weight", {kVocab, kDim}, 0, 1.0f);
  for (int l = 0; l < kLayers; ++l) {
    const std::string h = "model.layers." + std::to_string(l) + ".";
    const std::string g = "blk." + std::to_string(l) + ".";
    add(h + "input_layernorm.weight", g + "attn_norm.weight", {kDim}, 1, 0.1f);
    add(h + "self_attn.q_proj.weight", g + "attn_q.weight", {kHeads * kHeadDim, kDim}, 0, 0.3f,
        kHeads);
    add(h + "self_attn.k_proj.weight", g + "attn_k.weight", {kKvHeads * kHeadDim, kDim}, 0, 0.3f,
        kKvHeads);
    add(h + "self_attn.v_proj.weight", g + "attn_v.weight", {kKvHeads * kHeadDim, kDim}, 0, 0.2f);
    add(h + "self_attn.o_proj.weight", g + "attn_output.weight", {kDim, kHeads * kHeadDim}, 0,
        0.2f);
    add(h + "post_attention_layernorm.weight", g + "ffn_norm.weight", {kDim}, 1, 0.1f);
    add(h + "mlp.gate_proj.weight", g + "ffn_gate.weight", {kFf, kDim}, 0, 0.2f);
    add(h + "mlp.up_proj.weight", g + "ffn_up.weight", {kFf, kDim}, 0, 0.2f);
    add(h + "mlp.down_proj.weight", g + "ffn_down.weight", {kDim, kFf}, 0, 0.2f);
  }
  add("model.norm.weight", "output_norm.weight", {kDim}, 1, 0.1f);
  add("lm_head.weight", "output.weight", {kVocab, kDim}, 0, 0.3f);
  return out;
}

// llama.cpp's permute, written as its reshape: HF row (h, j, i) of the view
// [heads, 2, head_dim/2] goes to GGUF row (h, i, j).
std::vector<float> LlamaCppPermute(const Tensor& t) {
  const int64_t cols = t.shape[1];
  const int64_t half = t.shape[0] / t.rotary_heads / 2;
  std::vector<float> out(t.values.size());
  for (int64_t h = 0; h < t.rotary_heads; ++h) {
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t i = 0; i < half; ++i) {
        const int64_t src = (h * 2 + j) * half + i;
        const int64_t dst = (h * half + i) * 2 + j;
        std::copy_n(t.values.begin() + src * cols, cols, out.begin() + dst * cols);
      }
    }
  }
  return out;
}

std::vector<std::string> Pieces() {
  std::vector<std::string> p;
  for (int i = 0; i < kVocab; ++i) p.push_back(fmt::format("t{}", i));
  p[0] = "a";  // one merge, "a b" -> "ab" (a BPE vocabulary needs one)
  p[1] = "b";
  p[2] = "ab";
  return p;
}

void WriteText(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

void WriteGguf(const std::string& path, const std::vector<Tensor>& tensors) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.context_length", kCtx);
  w.SetU32("llama.embedding_length", kDim);
  w.SetU32("llama.block_count", kLayers);
  w.SetU32("llama.feed_forward_length", kFf);
  w.SetU32("llama.attention.head_count", kHeads);
  w.SetU32("llama.attention.head_count_kv", kKvHeads);
  w.SetF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetF32("llama.rope.freq_base", 10000.0f);
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "gpt-2");
  const std::vector<std::string> pieces = Pieces();
  w.SetStringArray("tokenizer.ggml.tokens", std::span<const std::string>(pieces));
  const std::vector<std::string> merges = {"a b"};
  w.SetStringArray("tokenizer.ggml.merges", std::span<const std::string>(merges));
  for (const Tensor& t : tensors) {
    const std::vector<float> v = t.rotary_heads > 0 ? LlamaCppPermute(t) : t.values;
    std::vector<uint64_t> dims(t.shape.rbegin(), t.shape.rend());
    const auto* bytes = reinterpret_cast<const uint8_t*>(v.data());
    w.AddTensor(t.gguf_name, dims, DType::kF32,
                std::vector<uint8_t>(bytes, bytes + v.size() * sizeof(float)));
  }
  w.WriteFile(path);
}

struct HfWriteOptions {
  std::string dtype = "F32";
  int shards = 1;              // >1: model-0000N-of-0000M.safetensors + index
  bool gguf_order_qk = false;  // write q/k rows as GGUF has them (wrong for HF)
};

nlohmann::json LlamaConfigJson() {
  return {{"model_type", "llama"},          {"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", kDim},            {"intermediate_size", kFf},
          {"num_hidden_layers", kLayers},   {"num_attention_heads", kHeads},
          {"num_key_value_heads", kKvHeads}, {"vocab_size", kVocab},
          {"max_position_embeddings", kCtx}, {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},          {"tie_word_embeddings", false},
          {"hidden_act", "silu"},           {"rope_scaling", nullptr}};
}

void WriteHfDir(const fs::path& dir, const std::vector<Tensor>& tensors, const HfWriteOptions& o,
                const nlohmann::json& config = LlamaConfigJson()) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  WriteText(dir / "config.json", config.dump(2));
  nlohmann::json vocab = nlohmann::json::object();
  const std::vector<std::string> pieces = Pieces();
  for (int i = 0; i < kVocab; ++i) vocab[pieces[i]] = i;
  WriteText(dir / "vocab.json", vocab.dump());
  WriteText(dir / "merges.txt", "#version: 0.2\na b\n");

  std::vector<std::vector<uint8_t>> storage;
  std::vector<std::vector<SafetensorsWriteTensor>> shards(o.shards);
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t k = 0; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    const std::vector<float> v = o.gguf_order_qk && t.rotary_heads > 0 ? LlamaCppPermute(t) : t.values;
    std::vector<uint8_t>& bytes = storage.emplace_back();
    for (float x : v) {
      if (o.dtype == "F32") {
        const auto* b = reinterpret_cast<const uint8_t*>(&x);
        bytes.insert(bytes.end(), b, b + 4);
      } else {
        const uint16_t h = o.dtype == "F16" ? F32ToF16(x) : F32ToBF16(x);
        bytes.push_back(static_cast<uint8_t>(h & 0xff));
        bytes.push_back(static_cast<uint8_t>(h >> 8));
      }
    }
    const size_t shard = k * o.shards / tensors.size();
    shards[shard].push_back({t.hf_name, o.dtype, {t.shape.begin(), t.shape.end()}, bytes});
    weight_map[t.hf_name] =
        o.shards == 1 ? "model.safetensors"
                      : fmt::format("model-{:05d}-of-{:05d}.safetensors", shard + 1, o.shards);
  }
  for (int s = 0; s < o.shards; ++s) {
    const std::string name = o.shards == 1 ? "model.safetensors"
                                           : fmt::format("model-{:05d}-of-{:05d}.safetensors",
                                                         s + 1, o.shards);
    WriteSafetensors((dir / name).string(), shards[s], {{"format", "pt"}});
  }
  if (o.shards > 1) {
    WriteText(dir / "model.safetensors.index.json",
              nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());
  }
}

// Logits of every position of `tokens` in one batch.
std::vector<float> AllLogits(const Model& model, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> rows(tokens.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>(i);
  return testing::ForwardLogits(ImplOf(model), tokens, rows);
}

// max |a - b| / max |a|
double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(a[i])));
  }
  return diff / scale;
}

Model LoadOk(const std::string& path) {
  StatusOr<Model> m = Model::Load(path);
  EXPECT_TRUE(m.ok()) << path << ": " << m.status().ToString();
  if (!m.ok()) throw std::runtime_error(m.status().ToString());
  return std::move(m).value();
}

class HfCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("kvinfer_hf_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  const std::vector<int32_t> tokens_ = {1, 17, 250, 3, 99, 42, 42, 7, 299, 0, 120, 64, 5, 200};
};

TEST_F(HfCheckpointTest, LlamaDirectoryMatchesLlamaCppGgufForEveryDtype) {
  for (const std::string& dtype : {std::string("F32"), std::string("F16"), std::string("BF16")}) {
    SCOPED_TRACE(dtype);
    const std::vector<Tensor> tensors = RandomLlama(dtype, 7);
    const std::string gguf = (dir_ / ("m-" + dtype + ".gguf")).string();
    WriteGguf(gguf, tensors);
    WriteHfDir(dir_ / dtype, tensors, {.dtype = dtype});
    const Model from_gguf = LoadOk(gguf);
    const Model from_hf = LoadOk((dir_ / dtype).string());
    EXPECT_EQ(from_hf.info().format, "hf");
    EXPECT_EQ(from_hf.info().architecture, "llama");
    EXPECT_EQ(from_hf.info().n_kv_heads, kKvHeads);
    EXPECT_EQ(from_hf.info().rope_dims, kHeadDim);
    EXPECT_EQ(from_hf.info().num_parameters, from_gguf.info().num_parameters);
    const std::string lower = dtype == "F32" ? "f32" : dtype == "F16" ? "f16" : "bf16";
    ASSERT_EQ(from_hf.info().tensor_types.size(), 1u);
    EXPECT_EQ(from_hf.info().tensor_types[0].first, lower);
    // The same numbers in a different row order: equal up to rounding.
    EXPECT_LE(RelDiff(AllLogits(from_gguf, tokens_), AllLogits(from_hf, tokens_)), 1e-5);
  }
}

TEST_F(HfCheckpointTest, LlamaRotaryOrderMatters) {
  // Without reordering q/k (rows left in GGUF's order inside an HF
  // directory) the logits move far: the comparison above can fail.
  const std::vector<Tensor> tensors = RandomLlama("F32", 7);
  const std::string gguf = (dir_ / "m.gguf").string();
  WriteGguf(gguf, tensors);
  WriteHfDir(dir_ / "wrong", tensors, {.gguf_order_qk = true});
  EXPECT_GT(RelDiff(AllLogits(LoadOk(gguf), tokens_), AllLogits(LoadOk((dir_ / "wrong").string()), tokens_)),
            1e-2);
}

TEST_F(HfCheckpointTest, ShardedEqualsSingleFileAndGreedyMatchesGguf) {
  const std::vector<Tensor> tensors = RandomLlama("F16", 11);
  WriteHfDir(dir_ / "one", tensors, {.dtype = "F16"});
  WriteHfDir(dir_ / "three", tensors, {.dtype = "F16", .shards = 3});
  const Model one = LoadOk((dir_ / "one").string());
  const Model three = LoadOk((dir_ / "three").string());
  EXPECT_EQ(AllLogits(one, tokens_), AllLogits(three, tokens_));
  // Any file of the checkpoint stands for its directory.
  EXPECT_EQ(LoadOk((dir_ / "three" / "config.json").string()).info().format, "hf");

  const std::string gguf = (dir_ / "m.gguf").string();
  WriteGguf(gguf, tensors);
  const Model from_gguf = LoadOk(gguf);
  for (KvStrategy strategy : {KvStrategy::kNone, KvStrategy::kContiguous, KvStrategy::kPaged}) {
    std::vector<std::vector<int32_t>> got;
    for (const Model* m : {&from_gguf, &three}) {
      auto engine = Engine::Create(*m, {.kv = {.strategy = strategy, .block_size_tokens = 4,
                                               .max_seq_len = 64},
                                        .num_threads = 2});
      ASSERT_TRUE(engine.ok()) << engine.status().ToString();
      ASSERT_TRUE((*engine)->AddRequestTokens(tokens_, {.max_tokens = 24, .ignore_eos = true}).ok());
      std::vector<int32_t>& out = got.emplace_back();
      while ((*engine)->HasWork()) {
        for (const RequestOutput& o : (*engine)->Step()) {
          out.insert(out.end(), o.new_tokens.begin(), o.new_tokens.end());
        }
      }
    }
    EXPECT_EQ(got[0].size(), 24u);
    EXPECT_EQ(got[0], got[1]) << KvStrategyName(strategy);
  }
}

TEST_F(HfCheckpointTest, TiedLlamaNeedsNoLmHead) {
  std::vector<Tensor> tensors = RandomLlama("F32", 3);
  tensors.pop_back();  // lm_head
  nlohmann::json config = LlamaConfigJson();
  config["tie_word_embeddings"] = true;
  WriteHfDir(dir_ / "tied", tensors, {}, config);
  const Model m = LoadOk((dir_ / "tied").string());
  EXPECT_TRUE(m.info().tied_output);
  EXPECT_EQ(AllLogits(m, tokens_).size(), tokens_.size() * kVocab);
}

// The message of a failed load, which must name what is wrong.
std::string LoadError(const fs::path& path, StatusCode code) {
  StatusOr<Model> m = Model::Load(path.string());
  EXPECT_FALSE(m.ok()) << path;
  if (m.ok()) return "";
  EXPECT_EQ(m.status().code(), code) << m.status().ToString();
  return m.status().ToString();
}

TEST_F(HfCheckpointTest, BadDirectoriesGetClearErrors) {
  using ::testing::HasSubstr;
  const std::vector<Tensor> tensors = RandomLlama("F32", 5);
  const fs::path d = dir_ / "m";

  fs::create_directories(dir_ / "empty");
  EXPECT_THAT(LoadError(dir_ / "empty", StatusCode::kNotFound), HasSubstr("without config.json"));

  WriteHfDir(d, tensors, {});
  WriteText(d / "config.json", "{\"model_type\": \"llama\", ");
  EXPECT_THAT(LoadError(d, StatusCode::kDataLoss), HasSubstr("config.json: not valid JSON"));

  nlohmann::json c = LlamaConfigJson();
  c["model_type"] = "mamba";
  WriteText(d / "config.json", c.dump());
  EXPECT_THAT(LoadError(d, StatusCode::kUnimplemented), HasSubstr("model_type 'mamba'"));

  c = LlamaConfigJson();
  c.erase("hidden_size");
  WriteText(d / "config.json", c.dump());
  EXPECT_THAT(LoadError(d, StatusCode::kDataLoss), HasSubstr("missing key 'hidden_size'"));

  c = LlamaConfigJson();
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  WriteText(d / "config.json", c.dump());
  EXPECT_THAT(LoadError(d, StatusCode::kUnimplemented), HasSubstr("rope_scaling"));

  c = LlamaConfigJson();
  c["intermediate_size"] = kFf + 1;  // every MLP matrix now has the wrong shape
  WriteText(d / "config.json", c.dump());
  EXPECT_THAT(LoadError(d, StatusCode::kDataLoss),
              HasSubstr("tensor 'model.layers.0.mlp.gate_proj.weight' has shape [96, 64], "
                        "expected [97, 64]"));

  c = LlamaConfigJson();
  c["vocab_size"] = kVocab + 1;
  WriteText(d / "config.json", c.dump());
  EXPECT_THAT(LoadError(d, StatusCode::kDataLoss), HasSubstr("model.embed_tokens.weight"));

  // Tokenizer: absent, or a different size from the model's vocabulary.
  WriteHfDir(d, tensors, {});
  fs::remove(d / "vocab.json");
  EXPECT_THAT(LoadError(d, StatusCode::kNotFound), HasSubstr("no tokenizer"));

  // A tensor missing, or in a dtype kvinfer cannot compute with.
  std::vector<Tensor> fewer = tensors;
  fewer.erase(fewer.end() - 2);  // model.norm.weight
  WriteHfDir(d, fewer, {});
  EXPECT_THAT(LoadError(d, StatusCode::kDataLoss), HasSubstr("missing tensor 'model.norm.weight'"));
  WriteHfDir(d, tensors, {});
  std::vector<int64_t> ids(static_cast<size_t>(kVocab / 75) * kDim, 1);
  WriteSafetensors((d / "model.safetensors").string(),
                   {{"model.embed_tokens.weight", "I64", {kVocab / 75, kDim},
                     std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(ids.data()),
                                              ids.size() * 8)}});
  EXPECT_THAT(LoadError(d, StatusCode::kDataLoss), HasSubstr("model.embed_tokens.weight"));

  // No weights; a shard the index names is missing.
  fs::remove(d / "model.safetensors");
  EXPECT_THAT(LoadError(d, StatusCode::kNotFound), HasSubstr("no weights"));
  WriteHfDir(d, tensors, {.shards = 2});
  fs::remove(d / "model-00002-of-00002.safetensors");
  EXPECT_THAT(LoadError(d, StatusCode::kNotFound), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST_F(HfCheckpointTest, UnsupportedDtypeIsNamed) {
  std::vector<Tensor> tensors = RandomLlama("F32", 5);
  WriteHfDir(dir_ / "m", tensors, {});
  // Rewrite model.norm.weight as I32 (same byte size as F32).
  SafetensorsFile f = SafetensorsFile::Open((dir_ / "m" / "model.safetensors").string());
  std::vector<std::vector<uint8_t>> keep;
  std::vector<SafetensorsWriteTensor> out;
  for (const SafetensorsTensor& t : f.tensors()) {
    keep.emplace_back(t.data, t.data + t.num_bytes);
    out.push_back({t.name, t.name == "model.norm.weight" ? "I32" : t.dtype_name, t.shape,
                   keep.back()});
  }
  const std::string path = (dir_ / "m" / "model.safetensors").string();
  WriteSafetensors(path + ".tmp", out);
  fs::rename(path + ".tmp", path);
  EXPECT_THAT(LoadError(dir_ / "m", StatusCode::kUnimplemented),
              ::testing::AllOf(::testing::HasSubstr("model.norm.weight"),
                               ::testing::HasSubstr("I32")));
}

TEST_F(HfCheckpointTest, Gpt2TransformerPrefixAndMaskBuffersAreAccepted) {
  // GPT2LMHeadModel.save_pretrained writes "transformer.h.0..." and older
  // checkpoints carry attn.bias / attn.masked_bias buffers: same model.
  const fs::path src = fs::path(KVINFER_SOURCE_DIR) / "models/gpt2-tiny-s12-random";
  KVINFER_REQUIRE_FILE((src / "model.safetensors").string());
  const fs::path dst = dir_ / "prefixed";
  fs::create_directories(dst);
  for (const char* f : {"config.json", "vocab.json", "merges.txt"}) fs::copy_file(src / f, dst / f);
  const SafetensorsFile in = SafetensorsFile::Open((src / "model.safetensors").string());
  std::vector<SafetensorsWriteTensor> out;
  for (const SafetensorsTensor& t : in.tensors()) {
    out.push_back({"transformer." + t.name, t.dtype_name, t.shape, {t.data, t.num_bytes}});
  }
  const std::vector<uint8_t> mask(64 * 64, 1);
  out.push_back({"transformer.h.0.attn.bias", "U8", {1, 1, 64, 64}, mask});
  WriteSafetensors((dst / "model.safetensors").string(), out);
  EXPECT_EQ(AllLogits(LoadOk(src.string()), tokens_), AllLogits(LoadOk(dst.string()), tokens_));
}

TEST(HfCheckpointCli, InfoAndKvSizeTakeEveryFormat) {
  const std::string dir = std::string(KVINFER_SOURCE_DIR) + "/models/gpt2-tiny-random";
  KVINFER_REQUIRE_FILE(dir);
  testing::CmdResult r = testing::RunKvinfer("info --model " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::HasSubstr("Hugging Face checkpoint directory"));
  EXPECT_THAT(r.out, ::testing::HasSubstr("gpt2"));
  r = testing::RunKvinfer("info --json --model " + dir + "/model.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["architecture"], "gpt2");
  EXPECT_EQ(j["kv_bytes_per_token_f32"], 2 * 2 * 64 * 4);

  // kv-size --model: directory, GGUF and llama2.c give their shapes.
  for (const std::string& m : {dir, dir + "/model.gguf"}) {
    r = testing::RunKvinfer("kv-size --json --seq-len 10 --dtype f32 --model " + m);
    ASSERT_EQ(r.exit_code, 0) << m << ": " << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["bytes_per_token"], 2 * 2 * 64 * 4) << m;
  }
  const std::string bin = testing::SharedModels() + "/stories260K/stories260K.bin";
  if (fs::exists(bin)) {
    r = testing::RunKvinfer("kv-size --json --seq-len 10 --dtype f32 --model " + bin);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_GT(nlohmann::json::parse(r.out)["bytes_per_token"].get<int64_t>(), 0);
  }

  // A directory that is not a checkpoint: every command says why.
  const std::string empty = ::testing::TempDir() + "/kvinfer_empty_dir_" + std::to_string(getpid());
  fs::create_directories(empty);
  for (const char* cmd : {"info --model ", "kv-size --model ", "generate -n 1 --prompt hi --model "}) {
    r = testing::RunKvinfer(fmt::format("{}{}", cmd, empty));
    EXPECT_NE(r.exit_code, 0) << cmd;
    EXPECT_THAT(r.err, ::testing::HasSubstr("without config.json")) << cmd;
  }
  fs::remove_all(empty);
}

}  // namespace
}  // namespace kvinfer
