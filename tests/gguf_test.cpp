// GGUF reader and writer: round trips, typed getters, real files and a
// malformed-file corpus (every truncation, specific corruptions, random byte
// flips, stored fuzzer reproducers). Every malformed input must either parse
// or throw Error(kDataLoss) with a message, never crash (the suite also runs
// under ASan/UBSan).
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf_writer.h"
#include "test_util.h"

namespace kvinfer {
namespace {

namespace fs = std::filesystem;

const std::string kModels = KVINFER_SOURCE_DIR "/../shared/models";
const std::string kCorpusDir = KVINFER_SOURCE_DIR "/tests/data/gguf_corpus";

GgufFile ParseBytes(const std::vector<uint8_t>& bytes, const GgufLimits& limits = {}) {
  return GgufFile::Parse(MappedFile::FromBytes(bytes), limits);
}

// Reads every value and every tensor byte range, so ASan sees any bad view.
uint64_t TouchValue(const GgufValue& v) {
  uint64_t sum = v.u + static_cast<uint64_t>(v.i) + static_cast<uint64_t>(std::isnan(v.f));
  if (!v.str.empty()) {
    sum += static_cast<unsigned char>(v.str.front()) + static_cast<unsigned char>(v.str.back());
  }
  for (const GgufValue& e : v.array) sum += TouchValue(e);
  return sum;
}

uint64_t TouchAll(const GgufFile& g) {
  uint64_t sum = 0;
  for (const auto& [key, value] : g.metadata()) {
    sum += static_cast<unsigned char>(key.front()) + static_cast<unsigned char>(key.back());
    sum += TouchValue(value);
  }
  for (const GgufTensorInfo& t : g.tensors()) {
    if (t.num_bytes > 0) sum += t.data[0] + t.data[t.num_bytes - 1];
  }
  return sum;
}

// Parses `bytes`; returns "" if it parsed, else the kDataLoss message. Any
// other outcome is a test failure.
std::string ParseOrDataLoss(const std::vector<uint8_t>& bytes, const GgufLimits& limits = {}) {
  try {
    GgufFile g = ParseBytes(bytes, limits);
    TouchAll(g);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kDataLoss) << e.what();
    EXPECT_NE(std::string(e.what()), "");
    return e.what();
  }
}

std::string ExpectDataLoss(const std::vector<uint8_t>& bytes, const GgufLimits& limits = {}) {
  const std::string msg = ParseOrDataLoss(bytes, limits);
  EXPECT_NE(msg, "") << "expected the file to be rejected";
  return msg;
}

template <typename T>
void Poke(std::vector<uint8_t>& b, uint64_t at, T v) {
  ASSERT_LE(at + sizeof(T), b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}

std::vector<uint8_t> Iota(size_t n, uint8_t start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i);
  return v;
}

// The small valid file the corruption tests start from.
//   kv 0 general.architecture = "llama"      kv 3 test.tokens = ["a", "bc", ""]
//   kv 1 test.u32 = 7                        kv 4 test.nested = [[1, 2], [3]] (int32)
//   kv 2 test.bool = true                    kv 5 test.f32 = 1.5
//   tensors: t.f32 {4,2} F32, t.q8 {32,2} Q8_0, t.f16 {8} F16
GgufWriter MakeBaseWriter() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("test.u32", 7);
  w.SetBool("test.bool", true);
  const std::vector<std::string> tokens = {"a", "bc", ""};
  w.SetStringArray("test.tokens", tokens);
  w.Set("test.nested",
        GgufWriteValue::Array(GgufType::kArray,
                              {GgufWriteValue::Array(GgufType::kInt32, {GgufWriteValue::I32(1),
                                                                        GgufWriteValue::I32(2)}),
                               GgufWriteValue::Array(GgufType::kInt32, {GgufWriteValue::I32(3)})}));
  w.SetF32("test.f32", 1.5f);
  w.AddTensor("t.f32", {4, 2}, DType::kF32, Iota(32, 1));
  w.AddTensor("t.q8", {32, 2}, DType::kQ8_0, Iota(68, 100));
  w.AddTensor("t.f16", {8}, DType::kF16, Iota(16, 200));
  return w;
}

struct Base {
  std::vector<uint8_t> bytes;
  GgufWriterLayout layout;
  // Offsets of fields inside kv `k` / tensor info `t`.
  uint64_t KvType(size_t k, size_t key_len) const { return layout.kv_offsets[k] + 8 + key_len; }
  uint64_t TensorNDims(size_t t, size_t name_len) const {
    return layout.tensor_info_offsets[t] + 8 + name_len;
  }
};

Base MakeBase() {
  Base b;
  b.bytes = MakeBaseWriter().Serialize(&b.layout);
  return b;
}

// ---------------------------------------------------------------- round trips

