// safetensors reader and writer: round trips, every specific corruption
// with its message, truncation at every byte, seeded random mutations, and
// sharded checkpoints (model.safetensors.index.json), and the random GPT-2
// checkpoint of tools/reference/make_gpt2.py against its GGUF twin.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "model/config.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace kvinfer {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

template <typename T>
Bytes ToBytes(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A file from a raw header text and data bytes (no padding, no checks).
Bytes RawFile(const std::string& header, const Bytes& data = {}) {
  // Sized once and filled with memcpy (GCC 12 misreports vector::insert
  // into a small vector under -Warray-bounds).
  const uint64_t n = header.size();
  Bytes out(8 + header.size() + data.size());
  std::memcpy(out.data(), &n, 8);
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

SafetensorsFile ParseBytes(const Bytes& b, const SafetensorsLimits& limits = {}) {
  return SafetensorsFile::Parse(MappedFile::FromBytes(b), limits);
}

uint64_t TouchAll(const SafetensorsFile& f) {
  uint64_t sum = 0;
  for (const SafetensorsTensor& t : f.tensors()) {
    if (t.num_bytes > 0) sum += t.data[0] + t.data[t.num_bytes - 1];
    sum += t.name.size();
  }
  for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
  return sum;
}

// "" if it parsed, else the kDataLoss message; anything else fails the test.
std::string ParseOrDataLoss(const Bytes& b, const SafetensorsLimits& limits = {}) {
  try {
    const SafetensorsFile f = ParseBytes(b, limits);
    TouchAll(f);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kDataLoss) << e.what();
    EXPECT_NE(std::string(e.what()), "");
    return e.what();
  }
}

// Expects rejection with a message containing every one of `parts`.
void ExpectRejected(const Bytes& b, std::initializer_list<std::string> parts,
                    const SafetensorsLimits& limits = {}) {
  const std::string msg = ParseOrDataLoss(b, limits);
  ASSERT_NE(msg, "") << "expected the file to be rejected";
  for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
}

struct Sample {
  std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};
  std::vector<uint16_t> f16 = {F32ToF16(1.0f), F32ToF16(-0.5f), F32ToF16(2.0f), F32ToF16(65504.0f)};
  std::vector<uint16_t> bf16 = {F32ToBF16(3.0f), F32ToBF16(-1.0f), F32ToBF16(0.25f),
                                F32ToBF16(100.0f)};
  std::vector<int64_t> i64 = {1, -2, 3};
  Bytes u8 = {9, 8, 7, 6, 5};
  std::vector<float> scalar = {42.0f};
  Bytes b_f32 = ToBytes(f32), b_f16 = ToBytes(f16), b_bf16 = ToBytes(bf16), b_i64 = ToBytes(i64),
        b_scalar = ToBytes(scalar);

  std::vector<SafetensorsWriteTensor> Tensors() const {
    return {{"w.f32", "F32", {2, 3}, b_f32},         {"w.f16", "F16", {4}, b_f16},
            {"w.bf16", "BF16", {2, 2}, b_bf16},      {"ids", "I64", {3}, b_i64},
            {"bytes", "U8", {5}, u8},                {"empty", "F32", {0, 4}, {}},
            {"scalar", "F32", {}, b_scalar}};
  }
  Bytes File() const { return SerializeSafetensors(Tensors(), {{"format", "pt"}}); }
};

