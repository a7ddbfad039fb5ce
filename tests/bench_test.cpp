// `kvinfer bench`, run as a user runs it, on the tiny stories260K model:
// kv-modes writes a results.json with every strategy and sane numbers, and
// speed --json parses with positive throughput. One thread: the tiny model's
// steps take ~0.1 ms, where a second thread on a busy machine only adds
// scheduling noise.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kvinfer {
namespace {


// A fresh folder per process and call: ctest runs tests in parallel.
std::string TempDirFor(const std::string& name) {
  static int counter = 0;
  const std::string dir = ::testing::TempDir() + "/kvinfer_bench_" + name + "_" +
                          std::to_string(getpid()) + "_" + std::to_string(counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Runs the CLI; returns its exit code, stdout and stderr in *out / *err.
int RunCli(const std::string& args, const std::string& /*dir*/, std::string* out, std::string* err) {
  testing::CmdResult r = testing::RunKvinfer(args);
  *out = std::move(r.out);
  *err = std::move(r.err);
  return r.exit_code;
}

TEST(Bench, KvModesQuickWritesSaneResults) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string dir = TempDirFor("kv_modes");
  std::string out, err;
  ASSERT_EQ(RunCli("bench kv-modes --quick --no-plot --threads 1 --model " + testing::StoriesGguf() +
                       " --out " + dir,
                   dir, &out, &err),
            0)
      << err;
  const nlohmann::json j = nlohmann::json::parse(testing::ReadFile(dir + "/results.json"));
  EXPECT_EQ(j["schema"], "kvinfer.bench.kv-modes/1");
  EXPECT_NE(j["command"].get<std::string>().find("kv-modes"), std::string::npos);
  EXPECT_GT(j["machine"]["nproc"].get<int>(), 0);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["model"]["kv_bytes_per_token_f32"], 1280);
  EXPECT_TRUE(j["skipped"].empty()) << j["skipped"].dump();

  for (const char* sweep : {"gen_sweep", "prompt_sweep"}) {
    const nlohmann::json& runs = j[sweep]["runs"];
    std::set<std::string> strategies;
    for (const nlohmann::json& r : runs) {
      SCOPED_TRACE(r.dump().substr(0, 300));
      strategies.insert(r["strategy"].get<std::string>());
      EXPECT_GT(r["prompt_tokens"].get<int>(), 0);
      EXPECT_GT(r["gen_tokens"].get<int>(), 0);
      EXPECT_GT(r["total_ms"].get<double>(), 0);
      EXPECT_GT(r["ttft_ms"].get<double>(), 0);
      EXPECT_LE(r["ttft_ms"].get<double>(), r["total_ms"].get<double>());
      EXPECT_GT(r["decode_ms_per_token"].get<double>(), 0);
      // One prefill step, then one step per further generated token.
      EXPECT_EQ(r["num_steps"].get<int>(), r["gen_tokens"].get<int>());
      EXPECT_EQ(r["step_ms"].size(), r["num_steps"].get<size_t>());
      EXPECT_EQ(r["kv"]["bytes_per_token"], 1280);
      EXPECT_GT(r["kv"]["pool_bytes"].get<int64_t>(), 0);
      EXPECT_GT(r["rss"]["peak_sampled_bytes"].get<int64_t>(), 0);
      // Measured after each step: the last step finishes the request and
      // frees its blocks, so the peak is seen one step earlier, holding all
      // tokens but the last two (the last sampled one never gets K/V).
      const int64_t held = r["prompt_tokens"].get<int64_t>() + r["gen_tokens"].get<int64_t>() - 2;
      if (r["strategy"] == "none") {
        EXPECT_EQ(r["kv"]["peak_bytes_used"], 0);  // nothing survives a step
        EXPECT_GT(r["kv"]["peak_bytes_reserved_within_step"].get<int64_t>(), 0);
      } else {
        EXPECT_EQ(r["kv"]["peak_tokens_held"].get<int64_t>(), held);
        EXPECT_EQ(r["kv"]["peak_bytes_used"].get<int64_t>(), held * 1280);
        EXPECT_GE(r["kv"]["peak_bytes_reserved"].get<int64_t>(), held * 1280);
      }
      if (r["strategy"] == "contiguous") {
        EXPECT_EQ(r["kv"]["peak_bytes_reserved"].get<int64_t>(),
                  j[sweep]["max_seq_len"].get<int64_t>() * 1280);
      }
      if (r["strategy"] == "paged") {
        const int64_t blocks = (held + 15) / 16;
        EXPECT_EQ(r["kv"]["peak_bytes_reserved"].get<int64_t>(), blocks * 16 * 1280);
      }
    }
    EXPECT_EQ(strategies, (std::set<std::string>{"none", "contiguous", "paged"})) << sweep;
  }

  // The O(n^2) baseline is slower than the cache at the longest length.
  double none_ms = 0, contiguous_ms = 0;
  for (const nlohmann::json& r : j["gen_sweep"]["runs"]) {
    if (r["gen_tokens"] != 128) continue;
    if (r["strategy"] == "none") none_ms = r["total_ms"];
    if (r["strategy"] == "contiguous") contiguous_ms = r["total_ms"];
  }
  ASSERT_GT(contiguous_ms, 0);
  EXPECT_GT(none_ms, contiguous_ms);
  std::filesystem::remove_all(dir);
}

TEST(Bench, SpeedJsonHasPositiveThroughput) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string dir = TempDirFor("speed");
  std::string out, err;
  ASSERT_EQ(RunCli("bench speed --json --repetitions 1 --prompt-tokens 64 --gen-tokens 16 "
                   "--threads 1 --model " +
                       testing::StoriesGguf(),
                   dir, &out, &err),
            0)
      << err;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_GT(j["prefill_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j["prefill_tokens_per_s_stddev"].get<double>(), 0);  // one repetition
  EXPECT_TRUE(j.contains("decode_tokens_per_s_stddev"));
  EXPECT_GT(j["ttft_ms"].get<double>(), 0);
  EXPECT_GT(j["time_per_output_token_ms"].get<double>(), 0);
  EXPECT_EQ(j["kv"], "contiguous");
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["prompt_tokens"], 64);
  EXPECT_NE(j["model"].get<std::string>().find("stories260K"), std::string::npos);
  EXPECT_EQ(j["runs"].size(), 1u);
  std::filesystem::remove_all(dir);
}

TEST(Bench, ContextJsonPairsEveryDepthWithTheFirst) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string dir = TempDirFor("context");
  std::string out, err;
  ASSERT_EQ(RunCli("bench context --json --repetitions 3 --depths 16,96,48 --gen-tokens 8 "
                   "--kv-dtype q8_0,f32 --threads 1 --model " +
                       testing::StoriesGguf(),
                   dir, &out, &err),
            0)
      << err;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["schema"], "kvinfer.bench.context/1");
  EXPECT_EQ(j["repetitions"], 3);
  EXPECT_EQ(j["gen_tokens"], 8);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["kv_dtype"], "q8_0");  // in the order given
  EXPECT_EQ(j["results"][1]["kv_dtype"], "f32");
  for (const nlohmann::json& r : j["results"]) {
    const nlohmann::json& ds = r["depths"];
    ASSERT_EQ(ds.size(), 3u);
    EXPECT_EQ(ds[0]["depth"], 16);
    EXPECT_EQ(ds[1]["depth"], 96);
    EXPECT_EQ(ds[2]["depth"], 48);
    for (const nlohmann::json& d : ds) {
      ASSERT_EQ(d["runs"].size(), 3u);
      ASSERT_EQ(d["ratio_runs"].size(), 3u);
      double sum = 0;
      for (size_t k = 0; k < 3; ++k) {
        const double tps = d["runs"][k].get<double>();
        EXPECT_GT(tps, 0);
        // Each ratio is this depth's run over the first depth's in the same repetition.
        EXPECT_DOUBLE_EQ(d["ratio_runs"][k].get<double>(), tps / ds[0]["runs"][k].get<double>());
        sum += d["ratio_runs"][k].get<double>();
      }
      EXPECT_NEAR(d["ratio_to_first_depth"].get<double>(), sum / 3, 1e-12);
    }
    EXPECT_EQ(ds[0]["ratio_to_first_depth"].get<double>(), 1.0);
  }
  std::filesystem::remove_all(dir);
}