class GgufRoundTrip : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GgufRoundTrip, EveryMetadataType) {
  GgufWriter w;
  w.SetVersion(GetParam());
  w.SetU8("u8", 250);
  w.SetI8("i8", -120);
  w.SetU16("u16", 65000);
  w.SetI16("i16", -32000);
  w.SetU32("u32", 4000000000u);
  w.SetI32("i32", -2000000000);
  w.SetU64("u64", std::numeric_limits<uint64_t>::max());
  w.SetI64("i64", std::numeric_limits<int64_t>::min());
  w.SetF32("f32", -0.25f);
  w.SetF64("f64", 1e300);
  w.SetBool("bool.t", true);
  w.SetBool("bool.f", false);
  w.SetString("str", "h\xc3\xa9llo");
  w.SetString("str.empty", "");
  w.SetArray<uint8_t>("a.u8", {1, 2, 255});
  w.SetArray<int8_t>("a.i8", {-1, 0, 1});
  w.SetArray<uint16_t>("a.u16", {65535});
  w.SetArray<int16_t>("a.i16", {-2, 2});
  w.SetArray<uint32_t>("a.u32", {1u, 4000000000u});
  w.SetArray<int32_t>("a.i32", {-7, 7});
  w.SetArray<uint64_t>("a.u64", {0, 1ull << 40});
  w.SetArray<int64_t>("a.i64", {-(1ll << 40)});
  w.SetArray<float>("a.f32", {0.5f, -1.0f});
  w.SetArray<double>("a.f64", {0.125});
  w.SetBoolArray("a.bool", {true, false, true});
  const std::vector<std::string_view> strs = {"x", "", "yz"};
  w.SetStringArray("a.str", strs);
  w.SetArray<uint32_t>("a.empty", std::vector<uint32_t>{});
  // [[["p"], []], [["q", "r"]]]: three levels, inner arrays of strings.
  using V = GgufWriteValue;
  w.Set("a.nested",
        V::Array(GgufType::kArray,
                 {V::Array(GgufType::kArray, {V::Array(GgufType::kString, {V::String("p")}),
                                              V::Array(GgufType::kString, {})}),
                  V::Array(GgufType::kArray,
                           {V::Array(GgufType::kString, {V::String("q"), V::String("r")})})}));
  // Arrays of arrays of different element types.
  w.Set("a.mixed", V::Array(GgufType::kArray, {V::Array(GgufType::kFloat64, {V::F64(2.5)}),
                                               V::Array(GgufType::kUint8, {V::U8(9)})}));

  const std::vector<uint8_t> bytes = w.Serialize();
  const GgufFile g = ParseBytes(bytes);
  EXPECT_EQ(g.version(), GetParam());
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_TRUE(g.tensors().empty());
  ASSERT_EQ(g.metadata().size(), 29u);
  EXPECT_EQ(g.metadata()[0].first, "u8");
  EXPECT_EQ(g.metadata()[28].first, "a.mixed");

  EXPECT_EQ(g.Find("u8")->type, GgufType::kUint8);
  EXPECT_EQ(g.GetUint("u8"), 250u);
  EXPECT_EQ(g.GetInt("i8"), -120);
  EXPECT_EQ(g.Find("i8")->type, GgufType::kInt8);
  EXPECT_EQ(g.GetUint("u16"), 65000u);
  EXPECT_EQ(g.GetInt("i16"), -32000);
  EXPECT_EQ(g.GetUint("u32"), 4000000000u);
  EXPECT_EQ(g.GetInt("i32"), -2000000000);
  EXPECT_EQ(g.GetUint("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(g.GetInt("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(g.GetFloat("f32"), -0.25);
  EXPECT_EQ(g.Find("f32")->type, GgufType::kFloat32);
  EXPECT_EQ(g.GetFloat("f64"), 1e300);
  EXPECT_EQ(g.GetBool("bool.t"), true);
  EXPECT_EQ(g.GetBool("bool.f"), false);
  EXPECT_EQ(g.GetString("str"), "h\xc3\xa9llo");
  EXPECT_EQ(g.GetString("str.empty"), "");

  EXPECT_EQ(g.GetIntArray("a.u8"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(g.Find("a.u8")->array_type, GgufType::kUint8);
  EXPECT_EQ(g.GetIntArray("a.i8"), (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_EQ(g.GetIntArray("a.u16"), (std::vector<int64_t>{65535}));
  EXPECT_EQ(g.GetIntArray("a.i16"), (std::vector<int64_t>{-2, 2}));
  EXPECT_EQ(g.GetIntArray("a.u32"), (std::vector<int64_t>{1, 4000000000}));
  EXPECT_EQ(g.GetIntArray("a.i32"), (std::vector<int64_t>{-7, 7}));
  EXPECT_EQ(g.GetIntArray("a.u64"), (std::vector<int64_t>{0, 1ll << 40}));
  EXPECT_EQ(g.GetIntArray("a.i64"), (std::vector<int64_t>{-(1ll << 40)}));
  EXPECT_EQ(g.GetFloatArray("a.f32"), (std::vector<float>{0.5f, -1.0f}));
  EXPECT_EQ(g.GetFloatArray("a.f64"), (std::vector<float>{0.125f}));
  const GgufValue* b = g.Find("a.bool");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->array_type, GgufType::kBool);
  ASSERT_EQ(b->array.size(), 3u);
  EXPECT_EQ(b->array[0].u, 1u);
  EXPECT_EQ(b->array[1].u, 0u);
  EXPECT_EQ(g.GetStringArray("a.str"), (std::vector<std::string_view>{"x", "", "yz"}));
  EXPECT_EQ(g.GetIntArray("a.empty"), std::vector<int64_t>{});

  const GgufValue* n = g.Find("a.nested");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->type, GgufType::kArray);
  ASSERT_EQ(n->array_type, GgufType::kArray);
  ASSERT_EQ(n->array.size(), 2u);
  ASSERT_EQ(n->array[0].array.size(), 2u);
  EXPECT_EQ(n->array[0].array[0].array_type, GgufType::kString);
  ASSERT_EQ(n->array[0].array[0].array.size(), 1u);
  EXPECT_EQ(n->array[0].array[0].array[0].str, "p");
  EXPECT_TRUE(n->array[0].array[1].array.empty());
  ASSERT_EQ(n->array[1].array[0].array.size(), 2u);
  EXPECT_EQ(n->array[1].array[0].array[1].str, "r");
  const GgufValue* m = g.Find("a.mixed");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->array.size(), 2u);
  EXPECT_EQ(m->array[0].array_type, GgufType::kFloat64);
  EXPECT_EQ(m->array[0].array[0].f, 2.5);
  EXPECT_EQ(m->array[1].array_type, GgufType::kUint8);
  EXPECT_EQ(m->array[1].array[0].u, 9u);

  // Absent keys.
  EXPECT_EQ(g.Find("nope"), nullptr);
  EXPECT_EQ(g.GetUint("nope"), std::nullopt);
  EXPECT_EQ(g.GetString("nope"), std::nullopt);
  EXPECT_EQ(g.GetStringArray("nope"), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Versions, GgufRoundTrip, ::testing::Values(2u, 3u));

TEST(GgufWriter, SetReplacesAndVersionBytes) {
  GgufWriter w;
  w.SetU32("k", 1);
  w.SetString("k", "two");
  w.SetVersion(2);
  std::vector<uint8_t> bytes = w.Serialize();
  ASSERT_GE(bytes.size(), 24u);
  EXPECT_EQ(std::memcmp(bytes.data(), "GGUF\x02\0\0\0", 8), 0);
  const GgufFile g = ParseBytes(bytes);
  ASSERT_EQ(g.metadata().size(), 1u);
  EXPECT_EQ(g.GetString("k"), "two");
  EXPECT_THROW(w.SetVersion(4), Error);
}

TEST(GgufWriter, RejectsBadTensors) {
  GgufWriter w;
  auto code = [](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.code();
    }
    return StatusCode::kOk;
  };
  EXPECT_EQ(code([&] { w.AddTensor("a", {4}, DType::kF32, Iota(15, 0)); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] { w.AddTensor("a", {}, DType::kF32, Iota(0, 0)); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] {
              w.AddTensor("a", {1, 1, 1, 1, 1}, DType::kF32, Iota(4, 0));
            }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] { w.AddTensor("a", {0}, DType::kF32, Iota(0, 0)); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] { w.AddTensor("a", {16}, DType::kQ4_0, Iota(9, 0)); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] { w.AddTensor("", {1}, DType::kF32, Iota(4, 0)); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] { w.AddTensor("a", {1}, DType::kF32, Iota(4, 0)); }), StatusCode::kOk);
  EXPECT_EQ(code([&] { w.AddTensor("a", {1}, DType::kF32, Iota(4, 0)); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] { w.SetAlignment(24); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([&] { GgufWriteValue::Array(GgufType::kUint8, {GgufWriteValue::U16(1)}); }),
            StatusCode::kInvalidArgument);
}

// --------------------------------------------------------------- tensor table

TEST(GgufTensors, TableOffsetsAndDataPointers) {
  for (uint32_t alignment : {1u, 8u, 32u, 64u, 4096u}) {
    SCOPED_TRACE(alignment);
    GgufWriter w = MakeBaseWriter();
    w.SetAlignment(alignment);
    GgufWriterLayout layout;
    const std::vector<uint8_t> bytes = w.Serialize(&layout);
    EXPECT_EQ(layout.file_size, bytes.size());
    const GgufFile g = ParseBytes(bytes);
    EXPECT_EQ(g.alignment(), alignment);
    EXPECT_EQ(g.GetUint("general.alignment"),
              alignment == 32 ? std::nullopt : std::optional<uint64_t>(alignment));
    EXPECT_EQ(g.data_offset(), layout.data_offset);
    EXPECT_EQ(g.data_offset() % alignment, 0u);
    ASSERT_EQ(g.tensors().size(), 3u);

    const GgufTensorInfo& a = g.tensors()[0];
    EXPECT_EQ(a.name, "t.f32");
    EXPECT_EQ(a.dims, (std::vector<uint64_t>{4, 2}));
    EXPECT_EQ(a.type, DType::kF32);
    EXPECT_EQ(a.num_elements, 8u);
    EXPECT_EQ(a.num_bytes, 32u);
    EXPECT_EQ(a.offset, 0u);
    EXPECT_EQ(a.data, bytes.data() + g.data_offset());
    EXPECT_EQ(std::vector<uint8_t>(a.data, a.data + a.num_bytes), Iota(32, 1));

    const GgufTensorInfo* q = g.FindTensor("t.q8");
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->type, DType::kQ8_0);
    EXPECT_EQ(q->dims, (std::vector<uint64_t>{32, 2}));
    EXPECT_EQ(q->num_elements, 64u);
    EXPECT_EQ(q->num_bytes, 68u);
    EXPECT_EQ(q->offset % alignment, 0u);
    EXPECT_EQ(q->offset, layout.tensor_data_offsets[1]);
    EXPECT_EQ(std::vector<uint8_t>(q->data, q->data + q->num_bytes), Iota(68, 100));

    const GgufTensorInfo* h = g.FindTensor("t.f16");
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->type, DType::kF16);
    EXPECT_EQ(h->num_bytes, 16u);
    EXPECT_EQ(h->data, bytes.data() + g.data_offset() + h->offset);
    EXPECT_EQ(std::vector<uint8_t>(h->data, h->data + h->num_bytes), Iota(16, 200));
    EXPECT_EQ(g.FindTensor("nope"), nullptr);
  }
}

TEST(GgufTensors, WriteFileMatchesSerializeAndOpens) {
  GgufWriter w = MakeBaseWriter();
  w.SetAlignment(64);
  const std::string path = ::testing::TempDir() + "/kvinfer_gguf_write_test.gguf";
  w.WriteFile(path);
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> on_disk((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
  EXPECT_EQ(on_disk, w.Serialize());
  {
    const GgufFile g = GgufFile::Open(path);
    EXPECT_EQ(g.path(), path);
    EXPECT_EQ(g.file_size(), on_disk.size());
    EXPECT_EQ(g.tensors().size(), 3u);
    EXPECT_EQ(g.GetString("general.architecture"), "llama");
  }
  fs::remove(path);
  try {
    GgufFile::Open(path);
    ADD_FAILURE() << "opening a missing file should throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kNotFound);
  }
  EXPECT_THROW(w.WriteFile("/nonexistent-dir/x.gguf"), Error);
}

// -------------------------------------------------------------- typed getters

TEST(GgufGetters, TypeErrorsNameTheKey) {
  GgufWriter w;
  w.SetI32("neg", -5);
  w.SetI32("pos", 5);
  w.SetU64("huge", std::numeric_limits<uint64_t>::max());
  w.SetString("s", "text");
  w.SetU8("u8", 1);
  w.SetBool("b", true);
  w.SetF32("f", 2.0f);
  w.SetArray<int32_t>("ints", {1, 2});
  w.SetArray<uint64_t>("big.ints", {1, std::numeric_limits<uint64_t>::max()});
  const std::vector<std::string> strs = {"a"};
  w.SetStringArray("strs", strs);
  const std::vector<uint8_t> bytes = w.Serialize();
  const GgufFile g = ParseBytes(bytes);

  auto msg = [](const std::function<void()>& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), StatusCode::kDataLoss);
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ(g.GetUint("pos"), 5u);
  EXPECT_EQ(g.GetInt("pos"), 5);
  EXPECT_EQ(g.GetFloat("pos"), 5.0);
  EXPECT_EQ(g.GetFloat("neg"), -5.0);
  EXPECT_EQ(g.GetFloat("huge"), 18446744073709551615.0);
  EXPECT_EQ(g.GetFloat("f"), 2.0);
  EXPECT_EQ(g.GetUint("u8"), 1u);

  EXPECT_NE(msg([&] { g.GetUint("neg"); }).find("'neg' is -5 (expected a non-negative"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetInt("huge"); }).find("'huge'"), std::string::npos);
  EXPECT_NE(msg([&] { g.GetUint("s"); }).find("'s' has type string (expected an unsigned"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetInt("f"); }).find("'f' has type float32"), std::string::npos);
  EXPECT_NE(msg([&] { g.GetUint("b"); }).find("'b' has type bool"), std::string::npos);
  EXPECT_NE(msg([&] { g.GetFloat("s"); }).find("expected a number"), std::string::npos);
  EXPECT_NE(msg([&] { g.GetBool("u8"); }).find("'u8' has type uint8 (expected bool)"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetString("u8"); }).find("(expected string)"), std::string::npos);
  EXPECT_NE(msg([&] { g.GetString("ints"); }).find("'ints' is an array of int32"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetUint("ints"); }).find("'ints' is an array"), std::string::npos);
  EXPECT_NE(msg([&] { g.GetStringArray("ints"); }).find("expected an array of string"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetStringArray("s"); }).find("'s' has type string (expected an array)"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetFloatArray("ints"); }).find("expected an array of float"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetIntArray("strs"); }).find("expected an array of integers"),
            std::string::npos);
  EXPECT_NE(msg([&] { g.GetIntArray("big.ints"); }).find("element 1"), std::string::npos);
  EXPECT_EQ(g.GetIntArray("ints"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(g.GetStringArray("strs"), (std::vector<std::string_view>{"a"}));
}

// ------------------------------------------------------------ malformed files

struct Corruption {
  const char* name;
  std::function<void(Base&)> mutate;
  const char* expected;  // substring of the error message
};

TEST(GgufMalformed, SpecificCorruptionsGiveSpecificMessages) {
  // Field offsets in the base file (see MakeBaseWriter).
  const size_t kArchKeyLen = std::strlen("general.architecture");
  const size_t kBoolKeyLen = std::strlen("test.bool");
  const size_t kTokensKeyLen = std::strlen("test.tokens");
  const size_t kNestedKeyLen = std::strlen("test.nested");
  const size_t kNameLen = 5;  // "t.f32", "t.f16"; "t.q8" is 4

  const std::vector<Corruption> cases = {
      {"bad magic", [](Base& b) { b.bytes[0] = 'X'; },
       "not a GGUF file: magic at byte 0 is 'XGUF' (expected 'GGUF')"},
      {"version 1", [](Base& b) { Poke<uint32_t>(b.bytes, 4, 1); },
       "GGUF version 1 is not supported"},
      {"version 4", [](Base& b) { Poke<uint32_t>(b.bytes, 4, 4); },
       "unsupported GGUF version 4 (expected 2 or 3)"},
      {"big-endian", [](Base& b) { Poke<uint32_t>(b.bytes, 4, 0x03000000); }, "big-endian"},
      {"tensor count over limit", [](Base& b) { Poke<uint64_t>(b.bytes, 8, 1ull << 40); },
       "tensor count 1099511627776 at byte 8 exceeds the limit"},
      {"tensor count past file", [](Base& b) { Poke<uint64_t>(b.bytes, 8, 100000); },
       "tensor count 100000 cannot fit"},
      {"kv count over limit", [](Base& b) { Poke<uint64_t>(b.bytes, 16, 1ull << 40); },
       "metadata count 1099511627776 at byte 16 exceeds the limit"},
      {"kv count past file", [](Base& b) { Poke<uint64_t>(b.bytes, 16, 100000); },
       "metadata count 100000 at byte 16 cannot fit"},
      {"kv count one too many", [](Base& b) { Poke<uint64_t>(b.bytes, 16, 7); },
       // The first tensor info is read as a 7th key/value; its dims then run
       // the reader past the end of the file.
       "runs past the end of the file"},
      {"key length past EOF",
       [](Base& b) { Poke<uint64_t>(b.bytes, b.layout.kv_offsets[1], 1ull << 50); },
       "string length 1125899906842624 of key of a metadata entry at byte 69 runs past the end"},
      {"empty key",
       [](Base& b) {
         GgufWriter w;
         w.SetU32("", 1);
         b.bytes = w.Serialize();
       },
       "metadata entry 0 at byte 24 has an empty key"},
      {"key with control byte", [&](Base& b) { b.bytes[b.layout.kv_offsets[0] + 8 + 3] = '\n'; },
       "key 'gen\\x0aral.architecture' contains byte 0x0a (expected printable ASCII)"},
      {"duplicate key",
       [&](Base& b) {
         // test.u32 -> test.f32 (kv 5 has that key).
         b.bytes[b.layout.kv_offsets[1] + 8 + 5] = 'f';
       },
       "duplicate metadata key 'test.f32' at byte"},
      {"unknown value type",
       [&](Base& b) { Poke<uint32_t>(b.bytes, b.KvType(0, kArchKeyLen), 13); },
       "metadata 'general.architecture': unknown value type 13"},
      {"unknown array element type",
       [&](Base& b) { Poke<uint32_t>(b.bytes, b.KvType(3, kTokensKeyLen) + 4, 99); },
       "metadata 'test.tokens': unknown array element type 99"},
      {"array count over limit",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.KvType(3, kTokensKeyLen) + 8, 1ull << 40); },
       "metadata 'test.tokens': array count 1099511627776 at byte"},
      {"array count past file",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.KvType(3, kTokensKeyLen) + 8, 1000000); },
       "array of 1000000 string elements at byte"},
      {"string element past EOF",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.KvType(3, kTokensKeyLen) + 16, 1ull << 62); },
       "of value of metadata 'test.tokens' at byte"},
      {"inner array count past file",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.KvType(4, kNestedKeyLen) + 20, 1000000); },
       "metadata 'test.nested': array of 1000000 int32 elements"},
      {"bool not 0 or 1", [&](Base& b) { b.bytes[b.KvType(2, kBoolKeyLen) + 4] = 2; },
       "metadata 'test.bool': bool at byte"},
      {"nesting too deep",
       [](Base& b) {
         GgufWriteValue v = GgufWriteValue::Array(GgufType::kUint8, {});
         for (int i = 0; i < 8; ++i) v = GgufWriteValue::Array(GgufType::kArray, {v});
         GgufWriter w;
         w.Set("deep", v);  // 9 levels of arrays
         b.bytes = w.Serialize();
       },
       "metadata 'deep': arrays nested deeper than 8 levels"},
      {"alignment zero",
       [](Base& b) {
         GgufWriter w = MakeBaseWriter();
         w.SetU32("general.alignment", 0);
         b.bytes = w.Serialize();
       },
       "'general.alignment' is 0 (expected a nonzero power of two)"},
      {"alignment not a power of two",
       [](Base& b) {
         GgufWriter w = MakeBaseWriter();
         w.SetU32("general.alignment", 48);
         b.bytes = w.Serialize();
       },
       "'general.alignment' is 48 (expected a nonzero power of two)"},
      {"alignment wrong type",
       [](Base& b) {
         GgufWriter w = MakeBaseWriter();
         w.SetU64("general.alignment", 32);
         b.bytes = w.Serialize();
       },
       "'general.alignment' has type uint64 (expected uint32)"},
      {"tensor name past EOF",
       [](Base& b) { Poke<uint64_t>(b.bytes, b.layout.tensor_info_offsets[0], 1ull << 40); },
       "of name of a tensor at byte"},
      {"empty tensor name",
       [](Base& b) { Poke<uint64_t>(b.bytes, b.layout.tensor_info_offsets[0], 0); },
       "has an empty name"},
      {"n_dims 0", [&](Base& b) { Poke<uint32_t>(b.bytes, b.TensorNDims(0, kNameLen), 0); },
       "tensor 't.f32': n_dims 0 at byte"},
      {"n_dims 5", [&](Base& b) { Poke<uint32_t>(b.bytes, b.TensorNDims(0, kNameLen), 5); },
       "tensor 't.f32': n_dims 5 at byte"},
      {"zero dim", [&](Base& b) { Poke<uint64_t>(b.bytes, b.TensorNDims(0, kNameLen) + 12, 0); },
       "tensor 't.f32': dim 1 at byte"},
      {"dims overflow",
       [&](Base& b) {
         Poke<uint64_t>(b.bytes, b.TensorNDims(0, kNameLen) + 4, 1ull << 40);
         Poke<uint64_t>(b.bytes, b.TensorNDims(0, kNameLen) + 12, 1ull << 40);
       },
       "tensor 't.f32': element count overflows at dim 1"},
      {"unknown ggml type",
       [&](Base& b) { Poke<uint32_t>(b.bytes, b.TensorNDims(0, kNameLen) + 20, 4); },
       "tensor 't.f32': unknown ggml type id 4 at byte"},
      {"first dim not a block multiple",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.TensorNDims(1, 4) + 4, 33); },
       "tensor 't.q8': first dim 33 is not a multiple of the q8_0 block size 32"},
      {"tensor offset unaligned",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.TensorNDims(1, 4) + 4 + 16 + 4, 36); },
       "tensor 't.q8': data offset 36 at byte"},
      {"tensor data past EOF",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.TensorNDims(2, kNameLen) + 4 + 8 + 4, 1 << 20); },
       "tensor 't.f16': data [offset 1048576, 16 bytes] runs past the end of the file (size"},
      {"data section truncated", [](Base& b) { b.bytes.resize(b.layout.data_offset + 40); },
       "tensor 't.q8': data [offset 32, 68 bytes] runs past the end of the file"},
      {"overlapping tensors",
       [&](Base& b) { Poke<uint64_t>(b.bytes, b.TensorNDims(2, kNameLen) + 4 + 8 + 4, 64); },
       "overlaps tensor 't.q8'"},
      {"truncated header", [](Base& b) { b.bytes.resize(10); },
       "truncated file: tensor count at byte 8 needs 8 bytes but only 2 remain"},
      {"empty file", [](Base& b) { b.bytes.clear(); }, "not a GGUF file"},
  };
  for (const Corruption& c : cases) {
    SCOPED_TRACE(c.name);
    Base b = MakeBase();
    c.mutate(b);
    const std::string msg = ExpectDataLoss(b.bytes);
    EXPECT_NE(msg.find(c.expected), std::string::npos)
        << "message: " << msg << "\nexpected substring: " << c.expected;
    EXPECT_EQ(msg.rfind("<memory>: ", 0), 0u) << msg;
  }
}

