// The kvinfer command line, run as a user runs it: exit codes, what goes to
// stdout and stderr, and clear errors for bad input.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/gguf_writer.h"
#include "test_util.h"

namespace kvinfer {
namespace {

using testing::CmdResult;
using testing::ReadFile;

CmdResult RunCli(const std::string& args, const std::string& stdin_text = "") {
  return testing::RunKvinfer(args, stdin_text);
}

TEST(Cli, HelpListsTheCommands) {
  CmdResult r = RunCli("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"generate", "chat", "info"}) EXPECT_NE(r.out.find(cmd), std::string::npos);
  CmdResult g = RunCli("generate --help");
  EXPECT_EQ(g.exit_code, 0);
  for (const char* flag : {"--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p",
                           "--seed", "--kv", "--threads", "--stats-json"}) {
    EXPECT_NE(g.out.find(flag), std::string::npos) << flag;
  }
}

TEST(Cli, UnknownFlagIsAnError) {
  CmdResult r = RunCli("generate --bogus-flag 3 -p hi");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("bogus-flag"), std::string::npos) << r.err;
}

TEST(Cli, BadValuesAreErrors) {
  CmdResult kv = RunCli("generate --kv sideways -p hi");
  EXPECT_NE(kv.exit_code, 0);
  EXPECT_NE(kv.err.find("sideways"), std::string::npos) << kv.err;
  // A KV element type that does not exist: named, with the ones that do.
  CmdResult dtype = RunCli("generate --kv-dtype q4 -p hi");
  EXPECT_NE(dtype.exit_code, 0);
  EXPECT_NE(dtype.err.find("q4"), std::string::npos) << dtype.err;
  EXPECT_NE(dtype.err.find("q8_0"), std::string::npos) << dtype.err;
  EXPECT_NE(dtype.err.find("q4_0"), std::string::npos) << dtype.err;
  CmdResult top_p = RunCli("generate --top-p 1.5 -p hi");
  EXPECT_NE(top_p.exit_code, 0);
  EXPECT_NE(top_p.err.find("top-p"), std::string::npos) << top_p.err;
  CmdResult threads = RunCli("generate --threads many -p hi");
  EXPECT_NE(threads.exit_code, 0);
}

TEST(Cli, MissingModelFileIsNamed) {
  CmdResult r = RunCli("generate --model /nonexistent/m.gguf -p hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/m.gguf"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

TEST(Cli, MalformedModelFileIsNamed) {
  const std::string path = ::testing::TempDir() + "/not_a_model_" + std::to_string(getpid()) + ".gguf";
  std::ofstream(path) << "this is not a GGUF file at all";
  CmdResult r = RunCli("info --model " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("malformed"), std::string::npos) << r.err;
}

TEST(Cli, PromptLongerThanTheContextIsRefused) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string path = ::testing::TempDir() + "/long_prompt_" + std::to_string(getpid()) + ".txt";
  {
    std::ofstream f(path);
    for (int i = 0; i < 800; ++i) f << "Once upon a time ";  // ~3200 tokens > 2048
  }
  CmdResult r = RunCli("generate --model " + testing::StoriesGguf() + " --prompt-file " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("context"), std::string::npos) << r.err;
}

TEST(Cli, GenerateWritesOnlyTheContinuationAndStats) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string stats = ::testing::TempDir() + "/stats_" + std::to_string(getpid()) + ".json";
  CmdResult r = RunCli("generate --model " + testing::StoriesGguf() +
                    " -p \"Once upon a time\" -n 32 --threads 1 --stats-json " + stats);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(", there was a little girl named Lily", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find("Once upon a time"), std::string::npos) << "the prompt is not echoed";
  nlohmann::json j = nlohmann::json::parse(ReadFile(stats));
  EXPECT_EQ(j["generated_tokens"], 32);
  EXPECT_EQ(j["prompt_tokens"], 5);
  for (const char* key : {"ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "total_ms"}) {
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(j["kv"]["bytes_per_token"], 2 * 5 * 4 * 8 * 4);
  EXPECT_GT(j["kv"]["bytes_reserved"].get<int64_t>(), 0);
  ASSERT_EQ(j["kv"]["sequences"].size(), 1u);
  EXPECT_EQ(j["kv"]["sequences"][0]["bytes_reserved"], j["kv"]["bytes_reserved"]);
}

TEST(Cli, InfoDescribesTheModel) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  CmdResult r = RunCli("info --json --model " + testing::StoriesGguf());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["n_layers"], 5);
  EXPECT_EQ(j["n_kv_heads"], 4);
  EXPECT_EQ(j["vocab_size"], 512);
  EXPECT_EQ(j["tensor_types"]["f32"], 48);
  // 2 (K, V) x 5 layers x 4 KV heads x head_dim 8: f32 x 4 B, f16 x 2 B,
  // q8_0 8 codes + one f16 scale per row, q4_0 4 bytes of codes + the scale.
  EXPECT_EQ(j["kv_bytes_per_token_f32"], 1280);
  EXPECT_EQ(j["kv_bytes_per_token_f16"], 640);
  EXPECT_EQ(j["kv_bytes_per_token_q8_0"], 400);
  EXPECT_EQ(j["kv_bytes_per_token_q4_0"], 240);
}

// A one-layer llama GGUF whose tokenizer.chat_template is `jinja`, written
// to a temporary file; returns its path.
std::string WriteTinyModelWithTemplate(const std::string& name, const std::string& jinja) {
  constexpr uint64_t kDim = 8, kFf = 8, kVocab = 4;
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.context_length", 64);
  w.SetU32("llama.embedding_length", kDim);
  w.SetU32("llama.block_count", 1);
  w.SetU32("llama.feed_forward_length", kFf);
  w.SetU32("llama.attention.head_count", 2);
  w.SetU32("llama.attention.head_count_kv", 2);
  w.SetF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "gpt-2");
  w.SetString("tokenizer.chat_template", jinja);
  const std::vector<std::string> tokens = {"x", "y", "xy", "z"}, merges = {"x y"};
  w.SetStringArray("tokenizer.ggml.tokens", std::span<const std::string>(tokens));
  w.SetStringArray("tokenizer.ggml.merges", std::span<const std::string>(merges));
  const auto tensor = [&](const std::string& tname, std::vector<uint64_t> dims) {
    uint64_t count = 1;
    for (uint64_t d : dims) count *= d;
    std::vector<uint8_t> bytes(count * sizeof(float));
    for (uint64_t i = 0; i < count; ++i) {
      const float v = 0.05f * static_cast<float>(i % 7);
      std::memcpy(bytes.data() + i * sizeof(float), &v, sizeof(float));
    }
    w.AddTensor(tname, std::move(dims), DType::kF32, std::move(bytes));
  };
  tensor("token_embd.weight", {kDim, kVocab});
  tensor("blk.0.attn_norm.weight", {kDim});
  for (const char* t : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
    tensor(std::string("blk.0.") + t + ".weight", {kDim, kDim});
  }
  tensor("blk.0.ffn_norm.weight", {kDim});
  tensor("blk.0.ffn_gate.weight", {kDim, kFf});
  tensor("blk.0.ffn_up.weight", {kDim, kFf});
  tensor("blk.0.ffn_down.weight", {kFf, kDim});
  tensor("output_norm.weight", {kDim});
  const std::string path = ::testing::TempDir() + "/" + name + std::to_string(getpid()) + ".gguf";
  w.WriteFile(path);
  return path;
}

// A template kvinfer does not recognise is reported, not silently rendered
// as ChatML: info marks it guessed, and chat / generate --chat warn on stderr.
TEST(Cli, UnrecognisedChatTemplateIsReported) {
  const std::string path = WriteTinyModelWithTemplate(
      "alpaca_template", "{% for m in messages %}### {{ m['role'] }}{% endfor %}");
  CmdResult info = RunCli("info --json --model " + path);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  nlohmann::json j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["chat_template"], "chatml");
  EXPECT_EQ(j["chat_template_recognised"], false);
  CmdResult text = RunCli("info --model " + path);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("chatml (guessed: template not recognised)"), std::string::npos)
      << text.out;
  const std::string warning = "warning: the model's chat template is not one kvinfer recognises";
  CmdResult gen = RunCli("generate --chat -n 1 -p xy --model " + path);
  EXPECT_NE(gen.err.find(warning), std::string::npos) << gen.err;
  CmdResult chat = RunCli("chat -n 1 --model " + path, "xy\n/quit\n");
  EXPECT_NE(chat.err.find(warning), std::string::npos) << chat.err;
  std::remove(path.c_str());

  // A recognised template draws no warning.
  const std::string chatml = WriteTinyModelWithTemplate("chatml_template", "{{'<|im_start|>'}}");
  CmdResult ok = RunCli("info --json --model " + chatml);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["chat_template_recognised"], true);
  CmdResult ok_gen = RunCli("generate --chat -n 1 -p xy --model " + chatml);
  EXPECT_EQ(ok_gen.err.find(warning), std::string::npos) << ok_gen.err;
  std::remove(chatml.c_str());
}

