// kvinfer bench: measurements of the engine through the public API.
//
//   bench speed     llama-bench style prefill / decode throughput (mean ± sd)
//   bench context   decode speed at several context depths, the depths and
//                   K/V types interleaved per repetition, with the paired
//                   ratio of each depth's speed to the first depth's
//   bench kv-modes  none vs contiguous vs paged over generated and prompt
//                   lengths: latency, per-step cost, KV bytes, RSS
//                   (bench_kv_modes.cpp)
//   bench memory    contiguous vs paged under a mixed-length workload with a
//                   fixed KV budget: admitted sequences, throughput, waste
//                   (bench_memory.cpp)
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "bench_util.h"
#include "cli.h"
#include "output.h"

namespace kvinfer::cli {

void AddBenchKvModesCommand(CLI::App* bench);  // bench_kv_modes.cpp
void AddBenchMemoryCommand(CLI::App* bench);   // bench_memory.cpp
void AddBenchConcurrencyCommand(CLI::App* bench);  // bench_concurrency.cpp
void AddBenchPrefixCommand(CLI::App* bench);  // bench_prefix.cpp

namespace {

struct SpeedOptions {
  // Off by default: these benchmarks measure computing K/V, and their
  // repeated or shared prompts would otherwise hit the prefix cache.
  std::string prefix_cache = "off";
  std::string prefix_cache_hash = "xxh3_128";
  std::string model;
  std::string kv = "contiguous";
  std::string kv_dtype = "f32";
  int threads = 0;
  ActivationPrecision activations = ActivationPrecision::kInt8;
  int prompt_tokens = 512;
  int gen_tokens = 128;
  int repetitions = 3;
  bool json = false;
};

struct SpeedRun {
  double prefill_tps = 0;  // prompt tokens / time of the prefill step
  double decode_tps = 0;   // (gen - 1) / time of the decode steps
  double ttft_ms = 0;
  double tpot_ms = 0;      // decode time per output token after the first
  double total_ms = 0;
};

// One request alone: the first Step() prefills the whole prompt in one
// batched forward (max_batch_tokens >= prompt) and samples the first token;
// every later Step() decodes one token.
SpeedRun RunOnce(Engine& engine, const std::vector<int32_t>& prompt, int gen_tokens) {
  SamplingParams sp;
  sp.max_tokens = gen_tokens;
  sp.ignore_eos = true;
  StatusOr<RequestId> id = engine.AddRequestTokens(prompt, sp);
  DieIf(id.status(), "bench request");
  RequestOutput final;
  while (engine.HasWork()) {
    for (RequestOutput& o : engine.Step()) {
      if (o.id == *id && o.finished) final = std::move(o);
    }
  }
  if (final.finish_reason != FinishReason::kLength) {
    Die(fmt::format("the benchmark request ended with '{}' instead of reaching {} tokens",
                    FinishReasonName(final.finish_reason), gen_tokens));
  }
  const RequestTimings& t = final.timings;
  SpeedRun r;
  r.prefill_tps = t.prefill_tokens_per_s();
  r.decode_tps = t.decode_tokens_per_s();
  r.ttft_ms = t.ttft_ms;
  r.tpot_ms = t.generated_tokens > 1 ? t.decode_ms / static_cast<double>(t.generated_tokens - 1) : 0;
  r.total_ms = t.total_ms;
  return r;
}

void RunSpeed(const SpeedOptions& o) {
  RunFlags defaults;
  const std::string path = o.model.empty() ? DefaultModelPath() : o.model;
  Model model = LoadModel(path);
  const ModelInfo& info = model.info();
  const int seq_len = o.prompt_tokens + o.gen_tokens;
  if (seq_len > info.context_length) {
    Die(fmt::format("--prompt-tokens {} + --gen-tokens {} = {} exceeds the model's context of {} "
                    "tokens",
                    o.prompt_tokens, o.gen_tokens, seq_len, info.context_length));
  }
  EngineOptions eo;
  eo.kv.strategy = *ParseKvStrategy(o.kv);
  eo.kv.precision = *ParseKvPrecision(o.kv_dtype);
  eo.kv.max_seq_len = seq_len;
  eo.num_threads = o.threads;
  eo.activation_precision = o.activations;
  ApplyPrefixCacheOptions(o.prefix_cache, o.prefix_cache_hash, false, eo);
  eo.max_seqs = 1;
  // The prompt is one batched forward, never chunked.
  eo.max_batch_tokens = std::max(o.prompt_tokens, 1);
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  const int threads = (*engine)->options().num_threads;
  const std::vector<int32_t> prompt = bench::SyntheticPrompt(model, o.prompt_tokens);

  // Warm-up: pages the weights in and wakes the thread pool; not counted.
  bench::Progress(fmt::format("bench speed: warm-up ({} prompt tokens)", o.prompt_tokens));
  RunOnce(**engine, prompt, std::min(o.gen_tokens, 4));
  std::vector<SpeedRun> runs;
  for (int i = 0; i < o.repetitions; ++i) {
    bench::Progress(fmt::format("bench speed: repetition {}/{} (pp{} + tg{}, kv {})", i + 1,
                                o.repetitions, o.prompt_tokens, o.gen_tokens, o.kv));
    runs.push_back(RunOnce(**engine, prompt, o.gen_tokens));
  }
  bench::ProgressDone();

  auto summarize = [&](double SpeedRun::*field) {
    std::vector<double> xs;
    for (const SpeedRun& r : runs) xs.push_back(r.*field);
    return bench::Summarize(xs);
  };
  const bench::MeanStd pp = summarize(&SpeedRun::prefill_tps);
  const bench::MeanStd tg = summarize(&SpeedRun::decode_tps);
  const bench::MeanStd ttft = summarize(&SpeedRun::ttft_ms);
  const bench::MeanStd tpot = summarize(&SpeedRun::tpot_ms);

  if (o.json) {
    nlohmann::json rj = nlohmann::json::array();
    for (const SpeedRun& r : runs) {
      rj.push_back({{"prefill_tokens_per_s", r.prefill_tps},
                    {"decode_tokens_per_s", r.decode_tps},
                    {"ttft_ms", r.ttft_ms},
                    {"time_per_output_token_ms", r.tpot_ms},
                    {"total_ms", r.total_ms}});
    }
    const nlohmann::json j = {{"schema", "kvinfer.bench.speed/1"},
                              {"kvinfer_version", Version()},
                              {"command", bench::CommandLine()},
                              {"machine", bench::MachineInfo()},
                              {"model", info.path},
                              {"model_name", info.name},
                              {"threads", threads},
                              {"kv", o.kv},
                              {"kv_dtype", o.kv_dtype},
                              {"prompt_tokens", o.prompt_tokens},
                              {"gen_tokens", o.gen_tokens},
                              {"repetitions", o.repetitions},
                              {"prefill_tokens_per_s", pp.mean},
                              {"prefill_tokens_per_s_stddev", pp.stddev},
                              {"decode_tokens_per_s", tg.mean},
                              {"decode_tokens_per_s_stddev", tg.stddev},
                              {"ttft_ms", ttft.mean},
                              {"ttft_ms_stddev", ttft.stddev},
                              {"time_per_output_token_ms", tpot.mean},
                              {"time_per_output_token_ms_stddev", tpot.stddev},
                              {"runs", rj}};
    WriteStdout(JsonText(j) + "\n");
    return;
  }
  const std::string name = std::filesystem::path(info.path).stem().string();
  const std::string size = fmt::format("{:.1f} MiB", info.weight_bytes / 1048576.0);
  const std::string params = fmt::format("{:.2f} M", info.num_parameters / 1e6);
  fmt::print("| {:<28} | {:>10} | {:>9} | {:>10} | {:>7} | {:>8} | {:>20} |\n", "model", "size",
             "params", "kv", "threads", "test", "value");
  fmt::print("| {:-<28} | {:->10} | {:->9} | {:->10} | {:->7} | {:->8} | {:->20} |\n", "", "", "", "",
             "", "", "");
  auto row = [&](const std::string& test, const bench::MeanStd& m, const char* unit) {
    fmt::print("| {:<28} | {:>10} | {:>9} | {:>10} | {:>7} | {:>8} | {:>20} |\n", name, size, params,
               o.kv, threads, test, fmt::format("{:.2f} ± {:.2f} {}", m.mean, m.stddev, unit));
  };
  row(fmt::format("pp{}", o.prompt_tokens), pp, "t/s");
  row(fmt::format("tg{}", o.gen_tokens), tg, "t/s");
  row("ttft", ttft, "ms");
  row("tpot", tpot, "ms");
  fmt::print("\n{} repetitions after a warm-up; pp = prefill of the whole prompt in one batched "
             "forward, tg = decode tokens after the first, ttft = time to first token, tpot = "
             "time per output token.\n",
             o.repetitions);
}

struct ContextOptions {
  // Off by default: these benchmarks measure computing K/V, and their
  // repeated or shared prompts would otherwise hit the prefix cache.
  std::string prefix_cache = "off";
  std::string prefix_cache_hash = "xxh3_128";
  std::string model;
  std::string kv = "contiguous";
  std::vector<std::string> kv_dtypes{"f32", "f16", "q8_0", "q4_0"};
  std::vector<int> depths{128, 2048};
  int threads = 0;
  ActivationPrecision activations = ActivationPrecision::kInt8;
  int gen_tokens = 64;
  int repetitions = 5;
  bool json = false;
};

// Decode speed against context: per repetition, for each K/V type a fresh
// engine prefills a synthetic prompt of each depth and decodes gen_tokens
// more (tg n at depth d, as llama-bench -d counts it). The host's speed
// drifts over minutes (shared L3, memory bandwidth, clock), so the
// depths and types are interleaved within every repetition, and the ratio
// of a depth's speed to the first depth's is taken per repetition (paired)
// before it is averaged: unpaired runs minutes apart can differ by more
// than the effects the ratio is meant to show.
void RunContext(const ContextOptions& o) {
  const std::string path = o.model.empty() ? DefaultModelPath() : o.model;
  Model model = LoadModel(path);
  const ModelInfo& info = model.info();
  const int max_depth = *std::max_element(o.depths.begin(), o.depths.end());
  // The first token comes from the prefill: gen_tokens decode steps follow it.
  const int gen = o.gen_tokens + 1;
  if (max_depth + gen > info.context_length) {
    Die(fmt::format("depth {} + {} generated tokens exceeds the model's context of {} tokens",
                    max_depth, gen, info.context_length));
  }
  const size_t nt = o.kv_dtypes.size(), nd = o.depths.size();
  std::vector<std::vector<int32_t>> prompts;
  for (int depth : o.depths) prompts.push_back(bench::SyntheticPrompt(model, depth));
  // tps[type][depth][repetition]
  std::vector<std::vector<std::vector<double>>> tps(nt, std::vector<std::vector<double>>(nd));
  int threads = 0;
  for (int r = 0; r < o.repetitions; ++r) {
    for (size_t t = 0; t < nt; ++t) {
      EngineOptions eo;
      eo.kv.strategy = *ParseKvStrategy(o.kv);
      eo.kv.precision = *ParseKvPrecision(o.kv_dtypes[t]);
      eo.kv.max_seq_len = max_depth + gen;
      eo.num_threads = o.threads;
      eo.activation_precision = o.activations;
      ApplyPrefixCacheOptions(o.prefix_cache, o.prefix_cache_hash, false, eo);
      eo.max_seqs = 1;
      eo.max_batch_tokens = max_depth;  // every prompt one batched forward
      auto engine = Engine::Create(model, eo);
      DieIf(engine.status(), "engine");
      threads = (*engine)->options().num_threads;
      // Warm-up: pages in the weights and the K/V pool, wakes the pool.
      RunOnce(**engine, bench::SyntheticPrompt(model, 8), 4);
      for (size_t d = 0; d < nd; ++d) {
        bench::Progress(fmt::format("bench context: repetition {}/{}, kv {} {}, depth {} + tg{}",
                                    r + 1, o.repetitions, o.kv, o.kv_dtypes[t], o.depths[d],
                                    o.gen_tokens));
        tps[t][d].push_back(RunOnce(**engine, prompts[d], gen).decode_tps);
      }
    }
  }
  bench::ProgressDone();

  // One type at one depth: its speeds and, per repetition, their ratio to
  // the first depth's speed in the same repetition.
  struct DepthStats {
    bench::MeanStd tps, ratio;
    double ratio_median;
    std::vector<double> ratios;
  };
  auto stats = [&](size_t t, size_t d) {
    DepthStats st;
    for (int r = 0; r < o.repetitions; ++r) st.ratios.push_back(tps[t][d][r] / tps[t][0][r]);
    st.tps = bench::Summarize(tps[t][d]);
    st.ratio = bench::Summarize(st.ratios);
    st.ratio_median = bench::Median(st.ratios);
    return st;
  };
  if (o.json) {
    nlohmann::json results = nlohmann::json::array();
    for (size_t t = 0; t < nt; ++t) {
      nlohmann::json per_depth = nlohmann::json::array();
      for (size_t d = 0; d < nd; ++d) {
        const DepthStats st = stats(t, d);
        per_depth.push_back({{"depth", o.depths[d]},
                             {"decode_tokens_per_s", st.tps.mean},
                             {"decode_tokens_per_s_stddev", st.tps.stddev},
                             {"runs", tps[t][d]},
                             {"ratio_to_first_depth", st.ratio.mean},
                             {"ratio_to_first_depth_stddev", st.ratio.stddev},
                             {"ratio_to_first_depth_median", st.ratio_median},
                             {"ratio_runs", st.ratios}});
      }
      results.push_back({{"kv_dtype", o.kv_dtypes[t]}, {"depths", per_depth}});
    }
    const nlohmann::json j = {{"schema", "kvinfer.bench.context/1"},
                              {"kvinfer_version", Version()},
                              {"command", bench::CommandLine()},
                              {"machine", bench::MachineInfo()},
                              {"model", info.path},
                              {"model_name", info.name},
                              {"threads", threads},
                              {"kv", o.kv},
                              {"gen_tokens", o.gen_tokens},
                              {"repetitions", o.repetitions},
                              {"results", results}};
    WriteStdout(JsonText(j) + "\n");
    return;
  }
  fmt::print("| {:<8} | {:>7} | {:>20} | {:>22} | {:>8} |\n", "kv dtype", "depth", "tg tok/s",
             fmt::format("ratio to depth {}", o.depths[0]), "median");
  fmt::print("| {:-<8} | {:->7} | {:->20} | {:->22} | {:->8} |\n", "", "", "", "", "");
  for (size_t t = 0; t < nt; ++t) {
    for (size_t d = 0; d < nd; ++d) {
      const DepthStats st = stats(t, d);
      fmt::print("| {:<8} | {:>7} | {:>20} | {:>22} | {:>8} |\n", o.kv_dtypes[t], o.depths[d],
                 fmt::format("{:.1f} ± {:.1f}", st.tps.mean, st.tps.stddev),
                 fmt::format("{:.1f}% ± {:.1f}", 100 * st.ratio.mean, 100 * st.ratio.stddev),
                 fmt::format("{:.1f}%", 100 * st.ratio_median));
    }
  }
  fmt::print("\n{} ({} threads, kv {}): tg{} after each depth; {} repetitions after a warm-up, "
             "types and depths interleaved in each; ratios paired per repetition.\n",
             std::filesystem::path(info.path).stem().string(), threads, o.kv, o.gen_tokens,
             o.repetitions);
}

// --repetitions and --json, as speed and context spell them.
void AddRepetitionsAndJsonOptions(CLI::App* cmd, int* repetitions, bool* json) {
  cmd->add_option("--repetitions,-r", *repetitions, "Measured repetitions after a warm-up")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_flag("--json", *json, "Print one JSON object instead of the table");
}

}  // namespace

void AddBenchCommand(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks: speed, context, kv-modes, memory, concurrency, prefix");
  bench->require_subcommand(1);

  auto o = std::make_shared<SpeedOptions>();
  CLI::App* speed = bench->add_subcommand(
      "speed", "Prefill and decode throughput on a synthetic prompt (llama-bench style)");
  AddModelOption(speed, &o->model);
  AddThreadsOption(speed, &o->threads, &o->activations);
  AddPrefixCacheOptions(speed, &o->prefix_cache, &o->prefix_cache_hash);
  AddKvDtypeOption(speed, &o->kv_dtype);
  speed->add_option("--prompt-tokens,-p", o->prompt_tokens, "Prompt tokens to prefill")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  speed->add_option("--gen-tokens,-n", o->gen_tokens, "Tokens to generate (EOS ignored)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  AddRepetitionsAndJsonOptions(speed, &o->repetitions, &o->json);
  AddKvStrategyOption(speed, &o->kv);
  speed->callback([o] { RunSpeed(*o); });

  auto c = std::make_shared<ContextOptions>();
  CLI::App* context = bench->add_subcommand(
      "context",
      "Decode speed after several context depths, the depths and K/V types interleaved per "
      "repetition, with each depth's speed as a paired ratio to the first depth's");
  AddModelOption(context, &c->model);
  AddThreadsOption(context, &c->threads, &c->activations);
  AddPrefixCacheOptions(context, &c->prefix_cache, &c->prefix_cache_hash);
  AddKvDtypeListOption(context, &c->kv_dtypes);
  context->add_option("--depths,-d", c->depths,
                      "Context depths (prompt tokens before the decode); ratios are to the first")
      ->check(CLI::Range(1, 1 << 20))
      ->delimiter(',')
      ->capture_default_str();
  context->add_option("--gen-tokens,-n", c->gen_tokens, "Tokens decoded after each depth")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  AddRepetitionsAndJsonOptions(context, &c->repetitions, &c->json);
  AddKvStrategyOption(context, &c->kv);
  context->callback([c] { RunContext(*c); });

  AddBenchKvModesCommand(bench);
  AddBenchMemoryCommand(bench);
  AddBenchConcurrencyCommand(bench);
  AddBenchPrefixCommand(bench);
}

}  // namespace kvinfer::cli