TEST(GgufMalformed, DuplicateTensorNameAndLimits) {
  GgufWriter w;
  w.AddTensor("x.a", {1}, DType::kF32, Iota(4, 0));
  w.AddTensor("x.b", {1}, DType::kF32, Iota(4, 0));
  GgufWriterLayout layout;
  std::vector<uint8_t> bytes = w.Serialize(&layout);
  bytes[layout.tensor_info_offsets[1] + 8 + 2] = 'a';
  const std::string msg = ExpectDataLoss(bytes);
  EXPECT_NE(msg.find("duplicate tensor name 'x.a' at byte"), std::string::npos) << msg;

  // Caller-set limits are honoured.
  const std::vector<uint8_t> base = MakeBase().bytes;
  GgufLimits limits;
  limits.max_tensors = 2;
  EXPECT_NE(ExpectDataLoss(base, limits).find("tensor count 3 at byte 8 exceeds the limit of 2"),
            std::string::npos);
  limits = {};
  limits.max_kv = 5;
  EXPECT_NE(ExpectDataLoss(base, limits).find("exceeds the limit of 5"), std::string::npos);
  limits = {};
  limits.max_array_elems = 2;
  EXPECT_NE(ExpectDataLoss(base, limits).find("'test.tokens': array count 3"), std::string::npos);
  limits = {};
  limits.max_nesting = 1;
  EXPECT_NE(ExpectDataLoss(base, limits).find("'test.nested': arrays nested deeper than 1"),
            std::string::npos);
  limits = {};
  limits.max_dims = 1;
  EXPECT_NE(ExpectDataLoss(base, limits).find("n_dims 2 at byte"), std::string::npos);
}

