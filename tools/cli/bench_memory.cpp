// kvinfer bench memory: contiguous vs paged KV memory under a mixed-length
// workload with one fixed KV budget. All requests are queued at once on an
// engine with a large max_seqs, so the KV pool alone limits how many run
// together. Per step it records running sequences and KV bytes reserved /
// used; it reports the most sequences admitted at once, throughput and
// waste = (reserved - used) / reserved averaged over steps.
// Writes OUT/results.json (schema "kvinfer.bench.memory/1") and figures.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numbers>
#include <random>

#include <fmt/format.h>

#include "bench_util.h"
#include "cli.h"

namespace kvinfer::cli {
namespace {

struct MemoryOptions {
  // Off by default: these benchmarks measure computing K/V, and their
  // repeated or shared prompts would otherwise hit the prefix cache.
  std::string prefix_cache = "off";
  std::string prefix_cache_hash = "xxh3_128";
  std::string model;
  std::string out;
  int threads = 0;
  ActivationPrecision activations = ActivationPrecision::kInt8;
  double kv_memory_mib = 0;  // 0 = room for 4 contiguous sequences
  int requests = 64;
  int max_prompt = 256;
  int max_gen = 256;
  uint64_t seed = 1;
  int block_size = 16;
  bool no_plot = false;
};

struct WorkItem {
  int prompt_tokens;
  int max_tokens;
};

// Log-normal lengths (median 48, sigma 0.8) clamped to [4, cap]: many short
// requests and a long tail, as in chat traffic. Built on mt19937_64's raw
// output (whose sequence the standard fixes) with Box-Muller, so the
// workload is identical across standard libraries.
std::vector<WorkItem> MakeWorkload(const MemoryOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) / 9007199254740992.0; };
  auto lognormal = [&](double median, double sigma, int cap) {
    const double z = std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * std::numbers::pi * uniform());
    const double x = median * std::exp(sigma * z);
    return std::clamp(static_cast<int>(std::lround(x)), 4, cap);
  };
  std::vector<WorkItem> w;
  for (int i = 0; i < o.requests; ++i) {
    const int p = lognormal(48, 0.8, o.max_prompt);
    const int g = lognormal(48, 0.8, o.max_gen);
    w.push_back({p, g});
  }
  return w;
}