// A KV pool the process cannot get (address space capped at 2 GiB, the pool
// 400000 blocks x 16 tokens x 1280 bytes = 8.2 GB) fails with a message
// naming the strategy, dtype, block count, block size and total.
TEST(Cli, KvPoolOutOfMemoryNamesThePool) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string err_path =
      ::testing::TempDir() + "/kv_oom_err_" + std::to_string(getpid()) + ".txt";
  const std::string cmd = "bash -c 'ulimit -v 2097152; exec " + std::string(KVINFER_BINARY_DIR) +
                          "/kvinfer generate -n 1 -p hi --kv paged --num-blocks 400000 --model " +
                          testing::StoriesGguf() + "' </dev/null >/dev/null 2>" + err_path;
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = ReadFile(err_path);
  std::remove(err_path.c_str());
  EXPECT_NE(err.find("out of memory allocating the KV pool (paged strategy, f32 KV cache)"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("400000 blocks of 16 tokens x 1280 bytes per token = 20480 bytes per block"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("8192000000 bytes"), std::string::npos) << err;
}

TEST(Cli, ChatKeepsTheCacheBetweenTurns) {
  KVINFER_REQUIRE_FILE(testing::DefaultModel());
  const std::string stats =
      ::testing::TempDir() + "/chat_stats_" + std::to_string(getpid()) + ".json";
  CmdResult r = RunCli("chat -n 24 --threads 2 --stats-json " + stats,
                       "What is the capital of France?\nAnd of Italy?\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Paris"), std::string::npos) << r.out;
  const nlohmann::json j = nlohmann::json::parse(ReadFile(stats));
  std::remove(stats.c_str());
  const nlohmann::json& turns = j.at("turns");
  ASSERT_EQ(turns.size(), 2u) << j.dump();
  EXPECT_EQ(turns[0]["cached_prompt_tokens"], 0);
  // The second turn reuses everything up to its new user message.
  const int64_t prompt = turns[1]["prompt_tokens"], reused = turns[1]["cached_prompt_tokens"];
  EXPECT_GT(reused, 30);
  EXPECT_LT(prompt - reused, 20) << "only the new turn should be prefilled: " << turns[1].dump();
}

TEST(Cli, ChatReusesEarlierTurnsThroughThePrefixCache) {
  KVINFER_REQUIRE_FILE(testing::DefaultModel());
  const std::string stats =
      ::testing::TempDir() + "/chat_prefix_stats_" + std::to_string(getpid()) + ".json";
  CmdResult r = RunCli("chat --kv paged -n 24 --threads 2 --prefix-cache-log --stats-json " + stats,
                       "What is the capital of France?\nAnd of Italy?\nAnd of Spain?\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(ReadFile(stats));
  std::remove(stats.c_str());
  const nlohmann::json& turns = j.at("turns");
  ASSERT_EQ(turns.size(), 3u) << j.dump();
  EXPECT_EQ(j["prefix_cache"]["mode"], "shared");
  EXPECT_GT(j["prefix_cache"]["hits"].get<int64_t>(), 0);
  // --prefix-cache-log explains each admission.
  EXPECT_NE(r.err.find("prefix cache: request 2: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("left the cached prefix at token"), std::string::npos) << r.err;
  EXPECT_EQ(turns[0]["cached_prompt_tokens"], 0);
  for (int t = 1; t < 3; ++t) {
    // Earlier turns, replies included, come from the cache: only the new
    // message, the template around it and at most one partial block (16
    // tokens) are prefilled.
    const int64_t prompt = turns[t]["prompt_tokens"], reused = turns[t]["cached_prompt_tokens"];
    EXPECT_GT(reused, 30) << turns[t].dump();
    EXPECT_LT(prompt - reused, 20 + 16) << "turn " << t << ": " << turns[t].dump();
  }
}

}  // namespace
}  // namespace kvinfer

namespace kvinfer {
namespace {

// A file in the test temp dir holding `content`, removed at the end of the
// test program (tests pass the path on to the CLI as a string).
std::string WriteTemp(const std::string& name, const std::string& content) {
  static std::vector<std::string> written;
  static const struct Remover {
    ~Remover() {
      for (const std::string& p : written) std::remove(p.c_str());
    }
  } remover;
  const std::string path = ::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path) << content;
  written.push_back(path);
  return path;
}

TEST(CliBatch, WritesOneLinePerRequestInInputOrder) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string prompts = WriteTemp(
      "prompts.jsonl",
      "{\"prompt\": \"Once upon a time\", \"max_tokens\": 12}\n"
      "\n"
      "{\"prompt\": \"The dog\", \"max_tokens\": 3, \"ignore_eos\": true}\n"
      "{\"prompt\": \"Lily and Ben\", \"max_tokens\": 20, \"temperature\": 0.8, \"seed\": 5}\n");
  CmdResult r = RunCli("batch --model " + testing::StoriesGguf() + " --prompts " + prompts +
                       " --kv paged --max-seqs 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(lines[i]["index"], i);
  EXPECT_EQ(lines[0]["text"].get<std::string>().rfind(", there was a little girl", 0), 0u);
  EXPECT_EQ(lines[1]["generated_tokens"], 3);
  EXPECT_EQ(lines[1]["tokens"].size(), 3u);
  EXPECT_EQ(lines[1]["finish_reason"], "length");
  EXPECT_NE(r.err.find("preemptions"), std::string::npos) << "summary on stderr: " << r.err;
}

TEST(CliBatch, ResultLinesAndSummaryCountCachedPromptTokens) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She loved to play in the park with "
      "her friends every day, and her mother always made her a big lunch.";
  const std::string prompts =
      WriteTemp("shared.jsonl", "{\"prompt\": \"" + story + " One\", \"max_tokens\": 3}\n" +
                                    "{\"prompt\": \"" + story + " Two\", \"max_tokens\": 3}\n" +
                                    "{\"prompt\": \"" + story + " Three\", \"max_tokens\": 3}\n");
  const std::string base = "batch --model " + testing::StoriesGguf() + " --prompts " + prompts +
                           " --kv paged --block-size 4 --max-seqs 3 --threads 1";
  CmdResult on = RunCli(base);
  CmdResult off = RunCli(base + " --prefix-cache off");
  ASSERT_EQ(on.exit_code, 0) << on.err;
  ASSERT_EQ(off.exit_code, 0) << off.err;
  std::istringstream in_on(on.out), in_off(off.out);
  std::string a, b;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(std::getline(in_on, a) && std::getline(in_off, b));
    const nlohmann::json jon = nlohmann::json::parse(a), joff = nlohmann::json::parse(b);
    EXPECT_EQ(jon["tokens"], joff["tokens"]) << i;
    EXPECT_EQ(joff["cached_prompt_tokens"], 0);
    // The first computes the shared story; the others wait for it, then hit it.
    if (i == 0) {
      EXPECT_EQ(jon["cached_prompt_tokens"], 0);
    } else {
      EXPECT_GT(jon["cached_prompt_tokens"].get<int>(), 20) << a;
    }
  }
  EXPECT_NE(on.err.find("prefix cache shared:"), std::string::npos) << on.err;
  EXPECT_NE(off.err.find("prefix cache off: 0 of"), std::string::npos) << off.err;
}