TEST(Bench, MemoryAdmitsMoreWithPaging) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string dir = TempDirFor("memory");
  std::string out, err;
  ASSERT_EQ(RunCli("bench memory --no-plot --threads 1 --requests 24 --model " +
                       testing::StoriesGguf() + " --out " + dir,
                   dir, &out, &err),
            0)
      << err;
  const nlohmann::json j = nlohmann::json::parse(testing::ReadFile(dir + "/results.json"));
  ASSERT_EQ(j["results"].size(), 2u);
  const nlohmann::json& c = j["results"][0];
  const nlohmann::json& p = j["results"][1];
  EXPECT_EQ(c["strategy"], "contiguous");
  EXPECT_EQ(p["strategy"], "paged");
  // The default budget holds 4 contiguous sequences of max_seq_len.
  EXPECT_EQ(c["max_running_sequences"], 4);
  EXPECT_GT(p["max_running_sequences"].get<int>(), 4);
  EXPECT_LT(p["mean_waste"].get<double>(), c["mean_waste"].get<double>());
  for (const nlohmann::json* r : {&c, &p}) {
    EXPECT_GT((*r)["generated_tokens"].get<int64_t>(), 0);
    EXPECT_GT((*r)["generated_tokens_per_s"].get<double>(), 0);
    EXPECT_LE((*r)["peak_bytes_reserved"].get<int64_t>(), j["kv_budget_bytes"].get<int64_t>());
  }
  std::filesystem::remove_all(dir);
}

