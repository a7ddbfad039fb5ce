// kvinfer bench concurrency: output tokens/s of batched decode against the
// number of concurrent sequences. For each concurrency C, C identical-length
// requests (prompt P tokens, G generated, ignore_eos) start together on a
// paged engine with room for all of them; the decode phase (every step after
// the last prompt finished prefilling) is timed. Every weight matrix is read
// once per step however many sequences run, so throughput should grow with C
// until the step becomes compute-bound.
// Writes OUT/results.json (schema "kvinfer.bench.concurrency/1") and a plot.
#include <cstdio>

#include <fmt/format.h>

#include "bench_util.h"
#include "cli.h"

namespace kvinfer::cli {
namespace {

struct ConcurrencyOptions {
  // Off by default: these benchmarks measure computing K/V, and their
  // repeated or shared prompts would otherwise hit the prefix cache.
  std::string prefix_cache = "off";
  std::string prefix_cache_hash = "xxh3_128";
  std::string model;
  std::string out;
  int threads = 0;
  ActivationPrecision activations = ActivationPrecision::kInt8;
  std::vector<int> levels = {1, 2, 4, 8, 16, 32, 64};
  int prompt_tokens = 128;
  int gen_tokens = 128;
  std::string kv = "paged";
  std::string kv_dtype = "f32";
  bool no_plot = false;
};

nlohmann::json RunLevel(const Model& model, const ConcurrencyOptions& o, int c) {
  EngineOptions eo;
  eo.kv.strategy = *ParseKvStrategy(o.kv);
  eo.kv.precision = *ParseKvPrecision(o.kv_dtype);
  eo.kv.block_size_tokens = 16;
  eo.kv.max_seq_len = o.prompt_tokens + o.gen_tokens;
  eo.num_threads = o.threads;
  eo.activation_precision = o.activations;
  ApplyPrefixCacheOptions(o.prefix_cache, o.prefix_cache_hash, false, eo);
  eo.max_seqs = c;
  eo.max_batch_tokens = std::max(512, o.prompt_tokens);
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  Engine& e = **engine;
  const std::vector<int32_t> prompt = bench::SyntheticPrompt(model, o.prompt_tokens);
  for (int i = 0; i < c; ++i) {
    // Distinct seeds, greedy: identical work per sequence.
    DieIf(e.AddRequestTokens(prompt, {.max_tokens = o.gen_tokens, .seed = static_cast<uint64_t>(i),
                                      .ignore_eos = true})
              .status(),
          "request");
  }
  const bench::Clock::time_point start = bench::Clock::now();
  bench::Clock::time_point decode_start{};
  bool decoding = false;
  int64_t decode_tokens = 0, total_tokens = 0, steps = 0, decode_steps = 0;
  while (e.HasWork()) {
    const bench::Clock::time_point t = bench::Clock::now();
    std::vector<RequestOutput> outs = e.Step();
    ++steps;
    int64_t produced = 0;
    for (const RequestOutput& r : outs) produced += static_cast<int64_t>(r.new_tokens.size());
    total_tokens += produced;
    // Decode phase: every sequence produced a token in this step and none
    // is prefilling any more.
    if (!decoding && produced == c) {
      decoding = true;
      decode_start = bench::Clock::now();
      continue;  // this step finished the prefill; decode starts after it
    }
    if (decoding) {
      decode_tokens += produced;
      ++decode_steps;
    }
    (void)t;
    bench::Progress(fmt::format("concurrency {}: step {}", c, steps));
  }
  const double total_s = bench::MsSince(start) / 1000.0;
  const double decode_s = decoding ? bench::MsSince(decode_start) / 1000.0 : 0.0;
  const EngineStats st = e.Stats();
  return {{"concurrency", c},
          {"decode_tokens_per_s", bench::Round(decode_s > 0 ? decode_tokens / decode_s : 0.0, 2)},
          {"total_tokens_per_s", bench::Round(total_tokens / total_s, 2)},
          {"ms_per_decode_step", bench::Round(decode_steps > 0 ? 1000.0 * decode_s / decode_steps : 0.0)},
          {"generated_tokens", total_tokens},
          {"steps", steps},
          {"peak_running", st.peak_running},
          {"preemptions", st.num_preemptions},
          {"total_s", bench::Round(total_s)}};
}

void RunConcurrency(const ConcurrencyOptions& o) {
  bench::MakeDir(o.out);  // before the run, so a bad --out fails at once
  Model model = LoadModel(o.model.empty() ? DefaultModelPath() : o.model);
  nlohmann::json levels = nlohmann::json::array();
  for (int c : o.levels) {
    if (c < 1 || c > 4096) Die(fmt::format("--levels: {} is not in [1, 4096]", c));
    levels.push_back(RunLevel(model, o, c));
    bench::ProgressDone();
    const nlohmann::json& l = levels.back();
    std::fprintf(stderr, "concurrency %3d: decode %8.1f tok/s (%.2f ms/step), total %8.1f tok/s\n", c,
                 l["decode_tokens_per_s"].get<double>(), l["ms_per_decode_step"].get<double>(),
                 l["total_tokens_per_s"].get<double>());
  }
  const double base = levels[0]["decode_tokens_per_s"].get<double>();
  for (nlohmann::json& l : levels) {
    l["speedup_vs_first"] = bench::Round(base > 0 ? l["decode_tokens_per_s"].get<double>() / base : 0.0);
  }
  const nlohmann::json j = {{"schema", "kvinfer.bench.concurrency/1"},
                            {"command", bench::CommandLine()},
                            {"machine", bench::MachineInfo()},
                            {"model", bench::ModelJson(model.info())},
                            {"kvinfer_version", Version()},
                            {"threads", o.threads},
                            {"kv", o.kv},
                            {"kv_dtype", o.kv_dtype},
                            {"prompt_tokens", o.prompt_tokens},
                            {"gen_tokens", o.gen_tokens},
                            {"levels", levels}};
  const std::string path = o.out + "/results.json";
  bench::WriteJson(path, j);
  std::fprintf(stderr, "wrote %s\n", path.c_str());
  if (!o.no_plot) bench::RunPlot("concurrency", path, o.out);
}

}  // namespace

void AddBenchConcurrencyCommand(CLI::App* bench) {
  auto o = std::make_shared<ConcurrencyOptions>();
  CLI::App* cmd = bench->add_subcommand(
      "concurrency", "Batched decode throughput against the number of concurrent sequences");
  AddModelOption(cmd, &o->model);
  AddOutDirOption(cmd, &o->out);
  AddThreadsOption(cmd, &o->threads, &o->activations);
  AddPrefixCacheOptions(cmd, &o->prefix_cache, &o->prefix_cache_hash);
  AddKvDtypeOption(cmd, &o->kv_dtype);
  cmd->add_option("--levels", o->levels, "Concurrency levels")->delimiter(',')->capture_default_str();
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "Prompt tokens per sequence")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--gen-tokens", o->gen_tokens, "Generated tokens per sequence")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--kv", o->kv, "KV strategy")
      ->check(CLI::IsMember({"contiguous", "paged"}))
      ->capture_default_str();
  cmd->add_flag("--no-plot", o->no_plot, "Skip the PNG");
  cmd->callback([o] { RunConcurrency(*o); });
}

}  // namespace kvinfer::cli