nlohmann::json RunStrategy(const Model& model, const MemoryOptions& o, KvStrategy strategy,
                           const std::vector<WorkItem>& work, int max_seq_len, int64_t budget,
                           int* threads) {
  EngineOptions eo;
  eo.kv.strategy = strategy;
  eo.kv.max_seq_len = max_seq_len;
  eo.kv.block_size_tokens = o.block_size;
  eo.kv.memory_bytes = budget;
  eo.num_threads = o.threads;
  eo.activation_precision = o.activations;
  ApplyPrefixCacheOptions(o.prefix_cache, o.prefix_cache_hash, false, eo);
  eo.max_seqs = static_cast<int>(work.size());  // only the KV pool limits admission
  eo.max_batch_tokens = 2048;
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  *threads = (*engine)->options().num_threads;
  for (const WorkItem& item : work) {
    SamplingParams sp;
    sp.max_tokens = item.max_tokens;
    sp.ignore_eos = true;
    DieIf((*engine)->AddRequestTokens(bench::SyntheticPrompt(model, item.prompt_tokens), sp).status(),
          "bench request");
  }
  nlohmann::json running = nlohmann::json::array(), reserved = nlohmann::json::array(),
                 used = nlohmann::json::array(), t_ms = nlohmann::json::array();
  int64_t max_running = 0, generated = 0, steps = 0, peak_reserved = 0;
  double waste_sum = 0;
  int64_t waste_steps = 0;
  std::map<std::string, int> finish;
  const bench::Clock::time_point t0 = bench::Clock::now();
  while ((*engine)->HasWork()) {
    std::vector<RequestOutput> outs = (*engine)->Step();
    const KvCacheStats st = (*engine)->KvStats();
    ++steps;
    for (const RequestOutput& out : outs) {
      generated += static_cast<int64_t>(out.new_tokens.size());
      if (out.finished) ++finish[FinishReasonName(out.finish_reason)];
    }
    max_running = std::max(max_running, st.num_sequences);
    peak_reserved = std::max(peak_reserved, st.bytes_reserved);
    if (st.bytes_reserved > 0) {
      waste_sum += static_cast<double>(st.bytes_reserved - st.bytes_used) /
                   static_cast<double>(st.bytes_reserved);
      ++waste_steps;
    }
    t_ms.push_back(bench::Round(bench::MsSince(t0), 1));
    running.push_back(st.num_sequences);
    reserved.push_back(st.bytes_reserved);
    used.push_back(st.bytes_used);
    bench::Progress(fmt::format("bench memory: {:<10} step {:>5}, {:>3} running, {:>6} tokens",
                                KvStrategyName(strategy), steps, st.num_sequences, generated));
  }
  const double wall_s = bench::MsSince(t0) / 1000.0;
  const KvCacheStats end = (*engine)->KvStats();
  nlohmann::json fj = nlohmann::json::object();
  for (const auto& [k, v] : finish) fj[k] = v;
  return {{"strategy", KvStrategyName(strategy)},
          {"pool_bytes", end.bytes_total},
          {"block_size_tokens", end.block_size_tokens},
          {"num_blocks_total", end.num_blocks_total},
          {"max_running_sequences", max_running},
          {"generated_tokens", generated},
          {"steps", steps},
          {"wall_s", bench::Round(wall_s, 3)},
          {"generated_tokens_per_s", bench::Round(wall_s > 0 ? generated / wall_s : 0.0, 2)},
          {"mean_waste", bench::Round(waste_steps > 0 ? waste_sum / waste_steps : 0.0, 4)},
          {"peak_bytes_reserved", peak_reserved},
          {"finish_reasons", fj},
          {"timeline",
           {{"t_ms", t_ms}, {"running", running}, {"bytes_reserved", reserved}, {"bytes_used", used}}}};
}

