// kvinfer bench kv-modes: the seed experiment. One request at a time, for
// each KV strategy (none, contiguous, paged):
//   gen sweep     a short prompt, generated lengths 16..1024: total latency,
//                 TTFT, the wall time of every Step() (step 0 prefills, each
//                 later step decodes one token), KV bytes reserved and used;
//   prompt sweep  prompt lengths 32..1024, 16 generated tokens: TTFT and the
//                 cost of decoding at long positions.
// Writes OUT/results.json (schema "kvinfer.bench.kv-modes/1", described in
// docs/kv-cache-lab.md) and, unless --no-plot, the figures via
// tools/plot_bench.py.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "bench_util.h"
#include "cli.h"

namespace kvinfer::cli {
namespace {

constexpr KvStrategy kStrategies[] = {KvStrategy::kNone, KvStrategy::kContiguous,
                                      KvStrategy::kPaged};

struct KvModesOptions {
  // Off by default: these benchmarks measure computing K/V, and their
  // repeated or shared prompts would otherwise hit the prefix cache.
  std::string prefix_cache = "off";
  std::string prefix_cache_hash = "xxh3_128";
  std::string model;
  std::string out;
  bool quick = false;
  int threads = 0;
  ActivationPrecision activations = ActivationPrecision::kInt8;
  int prompt_tokens = 32;
  int block_size = 16;
  int none_max_gen = 0;  // 0 = no cap
  std::string kv_dtype = "f32";
  bool no_plot = false;
};

struct RunSpec {
  KvStrategy strategy;
  int prompt_tokens;
  int gen_tokens;
  int max_seq_len;  // same for every run of a sweep: what contiguous reserves
};

// Runs one request alone on a fresh engine and measures it.
nlohmann::json MeasureRun(const Model& model, const KvModesOptions& o, const RunSpec& spec,
                          bool keep_steps) {
  EngineOptions eo;
  eo.kv.strategy = spec.strategy;
  eo.kv.precision = *ParseKvPrecision(o.kv_dtype);
  eo.kv.max_seq_len = spec.max_seq_len;
  eo.kv.block_size_tokens = o.block_size;
  eo.num_threads = o.threads;
  eo.activation_precision = o.activations;
  ApplyPrefixCacheOptions(o.prefix_cache, o.prefix_cache_hash, false, eo);
  eo.max_seqs = 1;
  eo.max_batch_tokens = std::max(spec.prompt_tokens, 1);  // prefill = one forward
  const int64_t rss_before = bench::RssBytes();
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  const int64_t rss_engine = bench::RssBytes();

  SamplingParams sp;
  sp.max_tokens = spec.gen_tokens;
  sp.ignore_eos = true;
  StatusOr<RequestId> id =
      (*engine)->AddRequestTokens(bench::SyntheticPrompt(model, spec.prompt_tokens), sp);
  DieIf(id.status(), "bench request");

  std::vector<double> step_ms;
  step_ms.reserve(static_cast<size_t>(spec.gen_tokens) + 1);
  int64_t peak_reserved = 0, peak_used = 0, peak_tokens = 0, peak_rss = rss_engine;
  KvCacheStats last;
  RequestOutput final;
  while ((*engine)->HasWork()) {
    const bench::Clock::time_point t0 = bench::Clock::now();
    std::vector<RequestOutput> outs = (*engine)->Step();
    step_ms.push_back(bench::MsSince(t0));
    last = (*engine)->KvStats();
    peak_reserved = std::max(peak_reserved, last.bytes_reserved);
    peak_used = std::max(peak_used, last.bytes_used);
    peak_tokens = std::max(peak_tokens, last.tokens_held);
    peak_rss = std::max(peak_rss, bench::RssBytes());
    for (RequestOutput& out : outs) {
      if (out.id == *id && out.finished) final = std::move(out);
    }
  }
  if (final.finish_reason != FinishReason::kLength) {
    Die(fmt::format("kv-modes run ({}, {} + {} tokens) ended with '{}'",
                    KvStrategyName(spec.strategy), spec.prompt_tokens, spec.gen_tokens,
                    FinishReasonName(final.finish_reason)));
  }
  const RequestTimings& t = final.timings;
  double wall_ms = 0;
  for (double s : step_ms) wall_ms += s;
  nlohmann::json steps = nlohmann::json::array();
  if (keep_steps) {
    for (double s : step_ms) steps.push_back(bench::Round(s, 3));
  }
  const int64_t decode_steps = static_cast<int64_t>(step_ms.size()) - 1;
  nlohmann::json j = {
      {"strategy", KvStrategyName(spec.strategy)},
      {"prompt_tokens", spec.prompt_tokens},
      {"gen_tokens", t.generated_tokens},
      {"max_seq_len", spec.max_seq_len},
      {"total_ms", bench::Round(t.total_ms)},
      {"steps_wall_ms", bench::Round(wall_ms)},
      {"ttft_ms", bench::Round(t.ttft_ms)},
      {"prefill_ms", bench::Round(t.prefill_ms)},
      {"decode_ms", bench::Round(t.decode_ms)},
      {"decode_ms_per_token",
       bench::Round(decode_steps > 0 ? t.decode_ms / static_cast<double>(decode_steps) : 0.0, 4)},
      {"num_steps", step_ms.size()},
      {"kv",
       {{"bytes_per_token", last.bytes_per_token},
        {"block_size_tokens", last.block_size_tokens},
        {"pool_bytes", last.bytes_total},
        {"peak_bytes_reserved", peak_reserved},
        {"peak_bytes_reserved_within_step", last.peak_bytes_reserved},
        {"peak_bytes_used", peak_used},
        {"peak_tokens_held", peak_tokens}}},
      {"rss",
       {{"before_engine_bytes", rss_before},
        {"after_engine_create_bytes", rss_engine},
        {"peak_sampled_bytes", peak_rss},
        {"growth_bytes", peak_rss - rss_before},
        {"process_peak_hwm_bytes", bench::PeakRssBytes()}}}};
  if (keep_steps) j["step_ms"] = std::move(steps);
  return j;
}

void RunKvModes(const KvModesOptions& o) {
  const std::string path = o.model.empty() ? DefaultModelPath() : o.model;
  Model model = LoadModel(path);
  const ModelInfo& info = model.info();
  bench::MakeDir(o.out);

  const std::vector<int> gen_lengths =
      o.quick ? std::vector<int>{16, 64, 128} : std::vector<int>{16, 64, 256, 1024};
  const std::vector<int> prompt_lengths =
      o.quick ? std::vector<int>{32, 128, 256} : std::vector<int>{32, 128, 256, 512, 1024};
  constexpr int kPromptSweepGen = 16;
  const int none_cap = o.none_max_gen > 0 ? o.none_max_gen : 1 << 30;
  const int context = info.context_length;

  // Every run of a sweep shares one engine configuration, as a server would:
  // max_seq_len = the sweep's longest sequence (capped by the context), so
  // contiguous reserves the same region whatever the request's length.
  auto fits = [&](int p, int g) { return p + g <= context; };
  int gen_max_seq = 0;
  for (int g : gen_lengths) {
    if (fits(o.prompt_tokens, g)) gen_max_seq = std::max(gen_max_seq, o.prompt_tokens + g);
  }
  int prompt_max_seq = 0;
  for (int p : prompt_lengths) {
    if (fits(p, kPromptSweepGen)) prompt_max_seq = std::max(prompt_max_seq, p + kPromptSweepGen);
  }
  if (gen_max_seq == 0) {
    Die(fmt::format("the model's context ({} tokens) is too short for a {}-token prompt plus {} "
                    "generated tokens",
                    context, o.prompt_tokens, gen_lengths.front()));
  }

  int threads = o.threads;
  {
    // Warm-up: page the weights in and start the thread pool; not recorded.
    EngineOptions eo;
    eo.kv.max_seq_len = std::min(context, 64);
    eo.num_threads = o.threads;
    eo.activation_precision = o.activations;
    ApplyPrefixCacheOptions(o.prefix_cache, o.prefix_cache_hash, false, eo);
    eo.max_seqs = 1;
    auto engine = Engine::Create(model, eo);
    DieIf(engine.status(), "engine");
    threads = (*engine)->options().num_threads;
    bench::Progress("bench kv-modes: warm-up");
    SamplingParams sp;
    sp.max_tokens = 8;
    sp.ignore_eos = true;
    DieIf((*engine)->AddRequestTokens(bench::SyntheticPrompt(model, 16), sp).status(), "warm-up");
    while ((*engine)->HasWork()) (*engine)->Step();
  }

  nlohmann::json skipped = nlohmann::json::array();
  auto sweep = [&](const char* name, const std::vector<std::pair<int, int>>& cases, int max_seq,
                   bool keep_steps) {
    nlohmann::json runs = nlohmann::json::array();
    // Strategies interleaved per length: ratios come from runs close in time.
    for (const auto& [p, g] : cases) {
      for (KvStrategy s : kStrategies) {
        const char* sname = KvStrategyName(s);
        if (!fits(p, g)) {
          skipped.push_back({{"sweep", name}, {"strategy", sname}, {"prompt_tokens", p},
                             {"gen_tokens", g},
                             {"reason", fmt::format("exceeds the model's context ({})", context)}});
          continue;
        }
        if (s == KvStrategy::kNone && g > none_cap) {
          skipped.push_back(
              {{"sweep", name}, {"strategy", sname}, {"prompt_tokens", p}, {"gen_tokens", g},
               {"reason", fmt::format("none is capped at {} generated tokens (O(n^2) time); "
                                      "raise with --none-max-gen",
                                      none_cap)}});
          continue;
        }
        bench::Progress(fmt::format("bench kv-modes: {} sweep, {:<10} prompt {:>4} gen {:>4}",
                                    name, sname, p, g));
        runs.push_back(MeasureRun(model, o, {s, p, g, max_seq}, keep_steps));
      }
    }
    return runs;
  };

  std::vector<std::pair<int, int>> gen_cases, prompt_cases;
  for (int g : gen_lengths) gen_cases.emplace_back(o.prompt_tokens, g);
  for (int p : prompt_lengths) prompt_cases.emplace_back(p, kPromptSweepGen);
  const bench::Clock::time_point t0 = bench::Clock::now();
  nlohmann::json gen_runs = sweep("gen", gen_cases, gen_max_seq, true);
  nlohmann::json prompt_runs =
      prompt_max_seq > 0 ? sweep("prompt", prompt_cases, prompt_max_seq, true) : nlohmann::json::array();
  const double elapsed_s = bench::MsSince(t0) / 1000.0;
  bench::ProgressDone();

  const nlohmann::json j = {
      {"schema", "kvinfer.bench.kv-modes/1"},
      {"kvinfer_version", Version()},
      {"command", bench::CommandLine()},
      {"machine", bench::MachineInfo()},
      {"model", bench::ModelJson(info)},
      {"threads", threads},
      {"quick", o.quick},
      {"kv_dtype", o.kv_dtype},
      {"block_size_tokens", o.block_size},
      {"none_max_gen_tokens", none_cap >= (1 << 30) ? nlohmann::json(nullptr) : nlohmann::json(none_cap)},
      {"elapsed_s", bench::Round(elapsed_s, 1)},
      {"notes",
       {"step_ms[0] is the prefill step (whole prompt in one forward + first token); each later "
        "entry is one decode step, timed around Engine::Step().",
        "KV bytes are from Engine::KvStats() after each step (the request's last step frees "
        "its blocks, so peak_tokens_held = prompt + gen - 2); none frees its transient cache "
        "within the step, so its per-step peak is peak_bytes_reserved_within_step.",
        "RSS is process-wide (weights are memory-mapped and count once paged in). The KV pool is "
        "allocated but not written when the engine is created, so its pages become resident only "
        "as blocks are first written: rss.growth_bytes (peak during the run minus before the "
        "engine) is what the run's KV and scratch really occupied; a contiguous reservation "
        "shows in kv.peak_bytes_reserved (what admission must set aside), not in RSS.",
        "Timings are wall-clock on a shared machine: prefer ratios within one run."}},
      {"gen_sweep",
       {{"prompt_tokens", o.prompt_tokens},
        {"gen_tokens", gen_lengths},
        {"max_seq_len", gen_max_seq},
        {"runs", gen_runs}}},
      {"prompt_sweep",
       {{"gen_tokens", kPromptSweepGen},
        {"prompt_tokens", prompt_lengths},
        {"max_seq_len", prompt_max_seq},
        {"runs", prompt_runs}}},
      {"skipped", skipped}};
  const std::string json_path = o.out + "/results.json";
  bench::WriteJson(json_path, j);
  std::fprintf(stderr, "kvinfer: kv-modes: %zu + %zu runs in %.1f s -> %s\n", gen_runs.size(),
               prompt_runs.size(), elapsed_s, json_path.c_str());
  if (!o.no_plot) bench::RunPlot("kv-modes", json_path, o.out);
}

}  // namespace

void AddBenchKvModesCommand(CLI::App* bench) {
  auto o = std::make_shared<KvModesOptions>();
  CLI::App* cmd = bench->add_subcommand(
      "kv-modes", "none vs contiguous vs paged: latency, per-step cost and KV memory by length");
  AddModelOption(cmd, &o->model);
  AddOutDirOption(cmd, &o->out);
  cmd->add_flag("--quick", o->quick,
                "Shorter sweeps (generated 16, 64, 128; prompts 32, 128, 256)");
  AddThreadsOption(cmd, &o->threads, &o->activations);
  AddPrefixCacheOptions(cmd, &o->prefix_cache, &o->prefix_cache_hash);
  AddKvDtypeOption(cmd, &o->kv_dtype);
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "Prompt length of the generated-length sweep")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--block-size", o->block_size, "Tokens per KV block (paged)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--none-max-gen", o->none_max_gen,
                  "Longest generated length run with --kv none (0 = no cap; the full sweep's 1024 takes ~15 min on 2 cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-plot", o->no_plot, "Write results.json only");
  cmd->callback([o] { RunKvModes(*o); });
}

}  // namespace kvinfer::cli
