// kvinfer bench prefix: what the prefix cache buys on a shared system
// prompt. N requests arrive together, each a shared S-token system prompt
// followed by a distinct Q-token question, generating G tokens (greedy, EOS
// ignored), on one paged engine with the prefix cache off, then on. Per
// request TTFT (arrival to first token, queueing included) and, for the
// whole run, wall time, requests/s and tokens/s (prompt + generated), the
// tokens the forward pass computed and the cache's hits. The greedy outputs
// of the two runs are compared token by token.
//
// Then a conversation of T turns (unless --turns 0): turn t's prompt is the
// previous turn's prompt, its reply's ids and a new Q-token question, after
// a shared C-token system prompt, one request at a time, cache off then on:
// per turn the prompt tokens, those prefilled (not from the cache) and
// TTFT. With the cache the prefill per turn stays flat instead of growing
// with the conversation.
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
  int turns = 10;
  int conversation_system_tokens = 200;
  bool no_plot = false;
};

// Question i: " Question i: ..." tokenized and repeated to n ids.
std::vector<int32_t> Question(const Model& model, int i, int n) {
  StatusOr<std::vector<int32_t>> q = model.Tokenize(
      fmt::format(" Question {}: what does character number {} do after the storm?", i, i * 7 + 3),
      false);
  DieIf(q.status(), "tokenize a question");
  if (q->empty()) Die("the tokenizer turns a question into no tokens");
  std::vector<int32_t> out;
  for (int k = 0; k < n; ++k) out.push_back((*q)[static_cast<size_t>(k) % q->size()]);
  return out;
}

// Request i's prompt: the shared system prompt, then question i: the text
// "Question i: ..." tokenized and repeated to question_tokens ids, so every
// question differs from the others from its first block on.
std::vector<std::vector<int32_t>> Prompts(const Model& model, const PrefixOptions& o) {
  const std::vector<int32_t> system = bench::SyntheticPrompt(model, o.system_tokens);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < o.requests; ++i) {
    std::vector<int32_t> p = system;
    const std::vector<int32_t> q = Question(model, i, o.question_tokens);
    p.insert(p.end(), q.begin(), q.end());
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// The conversation, one turn at a time; per turn {prompt_tokens,
// cached_prompt_tokens, prefill_tokens, ttft_ms}. `replies` receives the
// generated ids of every turn.
nlohmann::json RunConversation(const Model& model, const PrefixOptions& o, bool cache,
                               std::vector<std::vector<int32_t>>& replies) {
  EngineOptions eo;
  eo.kv.strategy = KvStrategy::kPaged;
  eo.kv.precision = *ParseKvPrecision(o.kv_dtype);
  eo.kv.block_size_tokens = o.block_size;
  eo.kv.max_seq_len = o.conversation_system_tokens + o.turns * (o.question_tokens + o.gen_tokens);
  eo.num_threads = o.threads;
  eo.activation_precision = o.activations;
  eo.max_seqs = 1;
  eo.max_batch_tokens = o.max_batch_tokens;
  ApplyPrefixCacheOptions(cache ? "on" : "off", o.hash, false, eo);
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  Engine& e = **engine;
  std::vector<int32_t> history = bench::SyntheticPrompt(model, o.conversation_system_tokens);
  nlohmann::json turns = nlohmann::json::array();
  replies.clear();
  for (int t = 0; t < o.turns; ++t) {
    const std::vector<int32_t> q = Question(model, 1000 + t, o.question_tokens);
    history.insert(history.end(), q.begin(), q.end());
    StatusOr<RequestId> id =
        e.AddRequestTokens(history, {.max_tokens = o.gen_tokens, .ignore_eos = true});
    DieIf(id.status(), "conversation turn");
    std::vector<int32_t> reply;
    RequestOutput last;
    while (e.HasWork()) {
      for (RequestOutput& r : e.Step()) {
        reply.insert(reply.end(), r.new_tokens.begin(), r.new_tokens.end());
        if (r.finished) last = std::move(r);
      }
    }
    bench::Progress(fmt::format("conversation, prefix cache {}: turn {}/{}", cache ? "on" : "off",
                                t + 1, o.turns));
    const int64_t prompt = static_cast<int64_t>(history.size());
    turns.push_back({{"turn", t + 1},
                     {"prompt_tokens", prompt},
                     {"cached_prompt_tokens", last.num_cached_tokens},
                     {"prefill_tokens", prompt - last.num_cached_tokens},
                     {"ttft_ms", bench::Round(last.timings.ttft_ms, 2)}});
    history.insert(history.end(), reply.begin(), reply.end());
    replies.push_back(std::move(reply));
  }
  bench::ProgressDone();
  return turns;
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
    StatusOr<RequestId> id =
        e.AddRequestTokens(p, {.max_tokens = o.gen_tokens, .ignore_eos = true});
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
    per_request.push_back(
        {{"ttft_ms", bench::Round(ttft[i], 2)}, {"cached_prompt_tokens", cached[i]}});
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
  bool identical = out_off == out_on;
  nlohmann::json conversation;
  if (o.turns > 0) {
    std::vector<std::vector<int32_t>> replies_off, replies_on;
    const nlohmann::json turns_off = RunConversation(model, o, false, replies_off);
    const nlohmann::json turns_on = RunConversation(model, o, true, replies_on);
    identical = identical && replies_off == replies_on;
    conversation = {{"turns", o.turns},
                    {"system_tokens", o.conversation_system_tokens},
                    {"question_tokens", o.question_tokens},
                    {"gen_tokens", o.gen_tokens},
                    {"off", turns_off},
                    {"on", turns_on}};
    const nlohmann::json& a = turns_off.back();
    const nlohmann::json& b = turns_on.back();
    std::fprintf(
        stderr,
        "conversation turn %d: %lld prompt tokens; prefilled %lld (off) vs %lld (on), TTFT "
        "%.0f vs %.0f ms\n",
        o.turns, static_cast<long long>(a["prompt_tokens"].get<int64_t>()),
        static_cast<long long>(a["prefill_tokens"].get<int64_t>()),
        static_cast<long long>(b["prefill_tokens"].get<int64_t>()), a["ttft_ms"].get<double>(),
        b["ttft_ms"].get<double>());
  }
  auto ratio = [&](const char* key, bool inverse) {
    const double a = off[key].get<double>(), b = on[key].get<double>();
    return bench::Round(inverse ? (b > 0 ? a / b : 0.0) : (a > 0 ? b / a : 0.0), 2);
  };
  const nlohmann::json j = {{"schema", "kvinfer.bench.prefix/1"},
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
                            {"runs", {off, on}},
                            {"conversation", conversation}};
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
  cmd->add_option("--turns", o->turns,
                  "Turns of the conversation run after the shared-prompt one (0 = none)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--conversation-system-tokens", o->conversation_system_tokens,
                  "Tokens of the conversation's system prompt")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_flag("--no-plot", o->no_plot, "Skip the PNG");
  cmd->callback([o] { RunPrefix(*o); });
}

}  // namespace kvinfer::cli
