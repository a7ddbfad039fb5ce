// kvinfer bench prefix: what the prefix cache buys on a shared system
// prompt. N requests arrive together, each a shared S-token system prompt
// followed by a distinct Q-token question, generating G tokens (greedy, EOS
// ignored), on one paged engine with the prefix cache off, then on. Per
// request TTFT (arrival to first token, queueing included) and, for the
// whole run, wall time, requests/s and tokens/s (prompt + generated), the
// tokens the forward pass computed and the cache's hits. The greedy outputs
// of the two runs are compared token by token.
// Writes OUT/results.json (schema "kvinfer.bench.prefix/1") and a plot.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "bench_util.h"
#include "cli.h"

namespace kvinfer::cli {
namespace {

struct PrefixOptions {
  std::string model;
  std::string out;
  int threads = 0;
  ActivationPrecision activations = ActivationPrecision::kInt8;
  int requests = 64;
  int system_tokens = 1000;
  int question_tokens = 50;
  int gen_tokens = 32;
  int max_seqs = 64;
  int max_batch_tokens = 2048;
  int block_size = 16;
  std::string kv_dtype = "f32";
  std::string hash = "xxh3_128";
  bool no_plot = false;
};

// Request i's prompt: the shared system prompt, then question i: the text
// "Question i: ..." tokenized and repeated to question_tokens ids, so every
// question differs from the others from its first block on.
std::vector<std::vector<int32_t>> Prompts(const Model& model, const PrefixOptions& o) {
  const std::vector<int32_t> system = bench::SyntheticPrompt(model, o.system_tokens);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < o.requests; ++i) {
    StatusOr<std::vector<int32_t>> q = model.Tokenize(
        fmt::format(" Question {}: what does character number {} do after the storm?", i, i * 7 + 3),
        false);
    DieIf(q.status(), "tokenize a question");
    if (q->empty()) Die("the tokenizer turns a question into no tokens");
    std::vector<int32_t> p = system;
    for (int k = 0; k < o.question_tokens; ++k) p.push_back((*q)[static_cast<size_t>(k) % q->size()]);
    prompts.push_back(std::move(p));
  }
  return prompts;
}

nlohmann::json RunOnce(const Model& model, const PrefixOptions& o, bool cache,
                       const std::vector<std::vector<int32_t>>& prompts,
                       std::vector<std::vector<int32_t>>& outputs) {
  EngineOptions eo;
  eo.kv.strategy = KvStrategy::kPaged;
  eo.kv.precision = *ParseKvPrecision(o.kv_dtype);
  eo.kv.block_size_tokens = o.block_size;
  eo.kv.max_seq_len = o.system_tokens + o.question_tokens + o.gen_tokens;
  eo.num_threads = o.threads;
  eo.activation_precision = o.activations;
  eo.max_seqs = o.max_seqs;
  eo.max_batch_tokens = o.max_batch_tokens;
  ApplyPrefixCacheOptions(cache ? "on" : "off", o.hash, false, eo);
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  Engine& e = **engine;
  std::vector<RequestId> ids;
  for (const std::vector<int32_t>& p : prompts) {
    StatusOr<RequestId> id = e.AddRequestTokens(p, {.max_tokens = o.gen_tokens, .ignore_eos = true});
    DieIf(id.status(), "request");
    ids.push_back(*id);
  }
  outputs.assign(prompts.size(), {});
  std::vector<double> ttft(prompts.size(), 0.0);
  std::vector<int64_t> cached(prompts.size(), 0);
  const bench::Clock::time_point start = bench::Clock::now();
  size_t done = 0;
  while (e.HasWork()) {
    for (const RequestOutput& r : e.Step()) {
      const size_t i = static_cast<size_t>(std::find(ids.begin(), ids.end(), r.id) - ids.begin());
      outputs[i].insert(outputs[i].end(), r.new_tokens.begin(), r.new_tokens.end());
      if (r.finished) {
        ttft[i] = r.timings.ttft_ms;
        cached[i] = r.num_cached_tokens;
        ++done;
      }
    }
    bench::Progress(fmt::format("prefix cache {}: {}/{} requests done", cache ? "on" : "off", done,
                                prompts.size()));
  }
  const double total_s = bench::MsSince(start) / 1000.0;
  bench::ProgressDone();
  int64_t prompt_tokens = 0, generated = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompt_tokens += static_cast<int64_t>(prompts[i].size());
    generated += static_cast<int64_t>(outputs[i].size());
  }
  const EngineStats st = e.Stats();
  const bench::MeanStd t = bench::Summarize(ttft);
  std::vector<double> sorted = ttft;
  std::sort(sorted.begin(), sorted.end());
  const double p90 = sorted[std::min(sorted.size() - 1, sorted.size() * 9 / 10)];
  nlohmann::json per_request = nlohmann::json::array();
  for (size_t i = 0; i < prompts.size(); ++i) {
    per_request.push_back({{"ttft_ms", bench::Round(ttft[i], 2)}, {"cached_prompt_tokens", cached[i]}});
  }
  return {{"prefix_cache", cache ? "on" : "off"},
          {"total_s", bench::Round(total_s)},
          {"ttft_ms_mean", bench::Round(t.mean, 2)},
          {"ttft_ms_median", bench::Round(bench::Median(ttft), 2)},
          {"ttft_ms_p90", bench::Round(p90, 2)},
          {"requests_per_s", bench::Round(prompts.size() / total_s)},
          {"output_tokens_per_s", bench::Round(generated / total_s, 2)},
          {"total_tokens_per_s", bench::Round((prompt_tokens + generated) / total_s, 2)},
          {"prompt_tokens", prompt_tokens},
          {"generated_tokens", generated},
          {"tokens_computed", st.tokens_computed},
          {"prefix_cache_queries", st.prefix_cache_queries},
          {"prefix_cache_hits", st.prefix_cache_hits},
          {"prefix_cache_blocks_evicted", st.prefix_cache_blocks_evicted},
          {"steps", st.num_steps},
          {"preemptions", st.num_preemptions},
          {"requests", per_request}};
}

void RunPrefix(const PrefixOptions& o) {
  bench::MakeDir(o.out);
  Model model = LoadModel(o.model.empty() ? DefaultModelPath() : o.model);
  const std::vector<std::vector<int32_t>> prompts = Prompts(model, o);
  std::vector<std::vector<int32_t>> out_off, out_on;
  nlohmann::json off = RunOnce(model, o, false, prompts, out_off);
  nlohmann::json on = RunOnce(model, o, true, prompts, out_on);
  const bool identical = out_off == out_on;
  auto ratio = [&](const char* key, bool inverse) {
    const double a = off[key].get<double>(), b = on[key].get<double>();
    return bench::Round(inverse ? (b > 0 ? a / b : 0.0) : (a > 0 ? b / a : 0.0), 2);
  };
  const nlohmann::json j = {
      {"schema", "kvinfer.bench.prefix/1"},
      {"command", bench::CommandLine()},
      {"machine", bench::MachineInfo()},
      {"model", bench::ModelJson(model.info())},
      {"kvinfer_version", Version()},
      {"threads", o.threads},
      {"kv", "paged"},
      {"kv_dtype", o.kv_dtype},
      {"block_size", o.block_size},
      {"prefix_cache_hash", o.hash},
      {"requests", o.requests},
      {"system_tokens", o.system_tokens},
      {"question_tokens", o.question_tokens},
      {"gen_tokens", o.gen_tokens},
      {"max_seqs", o.max_seqs},
      {"max_batch_tokens", o.max_batch_tokens},
      {"outputs_identical", identical},
      {"ttft_mean_speedup", ratio("ttft_ms_mean", true)},
      {"throughput_speedup", ratio("total_tokens_per_s", false)},
      {"runs", {off, on}}};
  std::fprintf(stderr,
               "prefix cache off: TTFT mean %.0f ms, %.1f tok/s total, %lld tokens computed\n"
               "prefix cache on:  TTFT mean %.0f ms, %.1f tok/s total, %lld tokens computed "
               "(%lld of %lld prompt tokens hit)\n"
               "TTFT %.1fx lower, throughput %.1fx higher; outputs %s\n",
               off["ttft_ms_mean"].get<double>(), off["total_tokens_per_s"].get<double>(),
               static_cast<long long>(off["tokens_computed"].get<int64_t>()),
               on["ttft_ms_mean"].get<double>(), on["total_tokens_per_s"].get<double>(),
               static_cast<long long>(on["tokens_computed"].get<int64_t>()),
               static_cast<long long>(on["prefix_cache_hits"].get<int64_t>()),
               static_cast<long long>(on["prefix_cache_queries"].get<int64_t>()),
               j["ttft_mean_speedup"].get<double>(), j["throughput_speedup"].get<double>(),
               identical ? "identical" : "DIFFER");
  const std::string path = o.out + "/results.json";
  bench::WriteJson(path, j);
  std::fprintf(stderr, "wrote %s\n", path.c_str());
  if (!o.no_plot) bench::RunPlot("prefix", path, o.out);
  if (!identical) Die("the outputs with the prefix cache on differ from those with it off");
}

}  // namespace

void AddBenchPrefixCommand(CLI::App* bench) {
  auto o = std::make_shared<PrefixOptions>();
  CLI::App* cmd = bench->add_subcommand(
      "prefix", "TTFT and throughput of requests sharing a system prompt, prefix cache off vs on");
  AddModelOption(cmd, &o->model);
  AddOutDirOption(cmd, &o->out);
  AddThreadsOption(cmd, &o->threads, &o->activations);
  AddKvDtypeOption(cmd, &o->kv_dtype);
  cmd->add_option("--requests", o->requests, "Requests, all arriving at once")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--system-tokens", o->system_tokens, "Tokens of the shared system prompt")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--question-tokens", o->question_tokens, "Tokens of each request's own question")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--gen-tokens", o->gen_tokens, "Generated tokens per request")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-seqs", o->max_seqs, "Sequences running at once at most")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens per forward step at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--block-size", o->block_size, "Tokens per KV block")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--prefix-cache-hash", o->hash, "xxh3_128 or sha256")
      ->check(CLI::IsMember({"xxh3_128", "sha256"}))
      ->capture_default_str();
  cmd->add_flag("--no-plot", o->no_plot, "Skip the PNG");
  cmd->callback([o] { RunPrefix(*o); });
}

}  // namespace kvinfer::cli