TEST(Bench, PrefixComputesASharedPromptOnceAndKeepsConversationPrefillFlat) {
  KVINFER_REQUIRE_FILE(testing::StoriesGguf());
  const std::string dir = TempDirFor("prefix");
  std::string out, err;
  ASSERT_EQ(RunCli("bench prefix --no-plot --threads 1 --requests 6 --system-tokens 64 "
                   "--question-tokens 10 --gen-tokens 4 --turns 4 --conversation-system-tokens 20 "
                   "--model " + testing::StoriesGguf() + " --out " + dir,
                   dir, &out, &err),
            0)
      << err;
  const nlohmann::json j = nlohmann::json::parse(testing::ReadFile(dir + "/results.json"));
  EXPECT_EQ(j["schema"], "kvinfer.bench.prefix/1");
  EXPECT_EQ(j["outputs_identical"], true);
  const nlohmann::json& off = j["runs"][0];
  const nlohmann::json& on = j["runs"][1];
  EXPECT_EQ(off["prefix_cache_hits"], 0);
  // 64 shared tokens = 4 blocks of 16, hit by the 5 requests after the first.
  EXPECT_EQ(on["prefix_cache_hits"], 5 * 64);
  EXPECT_EQ(off["tokens_computed"].get<int64_t>() - on["tokens_computed"].get<int64_t>(), 5 * 64);
  const nlohmann::json& c = j["conversation"];
  ASSERT_EQ(c["on"].size(), 4u);
  for (size_t t = 1; t < 4; ++t) {
    // Off: the whole conversation; on: the new question, the last reply
    // token and at most a partly filled block.
    EXPECT_EQ(c["off"][t]["prefill_tokens"], c["off"][t]["prompt_tokens"]);
    EXPECT_LE(c["on"][t]["prefill_tokens"].get<int64_t>(), 10 + 1 + 15);
  }
  std::filesystem::remove_all(dir);
}

TEST(Bench, BadArgumentsAreClearErrors) {
  const std::string dir = TempDirFor("errors");
  std::string out, err;
  EXPECT_NE(RunCli("bench kv-modes --quick", dir, &out, &err), 0);  // --out is required
  EXPECT_NE(err.find("--out"), std::string::npos) << err;
  EXPECT_NE(RunCli("bench speed --kv sideways", dir, &out, &err), 0);
  EXPECT_NE(err.find("sideways"), std::string::npos) << err;
  EXPECT_NE(RunCli("bench context --depths 128,0", dir, &out, &err), 0);
  EXPECT_NE(err.find("--depths"), std::string::npos) << err;
  EXPECT_NE(RunCli("bench context --kv-dtype f32,q3", dir, &out, &err), 0);
  EXPECT_NE(err.find("q3"), std::string::npos) << err;
  EXPECT_EQ(RunCli("bench speed --model /nonexistent/m.gguf", dir, &out, &err), 1);
  EXPECT_NE(err.find("/nonexistent/m.gguf"), std::string::npos) << err;
  if (std::filesystem::exists(testing::StoriesGguf())) {
    // stories260K's context is 2048 tokens.
    EXPECT_EQ(RunCli("bench speed --prompt-tokens 2000 --gen-tokens 100 --model " +
                         testing::StoriesGguf(),
                     dir, &out, &err),
              1);
    EXPECT_NE(err.find("context"), std::string::npos) << err;
    EXPECT_EQ(RunCli("bench context --depths 128,2040 --gen-tokens 16 --model " +
                         testing::StoriesGguf(),
                     dir, &out, &err),
              1);
    EXPECT_NE(err.find("2040"), std::string::npos) << err;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvinfer
