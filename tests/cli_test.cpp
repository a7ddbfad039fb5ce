// The kvinfer command line, run as a user runs it: exit codes, what goes to
// stdout and stderr, and clear errors for bad input.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