TEST(SafetensorsTest, RoundTrip) {
  const Sample s;
  const Bytes file = s.File();
  const SafetensorsFile f = ParseBytes(file);
  EXPECT_EQ(f.data_offset() % 8, 0u);  // the writer pads the header
  ASSERT_EQ(f.metadata().size(), 1u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 7u);
  for (size_t i = 1; i < f.tensors().size(); ++i) {
    EXPECT_LT(f.tensors()[i - 1].name, f.tensors()[i].name);
  }

  const SafetensorsTensor* w = f.FindTensor("w.f32");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype_name, "F32");
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_TRUE(w->compute_supported);
  EXPECT_EQ(w->shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(w->num_elements, 6u);
  EXPECT_EQ(w->num_bytes, 24u);
  EXPECT_EQ(std::memcmp(w->data, s.f32.data(), 24), 0);
  const WeightView v = AsWeightView(*w);
  EXPECT_EQ(v.type, DType::kF32);
  EXPECT_EQ(v.rows, 2);
  EXPECT_EQ(v.cols, 3);
  EXPECT_EQ(v.row_bytes, 12u);
  float row1[3];
  std::memcpy(row1, v.row(1), 12);
  EXPECT_EQ(row1[0], 0.0f);
  EXPECT_EQ(row1[2], -7.0f);

  const SafetensorsTensor* h = f.FindTensor("w.f16");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->dtype, DType::kF16);
  const WeightView hv = AsWeightView(*h);
  EXPECT_EQ(hv.rows, 1);
  EXPECT_EQ(hv.cols, 4);
  uint16_t h3;
  std::memcpy(&h3, h->data + 6, 2);
  EXPECT_EQ(F16ToF32(h3), 65504.0f);

  const SafetensorsTensor* b = f.FindTensor("w.bf16");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kBF16);
  EXPECT_EQ(AsWeightView(*b).row_bytes, 4u);

  const SafetensorsTensor* ids = f.FindTensor("ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, DType::kI64);
  EXPECT_FALSE(ids->compute_supported);
  int64_t id1;
  std::memcpy(&id1, ids->data + 8, 8);
  EXPECT_EQ(id1, -2);

  const SafetensorsTensor* u8 = f.FindTensor("bytes");
  ASSERT_NE(u8, nullptr);
  EXPECT_FALSE(u8->dtype.has_value());
  EXPECT_EQ(u8->elem_bytes, 1u);
  EXPECT_EQ(u8->data[4], 5);

  const SafetensorsTensor* e = f.FindTensor("empty");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->num_elements, 0u);
  EXPECT_EQ(e->num_bytes, 0u);

  const SafetensorsTensor* sc = f.FindTensor("scalar");
  ASSERT_NE(sc, nullptr);
  EXPECT_TRUE(sc->shape.empty());
  EXPECT_EQ(sc->num_elements, 1u);

  EXPECT_EQ(f.FindTensor("nope"), nullptr);
  EXPECT_EQ(f.FindTensor(""), nullptr);
}

TEST(SafetensorsTest, WeightViewErrors) {
  const Sample s;
  const Bytes file = s.File();
  const SafetensorsFile f = ParseBytes(file);
  try {
    AsWeightView(*f.FindTensor("ids"), "x.safetensors");
    FAIL() << "I64 accepted as a weight";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kUnimplemented);
    EXPECT_NE(std::string(e.what()).find("x.safetensors: tensor 'ids'"), std::string::npos);
  }
  try {
    AsWeightView(*f.FindTensor("scalar"));
    FAIL() << "0-D tensor accepted as a matrix";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kDataLoss);
  }
}

TEST(SafetensorsTest, WriterRejectsMistakes) {
  const Bytes four(4);
  EXPECT_THROW(SerializeSafetensors({{"a", "F32", {2}, four}}), Error);   // 4 != 8 bytes
  EXPECT_THROW(SerializeSafetensors({{"a", "F99", {1}, four}}), Error);   // unknown dtype
  EXPECT_THROW(SerializeSafetensors({{"a", "F32", {1}, four}, {"a", "F32", {1}, four}}), Error);
  EXPECT_THROW(SerializeSafetensors({{"__metadata__", "F32", {1}, four}}), Error);
}

