// kvinfer bench: measurements of the engine through the public API.
//
//   bench speed     llama-bench style prefill / decode throughput (mean ± sd)
//   bench kv-modes  none vs contiguous vs paged over generated and prompt
//                   lengths: latency, per-step cost, KV bytes, RSS
//                   (bench_kv_modes.cpp)
//   bench memory    contiguous vs paged under a mixed-length workload with a
//                   fixed KV budget: admitted sequences, throughput, waste
//                   (bench_memory.cpp)
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "bench_util.h"
#include "cli.h"

namespace kvinfer::cli {

void AddBenchKvModesCommand(CLI::App* bench);  // bench_kv_modes.cpp
void AddBenchMemoryCommand(CLI::App* bench);   // bench_memory.cpp
void AddBenchConcurrencyCommand(CLI::App* bench);  // bench_concurrency.cpp

namespace {

struct SpeedOptions {
  std::string model;
  std::string kv = "contiguous";
  std::string kv_dtype = "f32";
  int threads = 0;
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
    std::cout << j.dump(2) << "\n";
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

}  // namespace

void AddBenchCommand(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks: speed, kv-modes, memory, concurrency");
  bench->require_subcommand(1);

  auto o = std::make_shared<SpeedOptions>();
  CLI::App* speed = bench->add_subcommand(
      "speed", "Prefill and decode throughput on a synthetic prompt (llama-bench style)");
  AddModelOption(speed, &o->model);
  AddThreadsOption(speed, &o->threads);
  AddKvDtypeOption(speed, &o->kv_dtype);
  speed->add_option("--prompt-tokens,-p", o->prompt_tokens, "Prompt tokens to prefill")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  speed->add_option("--gen-tokens,-n", o->gen_tokens, "Tokens to generate (EOS ignored)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  speed->add_option("--repetitions,-r", o->repetitions, "Measured repetitions after a warm-up")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  speed->add_option("--kv", o->kv, "KV cache strategy")
      ->check(CLI::IsMember({"none", "contiguous", "paged"}))
      ->capture_default_str();
  speed->add_flag("--json", o->json, "Print one JSON object instead of the table");
  speed->callback([o] { RunSpeed(*o); });

  AddBenchKvModesCommand(bench);
  AddBenchMemoryCommand(bench);
  AddBenchConcurrencyCommand(bench);
}

}  // namespace kvinfer::cli