TEST(GgufMalformed, EveryTruncationIsRejected) {
  const Base b = MakeBase();
  // The file is valid up to the end of the last tensor's data; everything
  // shorter must be rejected (the trailing padding is optional).
  const uint64_t needed = b.layout.data_offset + b.layout.tensor_data_offsets.back() + 16;
  ASSERT_LE(needed, b.bytes.size());
  EXPECT_EQ(ParseOrDataLoss(b.bytes), "");
  for (uint64_t len = 0; len < needed; ++len) {
    SCOPED_TRACE(len);
    std::vector<uint8_t> cut(b.bytes.begin(), b.bytes.begin() + static_cast<ptrdiff_t>(len));
    ExpectDataLoss(cut);
  }
  std::vector<uint8_t> exact(b.bytes.begin(), b.bytes.begin() + static_cast<ptrdiff_t>(needed));
  EXPECT_EQ(ParseOrDataLoss(exact), "");
}

TEST(GgufMalformed, RandomByteFlipsNeverCrash) {
  const Base b = MakeBase();
  std::mt19937_64 rng(20240611);
  const uint64_t header_end = b.layout.data_offset;
  int parsed = 0;
  int rejected = 0;
  constexpr int kCases = 4000;
  for (int i = 0; i < kCases; ++i) {
    std::vector<uint8_t> bytes = b.bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header/metadata/tensor table, where parsing decisions are.
      const uint64_t range = (rng() % 8 == 0) ? bytes.size() : header_end;
      const uint64_t at = rng() % range;
      switch (rng() % 3) {
        case 0:
          bytes[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 1:
          bytes[at] = static_cast<uint8_t>(rng());
          break;
        default:
          bytes[at] = (rng() % 2) ? 0xff : 0x00;
          break;
      }
    }
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    if (ParseOrDataLoss(bytes).empty()) {
      ++parsed;
    } else {
      ++rejected;
    }
  }
  EXPECT_EQ(parsed + rejected, kCases);
  EXPECT_GT(rejected, kCases / 2);
}