void RunMemory(const MemoryOptions& o) {
  const std::string path = o.model.empty() ? DefaultModelPath() : o.model;
  Model model = LoadModel(path);
  const ModelInfo& info = model.info();
  bench::MakeDir(o.out);
  const std::vector<WorkItem> work = MakeWorkload(o);
  int max_seq_len = 0;
  int64_t sum_prompt = 0, sum_gen = 0;
  nlohmann::json wj = nlohmann::json::array();
  for (const WorkItem& w : work) {
    max_seq_len = std::max(max_seq_len, w.prompt_tokens + w.max_tokens);
    sum_prompt += w.prompt_tokens;
    sum_gen += w.max_tokens;
    wj.push_back({w.prompt_tokens, w.max_tokens});
  }
  if (max_seq_len > info.context_length) {
    Die(fmt::format("the workload's longest sequence ({} tokens) exceeds the model's context ({}); "
                    "lower --max-prompt / --max-gen",
                    max_seq_len, info.context_length));
  }
  const int64_t bpt = info.kv_bytes_per_token_f32;
  const int64_t budget =
      o.kv_memory_mib > 0 ? static_cast<int64_t>(o.kv_memory_mib * 1048576.0)
                          : int64_t{4} * max_seq_len * bpt;
  if (budget < static_cast<int64_t>(max_seq_len) * bpt) {
    Die(fmt::format("--kv-memory-mib {:.2f} holds fewer than {} tokens: contiguous could not run "
                    "even one sequence of the workload's max_seq_len ({} x {} bytes = {:.2f} MiB)",
                    budget / 1048576.0, max_seq_len, max_seq_len, bpt,
                    max_seq_len * bpt / 1048576.0));
  }
  int threads = 0;
  nlohmann::json results = nlohmann::json::array();
  for (KvStrategy s : {KvStrategy::kContiguous, KvStrategy::kPaged}) {
    results.push_back(RunStrategy(model, o, s, work, max_seq_len, budget, &threads));
  }
  bench::ProgressDone();
  const nlohmann::json j = {
      {"schema", "kvinfer.bench.memory/1"},
      {"kvinfer_version", Version()},
      {"command", bench::CommandLine()},
      {"machine", bench::MachineInfo()},
      {"model", bench::ModelJson(info)},
      {"threads", threads},
      {"kv_budget_bytes", budget},
      {"bytes_per_token", bpt},
      {"block_size_tokens", o.block_size},
      {"workload",
       {{"requests", o.requests},
        {"seed", o.seed},
        {"distribution", "prompt and max_tokens each log-normal, median 48, sigma 0.8, clamped "
                         "to [4, max]; ignore_eos"},
        {"max_prompt", o.max_prompt},
        {"max_gen", o.max_gen},
        {"max_seq_len", max_seq_len},
        {"mean_prompt_tokens", static_cast<double>(sum_prompt) / o.requests},
        {"mean_max_tokens", static_cast<double>(sum_gen) / o.requests},
        {"items_prompt_max_tokens", wj}}},
      {"notes",
       {"contiguous reserves max_seq_len (the workload's longest prompt + max_tokens) per "
        "sequence on admission; paged reserves 16-token blocks as tokens arrive.",
        "max_running_sequences is KvStats().num_sequences after each Step().",
        "mean_waste = mean over steps with reserved > 0 of (reserved - used) / reserved.",
        "A request the pool cannot grow ends with finish reason kv_exhausted (the engine had no "
        "preemption when this ran); see finish_reasons."}},
      {"results", results}};
  const std::string json_path = o.out + "/results.json";
  bench::WriteJson(json_path, j);
  for (const nlohmann::json& r : results) {
    std::fprintf(stderr,
                 "kvinfer: memory: %-10s max %3lld running | %7.1f tok/s | mean waste %5.1f%% | "
                 "%s\n",
                 r["strategy"].get<std::string>().c_str(),
                 static_cast<long long>(r["max_running_sequences"].get<int64_t>()),
                 r["generated_tokens_per_s"].get<double>(), 100.0 * r["mean_waste"].get<double>(),
                 r["finish_reasons"].dump().c_str());
  }
  std::fprintf(stderr, "kvinfer: memory: results -> %s\n", json_path.c_str());
  if (!o.no_plot) bench::RunPlot("memory", json_path, o.out);
}

}  // namespace

void AddBenchMemoryCommand(CLI::App* bench) {
  auto o = std::make_shared<MemoryOptions>();
  CLI::App* cmd = bench->add_subcommand(
      "memory", "contiguous vs paged KV under a mixed-length workload and a fixed KV budget");
  AddModelOption(cmd, &o->model);
  AddOutDirOption(cmd, &o->out);
  cmd->add_option("--kv-memory-mib", o->kv_memory_mib,
                  "KV budget in MiB for both strategies (0 = room for 4 contiguous sequences)")
      ->check(CLI::NonNegativeNumber);
  AddThreadsOption(cmd, &o->threads, &o->activations);
  AddPrefixCacheOptions(cmd, &o->prefix_cache, &o->prefix_cache_hash);
  cmd->add_option("--requests", o->requests, "Requests in the workload")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--max-prompt", o->max_prompt, "Longest prompt of the workload")
      ->check(CLI::Range(4, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-gen", o->max_gen, "Largest max_tokens of the workload")
      ->check(CLI::Range(4, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Workload seed")->capture_default_str();
  cmd->add_option("--block-size", o->block_size, "Tokens per KV block (paged)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_flag("--no-plot", o->no_plot, "Write results.json only");
  cmd->callback([o] { RunMemory(*o); });
}

}  // namespace kvinfer::cli