TEST(SafetensorsTest, HeaderCorruptions) {
  const Bytes d8(8);
  ExpectRejected(Bytes{1, 2, 3}, {"too short", "8 bytes"});
  {
    Bytes b = RawFile("{}");
    const uint64_t huge = 1000;
    std::memcpy(b.data(), &huge, 8);
    ExpectRejected(b, {"header length 1000 runs past the end"});
    const uint64_t max = ~0ull;
    std::memcpy(b.data(), &max, 8);
    ExpectRejected(b, {"runs past the end"});
  }
  {
    SafetensorsLimits small;
    small.max_header_bytes = 4;
    ExpectRejected(RawFile("{}     "), {"exceeds the limit of 4 bytes"}, small);
  }
  ExpectRejected(RawFile("{"), {"too short for a JSON object"});
  ExpectRejected(RawFile("{\"a\": }"), {"malformed at file byte 14"});
  ExpectRejected(RawFile("{\"a\": 1} x"), {"malformed"});
  ExpectRejected(RawFile("[1, 2]"), {"header is a JSON array (expected an object)"});
  ExpectRejected(RawFile("\"str\""), {"expected an object"});
  ExpectRejected(RawFile("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                         {1, 2}),
                 {"key 'a' twice"});
  ExpectRejected(RawFile("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],"
                         "\"data_offsets\":[0,1]}}",
                         {1}),
                 {"key 'dtype' twice"});
  ExpectRejected(RawFile("{\"__metadata__\": [1]}"), {"\"__metadata__\" is a JSON array"});
  ExpectRejected(RawFile("{\"__metadata__\": {\"k\": 5}}"),
                 {"value of 'k' is a JSON unsigned integer (expected a string)"});
  // Invalid UTF-8 inside a JSON string.
  ExpectRejected(RawFile("{\"\xff\": 1}"), {"malformed"});
  (void)d8;
}

TEST(SafetensorsTest, TensorEntryCorruptions) {
  const Bytes d8(8);
  const auto one = [&](const std::string& entry, const Bytes& data = Bytes(8)) {
    return RawFile("{\"t\": " + entry + "}", data);
  };
  ExpectRejected(one("5"), {"tensor 't'", "entry is a JSON unsigned integer"});
  ExpectRejected(one("{\"shape\":[2],\"data_offsets\":[0,8]}"), {"tensor 't'", "missing \"dtype\""});
  ExpectRejected(one("{\"dtype\":\"F32\",\"data_offsets\":[0,8]}"), {"missing \"shape\""});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[2]}"), {"missing \"data_offsets\""});
  ExpectRejected(one("{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}"),
                 {"\"dtype\" is a JSON unsigned integer (expected a string)"});
  ExpectRejected(one("{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}"),
                 {"unknown dtype 'F31'"});
  ExpectRejected(one("{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}"),
                 {"unknown dtype 'f32'"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}"),
                 {"\"shape\" is a JSON unsigned integer (expected an array)"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}"),
                 {"shape[0] is a JSON negative integer"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}"),
                 {"shape[0] is a JSON number"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}"),
                 {"shape[1] is a JSON string"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}"),
                 {"9 dimensions"});
  ExpectRejected(
      one("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}"),
      {"overflows 64 bits"});
  ExpectRejected(
      one("{\"dtype\":\"U8\",\"shape\":[18446744073709551615],\"data_offsets\":[0,8]}"),
      {"needs 18446744073709551615 bytes"});
  ExpectRejected(
      one("{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}"),
      {"overflows 64 bits"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}"),
                 {"two non-negative integers"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}"),
                 {"two non-negative integers"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-1,8]}"),
                 {"two non-negative integers"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"a\":1}}"),
                 {"two non-negative integers"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}"),
                 {"[8, 0] has begin > end"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}"),
                 {"[0, 12] run past the end of the data section (8 bytes"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", Bytes(7)),
                 {"run past the end"});
  ExpectRejected(one("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}"),
                 {"span 8 bytes but F32 shape [1] needs 4 bytes"});
  ExpectRejected(one("{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,8]}"),
                 {"needs 12 bytes"});
  // Overlap: [0, 8) and [4, 8).
  ExpectRejected(RawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                         d8),
                 {"tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 8)) overlap"});
  // Same range twice.
  ExpectRejected(RawFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                         d8),
                 {"overlap"});
  // Accepted: an empty tensor inside another's range, gaps, extra keys.
  EXPECT_EQ(ParseOrDataLoss(RawFile(
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9,10],\"extra\":1}}",
                Bytes(12))),
            "");
}