TEST(GgufMalformed, StoredCorpusReplays) {
  if (!fs::is_directory(kCorpusDir)) GTEST_FAIL() << kCorpusDir << " is absent (it is committed)";
  int n = 0;
  for (const auto& entry : fs::directory_iterator(kCorpusDir)) {
    if (!entry.is_regular_file()) continue;
    SCOPED_TRACE(entry.path().string());
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    ParseOrDataLoss(bytes);
    ++n;
  }
  EXPECT_GT(n, 0);
}

// Writes the writer-made seed files the fuzzer starts from (scripts/fuzz.sh
// and tests/data/gguf_corpus/seed_*). Runs only when asked:
//   KVINFER_GGUF_WRITE_SEEDS=<dir> kvinfer_tests --gtest_filter=GgufSeeds.*
TEST(GgufSeeds, WriteSeedCorpus) {
  const char* dir = std::getenv("KVINFER_GGUF_WRITE_SEEDS");
  if (dir == nullptr) return;
  fs::create_directories(dir);
  MakeBaseWriter().WriteFile(std::string(dir) + "/seed_base.gguf");
  GgufWriter aligned = MakeBaseWriter();
  aligned.SetAlignment(8);
  aligned.SetVersion(2);
  aligned.WriteFile(std::string(dir) + "/seed_align8_v2.gguf");
  GgufWriter meta;
  meta.SetU8("u8", 1);
  meta.SetI16("i16", -1);
  meta.SetU64("u64", 1);
  meta.SetI64("i64", -1);
  meta.SetF64("f64", 0.5);
  meta.SetBoolArray("bools", {true, false});
  meta.Set("nested", GgufWriteValue::Array(GgufType::kArray,
                                           {GgufWriteValue::Array(GgufType::kString,
                                                                  {GgufWriteValue::String("s")})}));
  meta.WriteFile(std::string(dir) + "/seed_meta.gguf");
  GgufWriter q;
  q.AddTensor("q4_0", {32}, DType::kQ4_0, Iota(18, 0));
  q.AddTensor("q4_1", {32}, DType::kQ4_1, Iota(20, 0));
  q.AddTensor("bf16", {2, 1, 1, 1}, DType::kBF16, Iota(4, 0));
  q.AddTensor("q4k", {256}, DType::kQ4_K, Iota(144, 0));
  q.WriteFile(std::string(dir) + "/seed_quant.gguf");
}