TEST(CliBatch, BadLinesAreNamed) {
  const std::string bad_json = WriteTemp("bad.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \n");
  CmdResult r = RunCli("batch --prompts " + bad_json);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(":2: not valid JSON"), std::string::npos) << r.err;
  const std::string bad_key = WriteTemp("badkey.jsonl", "{\"prompt\": \"a\", \"temprature\": 1}\n");
  r = RunCli("batch --prompts " + bad_key);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown key \"temprature\""), std::string::npos) << r.err;
  const std::string bad_type = WriteTemp("badtype.jsonl", "{\"prompt\": \"a\", \"max_tokens\": -4}\n");
  r = RunCli("batch --prompts " + bad_type);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("max_tokens"), std::string::npos) << r.err;
}

TEST(CliGenerate, SamplesShareThePromptBlocks) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string stats = ::testing::TempDir() + "/n_stats_" + std::to_string(getpid()) + ".json";
  std::string prompt;
  for (int i = 0; i < 10; ++i) prompt += "Lily went to the park with her mom. ";
  CmdResult r = RunCli("generate --model " + testing::StoriesGguf() + " -p \"" + prompt +
                       "\" --n 4 -n 16 --temperature 0.9 --seed 3 --kv paged --threads 1 "
                       "--stats-json " + stats);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int i = 0; i < 4; ++i) {
    EXPECT_NE(r.out.find("--- sample " + std::to_string(i)), std::string::npos) << r.out;
  }
  nlohmann::json j = nlohmann::json::parse(ReadFile(stats));
  EXPECT_EQ(j["samples"].size(), 4u);
  EXPECT_LT(j["peak_bytes_reserved"].get<int64_t>(), j["peak_bytes_independent"].get<int64_t>());
  EXPECT_GT(j["saved_percent"].get<double>(), 30.0);
}

}  // namespace
}  // namespace kvinfer