// Deeply nested JSON is parsed (or rejected) without recursion blowing the
// stack.
TEST(SafetensorsTest, DeepNesting) {
  constexpr size_t kDepth = 200000;
  const std::string arrays = std::string(kDepth, '[') + std::string(kDepth, ']');
  ExpectRejected(RawFile(arrays), {"expected an object"});
  ExpectRejected(RawFile("{\"t\": " + arrays + "}"), {"tensor 't'"});
  ExpectRejected(RawFile("{\"__metadata__\": {\"k\": " + arrays + "}}"), {"__metadata__"});
  std::string objects;
  for (size_t i = 0; i < kDepth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(kDepth, '}');
  ExpectRejected(RawFile(objects), {"tensor 'a'"});
}

// Every strict prefix of a valid file is rejected (the last tensor ends at
// the end of the file), never crashes.
TEST(SafetensorsTest, TruncationAtEveryByte) {
  const Sample s;
  const Bytes file = s.File();
  ASSERT_EQ(ParseOrDataLoss(file), "");
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes prefix(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(ParseOrDataLoss(prefix), "") << "prefix of " << n << " bytes was accepted";
  }
}

// tests/data/safetensors_corpus: hand-made files named for what they are
// (ok-* must parse; bad-* must be refused with kDataLoss: short file,
// header length past the end or 2^64-1, truncated / non-object / duplicate-
// key JSON, unknown dtype, negative or overflowing shape, size mismatch,
// offsets past the end / reversed / missing, overlapping tensors, non-string
// metadata, a 5000-deep nested array) and fuzz-* inputs kept from
// scripts/fuzz.sh safetensors_fuzz runs (parse or kDataLoss, never a crash;
// every view inside the file).
TEST(SafetensorsTest, CorpusReplay) {
  const fs::path dir = fs::path(KVINFER_SOURCE_DIR) / "tests/data/safetensors_corpus";
  int n_ok = 0, n_bad = 0, n_fuzz = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    std::ifstream in(entry.path(), std::ios::binary);
    const Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string msg = ParseOrDataLoss(bytes);
    if (msg.empty()) {
      const SafetensorsFile f = ParseBytes(bytes);
      for (const SafetensorsTensor& t : f.tensors()) {
        EXPECT_GE(t.data, bytes.data() + f.data_offset());
        EXPECT_LE(t.data + t.num_bytes, bytes.data() + bytes.size());
      }
    }
    if (name.starts_with("ok-")) {
      EXPECT_EQ(msg, "");
      ++n_ok;
    } else if (name.starts_with("bad-")) {
      EXPECT_NE(msg, "") << "accepted";
      ++n_bad;
    } else {
      ++n_fuzz;
    }
  }
  EXPECT_GE(n_ok, 3);
  EXPECT_GE(n_bad, 17);
  EXPECT_GE(n_fuzz, 1);
}

TEST(SafetensorsTest, RandomMutations) {
  const Sample s;
  const Bytes file = s.File();
  std::mt19937_64 rng(20240611);
  int rejected = 0;
  constexpr int kIters = 5000;
  for (int it = 0; it < kIters; ++it) {
    Bytes b = file;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % b.size();
      switch (rng() % 4) {
        case 0:  // random byte
          b[at] = static_cast<uint8_t>(rng());
          break;
        case 1:  // a JSON-significant character
          b[at] = static_cast<uint8_t>("{}[]\",:-0123456789 e."[rng() % 21]);
          break;
        case 2:  // delete a byte
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        default:  // cut the file
          b.resize(at);
          break;
      }
      if (b.empty()) break;
    }
    if (ParseOrDataLoss(b) != "") ++rejected;
  }
  EXPECT_GT(rejected, kIters / 2);
}

// ---- files and sharded checkpoints ----

class SafetensorsDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("kvinfer_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteText(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  // Two shards: a/b in shard 1, c in shard 2.
  void WriteShards() {
    WriteSafetensors((dir_ / "model-00001-of-00002.safetensors").string(),
                     {{"a", "F32", {2}, f8_}, {"b", "F16", {2, 2}, f8_}});
    WriteSafetensors((dir_ / "model-00002-of-00002.safetensors").string(),
                     {{"c", "BF16", {4}, f8_}});
  }
  static std::string Index(const std::string& map) {
    return "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {" + map + "}}";
  }
  static std::string GoodMap() {
    return "\"a\": \"model-00001-of-00002.safetensors\", \"b\": "
           "\"model-00001-of-00002.safetensors\", \"c\": \"model-00002-of-00002.safetensors\"";
  }
  // Expects `code` with a message containing `part`.
  void ExpectOpenFails(const std::string& path, StatusCode code, const std::string& part) {
    try {
      SafetensorsModel::Open(path);
      ADD_FAILURE() << "opened " << path;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
  Bytes f8_ = Bytes{1, 2, 3, 4, 5, 6, 7, 8};
};

TEST_F(SafetensorsDirTest, SingleFile) {
  const Sample s;
  WriteSafetensors((dir_ / "model.safetensors").string(), s.Tensors(), {{"format", "pt"}});
  const SafetensorsFile f = SafetensorsFile::Open((dir_ / "model.safetensors").string());
  EXPECT_EQ(f.tensors().size(), 7u);
  for (const std::string& p : {dir_.string(), (dir_ / "model.safetensors").string()}) {
    const SafetensorsModel m = SafetensorsModel::Open(p);
    EXPECT_EQ(m.shards().size(), 1u);
    EXPECT_EQ(m.tensors().size(), 7u);
    EXPECT_EQ(std::memcmp(m.GetTensor("w.f32").data, s.f32.data(), 24), 0);
  }
  try {
    SafetensorsFile::Open((dir_ / "missing.safetensors").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kNotFound);
  }
}

TEST_F(SafetensorsDirTest, Sharded) {
  WriteShards();
  WriteText("model.safetensors.index.json", Index(GoodMap()));
  for (const std::string& p : {dir_.string(), (dir_ / "model.safetensors.index.json").string()}) {
    const SafetensorsModel m = SafetensorsModel::Open(p);
    ASSERT_EQ(m.shards().size(), 2u);
    ASSERT_EQ(m.tensors().size(), 3u);
    EXPECT_EQ(m.tensors()[0]->name, "a");
    EXPECT_EQ(m.tensors()[2]->name, "c");
    EXPECT_EQ(m.GetTensor("c").dtype, DType::kBF16);
    EXPECT_EQ(m.GetTensor("c").data[7], 8);
    EXPECT_EQ(m.GetTensor("b").shape, (std::vector<uint64_t>{2, 2}));
    EXPECT_NE(m.PathOf("c").find("model-00002-of-00002"), std::string::npos);
    EXPECT_EQ(m.FindTensor("d"), nullptr);
    try {
      m.GetTensor("d");
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("missing tensor 'd'"), std::string::npos);
    }
  }
}

TEST_F(SafetensorsDirTest, ShardErrors) {
  WriteShards();
  const std::string index = (dir_ / "model.safetensors.index.json").string();
  WriteText("model.safetensors.index.json",
            Index(GoodMap() + ", \"d\": \"model-00003-of-00003.safetensors\""));
  ExpectOpenFails(dir_.string(), StatusCode::kNotFound,
                  "shard 'model-00003-of-00003.safetensors' (holding tensor 'd') is missing");

  WriteText("model.safetensors.index.json",
            Index(GoodMap() + ", \"d\": \"model-00002-of-00002.safetensors\""));
  ExpectOpenFails(index, StatusCode::kDataLoss,
                  "tensor 'd' is listed in weight_map but missing from");

  WriteText("model.safetensors.index.json",
            Index("\"a\": \"model-00002-of-00002.safetensors\", \"b\": "
                  "\"model-00001-of-00002.safetensors\", \"c\": "
                  "\"model-00002-of-00002.safetensors\""));
  ExpectOpenFails(index, StatusCode::kDataLoss, "weight_map puts tensor 'a' in");

  WriteText("model.safetensors.index.json", Index("\"a\": \"../x.safetensors\""));
  ExpectOpenFails(index, StatusCode::kDataLoss, "is not a file name inside");
  WriteText("model.safetensors.index.json", Index("\"a\": \"/etc/passwd\""));
  ExpectOpenFails(index, StatusCode::kDataLoss, "is not a file name inside");
  WriteText("model.safetensors.index.json", Index("\"a\": 5"));
  ExpectOpenFails(index, StatusCode::kDataLoss, "weight_map['a'] is a JSON unsigned integer");
  WriteText("model.safetensors.index.json", Index(""));
  ExpectOpenFails(index, StatusCode::kDataLoss, "weight_map is empty");
  WriteText("model.safetensors.index.json", "{\"weight_map\": [1]}");
  ExpectOpenFails(index, StatusCode::kDataLoss, "expected a JSON object with a \"weight_map\"");
  WriteText("model.safetensors.index.json", "{\"weight_map\": {");
  ExpectOpenFails(index, StatusCode::kDataLoss, "malformed JSON");

  // The same tensor in two shards.
  WriteSafetensors((dir_ / "model-00002-of-00002.safetensors").string(),
                   {{"c", "BF16", {4}, f8_}, {"a", "F32", {2}, f8_}});
  WriteText("model.safetensors.index.json", Index(GoodMap()));
  ExpectOpenFails(index, StatusCode::kDataLoss, "tensor 'a' is in two shards");

  // A corrupt shard names itself.
  WriteText("model-00002-of-00002.safetensors", "garbage");
  ExpectOpenFails(index, StatusCode::kDataLoss, "model-00002-of-00002.safetensors");

  fs::remove_all(dir_);
  fs::create_directories(dir_);
  ExpectOpenFails(dir_.string(), StatusCode::kNotFound, "no model.safetensors.index.json");
}

// ---- the random GPT-2 checkpoint of tools/reference/make_gpt2.py ----

// Uses $KVINFER_GPT2_DIR or models/gpt2-tiny-f16 when present (written by
// `make_gpt2.py --gguf`), else generates one into a temporary directory.
class Gpt2CheckpointTest : public SafetensorsDirTest {
 protected:
  std::string Checkpoint() {
    if (const char* env = std::getenv("KVINFER_GPT2_DIR")) return env;
    const std::string in_repo = std::string(KVINFER_SOURCE_DIR) + "/models/gpt2-tiny-f16";
    if (fs::exists(in_repo + "/model.gguf")) return in_repo;
    const std::string tok = std::string(KVINFER_SOURCE_DIR) + "/../shared/models/tokenizers/gpt2";
    if (!fs::exists(tok + "/encoder.json") || !fs::exists("/usr/bin/python3")) return "";
    const std::string cmd = "/usr/bin/python3 " KVINFER_SOURCE_DIR
                            "/tools/reference/make_gpt2.py --shape tiny --dtype f16 --gguf --out '" +
                            dir_.string() + "' > /dev/null";
    return std::system(cmd.c_str()) == 0 ? dir_.string() : "";
  }
};

uint16_t U16At(const uint8_t* p, size_t i) {
  uint16_t v;
  std::memcpy(&v, p + 2 * i, 2);
  return v;
}

TEST_F(Gpt2CheckpointTest, SafetensorsMatchesGguf) {
  const std::string dir = Checkpoint();
  if (dir.empty()) {
    GTEST_FAIL() << "no GPT-2 checkpoint: run ./scripts/make-gpt2-fixtures.sh, or check out "
                    "../shared/ (its tokenizers/gpt2 lets the test make one)";
  }
  std::ifstream cf(dir + "/config.json");
  const nlohmann::json config = nlohmann::json::parse(cf);
  EXPECT_EQ(config["model_type"], "gpt2");
  const uint64_t n = config["n_embd"], L = config["n_layer"], P = config["n_positions"],
                 V = config["vocab_size"];
  const SafetensorsModel st = SafetensorsModel::Open(dir);
  EXPECT_EQ(st.tensors().size(), 2 + 12 * L + 2);
  EXPECT_EQ(st.GetTensor("wte.weight").shape, (std::vector<uint64_t>{V, n}));
  EXPECT_EQ(st.GetTensor("wpe.weight").shape, (std::vector<uint64_t>{P, n}));
  EXPECT_EQ(st.GetTensor("h.0.attn.c_attn.weight").shape, (std::vector<uint64_t>{n, 3 * n}));
  EXPECT_EQ(st.GetTensor("h.0.mlp.c_proj.weight").shape, (std::vector<uint64_t>{4 * n, n}));
  EXPECT_EQ(st.GetTensor("ln_f.bias").shape, (std::vector<uint64_t>{n}));

  const GgufFile g = GgufFile::Open(dir + "/model.gguf");
  const ModelConfig mc = ConfigFromGguf(g);
  EXPECT_EQ(mc.arch, Arch::kGpt2);
  EXPECT_EQ(static_cast<uint64_t>(mc.d_model), n);
  EXPECT_EQ(static_cast<uint64_t>(mc.n_layers), L);
  EXPECT_EQ(static_cast<uint64_t>(mc.context_length), P);
  EXPECT_EQ(static_cast<uint64_t>(mc.vocab_size), V);
  EXPECT_EQ(static_cast<uint64_t>(mc.d_ff), 4 * n);
  EXPECT_TRUE(mc.tied_output);

  // Same numbers: matrices transposed (Conv1D [in, out] vs GGUF row-major
  // [out, in]), embeddings as is, 1-D tensors widened to F32.
  const auto check = [&](const std::string& hf, const std::string& gg, bool transposed) {
    SCOPED_TRACE(hf + " vs " + gg);
    const SafetensorsTensor& a = st.GetTensor(hf);
    const GgufTensorInfo* b = g.FindTensor(gg);
    ASSERT_NE(b, nullptr);
    ASSERT_EQ(a.dtype, DType::kF16);
    ASSERT_EQ(b->num_elements, a.num_elements);
    if (a.shape.size() == 1) {
      ASSERT_EQ(b->type, DType::kF32);
      for (size_t i = 0; i < a.num_elements; ++i) {
        float f;
        std::memcpy(&f, b->data + 4 * i, 4);
        ASSERT_EQ(F16ToF32(U16At(a.data, i)), f) << i;
      }
      return;
    }
    ASSERT_EQ(b->type, DType::kF16);
    const uint64_t rows = a.shape[0], cols = a.shape[1];
    if (!transposed) {
      ASSERT_EQ(b->dims, (std::vector<uint64_t>{cols, rows}));
      ASSERT_EQ(std::memcmp(a.data, b->data, a.num_bytes), 0);
      return;
    }
    ASSERT_EQ(b->dims, (std::vector<uint64_t>{rows, cols}));  // GGUF {in, out}
    for (uint64_t r = 0; r < rows; ++r) {
      for (uint64_t c = 0; c < cols; ++c) {
        ASSERT_EQ(U16At(a.data, r * cols + c), U16At(b->data, c * rows + r)) << r << "," << c;
      }
    }
  };
  check("wte.weight", "token_embd.weight", false);
  check("wpe.weight", "position_embd.weight", false);
  for (uint64_t i = 0; i < L; ++i) {
    const std::string h = "h." + std::to_string(i) + ".", b = "blk." + std::to_string(i) + ".";
    check(h + "ln_1.weight", b + "attn_norm.weight", false);
    check(h + "ln_1.bias", b + "attn_norm.bias", false);
    check(h + "attn.c_attn.weight", b + "attn_qkv.weight", true);
    check(h + "attn.c_attn.bias", b + "attn_qkv.bias", false);
    check(h + "attn.c_proj.weight", b + "attn_output.weight", true);
    check(h + "attn.c_proj.bias", b + "attn_output.bias", false);
    check(h + "ln_2.weight", b + "ffn_norm.weight", false);
    check(h + "ln_2.bias", b + "ffn_norm.bias", false);
    check(h + "mlp.c_fc.weight", b + "ffn_up.weight", true);
    check(h + "mlp.c_fc.bias", b + "ffn_up.bias", false);
    check(h + "mlp.c_proj.weight", b + "ffn_down.weight", true);
    check(h + "mlp.c_proj.bias", b + "ffn_down.bias", false);
  }
  check("ln_f.weight", "output_norm.weight", false);
  check("ln_f.bias", "output_norm.bias", false);
  EXPECT_EQ(g.tensors().size(), st.tensors().size());

  // The tokenizer beside the safetensors equals the GGUF's.
  const Tokenizer hf(TokenizerSpecFromHf(dir));
  const Tokenizer gg = Tokenizer::FromGguf(g);
  EXPECT_EQ(hf.vocab_size(), gg.vocab_size());
  for (const std::string text : {"Hello world", " It's 3.14159!\n\nOK <|endoftext|>"}) {
    EXPECT_EQ(hf.Encode(text, true, true), gg.Encode(text, true, true)) << text;
  }
}

}  // namespace
}  // namespace kvinfer