// ----------------------------------------------------------------- real files

TEST(GgufRealFiles, Stories260K) {
  const std::string path = kModels + "/stories260K/stories260K.gguf";
  KVINFER_REQUIRE_FILE(path);
  const GgufFile g = GgufFile::Open(path);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.tensors().size(), 48u);
  EXPECT_EQ(g.GetUint("llama.block_count"), 5u);
  EXPECT_EQ(g.GetString("general.architecture"), "llama");
  const auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.has_value());
  EXPECT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ(g.GetFloatArray("tokenizer.ggml.scores")->size(), 512u);
  EXPECT_EQ(g.GetIntArray("tokenizer.ggml.token_type")->size(), 512u);
  EXPECT_NEAR(*g.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  for (const GgufTensorInfo& t : g.tensors()) EXPECT_EQ(t.type, DType::kF32) << t.name;
  const GgufTensorInfo* emb = g.FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dims, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(emb->num_bytes, 64u * 512 * 4);
  TouchAll(g);
}

TEST(GgufRealFiles, VocabOnlyFiles) {
  const std::string dir = kModels + "/tokenizers/llamacpp-vocab";
  const std::string gpt2 = dir + "/ggml-vocab-gpt-2.gguf";
  const std::string spm = dir + "/ggml-vocab-llama-spm.gguf";
  KVINFER_REQUIRE_FILE(gpt2);
  KVINFER_REQUIRE_FILE(spm);
  const auto start = std::chrono::steady_clock::now();
  const GgufFile g = GgufFile::Open(gpt2);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("parsed %s (50257 tokens, 50000 merges) in %.2f ms\n", gpt2.c_str(), ms);
  EXPECT_TRUE(g.tensors().empty());
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.tokens")->size(), 50257u);
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.merges")->size(), 50000u);
  EXPECT_EQ(g.GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.GetUint("tokenizer.ggml.bos_token_id"), 50256u);

  const GgufFile s = GgufFile::Open(spm);
  EXPECT_TRUE(s.tensors().empty());
  EXPECT_EQ(s.GetStringArray("tokenizer.ggml.tokens")->size(), 32000u);
  EXPECT_EQ(s.GetBool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(s.GetBool("tokenizer.ggml.add_eos_token"), false);
}

TEST(GgufRealFiles, SmolLM2) {
  const std::string path = KVINFER_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  KVINFER_REQUIRE_FILE(path);
  const GgufFile g = GgufFile::Open(path);
  EXPECT_EQ(g.tensors().size(), 272u);
  EXPECT_EQ(g.GetUint("llama.block_count"), 30u);
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.tokens")->size(), 49152u);
  const GgufTensorInfo* emb = g.FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, DType::kQ8_0);
  EXPECT_EQ(emb->dims, (std::vector<uint64_t>{576, 49152}));
  TouchAll(g);
}

}  // namespace
}  // namespace kvinfer
